"""Model fitting: Gaussian mixed models now (``fit``); GLMM and GEE later."""

from __future__ import annotations

from .fit import fit

__all__ = ["fit"]
