"""The public :func:`fit` entry point: build the analysis spec once, dispatch to a fitter.

:data:`FITTERS` maps every ``method`` to its fitter entry, a function
``(data, spec, **numerics) -> EstimationResult``; adding an estimator is one module plus
one line here (``docs/explanation/architecture.rst``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..data import apply_period_order, check_period_order
from ..exceptions import OptionError
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


#: ``method`` -> fitter entry ``(data, spec, **numerics) -> EstimationResult``.
FITTERS: dict[str, Fitter] = {
    "reml": _entry("mixed", "fit_gaussian_spec"),
    "ml": _entry("mixed", "fit_gaussian_spec"),
    "laplace": _entry("glmm", "fit_glmm_spec"),
    "agq": _entry("glmm", "fit_glmm_spec"),
    "gee": _entry("gee", "fit_gee_spec"),
    "cluster-summary": _entry("cluster_level", "fit_cluster_summary_spec"),
    "fixed-effects": _entry("fixed_effects", "fit_fixed_effects_spec"),
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
        Individual id for cohorts: adds an individual random intercept ``psi2``.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
        Outcome family (non-Gaussian mixed models are GLMMs, Laplace or AGQ).
    link : str, optional
        Link of non-Gaussian models (default logit for binomial, log for counts).
    exposure, offset, trials : str, optional
        Counts: exposure (logged internally) or a log-scale offset; binomial aggregates:
        the trials column.
    covariates : str, optional
        Right-hand-side (patsy) formula of covariates, e.g. ``"age + C(sex)"``.
    random : str
        ``"nested"`` (default: cluster + cluster-period intercepts), ``"cluster"`` (Hussey &
        Hughes), ``"decay"`` (covariance ``gamma2 * r^|j-k|``, Kasza et al. 2019),
        ``"nested+decay"``, ``"random-slope"`` (Hughes et al. 2015), ``"random-slope-corr"``
        and ``"nested+..."`` variants (GLMMs: ``docs/explanation/glmm_options.rst``).
    time : {"categorical", "linear", "spline", "none"}
        Secular trend: one effect per period (default), linear, natural cubic spline with
        interior ``knots`` (period units), or none (warns: assumes no secular trend).
    knots : sequence of float, optional
        Interior knots for ``time="spline"`` (default: the median period).
    effect : {"immediate", "eti", "tate", "pte"}
        Immediate treatment effect (IT); or exposure-time indicators (Kenny et al. 2022)
        with the time-averaged effect over ``exposure_window`` (``"eti"``/``"tate"``, default
        all observed exposure times) or the point effect at ``exposure_time`` (``"pte"``).
    exposure_window, exposure_time : tuple of int or int, optional
        ``(e1, e2)`` for the TATE; ``e`` for the PTE.
    method : str, optional
        A key of :data:`~steppedwedge.models.fit.FITTERS`: ``"reml"`` (Gaussian default),
        ``"ml"``, ``"laplace"`` (GLMM default), ``"agq"``, ``"gee"``, ``"cluster-summary"``,
        ``"fixed-effects"`` (CR2 GLM); staggered rollout (``"efficient-staggered"``,
        ``"callaway-santanna"``, ``"sun-abraham"``, ``"imputation"``); design-based
        (``"vertical"``, ``"hughes"``, ``"synthetic-control"``, ``"crossover"``).
    dof : str or float, optional
        Denominator df rule.  Gaussian: ``"kenward-roger"`` (REML default, KR-adjusted SE),
        ``"satterthwaite"`` (ML default), ``"between-within"``, ``"normal"``.  GLMMs:
        ``"clusters"`` (default, I - 2), ``"between-within"``, ``"residual"``, ``"normal"``
        or a number.  GEE: ``"residual"`` (default) or ``"normal"``.  Cluster summaries:
        ``"clusters"`` (default), ``"satterthwaite"``, ``"residual"``.
    vcov : str, optional
        Mixed models: ``"model"`` (default), ``"cr0"``, ``"cr2"`` (= ``"robust"``), ``"cr3"``,
        ``"kc"``, ``"md"``, ``"fg"``, ``"mbn"`` (t on ``I - p_c`` df unless ``dof=``).  GEE:
        ``"model"``, ``"robust"``, ``"kc"``, ``"md"``, ``"fg"``.  Cluster summaries: ``"cr2"``
        (default), ``"model"``, ``"hc2"``; fixed effects: ``"cr2"``, ``"cr1"``, ``"cr0"``.
    missing : {"raise", "drop"}
        Missing outcomes/covariates: raise (default) or drop with a warning.
    design : Design, optional
        Check the rows against a design (it also fixes the period order).
    period_order : sequence, optional
        The period labels in calendar order: text labels sort alphabetically, so time
        trends, decay and exposure-time effects refuse them unless ordered here (or by an
        ordered categorical column, or ``design``).
    decay_scale : {"period", "time"}, default "period"
        For decay structures: the decay counts periods, or years between the ``design``'s
        period mid-points (``"time"``, Grantham et al. 2019; mixed models only).
    **options
        The fitter's numerical options (e.g. ``corstr``, ``weights``, ``n_quadrature``,
        ``n_permutations``, ``rng``).

    Returns
    -------
    EstimationResult
        :class:`~steppedwedge.results.FitResult` (Gaussian), ``GLMMResult``, or the GEE,
        fixed-effects, cluster-summary, staggered or design-based result of ``method``.

    Raises
    ------
    DataError
        Invalid data (non-numeric/missing outcomes, an individual in two clusters, ...) or a
        non-identifiable effect (treatment collinear with period or covariates).
    OptionError
        Invalid options (e.g. a method that does not fit the family): shared ones by
        :meth:`~steppedwedge.models.spec.AnalysisSpec.from_options`, the rest by the fitter.

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
        outcome=outcome, cluster=cluster, period=period, treatment=treatment,
        individual=individual, family=family, link=link, exposure=exposure, offset=offset,
        trials=trials, covariates=covariates, random=random, time=time, knots=knots,
        effect=effect, exposure_window=exposure_window, exposure_time=exposure_time,
        method=method, dof=dof, vcov=vcov, missing=missing, decay_scale=decay_scale,
        design=design,
    )  # fmt: skip
    data = _ordered_periods(data, spec, period_order, options)
    return FITTERS[spec.method](data, spec, **options)
