"""Estimators of the treatment effect, all reached through :func:`fit`.

Gaussian linear mixed models (:mod:`.mixed`), GLMMs for binomial, Poisson and negative-binomial
outcomes (:mod:`.glmm`), GEE (:mod:`.gee`), cluster fixed-effects GLMs with CR2 inference
(:mod:`.fixed_effects`) and cluster-period summary analyses (:mod:`.cluster_level`);
:mod:`.fit` dispatches on ``family`` and ``method``.
"""

from __future__ import annotations

from .fit import fit

__all__ = ["fit"]
