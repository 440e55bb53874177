"""Run the report's analyses: the primary model, its comparison and the sensitivity panel.

**Where to add a sensitivity analysis.**  :data:`SENSITIVITY` is the registry: a tuple of
:class:`SensitivitySpec` (config key, panel label, function running it).  Add one entry
(and its config key to the ``[analysis] sensitivity`` list) and it appears in the report's
sensitivity table, forest plot and ``results.json``; nothing else needs to change.  The
function receives an :class:`AnalysisContext` and returns a result with the shared result
protocol (``tidy()``, ``pvalue``), or raises ``ValueError`` with a reason (the report then
states it and goes on).

**The primary analysis** is defined in :func:`primary_options` (family, random structure,
period effects, degrees of freedom): one place to read and to change.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..randomise import Allocation
from .config import TrialConfig

__all__ = [
    "COMPARED",
    "RATIO_FAMILIES",
    "SENSITIVITY",
    "AnalysisContext",
    "AnalysisRun",
    "SensitivitySpec",
    "primary_options",
    "run_analyses",
]

RATIO_FAMILIES = ("poisson", "negative_binomial", "binomial")
#: Random-effect structures compared for a GLMM primary analysis, simplest first.
COMPARED = ("cluster", "nested", "decay", "nested+decay")


@dataclass
class AnalysisContext:
    """What a sensitivity analysis needs: the data, roles, allocation and a notes list."""

    config: TrialConfig
    allocation: Allocation
    frame: pd.DataFrame
    roles: dict[str, Any]
    family: str
    notes: list[str] = field(default_factory=list)

    def fit(self, what: str, **kwargs: Any) -> Any:
        """``sw.fit`` on the trial data with its warnings recorded as report notes."""
        return quiet_fit(self.notes, what, self.frame, family=self.family, **self.roles, **kwargs)


@dataclass(frozen=True)
class SensitivitySpec:
    """One entry of the sensitivity registry."""

    key: str
    label: str
    run: Callable[[AnalysisContext], Any]
    assumes: str


def quiet_fit(notes: list[str], what: str, frame: pd.DataFrame, **kwargs: Any) -> Any:
    """``sw.fit`` with its warnings recorded as notes (first line) instead of raised."""
    from ..models import fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(frame, **kwargs)
    for w in caught:
        notes.append(f"{what}: {str(w.message).splitlines()[0]}")
    return res


def _gee(ctx: AnalysisContext) -> Any:
    try:
        return ctx.fit("GEE", method="gee")
    except ValueError as exc:
        ctx.notes.append(f"GEE with categorical period effects not estimable ({exc}); linear time.")
        return ctx.fit("GEE, linear time", method="gee", time="linear")


def _permutation(ctx: AnalysisContext) -> Any:
    from ..inference.permutation import permutation_test

    spec = ctx.config.analysis
    assert spec is not None
    roles = {k: v for k, v in ctx.roles.items() if k != "period_order"}
    return permutation_test(
        ctx.frame,
        family=ctx.family,
        allocation=ctx.allocation,
        statistic="twfe",
        n_permutations=spec.n_permutations,
        rng=ctx.config.seed,
        **roles,
    )


#: The sensitivity analyses the report can run, in panel order (see the module docstring).
SENSITIVITY: tuple[SensitivitySpec, ...] = (
    SensitivitySpec(
        "fixed-effects",
        "cluster fixed effects, CR2",
        lambda ctx: ctx.fit("cluster fixed effects", method="fixed-effects"),
        "no model for the correlation over time; CR2 cluster-robust errors",
    ),
    SensitivitySpec(
        "gee",
        "GEE, MD-corrected",
        _gee,
        "population-averaged; Mancl-DeRouen small-sample robust errors",
    ),
    SensitivitySpec(
        "cluster-summary",
        "cluster-period summaries",
        lambda ctx: ctx.fit("cluster-period summaries", method="cluster-summary"),
        "one summary per cluster-period; cluster-clustered CR2 errors",
    ),
    SensitivitySpec(
        "permutation",
        "randomisation test",
        _permutation,
        "only the randomisation: re-randomised over the trial's own allocation space",
    ),
)


def primary_options(config: TrialConfig) -> dict[str, Any]:
    """Keyword arguments of ``sw.fit`` that define the pre-specified primary analysis."""
    spec = config.analysis
    assert spec is not None
    return {"family": spec.family, "random": spec.random}


@dataclass
class AnalysisRun:
    """Everything the analysis sections show (fits are kept for the planning comparison)."""

    primary: Any
    robust: Any | None
    comparison: list[dict[str, Any]]
    panel: dict[str, Any]
    assumptions: dict[str, str]
    notes: list[str]
    family: str
    random: str
    ratio: bool
    label: str
    alpha: float


def _comparison(ctx: AnalysisContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Log-likelihood, AIC and decay of the cluster, nested, decay and nested+decay GLMMs."""
    rows, fits = [], {}
    for random in COMPARED:
        try:
            res = ctx.fit(f"GLMM {random}", random=random)
        except ValueError as exc:
            ctx.notes.append(f"GLMM {random} not fitted: {str(exc).splitlines()[0]}")
            continue
        fits[random] = res
        vc = dict(res.variance_components)
        k = len(res.params) + len(vc)
        rows.append(
            {
                "random": random,
                "loglik": float(res.loglik),
                "parameters": k,
                "aic": -2.0 * float(res.loglik) + 2.0 * k,
                "decay": float(vc.get("decay", np.nan)),
                "estimate": float(res.estimate),
                "std_error": float(res.std_error),
                "p_value": float(res.pvalue),
            }
        )
    return rows, fits


def run_analyses(config: TrialConfig, allocation: Allocation) -> AnalysisRun | None:
    """Fit the primary analysis, the structure comparison and the sensitivity panel."""
    spec, data = config.analysis, config.data
    if spec is None or data is None:
        return None
    roles: dict[str, Any] = dict(
        outcome=data.outcome, cluster=data.cluster, period=data.period, treatment=data.treatment
    )
    if data.exposure is not None:
        roles["exposure"] = data.exposure
    order = period_order(data.frame, data.period, allocation)
    if order is not None:
        roles["period_order"] = order
    ctx = AnalysisContext(config, allocation, data.frame, roles, spec.family)
    ratio = spec.family in RATIO_FAMILIES
    opts = {k: v for k, v in primary_options(config).items() if k != "family"}
    comparison: list[dict[str, Any]] = []
    fits: dict[str, Any] = {}
    if ratio:
        comparison, fits = _comparison(ctx)
    primary = fits.get(opts.get("random", "")) if set(opts) == {"random"} else None
    if primary is None:
        primary = ctx.fit("primary", **opts)
    robust = None
    if ratio:
        try:
            robust = ctx.fit("primary, CR2", vcov="cr2", **opts)
        except (ValueError, TypeError) as exc:
            ctx.notes.append(f"cluster-robust variance of the primary model not available: {exc}")
    panel: dict[str, Any] = {"mixed model (primary)": primary}
    assumptions = {"mixed model (primary)": "the random effects describe the correlation"}
    if robust is not None:
        panel["mixed model (primary), CR2 variance"] = robust
        assumptions["mixed model (primary), CR2 variance"] = "same model; CR2 cluster-robust errors"
    registry = {s.key: s for s in SENSITIVITY}
    for key in spec.sensitivity:
        entry = registry.get(key)
        if entry is None:
            ctx.notes.append(f"unknown sensitivity analysis {key!r} skipped")
            continue
        try:
            panel[entry.label] = entry.run(ctx)
            assumptions[entry.label] = entry.assumes
        except ValueError as exc:
            ctx.notes.append(f"{entry.label} not estimable: {str(exc).splitlines()[0]}")
    alpha = config.power.alpha if config.power is not None else 0.05
    label = "odds ratio" if spec.family == "binomial" else "rate ratio"
    return AnalysisRun(
        primary,
        robust,
        comparison,
        panel,
        assumptions,
        ctx.notes,
        spec.family,
        str(opts.get("random", spec.random)),
        ratio,
        label if ratio else "effect",
        alpha,
    )


def period_order(frame: pd.DataFrame, column: str, allocation: Allocation) -> list[str] | None:
    """Return the design's period order for text period labels (decay and linear time need it)."""
    col = frame[column]
    if pd.api.types.is_numeric_dtype(col) or isinstance(col.dtype, pd.PeriodDtype):
        return None
    labels = [str(p) for p in allocation.design.periods]
    present = set(col.astype(str))
    if not present <= set(labels):
        return None
    return [p for p in labels if p in present]
