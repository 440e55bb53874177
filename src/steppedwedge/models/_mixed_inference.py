"""Inference of a fitted Gaussian LMM: df rules, cluster-robust variance, the result.

:func:`gaussian_result` turns the fitted pieces of :func:`steppedwedge.models.mixed.fit_gaussian`
(a :class:`GaussianFitState`: the REML/ML fit, its cell statistics or cohort rows, the fixed
effects and the estimand contrast) into a :class:`~steppedwedge.results.FitResult` under one
covariance estimator and df rule.  The fit calls it once; ``FitResult.with_vcov`` calls it
again on the stored state, so a change of estimator recomputes the variance (model-based with
Kenward-Roger or Satterthwaite df, or a sandwich of :mod:`steppedwedge.inference.sandwich`)
without re-optimising, and gives the very numbers a refit with that ``vcov`` gives.

References
----------
Kenward, M. G., & Roger, J. H. (1997). Small sample inference for fixed effects from
restricted maximum likelihood. *Biometrics*, 53(3), 983-997.

Ouyang, Y., Taljaard, M., Forbes, A. B., & Li, F. (2024). Maintaining the validity of
inference from linear mixed models in stepped-wedge cluster randomized trials under
misspecified random-effects structures. *Statistical Methods in Medical Research*.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from .._core.reml import CellData, CovarianceStructure, LMMFit
from .._core.reml_dense import RowData
from .._validation import check_option
from .._warnings import warn
from ..exceptions import OptionError, SmallSampleWarning
from ..inference.dof import DOF_METHODS, InferenceEngine
from ..inference.sandwich import (
    check_vcov,
    dense_cluster_pieces,
    gls_cluster_pieces,
    robust_df,
    sandwich_vcov,
)
from ..results import FitResult

__all__ = ["GaussianFitState", "gaussian_result", "inference_options"]

SandwichRows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class GaussianFitState:
    """The fitted pieces of a Gaussian LMM that its inference is computed from (picklable).

    Attributes
    ----------
    fit, cells, structure : LMMFit, CellData, CovarianceStructure
        The REML/ML fit, the cell statistics it was fitted on and the covariance structure.
    rows : RowData or None
        The rows of a cohort fit (individual random effects), else None.
    sandwich_rows : tuple or None
        ``(cluster, period, X, y)`` rows when covariates vary within cells (the sandwich's
        residuals then need them), else None.
    observed, treatment : ndarray
        ``(I, T)`` observed cells and the treatment of each cell (0 where unobserved).
    stacked, stacked_clusters : ndarray
        The fixed-effect rows and their clusters (for the cluster-level rank ``p_c``).
    labels : tuple
        Cluster labels (for the sandwich's messages).
    names, contrast, estimand, effect, exp_levels
        Fixed-effect names, the estimand's contrast and name, the effect model and its
        exposure times.
    fields : dict
        The result's fields that do not depend on the variance estimator.
    """

    fit: LMMFit
    cells: CellData
    structure: CovarianceStructure
    rows: RowData | None
    sandwich_rows: SandwichRows | None
    observed: np.ndarray
    treatment: np.ndarray
    stacked: np.ndarray
    stacked_clusters: np.ndarray
    labels: tuple[Any, ...]
    names: tuple[str, ...]
    contrast: np.ndarray
    estimand: str
    effect: str
    exp_levels: tuple[int, ...]
    fields: dict[str, Any]


def inference_options(vcov: Any, dof: Any, method: str) -> tuple[str, str, str | float | None]:
    """Validate ``vcov`` and ``dof`` for a fit by ``method``.

    Returns the canonical ``vcov``, the df rule of the model-based inference (Kenward-Roger
    for REML, Satterthwaite for ML by default) and the df rule of a robust fit (None with
    ``vcov="model"``).
    """
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
    return vcov, dof, robust_dof


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


def gaussian_result(state: GaussianFitState, *, vcov: Any, dof: Any) -> FitResult:
    """Return the :class:`FitResult` of a fitted Gaussian LMM under ``vcov`` and ``dof``.

    Parameters
    ----------
    state : GaussianFitState
        The fitted pieces (stored on the result for :meth:`FitResult.with_vcov`).
    vcov, dof
        As :func:`steppedwedge.fit`'s options of the same names.

    Returns
    -------
    FitResult
        The result; recomputed from ``state`` without re-optimising.
    """
    fit, method = state.fit, state.fields["method"]
    vcov, model_dof, robust_dof = inference_options(vcov, dof, method)
    robust_cov, robust_df_value, dof_label = None, None, model_dof
    if vcov != "model":
        robust_cov, robust_df_value, dof_label = _gls_robust(vcov, robust_dof, state)
    engine = InferenceEngine(
        fit,
        state.cells,
        state.structure,
        model_dof,
        robust_cov=robust_cov,
        robust_df=robust_df_value,
        rows=state.rows,
    )
    main = engine.contrast(state.contrast)
    terms, se_model_est = _term_table(state, engine, main, robust=vcov != "model")
    curve = None
    if state.effect != "immediate":
        curve = terms[terms["term"].str.startswith("exposure[")].copy()
        curve.insert(0, "exposure_time", list(state.exp_levels))
        curve = curve.drop(columns="term").reset_index(drop=True)
    names = list(state.names)
    return FitResult(
        estimand=state.estimand,
        estimate=main.estimate,
        std_error=main.std_error,
        df=main.df,
        params=pd.Series(fit.beta, index=names, name="estimate"),
        vcov_matrix=pd.DataFrame(engine.vcov, index=names, columns=names),
        vcov_model=pd.DataFrame(fit.cov_beta, index=names, columns=names),
        variance_components=_variance_components(fit),
        loglik=fit.loglik,
        converged=fit.converged,
        singular=fit.singular,
        dof=dof_label,
        vcov=vcov,
        effect=state.effect,
        terms=terms,
        correlations=_correlations(state.structure, fit, _information(engine, model_dof)),
        effect_curve=curve,
        contrast=state.contrast,
        std_error_model=se_model_est,
        _refit=partial(gaussian_result, state),
        **state.fields,
    )


def _term_table(
    state: GaussianFitState, engine: InferenceEngine, main: Any, *, robust: bool
) -> tuple[pd.DataFrame, float | None]:
    """Every reported fixed effect (the estimand's row first) and the estimand's model SE."""
    names, contrast, estimand = list(state.names), state.contrast, state.estimand
    table: list[tuple[str, float, float, float]] = []
    if state.effect != "immediate":
        table.append((estimand, main.estimate, main.std_error, main.df))
    for k, (nm, ci_k) in enumerate(zip(names, engine.unit_contrasts(), strict=True)):
        if contrast[k] == 1.0 and np.count_nonzero(contrast) == 1:
            ci_k = main  # the estimand's own row: the very same numbers
        table.append((nm, ci_k.estimate, ci_k.std_error, ci_k.df))
    if state.effect == "immediate":
        # the treatment row first (ordered before building the table: no reindexing)
        p = len(names)
        order = [names.index("treatment")] + [k for k in range(p) if names[k] != "treatment"]
        table = [table[k] for k in order]
    terms = pd.DataFrame(table, columns=["term", "estimate", "std_error", "df"])
    if not robust:
        return terms, None
    cov_beta = state.fit.cov_beta
    robust_se = np.sqrt(np.maximum(np.diag(cov_beta), 0.0))  # model-based, beside the robust
    se_model_est = float(np.sqrt(max(contrast @ cov_beta @ contrast, 0.0)))
    model_se = dict(zip(names, robust_se, strict=True))
    model_se[estimand] = se_model_est
    terms["std_error_model"] = terms["term"].map(model_se).astype(float)
    return terms, se_model_est


def _variance_components(fit: LMMFit) -> dict[str, float]:
    """Return the named variances of the fit, with the slope-intercept correlation ``rho``."""
    vc = dict(fit.variance_components)
    if "cov_te" in vc:
        denom = np.sqrt(vc["tau2"] * vc["eta2"])
        vc["rho"] = float(vc["cov_te"] / denom) if denom > 0 else float("nan")
    return vc


def _information(engine: InferenceEngine, dof: str) -> np.ndarray | None:
    """Information for the Wald intervals of icc/cac/decay.

    The observed Hessian when Satterthwaite computed it anyway, else the expected REML/ML
    information of Kenward-Roger.
    """
    try:
        info: np.ndarray = engine.hessian if dof == "satterthwaite" else engine.kr.ie
    except np.linalg.LinAlgError:  # pragma: no cover - defensive
        return None
    return info


def _n_cluster_level(x: np.ndarray, clusters: np.ndarray) -> int:
    """Rank of the fixed-effect columns constant within every cluster (intercept included)."""
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    scale = 1.0 + np.abs(x).max(axis=0)
    level = np.all(np.abs(x - x[first][np.ravel(inverse)]) <= 1e-12 * scale, axis=0)
    xb = x[first][:, level]
    return int(np.linalg.matrix_rank(xb)) if xb.size else 0


def _gls_robust(
    vcov: str, dof_rule: str | float | None, state: GaussianFitState
) -> tuple[np.ndarray, float, str]:
    """Cluster-robust covariance of the GLS fixed effects, its df and the df label.

    See :mod:`steppedwedge.inference.sandwich`; the pieces are exact on cell statistics
    (:func:`~steppedwedge.inference.sandwich.gls_cluster_pieces`), or from each cluster's
    rows and dense marginal covariance for cohort fits (individual effects cross the cells).
    """
    observed, trt = state.observed, state.treatment
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
    p_c = _n_cluster_level(state.stacked, state.stacked_clusters) + 1
    n_data = int(np.sum(observed.any(axis=1)))
    if vcov in ("cr2", "cr3", "kc", "md") or dof_rule == "clusters":
        df_clusters = robust_df(n_data, p_c, vcov)
    fit, labels = state.fit, list(state.labels)
    if state.rows is not None:
        pieces = _cohort_pieces(fit, state.rows, state.structure, labels)
    else:
        g, _ = state.structure.blocks_natural(fit.natural, state.cells)
        pieces = gls_cluster_pieces(
            state.cells, g, fit.sigma2, fit.beta, rows=state.sandwich_rows, labels=labels
        )
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
