r"""Numerical core of the staggered-rollout estimators (numpy only).

Everything works on a balanced unit-by-period matrix ``Y`` (``I x T``; a unit is a cluster,
its entry a cluster-period summary) and the cohort of each unit: the index ``g`` of its first
treated period (``0 .. T - 1``), or ``T`` for a unit never treated within the panel.  Periods
are the integers ``0 .. T - 1``.

Every estimand is a weighted average of group-time effects ``ATT(g, t)`` (:func:`att_weights`),
and every estimator of Roth & Sant'Anna (2023) is linear in the cohort means
``Ybar_g``: ``theta0 = sum_g A_theta[g] . Ybar_g`` minus ``beta' Xhat`` with
``Xhat = sum_g A_0[:, g, :] Ybar_g`` (pre-treatment differences that have mean zero under
random timing).  ``beta = 1`` with the difference-in-differences ``A_0`` is Callaway &
Sant'Anna (2021); with the last-treated cohort as the only comparison it is Sun & Abraham
(2021); ``beta = 0`` is the simple difference in means; the plug-in ``beta*`` is the efficient
estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CohortSummaries",
    "Contrast",
    "att_weights",
    "cohort_summaries",
    "contrast_for",
    "efficient",
    "full_a0",
]

FloatArray = np.ndarray
_GINV_TOL = float(np.sqrt(np.finfo(float).eps))  # MASS::ginv tolerance, as staggered


@dataclass(frozen=True)
class CohortSummaries:
    """Cohort means ``ybar`` (G, T), covariances ``s`` (G, T, T; ddof 1), sizes ``n`` (G,).

    ``g`` holds the cohort values (first treated period index; ``T`` = never treated).
    """

    g: np.ndarray
    ybar: FloatArray
    s: FloatArray
    n: FloatArray


def cohort_summaries(y: FloatArray, cohort: np.ndarray) -> CohortSummaries:
    """Means and sample covariance matrices (denominator ``N_g - 1``) of each cohort."""
    glist, inverse = np.unique(cohort, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(glist))
    n_t = y.shape[1]
    ybar = np.empty((len(glist), n_t))
    s = np.full((len(glist), n_t, n_t), np.nan)
    start = 0
    for k, m in enumerate(counts):
        block = y[order[start : start + m]]
        start += m
        ybar[k] = block.mean(axis=0)
        if m > 1:
            centred = block - ybar[k]
            s[k] = centred.T @ centred / (m - 1)
    return CohortSummaries(glist, ybar, s, counts.astype(float))


# --------------------------------------------------------------------------- estimands
def _controls(glist: np.ndarray, n: FloatArray, g: int, t: int, rule: str) -> np.ndarray:
    """Weights of the comparison cohorts of ``ATT(g, t)`` (sum to 1; all 0 if none)."""
    gmax = glist.max()
    if rule == "last-treated":
        mask = (glist > t) & (glist == gmax)
    elif rule == "never-treated":
        mask = glist == gmax
    elif rule == "not-yet-treated-varying" and t < g:  # pre-period placebo, as did::att_gt
        mask = (glist > t) & (glist != g)
    else:  # not yet treated at max(g, t), as staggered (post periods: at t)
        mask = glist > max(g, t)
    w = np.where(mask, n, 0.0)
    total = w.sum()
    return w / total if total > 0 else w


def att_weights(
    glist: np.ndarray,
    n: FloatArray,
    n_t: int,
    estimand: str,
    event_time: int | None = None,
    first_period: int = 0,
) -> FloatArray:
    """Weights ``W[g, t]`` of ``ATT(g, t)`` in an aggregate estimand (Roth & Sant'Anna 2.3).

    ``"simple"``: all identified post-treatment cells, weighted by cohort size; ``"cohort"``:
    the mean over each cohort's identified periods, weighted by cohort size; ``"calendar"``:
    for each period the size-weighted mean over the cohorts treated by then, averaged over
    periods; ``"event"``: cohorts observed ``event_time`` periods after (or before, if
    negative) their start, weighted by size.  A cell is identified when ``t`` is before the
    last cohort starts (some cohort is still untreated).  Placebo cells before
    ``first_period`` are left out (``1`` for the varying base ``t - 1``, which period 0 lacks).
    """
    gmax = int(glist.max())
    last = min(gmax, n_t)  # periods t < last have a not-yet-treated cohort
    w = np.zeros((len(glist), n_t))
    cohorts = [(k, int(g)) for k, g in enumerate(glist) if g < gmax and g < n_t]
    if estimand == "simple":
        for k, g in cohorts:
            w[k, g:last] = n[k]
    elif estimand == "cohort":
        for k, g in cohorts:
            w[k, g:last] = n[k] / (last - g)
    elif estimand == "calendar":
        periods = range(int(glist.min()), last)
        for t in periods:
            ks = [k for k, g in cohorts if g <= t]
            tot = sum(n[k] for k in ks)
            for k in ks:
                w[k, t] = n[k] / tot / len(periods)
    elif estimand == "event":
        assert event_time is not None
        for k, g in cohorts:
            t = g + event_time
            if min(first_period, g) <= t < n_t and max(t, g) < gmax:
                w[k, t] = n[k]
    total = w.sum()
    return w / total if total > 0 else w


@dataclass(frozen=True)
class Contrast:
    """``A_theta`` (G, T) and the pre-treatment differences ``A_0`` (K, G, T) of an estimand."""

    a_theta: FloatArray
    a_0: FloatArray


def contrast_for(
    glist: np.ndarray, n: FloatArray, weights: FloatArray, rule: str, base: str = "universal"
) -> Contrast:
    """Build the linear contrast of the cohort means estimating ``sum W[g, t] ATT(g, t)``.

    ``ATT(g, t)`` compares cohort ``g`` with the comparison cohorts (``rule``) at ``t``
    (``A_theta``) and in the base period (``A_0``, one row: the difference-in-differences
    ``Xhat``): ``g - 1`` for post periods, and for pre-periods ``g - 1`` (``"universal"``,
    as staggered) or ``t - 1`` (``"varying"``, as did).  A cohort starting in the first
    period has no base period: its ``A_0`` entries are absent (as staggered).
    """
    n_g, n_t = weights.shape
    a_theta = np.zeros((n_g, n_t))
    a_0 = np.zeros((1, n_g, n_t))
    for k, t in zip(*np.nonzero(weights), strict=True):
        g = int(glist[k])
        varying = base == "varying" and rule == "not-yet-treated"
        c = _controls(glist, n, g, int(t), rule + ("-varying" if varying else ""))
        wt = weights[k, t]
        a_theta[k, t] += wt
        a_theta[:, t] -= wt * c
        b = t - 1 if (base == "varying" and t < g) else g - 1
        if b >= 0:
            a_0[0, k, b] += wt
            a_0[0, :, b] -= wt * c
    return Contrast(a_theta, a_0)


def full_a0(glist: np.ndarray, n_t: int) -> FloatArray:
    """All pre-treatment comparisons (``use_DiD_A0=FALSE`` of staggered): (K, G, T).

    For each cohort ``g`` but the last, one row per period ``t < g`` contrasting cohort ``g``
    with the last cohort at ``t``.
    """
    rows = []
    last = len(glist) - 1
    for k, g in enumerate(glist[:-1]):
        for t in range(min(int(g), n_t)):
            r = np.zeros((len(glist), n_t))
            r[k, t] = 1.0
            r[last, t] = -1.0
            rows.append(r)
    return np.array(rows) if rows else np.zeros((0, len(glist), n_t))


# --------------------------------------------------------------------------- estimator
@dataclass(frozen=True)
class EfficientFit:
    """Estimates, design-based and Neyman standard errors, and the ``beta`` used (per row)."""

    estimate: FloatArray
    std_error: FloatArray
    std_error_neyman: FloatArray
    beta: FloatArray
    negative_variance: bool


def efficient(
    cs: CohortSummaries,
    a_theta: FloatArray,
    a_0: FloatArray,
    beta: FloatArray | float | None = None,
) -> EfficientFit:
    """Compute the Roth & Sant'Anna (2023) estimator ``theta0 - beta' Xhat`` and its variances.

    Vectorised over ``R`` estimands: ``a_theta`` is (R, G, T) and ``a_0`` (R, K, G, T).
    ``beta=None`` uses the plug-in efficient ``beta* = Var(Xhat)^+ Cov(Xhat, theta0)`` of each
    row.  The Neyman variance is ``sum_g (1/N_g) c_g' S_g c_g`` with
    ``c_g = A_theta[g] - beta' A_0[g]``; the design-based variance subtracts the refinement
    of their Proposition 3.1 (``(1/N) b' avg(S_pre) b`` from the pre-``g_min`` periods), as
    the staggered package.
    """
    inv_n = 1.0 / cs.n
    theta0 = np.einsum("rgt,gt->r", a_theta, cs.ybar)
    xhat = np.einsum("rkgt,gt->rk", a_0, cs.ybar)
    n_r, n_k = xhat.shape
    xvar = np.empty((n_r, n_k, n_k))
    xcov = np.empty((n_r, n_k))
    tvar = np.empty(n_r)
    for j, s_j in enumerate(cs.s):  # one cohort at a time: (R, K, T) @ (T, T)
        ts = a_theta[:, j, :] @ s_j
        a0s = a_0[:, :, j, :] @ s_j
        a0j = a_0[:, :, j, :]
        if j == 0:
            xvar[:], xcov[:], tvar[:] = 0.0, 0.0, 0.0
        xvar += inv_n[j] * np.matmul(a0s, a0j.transpose(0, 2, 1))
        xcov += inv_n[j] * np.einsum("rku,ru->rk", a0s, a_theta[:, j, :])
        tvar += inv_n[j] * np.einsum("ru,ru->r", ts, a_theta[:, j, :])
    if beta is None:
        tol = np.finfo(float).eps ** 0.75
        b = np.einsum("rkj,rj->rk", np.linalg.pinv(xvar, rcond=tol), xcov)
    else:
        b = np.broadcast_to(np.asarray(beta, dtype=float), xhat.shape[1:])
        b = np.broadcast_to(b, xhat.shape).copy()
    estimate = theta0 - np.einsum("rk,rk->r", xhat, b)
    var_n = tvar + np.einsum("rk,rkj,rj->r", b, xvar, b) - 2.0 * np.einsum("rk,rk->r", xcov, b)
    var_n = np.maximum(var_n, 0.0)
    adj = _refinement(cs, a_theta)
    negative = bool(np.any((var_n - adj < 0) & (var_n > 0)))
    var = np.maximum(var_n - adj, 0.0)
    return EfficientFit(estimate, np.sqrt(var), np.sqrt(var_n), b, negative)


def _psd_pinv(a: FloatArray) -> FloatArray:
    """Moore-Penrose inverse of a symmetric PSD matrix (``MASS::ginv`` tolerance).

    NaN where ``a`` is not finite (the covariance of a single-cluster cohort).
    """
    if not np.isfinite(a).all():
        return np.full(a.shape, np.nan)
    w, v = np.linalg.eigh(a)
    keep = w > _GINV_TOL * max(float(w[-1]), 0.0)
    out: FloatArray = (v[:, keep] / w[keep]) @ v[:, keep].T
    return out


def _refinement(cs: CohortSummaries, a_theta: FloatArray) -> FloatArray:
    """``(1/N) b' avg_g(M S_g M') b`` with ``b = sum_g (M S_g M')^+ M S_g A_theta[g]'``.

    ``M`` selects the periods before ``g_min``, the first cohort with a non-zero
    ``A_theta`` row (per estimand; estimands are grouped by ``g_min``).
    """
    n_r, n_g, n_t = a_theta.shape
    nonzero = np.abs(a_theta).max(axis=2) > 0  # (R, G)
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    out = np.zeros(n_r)
    for k in np.unique(first):
        g_min = int(cs.g[k])
        m = min(g_min, n_t)
        if m <= 0:
            continue
        rows = np.nonzero(first == k)[0]
        keep = np.nonzero(cs.g >= g_min)[0]
        b = np.zeros((len(rows), m))
        msm = np.zeros((m, m))
        for j in keep:
            pre = cs.s[j, :m, :m]
            proj = _psd_pinv(pre) @ cs.s[j, :m, :]  # (m, T)
            b += a_theta[rows, j, :] @ proj.T
            msm += pre
        msm /= len(keep)
        out[rows] = np.einsum("rm,mn,rn->r", b, msm, b) / cs.n.sum()
    return out


def joint_vcov(
    cs: CohortSummaries, a_theta: FloatArray, a_0: FloatArray, beta: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Joint design-based and Neyman covariance of ``R`` estimators (e.g. an event study).

    ``beta`` (R, K) are the rows' own ``beta``.  The refinement uses one ``g_min`` for all
    rows (the earliest), as ``staggered(..., return_full_vcv = TRUE)``; a negative variance
    sets its rows and columns to zero there too.
    """
    c = a_theta - np.einsum("rk,rkgt->rgt", beta, a_0)
    inv_n = 1.0 / cs.n
    vcv_n = sum(inv_n[j] * c[:, j, :] @ s_j @ c[:, j, :].T for j, s_j in enumerate(cs.s))
    vcv_n = np.asarray(vcv_n, dtype=float)
    nonzero = np.abs(a_theta).max(axis=2).max(axis=0) > 0
    g_min = int(cs.g[int(nonzero.argmax())]) if nonzero.any() else int(cs.g[0])
    m = min(g_min, a_theta.shape[2])
    vcv = vcv_n.copy()
    if m > 0:
        keep = np.nonzero(cs.g >= g_min)[0]
        b = np.zeros((a_theta.shape[0], m))
        msm = np.zeros((m, m))
        for j in keep:
            pre = cs.s[j, :m, :m]
            b += a_theta[:, j, :] @ (_psd_pinv(pre) @ cs.s[j, :m, :]).T
            msm += pre
        vcv -= b @ (msm / len(keep)) @ b.T / cs.n.sum()
    neg = np.diag(vcv) < 0
    vcv[np.ix_(neg, neg)] = 0.0
    return vcv, vcv_n
