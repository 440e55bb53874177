"""Small-sample inference: df rules (Kenward-Roger, Satterthwaite, ...) and robust variances."""

from __future__ import annotations

from .dof import DOF_METHODS
from .sandwich import VCOV_CHOICES

__all__ = ["DOF_METHODS", "VCOV_CHOICES"]
