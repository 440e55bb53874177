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
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._core.reml import CellData, CovarianceStructure, LMMFit, fit_lmm
from .._core.reml_dense import RowData, fit_lmm_rows
from .._validation import check_option
from .._warnings import caller_stacklevel, warn
from ..data import TrialData
from ..exceptions import (
    ConvergenceWarning,
    DataError,
    DesignError,
    OptionError,
    SmallSampleWarning,
    SteppedWedgeWarning,
)
from ..inference.dof import DOF_METHODS, InferenceEngine
from ..inference.sandwich import (
    check_vcov,
    dense_cluster_pieces,
    gls_cluster_pieces,
    robust_df,
    sandwich_vcov,
)
from ..results import FitResult
from ._formula import covariate_matrix

__all__ = ["RANDOM_STRUCTURES", "TIME_EFFECTS", "EFFECT_TYPES", "fit_gaussian"]

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
    # -------------------------------------------------------------- options
    check_option("random", random, RANDOM_STRUCTURES)
    check_option("time", time, TIME_EFFECTS)
    check_option("effect", effect, EFFECT_TYPES)
    check_option("method", method, METHODS)
    check_decay_scale(decay_scale, random, design)
    vcov = check_vcov(vcov)
    robust_dof = _robust_dof_option(vcov, dof)
    if vcov != "model":
        dof = None
    if dof is None:
        dof = "kenward-roger" if method == "reml" else "satterthwaite"
    check_option("dof", dof, DOF_METHODS)
    if dof == "kenward-roger" and method == "ml":
        raise OptionError(
            "`dof='kenward-roger'` needs a REML fit; use method='reml' or "
            "dof='satterthwaite' with method='ml'."
        )
    if effect == "pte" and exposure_time is None:
        raise OptionError(
            "`effect='pte'` needs `exposure_time=` (the exposure time e of the point effect)."
        )
    if time == "none":
        warnings.warn(
            "`time='none'` fits no period effects: this assumes there is no secular trend, "
            "which stepped-wedge analyses rarely can; the treatment effect is confounded with "
            "time if there is one.",
            SteppedWedgeWarning,
            stacklevel=caller_stacklevel(),
        )
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame; got {type(data).__name__}.")
    roles = [c for c in (outcome, cluster, period, treatment) if c is not None]
    cov_cols = _covariate_columns(covariates, data, roles) if covariates else []

    td = TrialData.from_frame(
        data,
        outcome=outcome,
        cluster=cluster,
        period=period,
        treatment=treatment,
        individual=individual,
        family="gaussian",
        covariates=cov_cols or None,
        design=design,
        missing=missing,  # type: ignore[arg-type]
    )
    if td.kind != "individual" and "size" in td.roles:
        raise DataError(
            "Gaussian fits need individual rows (or one row per cell without a size column)."
        )
    cells = td.cells()
    n_i, n_t = cells.shape
    times = _decay_times(decay_scale, design, n_t)
    observed = np.asarray(cells.observed)
    trt = np.where(observed, np.asarray(cells.treatment, dtype=float), 0.0)

    if time == "categorical":
        tv = np.where(observed, trt, np.nan)
        constant = np.nanmax(tv, axis=0) - np.nanmin(tv, axis=0)
        if np.all(constant[np.isfinite(constant)] == 0):
            raise DataError(
                f"`treatment` column {treatment!r} is constant within every period (all clusters "
                "switch together), so its effect is confounded with the period effects and not "
                "identifiable."
            )

    # -------------------------------------------------------------- fixed effects on cells
    tcols, tnames, knots_used = _time_columns(time, list(td.periods), knots)
    xcell = [np.ones((n_i, n_t, 1)), np.broadcast_to(tcols, (n_i, n_t, tcols.shape[1]))]
    names = ["(Intercept)"] + tnames
    eff_names: list[str]
    eff_cols, eff_names, exp_levels = _treatment_columns(effect, trt, observed)
    xcell.append(eff_cols)
    names += eff_names
    xbar = np.concatenate(xcell, axis=2)
    p0 = xbar.shape[2]
    eff_idx = list(range(p0 - len(eff_names), p0))

    # -------------------------------------------------------------- covariates
    rows = None
    rows_for_sandwich = None  # (cluster, period, X, y) rows when covariates vary within cells
    if individual is not None:
        ci = np.asarray(td.cluster_codes)
        pi = np.asarray(td.period_codes)
        x_rows = xbar[ci, pi]
        if covariates:
            cm = covariate_matrix(covariates, td.frame)
            x_rows = np.concatenate([x_rows, cm.values], axis=1)
            names += list(cm.names)
        ids = pd.factorize(td.frame["individual"])[0]
        rows = RowData.from_arrays(
            ci,
            pi,
            ids,
            x_rows,
            td.frame["outcome"].to_numpy(dtype=float),
            n_clusters=n_i,
            n_periods=n_t,
            treatment=trt,
            times=times,
        )
        cd = rows.cells
        stacked = x_rows
        stacked_clusters = ci
    elif covariates:
        cm = covariate_matrix(covariates, td.frame)
        ci = np.asarray(td.cluster_codes)
        pi = np.asarray(td.period_codes)
        x_rows = np.concatenate([xbar[ci, pi], cm.values], axis=1)
        y_rows = td.frame["outcome"].to_numpy(dtype=float)
        cd = CellData.from_individual(
            ci,
            pi,
            x_rows,
            y_rows,
            n_clusters=n_i,
            n_periods=n_t,
            treatment=trt,
            times=times,
        )
        names += list(cm.names)
        stacked = np.concatenate([x_rows], axis=0)
        stacked_clusters = ci
        rows_for_sandwich = (ci, pi, x_rows, y_rows)
    else:
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
        stacked = xbar[observed]
        stacked_clusters = np.nonzero(observed)[0]
    dep = _first_dependent_column(stacked)
    if dep is not None:
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

    # -------------------------------------------------------------- estimand contrast
    p = len(names)
    contrast, estimand = _estimand_contrast(
        effect, p, eff_idx, exp_levels, exposure_time, exposure_window
    )

    # -------------------------------------------------------------- fit
    structure = _structure(random)
    if decay_scale == "time":
        structure = dataclasses.replace(structure, positive_decay=True)
    if rows is not None:
        fit = fit_lmm_rows(rows, structure, reml=(method == "reml"))
    else:
        fit = fit_lmm(cd, structure, reml=(method == "reml"))
    messages: list[str] = []
    if not fit.converged:
        warnings.warn(
            f"The {method.upper()} optimiser did not converge ({fit.message}); estimates may be "
            "unreliable.",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
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

    robust_cov = None
    robust_df_value = None
    robust_se: np.ndarray | None = None  # model-based SEs, reported beside the robust ones
    if vcov != "model":
        robust_cov, robust_df_value, dof_label = _gls_robust(
            vcov,
            robust_dof,
            fit,
            cd,
            structure,
            observed,
            trt,
            stacked,
            stacked_clusters,
            rows_for_sandwich,
            list(cells.clusters),
            rows,
        )
        robust_se = np.sqrt(np.maximum(np.diag(fit.cov_beta), 0.0))
    else:
        dof_label = dof
    engine = InferenceEngine(
        fit, cd, structure, dof, robust_cov=robust_cov, robust_df=robust_df_value, rows=rows
    )
    main = engine.contrast(contrast)

    table: list[tuple[str, float, float, float]] = []
    if effect != "immediate":
        table.append((estimand, main.estimate, main.std_error, main.df))
    for k, (nm, ci_k) in enumerate(zip(names, engine.unit_contrasts(), strict=True)):
        if contrast[k] == 1.0 and np.count_nonzero(contrast) == 1:
            ci_k = main  # the estimand's own row: the very same numbers
        table.append((nm, ci_k.estimate, ci_k.std_error, ci_k.df))
    if effect == "immediate":
        # the treatment row first (ordered before building the table: no reindexing)
        order = [names.index("treatment")] + [k for k in range(p) if names[k] != "treatment"]
        table = [table[k] for k in order]
    terms = pd.DataFrame(table, columns=["term", "estimate", "std_error", "df"])
    se_model_est = None
    if robust_se is not None:
        se_model_est = float(np.sqrt(max(contrast @ fit.cov_beta @ contrast, 0.0)))
        model_se = dict(zip(names, robust_se, strict=True))
        model_se[estimand] = se_model_est
        terms["std_error_model"] = terms["term"].map(model_se).astype(float)
    curve = None
    if effect != "immediate":
        curve = terms[terms["term"].str.startswith("exposure[")].copy()
        curve.insert(0, "exposure_time", exp_levels)
        curve = curve.drop(columns="term").reset_index(drop=True)

    vc = dict(fit.variance_components)
    if "cov_te" in vc:
        denom = np.sqrt(vc["tau2"] * vc["eta2"])
        vc["rho"] = float(vc["cov_te"] / denom) if denom > 0 else float("nan")
    # information for the Wald intervals of icc/cac/decay: the observed Hessian when
    # Satterthwaite computed it anyway, else the expected REML/ML information of KR
    try:
        info = engine.hessian if dof == "satterthwaite" else engine.kr.ie
    except np.linalg.LinAlgError:  # pragma: no cover - defensive
        info = None
    correlations = _correlations(structure, fit, info)

    vmat = engine.vcov
    return FitResult(
        estimand=estimand,
        estimate=main.estimate,
        std_error=main.std_error,
        df=main.df,
        params=pd.Series(fit.beta, index=names, name="estimate"),
        vcov_matrix=pd.DataFrame(vmat, index=names, columns=names),
        vcov_model=pd.DataFrame(fit.cov_beta, index=names, columns=names),
        variance_components=vc,
        loglik=fit.loglik,
        converged=fit.converged,
        singular=fit.singular,
        method=method,
        dof=dof_label,
        vcov=vcov,
        random=random,
        time=time if knots_used is None else f"spline (knots {knots_used})",
        effect=effect,
        n_obs=int(cd.n_total),
        n_clusters=n_i,
        n_periods=n_t,
        terms=terms,
        correlations=correlations,
        effect_curve=curve,
        contrast=contrast,
        outcome=outcome,
        covariates=covariates,
        messages=tuple(messages),
        std_error_model=se_model_est,
        decay_scale=decay_scale,
    )


def check_decay_scale(decay_scale: Any, random: str, design: Any) -> None:
    """Refuse a ``decay_scale`` that is unknown, has no decay to scale, or has no dates."""
    check_option("decay_scale", decay_scale, ("period", "time"))
    if decay_scale == "time" and "decay" not in random:
        raise OptionError(
            f"`decay_scale='time'` scales a decaying correlation; random={random!r} has none. "
            "Use random='decay' or 'nested+decay'."
        )
    if decay_scale == "time" and design is None:
        raise OptionError(
            "`decay_scale='time'` needs `design=`, a Design with period lengths or dates "
            "(e.g. Design.from_start_dates(..., 'starts', window=...)): its period mid-points "
            "give the decay distances."
        )


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


def _robust_dof_option(vcov: str, dof: Any) -> str | float | None:
    """Return the df rule of a robust fit: ``"clusters"`` (``I - p_c``), ``"normal"``, a number."""
    if vcov == "model":
        return None
    if dof is None or dof == "clusters":
        return "clusters"
    if dof == "normal":
        return "normal"
    if isinstance(dof, (int, float, np.integer, np.floating)) and not isinstance(dof, bool):
        if dof > 0:
            return float(dof)
    raise OptionError(
        f"With vcov={vcov!r}, `dof` must be 'clusters' (t with I - p_c df, the default), "
        f"'normal' or a positive number; got {dof!r}. Kenward-Roger and Satterthwaite df "
        "belong to the model-based covariance (vcov='model')."
    )


def _n_cluster_level(x: np.ndarray, clusters: np.ndarray) -> int:
    """Rank of the fixed-effect columns constant within every cluster (intercept included)."""
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    scale = 1.0 + np.abs(x).max(axis=0)
    level = np.all(np.abs(x - x[first][np.ravel(inverse)]) <= 1e-12 * scale, axis=0)
    xb = x[first][:, level]
    return int(np.linalg.matrix_rank(xb)) if xb.size else 0


def _gls_robust(
    vcov: str,
    dof_rule: str | float | None,
    fit: LMMFit,
    cd: CellData,
    structure: CovarianceStructure,
    observed: np.ndarray,
    trt: np.ndarray,
    stacked: np.ndarray,
    stacked_clusters: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    labels: list[Any],
    cohort: RowData | None = None,
) -> tuple[np.ndarray, float, str]:
    """Cluster-robust covariance of the GLS fixed effects, its df and the df label.

    See :mod:`steppedwedge.inference.sandwich`; the pieces are exact on cell statistics
    (:func:`~steppedwedge.inference.sandwich.gls_cluster_pieces`), or from each cluster's
    rows and dense marginal covariance for cohort fits (individual effects cross the cells).
    """
    n_i = int(observed.shape[0])
    keys = [tuple(np.round(np.where(observed[i], trt[i], -1.0), 12)) for i in range(n_i)]
    counts: dict[tuple[float, ...], int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    if min(counts.values()) < 2:
        warn(
            "Cluster-robust variance with fewer than 2 clusters in some sequence: the "
            "sandwich is unreliable (it cannot see between-cluster variation within that "
            "sequence).",
            SmallSampleWarning,
        )
    p_c = _n_cluster_level(stacked, stacked_clusters) + 1
    n_data = int(np.sum(observed.any(axis=1)))
    if vcov in ("cr2", "cr3", "kc", "md") or dof_rule == "clusters":
        df_clusters = robust_df(n_data, p_c, vcov)
    if cohort is not None:
        pieces = _cohort_pieces(fit, cohort, structure, labels)
    else:
        g, _ = structure.blocks_natural(fit.natural, cd)
        pieces = gls_cluster_pieces(cd, g, fit.sigma2, fit.beta, rows=rows, labels=labels)
    cov = sandwich_vcov(pieces, vcov)
    name = f"{vcov.upper()} cluster-robust variance"
    if dof_rule == "clusters":
        return cov, df_clusters, f"t(I - p_c = {n_data} - {p_c} = {n_data - p_c}) with {name}"
    if dof_rule == "normal":
        return cov, float("inf"), f"normal (Wald z) with {name}"
    return cov, float(dof_rule), f"t({float(dof_rule):g}) (user-supplied df) with {name}"  # type: ignore[arg-type]


def _cohort_pieces(
    fit: LMMFit, data: RowData, structure: CovarianceStructure, labels: list[Any]
) -> Any:
    """Dense per-cluster GLS pieces of a cohort fit: ``V_i = G_i + psi2 S_i + sigma2 I``."""
    k_s = structure.n_phi
    g_cell, _ = structure.blocks_natural(fit.natural[:k_s], data.cells)
    psi2 = float(fit.natural[k_s])
    xs, es, vs = [], [], []
    for i in range(len(data.y)):
        per, ind = data.period[i], data.individual[i]
        same = (ind[:, None] == ind[None, :]).astype(float)
        v = g_cell[i][np.ix_(per, per)] + psi2 * same + fit.sigma2 * np.eye(len(per))
        xs.append(data.x[i])
        es.append(data.y[i] - data.x[i] @ fit.beta)
        vs.append(v)
    return dense_cluster_pieces(xs, es, vs, labels=labels)


def _correlations(
    structure: CovarianceStructure, fit: LMMFit, hess: np.ndarray | None
) -> dict[str, tuple[float, float, float]]:
    """ICC, CAC, IAC and decay with Wald intervals (logit / atanh scale, delta method).

    ``hess`` is the observed Hessian of the deviance or ``tr(P G_r P G_s)`` (twice the
    expected information); either way the covariance of the kept parameters is
    ``2 hess^{-1}``.
    """
    from scipy import special

    names = list(fit.names) + ["sigma2"]
    v = dict(zip(names, list(fit.natural) + [fit.sigma2], strict=True))
    if structure.slope != "none":
        return {}
    cov = None
    keep = np.array([n not in fit.at_bound for n in names])
    if hess is not None:
        try:
            cov = np.zeros_like(hess)
            cov[np.ix_(keep, keep)] = 2.0 * np.linalg.inv(hess[np.ix_(keep, keep)])
        except np.linalg.LinAlgError:
            cov = None
    z = float(special.ndtri(0.975))  # = scipy.stats.norm.ppf(0.975), without its overhead
    out: dict[str, tuple[float, float, float]] = {}

    def wald(value: float, grad: dict[str, float], scale: str) -> tuple[float, float, float]:
        if cov is None or not np.isfinite(value) or value <= 0 or value >= 1:
            return (value, float("nan"), float("nan"))
        gvec = np.array([grad.get(n, 0.0) for n in names])
        var = float(gvec @ cov @ gvec)
        if var <= 0:
            return (value, float("nan"), float("nan"))
        if scale == "logit":
            eta, d = np.log(value / (1 - value)), 1.0 / (value * (1 - value))
            se = np.sqrt(var) * d
            lo, hi = eta - z * se, eta + z * se
            return (value, float(1 / (1 + np.exp(-lo))), float(1 / (1 + np.exp(-hi))))
        eta, d = np.arctanh(value), 1.0 / (1 - value * value)
        se = np.sqrt(var) * d
        return (value, float(np.tanh(eta - z * se)), float(np.tanh(eta + z * se)))

    tau2 = v.get("tau2", 0.0)
    gamma2 = v.get("gamma2", 0.0)
    s2 = v["sigma2"]
    psi2 = v.get("psi2", 0.0)
    tot = tau2 + gamma2 + psi2 + s2
    icc = (tau2 + gamma2) / tot
    g_icc = {
        "tau2": (s2 + psi2) / tot**2,
        "gamma2": (s2 + psi2) / tot**2,
        "sigma2": -(tau2 + gamma2) / tot**2,
        "psi2": -(tau2 + gamma2) / tot**2,
    }
    out["icc"] = wald(icc, g_icc, "logit")
    if structure.intercept and structure.cluster_period:
        b = tau2 + gamma2
        cac = tau2 / b if b > 0 else float("nan")
        out["cac"] = wald(
            cac, {"tau2": gamma2 / b**2, "gamma2": -tau2 / b**2} if b > 0 else {}, "logit"
        )
    if structure.decay:
        # continuous-time decay lives in (0, 1): its interval on the logit scale
        scale = "logit" if structure.positive_decay else "atanh"
        out["decay"] = wald(v["decay"], {"decay": 1.0}, scale)
    if "psi2" in v:
        iac = psi2 / (psi2 + s2)
        b = psi2 + s2
        out["iac"] = wald(iac, {"psi2": s2 / b**2, "sigma2": -psi2 / b**2}, "logit")
    return out
