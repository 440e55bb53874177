"""The public :func:`fit` entry point: build the analysis spec once, dispatch to a fitter.

:data:`FITTERS` maps every ``method`` to its fitter entry, a function
``(data, spec, **numerics) -> EstimationResult``; adding an estimator is one module plus
one line here (``docs/explanation/architecture.rst``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..data import TrialData, apply_period_order, check_period_order
from ..exceptions import MissingDataWarning, OptionError
from ..results import EstimationResult
from .spec import AnalysisSpec

__all__ = ["FITTERS", "fit"]

#: A fitter entry: ``(data, spec, **numerical options) -> EstimationResult``.
Fitter = Callable[..., EstimationResult]


def _entry(module: str, name: str) -> Fitter:
    """Fitter ``name`` of ``steppedwedge.models.<module>``, imported on first use."""

    def run(data: pd.DataFrame, spec: AnalysisSpec, **numerics: Any) -> EstimationResult:
        fitter: Fitter = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return fitter(data, spec, **numerics)

    run.__name__ = run.__qualname__ = name
    return run


def _ordered_periods(
    data: Any, spec: AnalysisSpec, period_order: Sequence[Any] | None, options: dict[str, Any]
) -> Any:
    """Apply ``period_order``; refuse text periods where the analysis uses period distance."""
    if not isinstance(data, pd.DataFrame):
        return data
    if period_order is not None:
        if spec.design is not None:
            raise OptionError(
                "`period_order` and `design` cannot be combined: the design fixes the order."
            )
        return apply_period_order(data, spec.period, period_order)
    if spec.design is not None:
        return data
    corstr = str(options.get("corstr") or "")
    time, random, effect = spec.time, spec.random, spec.effect
    needs = [
        f"time={time!r}" if time in ("linear", "spline") else "",
        f"random={random!r}" if "decay" in str(random) else "",
        f"effect={effect!r}" if effect in ("eti", "tate", "pte") else "",
        f"corstr={corstr!r}" if any(k in corstr for k in ("decay", "ar1")) else "",
    ]
    why = " and ".join(n for n in needs if n)
    if why:
        check_period_order(data, spec.period, why)
    return data


def _refit(
    data: pd.DataFrame,
    spec: AnalysisSpec,
    options: dict[str, Any],
    *,
    vcov: str,
    dof: str | float | None,
) -> EstimationResult:
    """Fit ``spec`` again with another variance estimator and df rule (``with_vcov``)."""
    new = spec.replace(vcov=vcov, dof=dof)
    return _with_refit(FITTERS[new.method](data, new, **options), data, new, options)


def _with_refit(
    result: EstimationResult, data: Any, spec: AnalysisSpec, options: dict[str, Any]
) -> EstimationResult:
    """Store a refit in a result that has a ``_refit`` slot the fitter left empty."""
    slots = {f.name for f in dataclasses.fields(result)} if dataclasses.is_dataclass(result) else ()
    if "_refit" not in slots or getattr(result, "_refit", None) is not None:
        return result
    if not isinstance(data, pd.DataFrame):
        return result
    again = functools.partial(_refit, data.copy(), spec, dict(options))
    out: EstimationResult = dataclasses.replace(result, _refit=again)  # type: ignore[type-var]
    return out


# ------------------------------------------------------------------ interim adapters
# (each becomes the fitter module's own ``fit_<name>_spec`` entry as it lands)
def _roles(spec: AnalysisSpec) -> dict[str, Any]:
    return {
        "outcome": spec.outcome,
        "cluster": spec.cluster,
        "period": spec.period,
        "treatment": spec.treatment,
        "individual": spec.individual,
        "missing": spec.missing,
        "design": spec.design,
    }


def _model(spec: AnalysisSpec) -> dict[str, Any]:
    return {
        "covariates": spec.covariates,
        "random": spec.random,
        "time": spec.time,
        "knots": spec.knots,
        "effect": spec.effect,
        "exposure_window": spec.exposure_window,
        "exposure_time": spec.exposure_time,
        "method": spec.method,
        "dof": spec.dof,
        "vcov": "model" if spec.vcov is None else spec.vcov,
        "decay_scale": spec.decay_scale,
    }


def _counts(spec: AnalysisSpec) -> dict[str, Any]:
    return {
        "family": spec.family,
        "link": spec.link_given,
        "exposure": spec.exposure,
        "offset": spec.offset,
        "trials": spec.trials,
    }


def _fit_glmm(data: pd.DataFrame, spec: AnalysisSpec, **options: Any) -> Any:
    from .glmm import fit_glmm

    return fit_glmm(data, **_counts(spec), **_model(spec), **_roles(spec), **options)


def _fit_cluster_summary(data: pd.DataFrame, spec: AnalysisSpec, **options: Any) -> Any:
    from .cluster_level import fit_cluster_summary_frame

    return fit_cluster_summary_frame(
        data,
        **_counts(spec),
        vcov=spec.vcov,  # type: ignore[arg-type]
        dof=spec.dof,  # type: ignore[arg-type]
        **_roles(spec),
        **options,
    )


def _check_rows(spec: AnalysisSpec, data: Any) -> None:
    """Run the data-integrity checks of ``TrialData.from_frame`` for a fitter that reads rows.

    The fixed-effects GLM reads the rows itself; the same refusals (repeated rows, reversal,
    near-duplicate labels, ``exposure`` with ``offset``, no variation) apply to it.  Only the
    checks run here: the fitter's numbers are computed from the rows as before.
    """
    if not isinstance(data, pd.DataFrame):
        return
    several = (
        spec.family != "binomial"
        and {spec.cluster, spec.period} <= set(data.columns)
        and bool(data.duplicated([spec.cluster, spec.period]).any())
    )
    with warnings.catch_warnings():  # the fitter issues its own missing-data warnings
        warnings.simplefilter("ignore", MissingDataWarning)
        TrialData.from_frame(
            data,
            outcome=spec.outcome,
            cluster=spec.cluster,
            period=spec.period,
            treatment=spec.treatment,
            family=spec.family,
            exposure=spec.exposure,
            offset=spec.offset,
            kind="individual" if several or spec.family in ("gaussian", "binomial") else None,
            missing=spec.missing,  # type: ignore[arg-type]
        )


def _fit_fixed_effects(data: pd.DataFrame, spec: AnalysisSpec, **options: Any) -> Any:
    from .fixed_effects import fit_fixed_effects

    _check_rows(spec, data)
    return fit_fixed_effects(
        data,
        outcome=spec.outcome,
        cluster=spec.cluster,
        period=spec.period,
        treatment=spec.treatment,
        family=spec.family,  # type: ignore[arg-type]
        covariates=spec.covariates,
        offset=spec.offset,
        exposure=spec.exposure,
        effect=spec.effect,  # type: ignore[arg-type]
        vcov="cr2" if spec.vcov is None else spec.vcov,  # type: ignore[arg-type]
        dof=spec.dof,  # type: ignore[arg-type]
        missing=spec.missing,  # type: ignore[arg-type]
        **options,
    )


#: ``method`` -> fitter entry ``(data, spec, **numerics) -> EstimationResult``.
FITTERS: dict[str, Fitter] = {
    "reml": _entry("mixed", "fit_gaussian_spec"),
    "ml": _entry("mixed", "fit_gaussian_spec"),
    "laplace": _fit_glmm,
    "agq": _fit_glmm,
    "gee": _entry("gee", "fit_gee_spec"),
    "cluster-summary": _fit_cluster_summary,
    "fixed-effects": _fit_fixed_effects,
    "efficient-staggered": _entry("staggered", "fit_staggered_spec"),
    "callaway-santanna": _entry("staggered", "fit_staggered_spec"),
    "sun-abraham": _entry("staggered", "fit_staggered_spec"),
    "imputation": _entry("staggered", "fit_staggered_spec"),
    "vertical": _entry("design_based", "fit_design_based_spec"),
    "hughes": _entry("design_based", "fit_design_based_spec"),
    "synthetic-control": _entry("design_based", "fit_design_based_spec"),
    "crossover": _entry("design_based", "fit_design_based_spec"),
}


def fit(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None = None,
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    trials: str | None = None,
    covariates: str | None = None,
    random: str = "nested",
    time: str = "categorical",
    knots: Sequence[float] | None = None,
    effect: str = "immediate",
    exposure_window: tuple[int, int] | None = None,
    exposure_time: int | None = None,
    method: str | None = None,
    dof: str | None = None,
    vcov: str | None = None,
    missing: str = "raise",
    design: Any = None,
    period_order: Sequence[Any] | None = None,
    decay_scale: str = "period",
    **options: Any,
) -> EstimationResult:
    """Analyse a stepped-wedge trial: mixed models (Gaussian, GLMM), GEE or cluster summaries.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per individual observation (never modified).
    outcome, cluster, period, treatment : str
        Column names.  ``treatment`` is 0/1, or a fraction in (0, 1) for partial or
        delayed (known-shape) effects with ``effect="immediate"``.
    individual : str, optional
        Individual id for cohorts (the same people measured in several periods): adds an
        individual random intercept ``psi2`` on top of ``random``.  The likelihood is then
        evaluated cluster by cluster on the rows (exact; cost linear in clusters, cubic in
        rows per cluster) because individual effects cross the cells.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
        Outcome family.  Non-Gaussian families go to
        :func:`steppedwedge.models.glmm.fit_glmm` (Laplace/AGQ) unless ``method`` is
        ``"gee"`` or ``"cluster-summary"``.
    link : str, optional
        Link of non-Gaussian models (default logit for binomial, log for counts).
    exposure, offset, trials : str, optional
        Counts: exposure (logged internally) or a log-scale offset; binomial aggregates:
        the trials column.
    covariates : str, optional
        Right-hand-side formula of individual- or cluster-level covariates, e.g.
        ``"age + C(sex)"`` (evaluated by patsy).
    random : str
        ``"nested"`` (default: cluster + cluster-period intercepts), ``"cluster"`` (Hussey &
        Hughes), ``"decay"`` (cluster-period effects with covariance ``gamma2 * r^|j-k|``,
        Kasza et al. 2019, as glmmTMB ``ar1(period + 0 | cluster)``), ``"nested+decay"``,
        ``"random-slope"`` (cluster intercept and an independent cluster treatment effect,
        Hughes, Granston & Heagerty 2015), ``"random-slope-corr"`` (correlated), and the
        ``"nested+..."`` variants adding cluster-period effects.  ``"nested+decay"`` is a
        persistent cluster effect plus the decaying one (glmmTMB ``(1 | cluster) +
        ar1(period + 0 | cluster)``), the structure of real council rates.  Gaussian models
        accept all of them; GLMMs (binomial, Poisson, negative binomial) accept
        ``"cluster"``, ``"nested"``, ``"decay"``, ``"nested+decay"``, ``"random-slope"`` and
        ``"nested+random-slope"`` (see :func:`steppedwedge.models.glmm.fit_glmm` for what each
        is for).
    time : {"categorical", "linear", "spline", "none"}
        Secular trend: one effect per period (default), linear, natural cubic spline with
        interior ``knots`` (period units), or none (warns: assumes no secular trend).
    knots : sequence of float, optional
        Interior knots for ``time="spline"`` (default: the median period).
    effect : {"immediate", "eti", "tate", "pte"}
        Immediate treatment effect (IT); or exposure-time indicators (Kenny et al. 2022)
        with the time-averaged effect over ``exposure_window`` (``"eti"``/``"tate"``, default
        all observed exposure times) or the point effect at ``exposure_time`` (``"pte"``).
    exposure_window : tuple of int, optional
        ``(e1, e2)`` for the TATE.
    exposure_time : int, optional
        ``e`` for the PTE.
    method : {"reml", "ml", "laplace", "agq", "gee", "cluster-summary", "fixed-effects"}, optional
        ``"reml"`` (Gaussian default) or ``"ml"``; ``"laplace"`` (GLMM default) or ``"agq"``;
        ``"gee"`` (:func:`steppedwedge.models.gee.fit_gee_frame`), ``"cluster-summary"``
        (:func:`steppedwedge.models.cluster_level.fit_cluster_summary_frame`) or
        ``"fixed-effects"``: a GLM with cluster and period fixed effects and CR2
        cluster-robust errors with Satterthwaite df, as R clubSandwich
        (:func:`steppedwedge.models.fixed_effects.fit_fixed_effects`; ``effect`` may also be
        ``"period-interaction"``).  Staggered-rollout estimators: ``"efficient-staggered"``,
        ``"callaway-santanna"``, ``"sun-abraham"``, ``"imputation"``
        (:func:`steppedwedge.models.staggered.fit_staggered`; options ``estimand``,
        ``event_times``, ``beta``, ``n_permutations``, ``rng``, ...).  Design-based
        estimators with randomisation inference: ``"vertical"``, ``"hughes"``,
        ``"synthetic-control"``, ``"crossover"``
        (:func:`steppedwedge.models.design_based.fit_design_based`).
    dof : str or float, optional
        Denominator df rule.  Gaussian mixed models: ``"kenward-roger"`` (default for REML;
        the standard error is then the adjusted one, as pbkrtest ``vcovAdj``),
        ``"satterthwaite"`` (default for ML), ``"between-within"`` or ``"normal"``.  GLMMs:
        ``"clusters"`` (default: t with I - 2 df for the treatment effect, clusters minus
        cluster-level parameters), ``"between-within"``, ``"residual"``, ``"normal"`` (Wald z,
        as glmer) or a number.  GEE: ``"residual"`` (I - p, default) or ``"normal"``.
        Cluster summaries: ``"clusters"`` (I - 2, default), ``"satterthwaite"`` or
        ``"residual"``.
    vcov : str, optional
        Mixed models (Gaussian and GLMM): ``"model"`` (default) or a cluster-robust sandwich,
        ``"cr0"``, ``"cr2"`` (= ``"robust"``), ``"cr3"``, ``"kc"``, ``"md"``, ``"fg"``,
        ``"mbn"`` (:mod:`steppedwedge.inference.sandwich`), with t on ``I - p_c`` df by
        default (``p_c`` = cluster-level parameters: ``I - 2`` without cluster-level
        covariates; Ouyang et al. 2024 recommend CR3/MD with ``I - 2``); ``dof=`` overrides.
        GEE: ``"lz"``, ``"kc"``, ``"md"`` (default), ``"fg"``...
        Cluster summaries: ``"cr2"`` (default, clustered by cluster), ``"model"``, ``"hc2"``.
    missing : {"raise", "drop"}
        Missing outcomes/covariates: raise (default) or drop with a warning.
    design : Design, optional
        Check the rows against a design (it also fixes the period order).
    period_order : sequence, optional
        The period labels in calendar order.  Text labels (``"P4"``, ``"Jan-20"``) sort
        alphabetically, so linear or spline time, decay structures and exposure-time effects
        refuse them (:class:`~steppedwedge.exceptions.DataError`) unless the order is given
        here, by an ordered categorical column or by ``design``.
    decay_scale : {"period", "time"}, default "period"
        For ``random="decay"`` / ``"nested+decay"``: the decay counts periods
        (``r**|j - k|``), or years between period mid-points (``"time"``, ``r**|t_j - t_k|``,
        continuous-time decay, Grantham et al. 2019) taken from ``design``
        (:meth:`Design.period_midpoints`), which is then required.  Gaussian mixed models
        and GLMMs (``method="laplace"``).

    **options
        Passed to the GEE, cluster-summary or GLMM fitter (e.g. ``corstr``, ``weights``,
        ``n_quadrature``).

    Returns
    -------
    EstimationResult
        :class:`~steppedwedge.results.FitResult` for Gaussian mixed models,
        :class:`~steppedwedge.models.glmm.GLMMResult` for GLMMs, and the GEE, fixed-effects,
        cluster-summary, staggered and design-based results for the other methods; every
        one follows the :class:`~steppedwedge.results.EstimationResult` protocol.  Mixed-model
        results support ``with_vcov`` (a refit from the data the result stores).

    Raises
    ------
    DataError
        Invalid data (non-numeric/infinite/missing outcomes, an individual id in two
        clusters, ...) or a non-identifiable effect (treatment constant within every period,
        covariates collinear with treatment or period).
    OptionError
        Invalid options (e.g. Kenward-Roger with ML, a method that does not fit the family);
        validated once by :meth:`~steppedwedge.models.spec.AnalysisSpec.from_options`
        and then by the fitter for its own options.

    References
    ----------
    Hussey MA, Hughes JP (2007). Contemp Clin Trials 28:182-191.
    Kasza J et al. (2019). Stat Methods Med Res 28:703-716.
    Hughes JP, Granston TS, Heagerty PJ (2015). Contemp Clin Trials 45:55-60.
    Kenny A et al. (2022). Stat Med 41:4311-4339.
    Kenward MG, Roger JH (1997). Biometrics 53:983-997.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge.models as m
    >>> rng = np.random.default_rng(3)
    >>> rows = []
    >>> for i in range(8):
    ...     a = rng.normal(0, 0.3)
    ...     for j in range(5):
    ...         x = float(j > i % 4)
    ...         rows += [(i, j, x, a + 0.5 * x + rng.normal()) for _ in range(10)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> res = m.fit(df, outcome="y", cluster="clinic", period="month", treatment="arm")
    >>> round(res.estimate, 3), round(res.df, 1)
    (0.361, 31.2)
    >>> res.tidy().columns.tolist()
    ['term', 'estimate', 'std_error', 'statistic', 'df', 'p_value', 'conf_low', 'conf_high']
    """
    spec = AnalysisSpec.from_options(
        outcome=outcome,
        cluster=cluster,
        period=period,
        treatment=treatment,
        individual=individual,
        family=family,
        link=link,
        exposure=exposure,
        offset=offset,
        trials=trials,
        covariates=covariates,
        random=random,
        time=time,
        knots=knots,
        effect=effect,
        exposure_window=exposure_window,
        exposure_time=exposure_time,
        method=method,
        dof=dof,
        vcov=vcov,
        missing=missing,
        decay_scale=decay_scale,
        design=design,
    )
    data = _ordered_periods(data, spec, period_order, options)
    return _with_refit(FITTERS[spec.method](data, spec, **options), data, spec, options)
