"""Inference on top of the fits: small-sample df, robust variances, randomisation tests, pooling.

- :mod:`.dof`: denominator degrees of freedom of Wald tests in Gaussian LMMs (Kenward-Roger,
  Satterthwaite, between-within, or the normal approximation);
- :mod:`.sandwich`: cluster-robust covariances (CR0, CR2, CR3, KC, MD, FG, MBN) for every model;
- :mod:`.marginal`: the marginal (population-averaged) ratio of a GLMM by g-computation;
- :mod:`.permutation`: randomisation tests and the confidence intervals that invert them
  (:func:`~steppedwedge.permutation_test`, with the interval search in ``_permutation_ci``);
- :mod:`.pooling`: Rubin's rules for analyses of multiply imputed data
  (:func:`~steppedwedge.pool`).
"""

from __future__ import annotations

from .dof import DOF_METHODS
from .sandwich import VCOV_CHOICES

__all__ = ["DOF_METHODS", "VCOV_CHOICES"]
