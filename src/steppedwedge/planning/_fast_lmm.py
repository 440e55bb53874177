"""Fast path of simulated power: the Gaussian LMM fitted on simulated cell statistics.

For cross-sectional Gaussian data the REML fit depends on the data only through the
cluster-period sizes, means and the pooled within-cell sum of squares
(:mod:`steppedwedge._core.reml`), which :func:`steppedwedge.simulate._draw.draw_cells`
draws exactly.  So a replicate needs no individual rows and no DataFrame: it is one
:func:`~steppedwedge._core.reml.fit_lmm` plus the small-sample df.  The fixed effects are
those of :func:`steppedwedge.fit` with ``time="categorical"`` and ``effect="immediate"``
(intercept, period effects, treatment), so estimates, SEs, df and p-values are the same as
refitting the simulated rows with :func:`steppedwedge.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.reml import CellData, CovarianceStructure, fit_lmm
from .._typing import FloatArray
from ..inference.dof import DOF_METHODS, InferenceEngine
from ..models.mixed import RANDOM_STRUCTURES, _structure
from ..results import t_interval, t_pvalue
from ..simulate._draw import DrawArrays

__all__ = ["FastLMM", "fast_lmm_plan", "fast_lmm_analyse"]

#: sw.fit options and the only values the fast path reproduces
_FIXED = {
    "time": ("categorical",),
    "effect": ("immediate",),
    "method": ("reml", "ml"),
    "vcov": ("model",),
    "link": ("identity",),
    "family": ("gaussian",),
    "covariates": (None,),
}
_DEFAULTS = {"random": "nested", "method": "reml"}


@dataclass(frozen=True, eq=False)
class FastLMM:
    """Fixed inputs of the cell-level LMM analysis of one simulation."""

    xbar: FloatArray  # (I, T, p): intercept, period 2..T, treatment
    treatment: FloatArray  # (I, T) design treatment (0 where unobserved)
    size: FloatArray  # (I, T)
    times: FloatArray  # (T,)
    structure: CovarianceStructure
    random: str
    reml: bool
    dof: str
    alpha: float


def fast_lmm_plan(
    spec: DrawArrays | None, options: Mapping[str, Any], alpha: float
) -> FastLMM | None:
    """Return a :class:`FastLMM` when the options and data allow the cell fast path, else None."""
    if spec is None or spec.family != "gaussian" or spec.sampling != "cross-sectional":
        return None
    opts = {**_DEFAULTS, **{k: v for k, v in options.items() if v is not None or k == "covariates"}}
    if opts.get("dof") is None:  # sw.fit's default: KR for REML, Satterthwaite for ML
        opts["dof"] = "kenward-roger" if opts["method"] == "reml" else "satterthwaite"
    for key, value in opts.items():
        if key == "random":
            if value not in RANDOM_STRUCTURES:
                return None
        elif key == "dof":
            if value not in DOF_METHODS or (value == "kenward-roger" and opts["method"] == "ml"):
                return None
        elif key in _FIXED:
            if value not in _FIXED[key]:
                return None
        else:
            return None  # an option the fast path does not know: let sw.fit handle it
    n_clusters, n_periods = spec.shape
    x = np.where(spec.observed, np.nan_to_num(spec.treatment), 0.0)
    xbar = np.zeros((n_clusters, n_periods, n_periods + 1))
    xbar[:, :, 0] = 1.0
    idx = np.arange(1, n_periods)
    xbar[:, idx, idx] = 1.0
    xbar[:, :, -1] = x
    structure = _structure(opts["random"])
    return FastLMM(
        xbar=xbar,
        treatment=x,
        size=np.where(spec.observed, spec.size, 0.0),
        times=np.arange(n_periods, dtype=float),
        structure=structure,
        random=opts["random"],
        reml=opts["method"] == "reml",
        dof=opts["dof"],
        alpha=alpha,
    )


def fast_lmm_analyse(plan: FastLMM, means: FloatArray, within_ss: FloatArray) -> dict[str, Any]:
    """Fit the LMM to one draw of cell statistics; estimate, SE, df, p-value, CI, flags."""
    p = plan.xbar.shape[2]
    within = np.zeros((p + 1, p + 1))
    within[p, p] = float(np.nansum(within_ss))
    cells = CellData(
        n=plan.size,
        xbar=plan.xbar,
        ybar=np.nan_to_num(means),
        within=within,
        treatment=plan.treatment,
        times=plan.times,
    )
    fit = fit_lmm(cells, plan.structure, reml=plan.reml)
    contrast = np.zeros(p)
    contrast[-1] = 1.0
    result = InferenceEngine(fit, cells, plan.structure, plan.dof).contrast(contrast)
    low, high = t_interval(result.estimate, result.std_error, result.df, 1.0 - plan.alpha)
    return {
        "estimate": result.estimate,
        "std_error": result.std_error,
        "df": result.df,
        "p_value": t_pvalue(result.estimate / result.std_error, result.df)
        if result.std_error > 0
        else math.nan,
        "conf_low": low,
        "conf_high": high,
        "converged": fit.converged,
        "singular": fit.singular,
    }
