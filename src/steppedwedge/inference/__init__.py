"""Small-sample inference: df rules (Kenward-Roger, Satterthwaite, ...) and robust variances."""

from __future__ import annotations

from .dof import DOF_METHODS
from .vcov import VCOV_TYPES

__all__ = ["DOF_METHODS", "VCOV_TYPES"]
