"""Run the report's analyses: the primary model, its comparison and the sensitivity panel.

**Where to add a sensitivity analysis.**  :data:`SENSITIVITY` is the registry: a tuple of
:class:`SensitivitySpec` (config key, panel label, function running it).  Add one entry
(and its config key to the ``[analysis] sensitivity`` list) and it appears in the report's
sensitivity table, forest plot and ``results.json``; nothing else needs to change.  The
function receives an :class:`AnalysisContext` and returns a result with the shared result
protocol (``tidy()``, ``pvalue``), or raises ``ValueError`` with a reason (the report then
states it and goes on).

**The primary analysis** is the one the configuration pre-specifies
(:meth:`~steppedwedge.report.TrialConfig.fit_options` ``("primary")``: family, random
structure, period effects, degrees of freedom, variance); the bundled example sets it in
:func:`steppedwedge.report.council_example`.
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
    "run_analyses",
    "run_exploratory",
    "variance_label",
]

#: Exploratory analyses of :func:`steppedwedge.compare_analyses` the report adds (not
#: pre-specified): effects that change with exposure time and not-yet-treated comparisons.
EXPLORATORY = ("eti", "imputation")
_ROLES = ("outcome", "cluster", "period", "treatment", "family", "exposure", "trials")

RATIO_FAMILIES = ("poisson", "negative_binomial", "binomial")
#: Options of the model-based analyses that the design-based ones (vertical, DiD) do not take.
_MODEL_ONLY = ("time", "knots", "effect", "exposure_window", "exposure_time", "covariates")
#: Random-effect structures compared for a GLMM primary analysis, simplest first.
COMPARED = ("cluster", "nested", "decay", "nested+decay")


@dataclass
class AnalysisContext:
    """What an analysis needs: the configuration, the allocation, the data and a notes list.

    :meth:`fit` runs ``sw.fit`` with the options the configuration gives an analysis
    (:meth:`~steppedwedge.report.TrialConfig.fit_options`) on the analysis data
    (:meth:`~steppedwedge.report.TrialConfig.analysis_frame`: intention-to-treat or
    as-treated).
    """

    config: TrialConfig
    allocation: Allocation
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def options(self, name: str) -> dict[str, Any]:
        """Keyword arguments of the analysis ``name`` (``"primary"`` or a sensitivity key)."""
        return self.config.fit_options(name)

    def fit(self, what: str, name: str, **override: Any) -> Any:
        """``sw.fit`` of analysis ``name`` with ``override``; warnings become report notes."""
        kwargs = {**self.options(name), **override}
        return quiet_fit(self.notes, what, self.frame, **kwargs)


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
        return ctx.fit("GEE", "gee")
    except ValueError as exc:
        if ctx.options("gee").get("time", "categorical") != "categorical":
            raise
        first = str(exc).splitlines()[0]
        ctx.notes.append(
            f"GEE with categorical period effects not estimable ({first}); linear time."
        )
        return ctx.fit("GEE, linear time", "gee", time="linear")


def _permutation(ctx: AnalysisContext) -> Any:
    """Run the randomisation test: it re-draws the allocation, so it uses the ITT data."""
    from ..inference.permutation import permutation_test

    itt = ctx.config.analysis_frame("itt")
    return permutation_test(itt, allocation=ctx.allocation, **ctx.options("permutation"))


def _vertical(ctx: AnalysisContext) -> Any:
    """Run the vertical analysis (ITT data): within-period contrasts, randomisation inference."""
    opts = {k: v for k, v in ctx.options("vertical").items() if k not in _MODEL_ONLY}
    spec = ctx.config.analysis
    draws = spec.n_permutations if spec is not None else 999
    itt = ctx.config.analysis_frame("itt")
    return quiet_fit(
        ctx.notes, "vertical analysis", itt, allocation=ctx.allocation, rng=ctx.config.seed,
        n_permutations=draws, **opts,
    )  # fmt: skip


def _callaway_santanna(ctx: AnalysisContext) -> Any:
    """Run the Callaway-Sant'Anna DiD (ITT data): not-yet-treated councils as comparisons."""
    opts = {k: v for k, v in ctx.options("callaway-santanna").items() if k not in _MODEL_ONLY}
    itt = ctx.config.analysis_frame("itt")
    return quiet_fit(ctx.notes, "Callaway-Sant'Anna DiD", itt, **opts)


#: The sensitivity analyses the report can run, in panel order (see the module docstring).
SENSITIVITY: tuple[SensitivitySpec, ...] = (
    SensitivitySpec(
        "fixed-effects",
        "cluster fixed effects, CR2",
        lambda ctx: ctx.fit("cluster fixed effects", "fixed-effects"),
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
        lambda ctx: ctx.fit("cluster-period summaries", "cluster-summary"),
        "one summary per cluster-period; cluster-clustered CR2 errors",
    ),
    SensitivitySpec(
        "permutation",
        "randomisation test",
        _permutation,
        "only the randomisation: re-randomised over the trial's own allocation space",
    ),
    SensitivitySpec(
        "vertical",
        "vertical analysis (within-period)",
        _vertical,
        "within-period comparisons only; randomisation p and interval",
    ),
    SensitivitySpec(
        "callaway-santanna",
        "Callaway-Sant'Anna DiD",
        _callaway_santanna,
        "parallel trends between cohorts; not-yet-treated councils as comparisons",
    ),
)


@dataclass
class AnalysisRun:
    """Everything the analysis sections show (fits are kept for the planning comparison).

    ``companion`` is the primary model with the other variance estimator (CR2 beside a
    model-based primary, model-based beside a robust one), ``companion_label`` names it.
    """

    primary: Any
    companion: Any | None
    companion_label: str
    comparison: list[dict[str, Any]]
    panel: dict[str, Any]
    assumptions: dict[str, str]
    notes: list[str]
    family: str
    random: str
    ratio: bool
    label: str
    alpha: float
    population: str = "itt"


def _comparison(ctx: AnalysisContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Log-likelihood, AIC and decay of the cluster, nested, decay and nested+decay GLMMs."""
    rows, fits = [], {}
    for random in COMPARED:
        try:
            res = ctx.fit(f"GLMM {random}", "primary", random=random, vcov="model")
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


def _primary(ctx: AnalysisContext, fits: dict[str, Any], ratio: bool) -> tuple[Any, Any, str]:
    """Fit the primary analysis and its companion with the other variance (model / CR2)."""
    opts = ctx.options("primary")
    vcov = str(opts.get("vcov", "model"))
    primary = fits.get(str(opts.get("random"))) if vcov == "model" else None
    if primary is None:
        primary = ctx.fit("primary", "primary")
    companion, label = None, ""
    if ratio:
        other = "cr2" if vcov == "model" else "model"
        label = "CR2 variance" if other == "cr2" else "model-based variance"
        try:
            companion = ctx.fit(f"primary, {label}", "primary", vcov=other)
        except (ValueError, TypeError) as exc:
            ctx.notes.append(f"the primary model with {label} is not available: {exc}")
    return primary, companion, label


def run_analyses(config: TrialConfig, allocation: Allocation) -> AnalysisRun | None:
    """Fit the primary analysis, the structure comparison and the sensitivity panel."""
    spec, data = config.analysis, config.data
    if spec is None or data is None:
        return None
    ctx = AnalysisContext(config, allocation, config.analysis_frame())
    ratio = spec.family in RATIO_FAMILIES
    comparison: list[dict[str, Any]] = []
    fits: dict[str, Any] = {}
    if ratio:
        comparison, fits = _comparison(ctx)
    primary, companion, companion_label = _primary(ctx, fits, ratio)
    panel: dict[str, Any] = {"mixed model (primary)": primary}
    assumptions = {
        "mixed model (primary)": "the random effects describe the correlation"
        if getattr(primary, "vcov", "model") == "model"
        else "random effects weight the data; cluster-robust errors do not rely on them"
    }
    if companion is not None:
        name = f"mixed model (primary), {companion_label}"
        panel[name] = companion
        assumptions[name] = f"same model; {companion_label}"
    registry = {s.key: s for s in SENSITIVITY}
    for key in spec.sensitivity:
        entry = registry.get(key)
        if entry is None:
            ctx.notes.append(f"unknown sensitivity analysis {key!r} skipped")
            continue
        try:
            res = entry.run(ctx)
        except ValueError as exc:
            ctx.notes.append(f"{entry.label} not estimable: {str(exc).splitlines()[0]}")
            continue
        name = entry.label
        time = getattr(res, "time", None)
        if isinstance(time, str) and time != getattr(primary, "time", time):
            name += f", {time} time"  # e.g. GEE refitted with linear time
        panel[name] = res
        assumptions[name] = entry.assumes
    alpha = config.power.alpha if config.power is not None else 0.05
    label = "odds ratio" if spec.family == "binomial" else "rate ratio"
    return AnalysisRun(
        primary,
        companion,
        companion_label,
        comparison,
        panel,
        assumptions,
        ctx.notes,
        spec.family,
        str(primary.random),
        ratio,
        label if ratio else "effect",
        alpha,
        spec.analysis_population,
    )


def variance_label(res: Any) -> str:
    """Name the variance estimator of a fit: ``"model-based variance"``, ``"CR2 variance"``."""
    vcov = str(getattr(res, "vcov", "model"))
    return "model-based variance" if vcov == "model" else f"{vcov.upper()} variance"


def run_exploratory(config: TrialConfig, allocation: Allocation, notes: list[str]) -> Any | None:
    """Run :func:`steppedwedge.compare_analyses` on :data:`EXPLORATORY` (None if it cannot).

    The primary analysis is passed as the configuration defines it, so the implied weights
    and the exposure-time curve are those of the pre-specified estimator.
    """
    if config.analysis is None or config.data is None:
        return None
    from ..compare import compare_analyses

    opts = config.fit_options("primary")
    if "offset" in opts or "design" in opts:
        notes.append("exploratory analyses skipped: they need exposure, not an offset or design")
        return None
    roles = {k: v for k, v in opts.items() if k in _ROLES}
    primary = {k: v for k, v in opts.items() if k not in _ROLES and k != "period_order"}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = compare_analyses(
                config.analysis_frame(),
                primary=primary,
                analyses=list(EXPLORATORY),
                allocation=allocation,
                rng=config.seed,
                period_order=opts.get("period_order"),
                **roles,
            )
    except ValueError as exc:
        notes.append(f"exploratory analyses not available: {str(exc).splitlines()[0]}")
        return None
    notes.extend(f"exploratory: {str(w.message).splitlines()[0]}" for w in caught)
    return out
