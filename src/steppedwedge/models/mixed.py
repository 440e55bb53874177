"""Gaussian linear mixed models for stepped-wedge trials (REML / ML on cell statistics).

The data are reduced to exact cluster-period sufficient statistics (cell sizes, means and
within-cell sums of squares; plus cell means and pooled within-cell cross-products of the
covariates when covariates are given), so the cost of a fit does not grow with the number
of individuals once the cells are formed.  See :mod:`steppedwedge._core.reml` for the
algebra and :mod:`steppedwedge.inference.dof` for the df rules.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core.reml import CellData, CovarianceStructure, LMMFit, fit_lmm
from .._core.reml_dense import RowData, fit_lmm_rows
from .._validation import check_option
from .._warnings import warn
from ..data import CellSummary, TrialData
from ..exceptions import (
    ConvergenceWarning,
    DataError,
    DesignError,
    OptionError,
    SteppedWedgeWarning,
)
from ..results import FitResult
from ._formula import covariate_matrix
from ._mixed_inference import GaussianFitState, SandwichRows, gaussian_result, inference_options
from .spec import AnalysisSpec, check_decay_scale

__all__ = [
    "RANDOM_STRUCTURES",
    "TIME_EFFECTS",
    "EFFECT_TYPES",
    "check_decay_scale",
    "fit_gaussian",
    "fit_gaussian_spec",
]

RANDOM_STRUCTURES = (
    "nested",
    "cluster",
    "decay",
    "nested+decay",
    "random-slope",
    "random-slope-corr",
    "nested+random-slope",
    "nested+random-slope-corr",
)
TIME_EFFECTS = ("categorical", "linear", "spline", "none")
EFFECT_TYPES = ("immediate", "eti", "tate", "pte")
METHODS = ("reml", "ml")


def _structure(random: str) -> CovarianceStructure:
    return {
        "cluster": CovarianceStructure(intercept=True, cluster_period=False),
        "nested": CovarianceStructure(intercept=True, cluster_period=True),
        "decay": CovarianceStructure(intercept=False, cluster_period=True, decay=True),
        "nested+decay": CovarianceStructure(intercept=True, cluster_period=True, decay=True),
        "random-slope": CovarianceStructure(
            intercept=True, cluster_period=False, slope="independent"
        ),
        "random-slope-corr": CovarianceStructure(
            intercept=True, cluster_period=False, slope="correlated"
        ),
        "nested+random-slope": CovarianceStructure(
            intercept=True, cluster_period=True, slope="independent"
        ),
        "nested+random-slope-corr": CovarianceStructure(
            intercept=True, cluster_period=True, slope="correlated"
        ),
    }[random]


# ------------------------------------------------------------------------------ design


def _period_positions(periods: Sequence[Any]) -> np.ndarray:
    """Numeric period labels when they are numbers, else 1..T."""
    try:
        pos = np.asarray([float(p) for p in periods])
        if np.all(np.isfinite(pos)):
            return pos
    except (TypeError, ValueError):
        pass
    return np.arange(1, len(periods) + 1, dtype=float)


def natural_spline_basis(
    x: np.ndarray, knots: Sequence[float], boundary: tuple[float, float]
) -> np.ndarray:
    """Natural cubic spline basis without the constant (Hastie, Tibshirani & Friedman eq. 5.4).

    Columns: ``x`` and ``d_k(x) - d_{K-1}(x)`` for the interior knots; spans the same space
    (with an intercept) as R's ``splines::ns(x, knots=, Boundary.knots=)``.
    """
    xi = np.sort(np.r_[boundary[0], np.asarray(knots, dtype=float), boundary[1]])
    k_n = xi.size

    def d(k: int) -> np.ndarray:
        cubes = np.clip(x - xi[k], 0, None) ** 3 - np.clip(x - xi[-1], 0, None) ** 3
        out: np.ndarray = cubes / (xi[-1] - xi[k])
        return out

    cols = [x.astype(float)]
    for k in range(k_n - 2):
        cols.append(d(k) - d(k_n - 2))
    out: np.ndarray = np.column_stack(cols)
    return out


def _exposure_times(trt: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``E_ij``: 0 before the first period with treatment > 0, then 1, 2, ... (calendar)."""
    n_i, n_t = trt.shape
    treated = observed & (np.nan_to_num(trt) > 0)
    start = np.where(treated.any(axis=1), treated.argmax(axis=1), n_t)
    j = np.arange(n_t)[None, :]
    return np.where(j >= start[:, None], j - start[:, None] + 1, 0).astype(int)


def _time_columns(
    time: str, periods: Sequence[Any], knots: Sequence[float] | None
) -> tuple[np.ndarray, list[str], Sequence[float] | None]:
    n_t = len(periods)
    pos = _period_positions(periods)
    if time == "categorical":
        cols = np.eye(n_t)[:, 1:]
        names = [f"period[{p}]" for p in list(periods)[1:]]
        return cols, names, None
    if time == "linear":
        return pos[:, None], ["period"], None
    if time == "spline":
        if knots is None:
            knots = [float(np.median(pos))] if n_t >= 4 else []
        knots = [float(k) for k in knots]
        if any(k <= pos.min() or k >= pos.max() for k in knots):
            raise OptionError(
                "`knots` must lie strictly inside the period range "
                f"({pos.min():g}, {pos.max():g}); "
                f"got {knots}."
            )
        basis = natural_spline_basis(pos, knots, (float(pos.min()), float(pos.max())))
        return basis, [f"time_spline[{k + 1}]" for k in range(basis.shape[1])], knots
    return np.zeros((n_t, 0)), [], None


# ------------------------------------------------------------------------------ checks


def _first_dependent_column(x: np.ndarray, tol: float = 1e-9) -> int | None:
    """Index of the first column that is (numerically) a combination of earlier ones."""
    scale = np.sqrt((x * x).sum(axis=0))
    scale = np.where(scale > 0, scale, 1.0)
    xs = x / scale
    s_all = np.linalg.svd(xs, compute_uv=False)
    if s_all.size == xs.shape[1] and s_all[-1] >= tol * max(1.0, s_all[0]):
        return None  # full column rank
    for k in range(1, xs.shape[1] + 1):
        s = np.linalg.svd(xs[:, :k], compute_uv=False)
        if s[-1] < tol * max(1.0, s[0]):
            return k - 1
    return None


def _covariate_columns(formula: str, data: pd.DataFrame, roles: Sequence[str]) -> list[str]:
    cols = []
    for c in data.columns:
        if not isinstance(c, str) or c in roles:
            continue
        if re.search(r"(?<![A-Za-z0-9_.])" + re.escape(c) + r"(?![A-Za-z0-9_])", formula):
            cols.append(c)
    return cols


# ------------------------------------------------------------------------------ fit


def _treatment_columns(
    effect: str, trt: np.ndarray, observed: np.ndarray
) -> tuple[np.ndarray, list[str], list[int]]:
    """Cell-level treatment columns ``(I, T, k)``, their names and the exposure times.

    One column (the treatment intensity) for the immediate effect; one indicator per
    observed exposure time ``1..L`` otherwise (Kenny et al. 2022).  Shared by the Gaussian
    and GLMM fitters.
    """
    if effect == "immediate":
        return trt[:, :, None], ["treatment"], []
    if np.any(observed & (trt > 0) & (trt < 1)):
        raise DataError(
            "Exposure-time (ETI) effects cannot be combined with fractional treatment "
            "values; use effect='immediate' for partial or delayed (fractional) effects."
        )
    expo = np.where(observed, _exposure_times(trt, observed), 0)
    max_e = int(expo.max())
    if max_e == 0:
        raise DataError("No treated cells: exposure-time effects are not identifiable.")
    exp_levels = list(range(1, max_e + 1))
    cols = np.stack([(expo == e).astype(float) for e in exp_levels], axis=2)
    return cols, [f"exposure[{e}]" for e in exp_levels], exp_levels


def _estimand_contrast(
    effect: str,
    p: int,
    eff_idx: Sequence[int],
    exp_levels: Sequence[int],
    exposure_time: int | None,
    exposure_window: tuple[int, int] | None,
) -> tuple[np.ndarray, str]:
    """Contrast over the ``p`` fixed effects that defines the estimand, and its name.

    ``eff_idx`` are the positions of the treatment columns (one, or one per exposure time
    ``1..L`` listed in ``exp_levels``).  Shared by the Gaussian and GLMM fitters.
    """
    contrast = np.zeros(p)
    if effect == "immediate":
        contrast[eff_idx[0]] = 1.0
        return contrast, "treatment"
    if effect == "pte":
        e = int(exposure_time)  # type: ignore[arg-type]
        if e not in exp_levels:
            raise OptionError(
                f"`exposure_time` must be one of the observed exposure times {exp_levels}; got {e}."
            )
        contrast[eff_idx[e - 1]] = 1.0
        return contrast, f"PTE[{e}]"
    e1, e2 = (
        (1, exp_levels[-1])
        if exposure_window is None
        else (int(exposure_window[0]), int(exposure_window[1]))
    )
    if not (1 <= e1 <= e2 <= exp_levels[-1]):
        raise OptionError(
            f"`exposure_window` must satisfy 1 <= e1 <= e2 <= {exp_levels[-1]}; "
            f"got {exposure_window!r}."
        )
    for e in range(e1, e2 + 1):
        contrast[eff_idx[e - 1]] = 1.0 / (e2 - e1 + 1)
    return contrast, f"TATE[{e1},{e2}]"


def fit_gaussian(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None = None,
    covariates: str | None = None,
    random: str = "nested",
    time: str = "categorical",
    knots: Sequence[float] | None = None,
    effect: str = "immediate",
    exposure_window: tuple[int, int] | None = None,
    exposure_time: int | None = None,
    method: str = "reml",
    dof: str | None = None,
    vcov: str = "model",
    missing: str = "raise",
    design: Any = None,
    decay_scale: str = "period",
) -> FitResult:
    """Fit a Gaussian linear mixed model to stepped-wedge data (see :func:`steppedwedge.fit`)."""
    spec = AnalysisSpec.from_options(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment,
        individual=individual, family="gaussian", covariates=covariates, random=random,
        time=time, knots=knots, effect=effect, exposure_window=exposure_window,
        exposure_time=exposure_time, method=method, dof=dof, vcov=vcov, missing=missing,
        design=design, decay_scale=decay_scale,
    )  # fmt: skip
    return fit_gaussian_spec(data, spec)


def fit_gaussian_spec(data: pd.DataFrame, spec: AnalysisSpec, **numerics: Any) -> FitResult:
    """Fit the Gaussian linear mixed model described by ``spec`` (REML or ML).

    The entry of :func:`steppedwedge.fit` for ``method="reml"`` and ``"ml"``: the data are
    reduced to cluster-period cell statistics (or a cohort's rows), the variance parameters
    estimated, and the estimand's inference computed under ``spec.vcov`` and ``spec.dof``
    (:func:`~steppedwedge.models._mixed_inference.gaussian_result`).

    Parameters
    ----------
    data : pandas.DataFrame
        The rows (never modified).
    spec : AnalysisSpec
        Roles and options, validated by :meth:`AnalysisSpec.from_options`.
    **numerics
        None: a Gaussian mixed model has no numerical options (any given is refused).

    Returns
    -------
    FitResult
        ``with_vcov()`` recomputes its variance from the stored fit, without re-optimising.

    References
    ----------
    Hussey, M. A., & Hughes, J. P. (2007). Design and analysis of stepped wedge cluster
    randomized trials. *Contemporary Clinical Trials*, 28(2), 182-191.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.mixed import fit_gaussian_spec
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> rng = np.random.default_rng(3)
    >>> rows = []
    >>> for i in range(8):
    ...     a = rng.normal(0, 0.3)
    ...     for j in range(5):
    ...         x = float(j > i % 4)
    ...         rows += [(i, j, x, a + 0.5 * x + rng.normal()) for _ in range(10)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> spec = AnalysisSpec.from_options(outcome="y", cluster="clinic", period="month",
    ...                                  treatment="arm")
    >>> res = fit_gaussian_spec(df, spec)
    >>> round(res.estimate, 3), round(res.df, 1)
    (0.361, 31.2)
    >>> robust = res.with_vcov("cr2")  # the stored fit, a sandwich variance, t(I - 2) df
    >>> robust.df
    6.0
    """
    if numerics:
        raise TypeError(
            f"fit() got unexpected keyword arguments {sorted(numerics)} for a Gaussian mixed model."
        )
    _check_options(spec)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame; got {type(data).__name__}.")
    model = _cell_model(data, spec)
    structure = _structure(spec.random)
    if spec.decay_scale == "time":
        structure = dataclasses.replace(structure, positive_decay=True)
    if model.rows is not None:
        fit = fit_lmm_rows(model.rows, structure, reml=(spec.method == "reml"))
    else:
        fit = fit_lmm(model.cells, structure, reml=(spec.method == "reml"))
    state = _fit_state(model, fit, structure, spec)
    return gaussian_result(state, vcov=_vcov(spec), dof=spec.dof)


def _vcov(spec: AnalysisSpec) -> str:
    return "model" if spec.vcov is None else spec.vcov


def _check_options(spec: AnalysisSpec) -> None:
    """Check the options the spec leaves to this fitter: structures, effect model, df, vcov."""
    check_option("random", spec.random, RANDOM_STRUCTURES)
    check_option("time", spec.time, TIME_EFFECTS)
    check_option("effect", spec.effect, EFFECT_TYPES)
    check_option("method", spec.method, METHODS)
    inference_options(_vcov(spec), spec.dof, spec.method)
    if spec.effect == "pte" and spec.exposure_time is None:
        raise OptionError(
            "`effect='pte'` needs `exposure_time=` (the exposure time e of the point effect)."
        )
    if spec.time == "none":
        warn(
            "`time='none'` fits no period effects: this assumes there is no secular trend, "
            "which stepped-wedge analyses rarely can; the treatment effect is confounded with "
            "time if there is one.",
            SteppedWedgeWarning,
        )


@dataclass(frozen=True, eq=False)
class _CellModel:
    """The fixed-effects model on the data: what the optimiser and the sandwich work from."""

    cells: CellData
    rows: RowData | None  # cohort fits: the rows (individual random effects)
    sandwich_rows: SandwichRows | None  # covariates that vary within cells
    stacked: np.ndarray  # fixed-effect rows (observations or observed cells)
    stacked_clusters: np.ndarray
    names: list[str]
    p0: int  # columns before the covariates
    eff_idx: list[int]
    exp_levels: list[int]
    knots_used: Sequence[float] | None
    contrast: np.ndarray  # the estimand's weights over the fixed effects
    estimand: str
    observed: np.ndarray
    treatment: np.ndarray
    labels: tuple[Any, ...]


def _trial_data(data: pd.DataFrame, spec: AnalysisSpec) -> TrialData:
    """Validate the rows (covariate columns included) for a Gaussian fit."""
    roles = [c for c in (spec.outcome, spec.cluster, spec.period, spec.treatment) if c is not None]
    covariates = spec.covariates
    cov_cols = _covariate_columns(covariates, data, roles) if covariates else []
    td = spec.trial_data(data, covariates=cov_cols or None)
    if td.kind != "individual" and "size" in td.roles:
        raise DataError(
            "Gaussian fits need individual rows (or one row per cell without a size column)."
        )
    return td


def _check_treatment_varies(trt: np.ndarray, observed: np.ndarray, treatment: str) -> None:
    """With categorical periods, the treatment must differ between clusters in some period."""
    tv = np.where(observed, trt, np.nan)
    constant = np.nanmax(tv, axis=0) - np.nanmin(tv, axis=0)
    if np.all(constant[np.isfinite(constant)] == 0):
        raise DataError(
            f"`treatment` column {treatment!r} is constant within every period (all clusters "
            "switch together), so its effect is confounded with the period effects and not "
            "identifiable."
        )


def _cell_model(data: pd.DataFrame, spec: AnalysisSpec) -> _CellModel:
    """Validate the rows and build the fixed effects on cells (or rows), checked for rank."""
    td = _trial_data(data, spec)
    cells = td.cells()
    n_i, n_t = cells.shape
    times = _decay_times(spec.decay_scale, spec.design, n_t)
    observed = np.asarray(cells.observed)
    trt = np.where(observed, np.asarray(cells.treatment, dtype=float), 0.0)
    if spec.time == "categorical":
        _check_treatment_varies(trt, observed, spec.treatment)
    tcols, tnames, knots_used = _time_columns(spec.time, list(td.periods), spec.knots)
    eff_cols, eff_names, exp_levels = _treatment_columns(spec.effect, trt, observed)
    xcell = [np.ones((n_i, n_t, 1)), np.broadcast_to(tcols, (n_i, n_t, tcols.shape[1]))]
    xbar = np.concatenate([*xcell, eff_cols], axis=2)
    names = ["(Intercept)", *tnames, *eff_names]
    p0 = xbar.shape[2]
    eff_idx = list(range(p0 - len(eff_names), p0))
    if spec.individual is not None:
        stats = _cohort_rows(td, xbar, spec.covariates, trt, times)
    elif spec.covariates:
        stats = _covariate_cells(td, xbar, spec.covariates, trt, times)
    else:
        stats = _plain_cells(cells, xbar, trt, times)
    cd, rows, sandwich_rows, stacked, stacked_clusters, cov_names = stats
    names += cov_names
    _check_identifiable(stacked, names, eff_idx, p0, spec.time)
    contrast, estimand = _estimand_contrast(
        spec.effect, len(names), eff_idx, exp_levels, spec.exposure_time, spec.exposure_window
    )
    return _CellModel(
        cells=cd, rows=rows, sandwich_rows=sandwich_rows, stacked=stacked,
        stacked_clusters=stacked_clusters, names=names, p0=p0, eff_idx=eff_idx,
        exp_levels=exp_levels, knots_used=knots_used, contrast=contrast, estimand=estimand,
        observed=observed, treatment=trt,
        labels=tuple(cells.clusters),
    )  # fmt: skip


#: cell statistics, cohort rows, sandwich rows, stacked fixed effects, their clusters, names
_CellStatistics = tuple[
    CellData, RowData | None, SandwichRows | None, np.ndarray, np.ndarray, list[str]
]


def _cohort_rows(
    td: TrialData, xbar: np.ndarray, covariates: str | None, trt: np.ndarray, times: np.ndarray
) -> _CellStatistics:
    """Return a cohort's rows (individual random effects): fixed effects and outcome."""
    ci, pi = np.asarray(td.cluster_codes), np.asarray(td.period_codes)
    x_rows = xbar[ci, pi]
    cov_names: list[str] = []
    if covariates:
        cm = covariate_matrix(covariates, td.frame)
        x_rows = np.concatenate([x_rows, cm.values], axis=1)
        cov_names = list(cm.names)
    ids = pd.factorize(td.frame["individual"])[0]
    rows = RowData.from_arrays(
        ci,
        pi,
        ids,
        x_rows,
        td.frame["outcome"].to_numpy(dtype=float),
        n_clusters=td.n_clusters,
        n_periods=td.n_periods,
        treatment=trt,
        times=times,
    )
    return rows.cells, rows, None, x_rows, ci, cov_names


def _covariate_cells(
    td: TrialData, xbar: np.ndarray, covariates: str, trt: np.ndarray, times: np.ndarray
) -> _CellStatistics:
    """Cell statistics with individual-level covariates (pooled within-cell cross-products)."""
    cm = covariate_matrix(covariates, td.frame)
    ci, pi = np.asarray(td.cluster_codes), np.asarray(td.period_codes)
    x_rows = np.concatenate([xbar[ci, pi], cm.values], axis=1)
    y_rows = td.frame["outcome"].to_numpy(dtype=float)
    cd = CellData.from_individual(
        ci,
        pi,
        x_rows,
        y_rows,
        n_clusters=td.n_clusters,
        n_periods=td.n_periods,
        treatment=trt,
        times=times,
    )
    return cd, None, (ci, pi, x_rows, y_rows), x_rows, ci, list(cm.names)


def _plain_cells(
    cells: CellSummary, xbar: np.ndarray, trt: np.ndarray, times: np.ndarray
) -> _CellStatistics:
    """Cell statistics without covariates: sizes, means and the pooled within-cell SS."""
    observed = np.asarray(cells.observed)
    p = xbar.shape[2]
    within = np.zeros((p + 1, p + 1))
    within[p, p] = float(np.sum(cells.within_ss))
    cd = CellData(
        n=np.asarray(cells.n, dtype=float),
        xbar=xbar,
        ybar=np.nan_to_num(np.asarray(cells.mean)),
        within=within,
        treatment=trt,
        times=times,
    )
    return cd, None, None, xbar[observed], np.nonzero(observed)[0], []


def _check_identifiable(
    stacked: np.ndarray, names: list[str], eff_idx: list[int], p0: int, time: str
) -> None:
    """Refuse a fixed-effect column that is a combination of earlier ones, naming it."""
    dep = _first_dependent_column(stacked)
    if dep is None:
        return
    bad = names[dep]
    if dep in eff_idx:
        raise DataError(
            f"The treatment effect term {bad!r} is not identifiable: it is collinear with the "
            "period effects (or earlier terms). Check that some periods contain both control "
            "and treated "
            "clusters and that every exposure time is observed."
        )
    if dep >= p0:
        raise DataError(
            f"Covariate column {bad!r} is collinear with the treatment, period or other "
            f"covariate columns; remove it from `covariates`."
        )
    raise DataError(
        f"Fixed-effect column {bad!r} is collinear with earlier columns; the time model "
        f"`time={time!r}` cannot be estimated with these periods."
    )


def _fit_messages(fit: LMMFit, method: str, decay_scale: str) -> tuple[str, ...]:
    """Return the notes on the fit for the summary; warn if the optimiser did not converge."""
    messages: list[str] = []
    if not fit.converged:
        warn(
            f"The {method.upper()} optimiser did not converge ({fit.message}); estimates may be "
            "unreliable.",
            ConvergenceWarning,
        )
        messages.append("The optimiser did not converge.")
    if decay_scale == "time":
        messages.append(
            "Continuous-time decay (decay_scale='time'): cluster-period effects whose period "
            "mid-points are t years apart correlate decay**t; the decay is per year."
        )
    if fit.singular:
        messages.append(
            f"Singular fit: {', '.join(fit.at_bound)} estimated on the boundary of the "
            "parameter space."
        )
    return tuple(messages)


def _fit_state(
    model: _CellModel, fit: LMMFit, structure: CovarianceStructure, spec: AnalysisSpec
) -> GaussianFitState:
    """Collect the fitted pieces the inference is computed from (``with_vcov`` reuses them)."""
    messages = _fit_messages(fit, spec.method, spec.decay_scale)
    time = spec.time if model.knots_used is None else f"spline (knots {model.knots_used})"
    n_i, n_t = model.observed.shape
    fields = {
        "method": spec.method,
        "random": spec.random,
        "time": time,
        "n_obs": int(model.cells.n_total),
        "n_clusters": n_i,
        "n_periods": n_t,
        "outcome": spec.outcome,
        "covariates": spec.covariates,
        "messages": messages,
        "decay_scale": spec.decay_scale,
    }
    return GaussianFitState(
        fit=fit, cells=model.cells, structure=structure, rows=model.rows,
        sandwich_rows=model.sandwich_rows, observed=model.observed, treatment=model.treatment,
        stacked=model.stacked, stacked_clusters=model.stacked_clusters, labels=model.labels,
        names=tuple(model.names), contrast=model.contrast, estimand=model.estimand,
        effect=spec.effect,
        exp_levels=tuple(model.exp_levels), fields=fields,
    )  # fmt: skip


def _decay_times(decay_scale: str, design: Any, n_periods: int) -> np.ndarray:
    """Positions of the periods for the decay distance: indices, or mid-points in years."""
    if decay_scale != "time":
        return np.arange(n_periods, dtype=float)
    times = np.asarray(design.period_midpoints(), dtype=float)
    if times.shape != (n_periods,):  # pragma: no cover - TrialData fixes the design's periods
        raise DesignError(
            f"the design has {times.shape[0]} periods but the data {n_periods}; period "
            "mid-points cannot be matched."
        )
    return times
