"""Estimators of the treatment effect, all reached through :func:`fit`.

Gaussian linear mixed models (:mod:`.mixed`), GLMMs for binomial, Poisson and negative-binomial
outcomes (:mod:`.glmm`), GEE (:mod:`.gee`), cluster fixed-effects GLMs with CR2 inference
(:mod:`.fixed_effects`), cluster-period summary analyses (:mod:`.cluster_level`), the
design-based estimators on cluster-period summaries (:mod:`.design_based`: vertical, Hughes,
synthetic control, crossover) and the staggered-rollout estimators (:mod:`.staggered`:
efficient, Callaway-Sant'Anna, Sun-Abraham, imputation).  :func:`fit` builds one
:class:`~.spec.AnalysisSpec` (:mod:`.spec`: roles and shared options, validated once) and
calls the entry ``fit_<name>_spec(data, spec, **numerics)`` that :data:`.fit.FITTERS`
registers for the ``method``; every entry returns an
:class:`~steppedwedge.results.EstimationResult`.  Covariate formulas reach patsy only
through ``_formula``.
"""

from __future__ import annotations

from .fit import fit

__all__ = ["fit"]
