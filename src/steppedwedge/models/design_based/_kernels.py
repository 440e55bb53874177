r"""Numpy kernels of the design-based estimators (vertical, Hughes, synthetic control, crossover).

Everything works on a cluster-by-period matrix ``y`` (``I x T``) of cell summaries on the
analysis scale and 0/1 treatment matrices ``x`` (one ``(I, T)`` matrix, or a batch
``(B, I, T)`` of re-randomised ones).  Periods are the integers ``0 .. T - 1`` in calendar
order; a cluster's start is its first treated period.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import nnls

__all__ = [
    "combine_weights",
    "crossover_estimates",
    "hughes_variance",
    "period_contrasts",
    "sequence_weights",
    "simplex_least_squares",
    "synthetic_control",
    "synthetic_estimate",
]

CO_VARIANTS = ("CO-1", "CO-2", "CO-3", "CO-4")
SC_VARIANTS = ("SC-1", "SC-2")
MSPE_FLOOR = 1e-8  # as the authors' code: keeps 1 / MSPE finite for a perfect pre-period fit


# --------------------------------------------------------------------------------------
# vertical contrasts (Thompson et al. 2018) and Hughes et al. (2020)
# --------------------------------------------------------------------------------------
def period_contrasts(y: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per period: treated and control counts, means, pooled variance and the contrast.

    Cells with NaN ``y`` are left out; only fully treated (1) and control (0) cells count.
    """
    obs = np.isfinite(y)
    t1 = (x == 1) & obs
    t0 = (x == 0) & obs
    n1, n0 = t1.sum(axis=0).astype(float), t0.sum(axis=0).astype(float)
    yy = np.where(obs, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = (yy * t1).sum(axis=0) / n1
        m0 = (yy * t0).sum(axis=0) / n0
        ss = ((yy - m1) ** 2 * t1).sum(axis=0) + ((yy - m0) ** 2 * t0).sum(axis=0)
        s2 = ss / (n1 + n0 - 2.0)
    return {"n1": n1, "n0": n0, "mean1": m1, "mean0": m0, "contrast": m1 - m0, "s2": s2}


def combine_weights(pc: dict[str, np.ndarray], weights: str) -> np.ndarray:
    """Weights of the period contrasts (summing to 1 over the periods with both conditions)."""
    n1, n0 = pc["n1"], pc["n0"]
    both = (n1 > 0) & (n0 > 0)
    if weights == "clusters":
        w = np.where(both, n1 * n0 / np.where(both, n1 + n0, 1.0), 0.0)
    elif weights == "equal":
        w = both.astype(float)
    else:  # inverse-variance (Thompson): pooled between-cluster variance of the period
        ok = both & (n1 + n0 > 2) & (pc["s2"] > 1e-300)
        var = pc["s2"] * (1 / np.where(both, n1, 1.0) + 1 / np.where(both, n0, 1.0))
        w = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)
    tot = w.sum()
    return w / tot if tot > 0 else w


def sequence_weights(x: np.ndarray, weights: str, working_icc: float = 0.0) -> np.ndarray:
    r"""Cell coefficients ``A`` (``I x T``) with estimate ``sum(A * y)`` (fixed weights).

    ``"clusters"``: period contrasts weighted ``n1 n0 / (n1 + n0)``; ``"equal"``: the mean
    of the period contrasts; ``"exchangeable"``: the variance-optimal combination of the
    period contrasts when the cell summaries are exchangeable within a cluster with
    correlation ``working_icc`` (generalised least squares on the contrasts' covariance).
    The coefficients depend on the allocation only through each cluster's sequence.
    """
    t1, t0 = (x == 1).astype(float), (x == 0).astype(float)
    n1, n0 = t1.sum(axis=0), t0.sum(axis=0)
    both = (n1 > 0) & (n0 > 0)
    c = np.where(both, t1 / np.where(n1 > 0, n1, 1) - t0 / np.where(n0 > 0, n0, 1), 0.0)
    if weights == "clusters":
        w = np.where(both, n1 * n0 / np.where(both, n1 + n0, 1.0), 0.0)
    elif weights == "equal":
        w = both.astype(float)
    else:
        n_t = x.shape[1]
        v = (1.0 - working_icc) * np.eye(n_t) + working_icc * np.ones((n_t, n_t))
        cj = c[:, both]  # (I, J): contrast j = sum_i cj[i, j] y_ij
        cov = np.einsum("ij,jk,ik->jk", cj, v[np.ix_(both, both)], cj)
        wj = np.linalg.solve(cov, np.ones(cj.shape[1]))
        w = np.zeros(n_t)
        w[both] = wj
    out: np.ndarray = c * (w / w.sum())[None, :]
    return out


def hughes_variance(coef: np.ndarray, y0: np.ndarray) -> float:
    r"""Exact variance of ``sum(A_pi * y0)`` over random permutations of the clusters' sequences.

    Slot ``k`` carries cluster ``k``'s observed sequence (coefficients ``coef[k]``); under a
    uniformly random assignment of the slots to the clusters the estimator is
    ``sum_i M[pi(i), i]`` with ``M[k, i] = coef[k] . y0[i]``, whose variance is Hoeffding's
    (1951) ``sum_{k,i} D[k, i]^2 / (I - 1)`` for the doubly centred ``D``.
    """
    m = coef @ y0.T  # (I slots, I clusters)
    d = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
    return float((d**2).sum() / (m.shape[0] - 1))


# --------------------------------------------------------------------------------------
# Kennedy-Shaffer, de Gruttola & Lipsitch (2020)
# --------------------------------------------------------------------------------------
def crossover_estimates(y: np.ndarray, x: np.ndarray, variant: str) -> np.ndarray:
    r"""Crossover (CO) estimates for a batch ``x`` (``(B, I, T)``): ``(B,)``.

    For each period ``j >= 1`` the within-cluster change ``y_ij - y_i,j-1`` of the clusters
    switching at ``j`` minus the mean change of the comparison clusters: control in both
    periods (CO-1, CO-2) or also those treated in both (CO-3, CO-4); periods combined with
    equal weights (CO-1, CO-3) or ``(1 / n_switch + 1 / n_comparison)^-1`` (CO-2, CO-4).
    """
    d = y[:, 1:] - y[:, :-1]  # (I, T-1)
    fin = np.isfinite(d)
    d0 = np.where(fin, d, 0.0)
    kind = x[:, :, 1:] + x[:, :, :-1]  # 0 control both, 1 switching, 2 treated both
    sw = ((kind == 1) & fin).astype(float)
    cmp_ = ((kind == 0) | ((kind == 2) & (variant in ("CO-3", "CO-4")))) & fin
    cm = cmp_.astype(float)
    n1, n0 = sw.sum(axis=1), cm.sum(axis=1)  # (B, T-1)
    ok = (n1 > 0) & (n0 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = (np.einsum("bit,it->bt", sw, d0) / n1) - (np.einsum("bit,it->bt", cm, d0) / n0)
        if variant in ("CO-2", "CO-4"):
            w = np.where(ok, 1.0 / (1.0 / np.where(ok, n1, 1) + 1.0 / np.where(ok, n0, 1)), 0.0)
        else:
            w = ok.astype(float)
        tot = w.sum(axis=1)
        out: np.ndarray = np.where(
            tot > 0, (np.where(ok, est, 0.0) * w).sum(axis=1) / np.where(tot > 0, tot, 1), np.nan
        )
    return out


def simplex_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""``argmin ||a w - b||^2`` over ``w >= 0, sum(w) = 1`` (the synthetic-control weights).

    Non-negative least squares with the sum constraint as a heavily weighted extra row
    (weight ``1e4`` times the scale of ``a``): ``sum(w)`` is 1 to ~1e-8 and the weights are
    the constrained minimiser to that precision.
    """
    scale = 1e4 * (float(np.abs(a).max()) + float(np.abs(b).max()) + 1.0)
    aa = np.vstack([a, scale * np.ones((1, a.shape[1]))])
    bb = np.concatenate([b, [scale]])
    w, _ = nnls(aa, bb, maxiter=50 * a.shape[1] + 100)
    out: np.ndarray = w / w.sum()
    return out


def synthetic_control(y: np.ndarray, x: np.ndarray) -> list[tuple[int, int, int, float, float]]:
    r"""Synthetic-control contrasts ``(period, cluster, start, contrast, MSPE)``.

    In each period ``j`` with treated and control clusters, every treated cluster ``i``
    (start ``s_i``) is compared with a convex combination of the clusters still in control
    at ``j``, weighted to fit ``i``'s summaries over its pre-start periods ``0 .. s_i - 1``
    (:func:`simplex_least_squares`); the MSPE is the mean squared pre-period misfit (floored
    at ``1e-8``).  In the first period the comparison is the plain control mean (MSPE
    ``1e-8``, as the authors' code).  With a single control cluster it is that cluster.
    """
    n_i, n_t = x.shape
    start = np.where(x.any(axis=1), x.argmax(axis=1), n_t)
    out = []
    for j in range(n_t):
        treated = np.flatnonzero(x[:, j] == 1)
        control = np.flatnonzero(x[:, j] == 0)
        if treated.size == 0 or control.size == 0:
            continue
        for i in treated:
            pre = slice(0, int(start[i]))
            if j == 0:
                synth, mspe = float(np.mean(y[control, j])), MSPE_FLOOR
            else:
                a, b = y[control, pre].T, y[i, pre]
                w = np.ones(1) if control.size == 1 else simplex_least_squares(a, b)
                synth = float(w @ y[control, j])
                mspe = max(MSPE_FLOOR, float(np.mean((b - a @ w) ** 2)))
            out.append((j, int(i), int(start[i]), float(y[i, j] - synth), mspe))
    return out


def synthetic_estimate(contrasts: list[tuple[int, int, int, float, float]], variant: str) -> float:
    """SC-1: mean of the contrasts; SC-2: inverse-MSPE weights, each start group weighing 1."""
    if not contrasts:
        return math.nan
    c = np.array([r[3] for r in contrasts])
    if variant == "SC-1":
        return float(c.mean())
    start = np.array([r[2] for r in contrasts])
    inv = 1.0 / np.array([r[4] for r in contrasts])
    group = {s: inv[start == s].sum() for s in np.unique(start)}
    wt = inv / np.array([group[s] for s in start])
    return float((c * wt).sum() / wt.sum())
