r"""Numpy kernels for randomisation (permutation) tests of stepped-wedge trials.

Everything works on cluster-period *cell* arrays of shape ``(I, T)`` (one summary per cell,
NaN or a ``False`` mask where a cell is not observed) and on batches of treatment matrices
of shape ``(B, I, T)``, one per re-randomised allocation.

* :func:`twfe_statistics` -- the two-way fixed-effects (cluster + period dummies) least
  squares coefficient of treatment on the cell summaries.  For a fixed observation pattern
  and fixed cell weights the coefficient is ``x' K y / x' K x`` with the weighted
  annihilator ``K = W - W D (D' W D)^+ D' W`` of the cluster and period dummies ``D``.
  ``K`` is computed once per distinct observation pattern, so a batch of ``B`` allocations
  costs two matrix products.
* :func:`vertical_statistics` -- the within-period ("vertical") comparison of Thompson et
  al. (2018): per period the difference of the mean cell summary of treated and control
  clusters, combined over periods with weights ``n1 n0 / (n1 + n0)`` (numbers of clusters)
  or inverse-variance weights.
* :func:`twfe_weights` and :func:`vertical_weights` -- the coefficients of those (linear)
  statistics, so that a statistic recomputed for shifted outcomes costs one product.
* :func:`permutation_pvalue` and :func:`invert_test` -- p-value conventions and the
  bracketing root search that inverts a test into a confidence interval.

This module imports only numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "invert_test",
    "permutation_pvalue",
    "treatment_batch",
    "twfe_annihilator",
    "twfe_statistics",
    "twfe_weights",
    "vertical_statistics",
    "vertical_weights",
]

FloatArray = npt.NDArray[np.float64]
Alternative = Literal["two-sided", "greater", "less"]

#: Relative tolerance used when comparing permuted statistics with the observed one, so
#: that allocations whose statistics are mathematically equal count as ties.
TIE_RTOL = 1e-9


def treatment_batch(
    sequence_matrix: FloatArray, assignments: npt.NDArray[np.integer], columns: npt.NDArray[np.intp]
) -> FloatArray:
    """Treatment matrices ``(B, I, T)`` of a batch of allocations.

    Parameters
    ----------
    sequence_matrix : (S, T) array
        Treatment row of each sequence (NaN = cell not observed in that sequence).
    assignments : (B, I') int array
        0-based sequence of each allocated unit, in the allocation's column order.
    columns : (I,) int array
        For each cluster (row of the output), its column in ``assignments``.
    """
    a = np.asarray(assignments, dtype=np.intp)
    if a.ndim == 1:
        a = a[None, :]
    out: FloatArray = np.asarray(sequence_matrix, dtype=np.float64)[a[:, columns]]
    return out


def twfe_annihilator(mask: npt.NDArray[np.bool_], weights: FloatArray) -> FloatArray:
    r"""Weighted annihilator of cluster and period dummies over the observed cells.

    Returns ``K = W - W D (D' W D)^+ D' W`` (``n_obs x n_obs``, cells in C order of
    ``mask``), so that the weighted least-squares coefficient of ``x`` in the regression
    of ``y`` on ``x`` and the dummies is ``x' K y / x' K x``.
    """
    ii, jj = np.nonzero(mask)
    n_i, n_t = mask.shape
    n = ii.size
    w = np.asarray(weights, dtype=np.float64)[ii, jj]
    d = np.zeros((n, n_i + n_t))
    d[np.arange(n), ii] = 1.0
    d[np.arange(n), n_i + jj] = 1.0
    wd = d * w[:, None]
    gram = d.T @ wd
    proj = wd @ np.linalg.pinv(gram, rcond=1e-12, hermitian=True) @ wd.T
    k: FloatArray = np.diag(w) - proj
    sym: FloatArray = 0.5 * (k + k.T)
    return sym


def _pattern_groups(
    mask: npt.NDArray[np.bool_], x: FloatArray
) -> list[tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]]:
    """Group the allocations of a batch by their observation pattern ``mask & ~isnan(x)``."""
    nan = np.isnan(x)
    if not nan[:, mask].any():
        return [(mask, np.arange(x.shape[0]))]
    patt = mask[None, :, :] & ~nan
    flat = np.packbits(patt.reshape(patt.shape[0], -1), axis=1)
    uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    out = []
    for g in range(uniq.shape[0]):
        idx = np.flatnonzero(inverse == g)
        out.append((patt[idx[0]], idx))
    return out


def twfe_statistics(
    y: FloatArray,
    x: FloatArray,
    mask: npt.NDArray[np.bool_],
    weights: FloatArray | None = None,
    *,
    cache: dict[bytes, FloatArray] | None = None,
) -> FloatArray:
    r"""Two-way fixed-effects treatment coefficients for a batch of treatment matrices.

    Parameters
    ----------
    y : (I, T) or (R, I, T) array
        Cell summaries (values outside ``mask`` are ignored); ``R`` outcome replicates.
    x : (B, I, T) array
        Treatment matrices; a NaN cell is left out for that allocation.
    mask : (I, T) bool array
        Observed cells.
    weights : (I, T) array, optional
        Cell weights (default 1).
    cache : dict, optional
        Annihilators by observation pattern, reused across calls.

    Returns
    -------
    numpy.ndarray
        ``(B,)`` for a 2-D ``y``, else ``(R, B)``.  NaN where the treatment is collinear
        with the dummies.
    """
    y = np.asarray(y, dtype=np.float64)
    single = y.ndim == 2
    yr = y[None] if single else y
    w = np.ones(mask.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.full((yr.shape[0], x.shape[0]), np.nan)
    for patt, idx in _pattern_groups(mask, x):
        key = np.packbits(patt).tobytes() + patt.shape[0].to_bytes(4, "little")
        k = None if cache is None else cache.get(key)
        if k is None:
            k = twfe_annihilator(patt, w)
            if cache is not None:
                cache[key] = k
        xs = x[idx][:, patt]  # (b, n)
        ys = yr[:, patt]  # (R, n)
        xk = xs @ k
        den = np.einsum("bn,bn->b", xk, xs)
        num = ys @ xk.T  # (R, b)
        scale = np.einsum("bn,bn->b", xs, xs * w[patt][None, :])
        ok = den > 1e-10 * np.maximum(scale, 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, idx] = np.where(ok[None, :], num / den[None, :], np.nan)
    return out[0] if single else out


def twfe_weights(
    x: FloatArray,
    mask: npt.NDArray[np.bool_],
    weights: FloatArray | None = None,
    *,
    cache: dict[bytes, FloatArray] | None = None,
) -> FloatArray:
    r"""Coefficients ``A`` with ``twfe_statistics(y, x)[b] = sum(A[b] * y)`` for every ``y``.

    For a fixed treatment matrix the two-way fixed-effects coefficient ``x' K y / x' K x``
    is linear in the cell summaries, so once ``A`` is known the statistic of a batch of
    allocations costs one ``(B, I T)`` product for any outcome (used to invert the test).

    Parameters
    ----------
    x : (B, I, T) array
        Treatment matrices (NaN = cell left out for that allocation).
    mask : (I, T) bool array
    weights : (I, T) array, optional
    cache : dict, optional
        Annihilators by observation pattern.

    Returns
    -------
    numpy.ndarray
        ``(B, I, T)``; a row of NaN where the treatment is collinear with the dummies.
    """
    w = np.ones(mask.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.zeros(x.shape)
    for patt, idx in _pattern_groups(mask, x):
        key = np.packbits(patt).tobytes() + patt.shape[0].to_bytes(4, "little")
        k = None if cache is None else cache.get(key)
        if k is None:
            k = twfe_annihilator(patt, w)
            if cache is not None:
                cache[key] = k
        xs = x[idx][:, patt]
        xk = xs @ k
        den = np.einsum("bn,bn->b", xk, xs)
        scale = np.einsum("bn,bn->b", xs, xs * w[patt][None, :])
        ok = den > 1e-10 * np.maximum(scale, 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = np.where(ok[:, None], xk / den[:, None], np.nan)
        block = np.zeros((idx.size, *mask.shape))
        block[:, patt] = rows
        block[~ok] = np.nan
        out[idx] = block
    return out


def vertical_weights(x: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    r"""Coefficients ``A`` of the cluster-weighted vertical statistic (``sum(A[b] * y)``).

    With weights ``w_j = n1 n0 / (n1 + n0)`` the statistic of :func:`vertical_statistics`
    is ``sum_j w_j (mean_{x=1} y_ij - mean_{x=0} y_ij) / sum_j w_j``, linear in ``y``.

    Parameters
    ----------
    x : (B, I, T) array
    mask : (I, T) bool array

    Returns
    -------
    numpy.ndarray
        ``(B, I, T)``; NaN rows where no period has both conditions.
    """
    t1 = ((x == 1.0) & mask[None]).astype(np.float64)
    t0 = ((x == 0.0) & mask[None]).astype(np.float64)
    n1 = t1.sum(axis=1, keepdims=True)
    n0 = t0.sum(axis=1, keepdims=True)
    both = (n1 > 0) & (n0 > 0)
    w = np.where(both, n1 * n0 / np.where(both, n1 + n0, 1.0), 0.0)  # (B, 1, T)
    tot = w.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = w * (t1 / np.where(n1 > 0, n1, 1.0) - t0 / np.where(n0 > 0, n0, 1.0))
        out: FloatArray = np.where(tot > 0, coef / np.where(tot > 0, tot, 1.0), np.nan)
    return out


def vertical_statistics(
    y: FloatArray,
    x: FloatArray,
    mask: npt.NDArray[np.bool_],
    weights: Literal["clusters", "inverse-variance"] = "clusters",
) -> FloatArray:
    r"""Within-period (vertical) treated-minus-control comparisons, combined over periods.

    Per period ``j`` with at least one treated (``x == 1``) and one control (``x == 0``)
    observed cell, ``d_j = mean_{x=1} y_ij - mean_{x=0} y_ij``; cells with partial exposure
    (``0 < x < 1``) or NaN treatment are left out.  The statistic is
    ``sum_j w_j d_j / sum_j w_j`` with ``w_j = n1_j n0_j / (n1_j + n0_j)`` (``"clusters"``)
    or ``w_j = 1 / (s2_j (1/n1_j + 1/n0_j))`` (``"inverse-variance"``; ``s2_j`` is the
    pooled between-cluster variance of the period's cell summaries, ``n1_j + n0_j - 2``
    degrees of freedom; periods with fewer than 3 clusters or ``s2_j = 0`` get weight 0).

    Parameters
    ----------
    y : (I, T) array
    x : (B, I, T) array
    mask : (I, T) bool array
    weights : {"clusters", "inverse-variance"}

    Returns
    -------
    numpy.ndarray
        ``(B,)``; NaN when no period has both conditions.
    """
    y0 = np.where(mask, np.asarray(y, dtype=np.float64), 0.0)
    t1 = ((x == 1.0) & mask[None]).astype(np.float64)
    t0 = ((x == 0.0) & mask[None]).astype(np.float64)
    n1 = t1.sum(axis=1)
    n0 = t0.sum(axis=1)
    both = (n1 > 0) & (n0 > 0)
    s1 = np.einsum("bit,it->bt", t1, y0)
    s0 = np.einsum("bit,it->bt", t0, y0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.where(n1 > 0, s1 / np.where(n1 > 0, n1, 1.0), 0.0)
        m0 = np.where(n0 > 0, s0 / np.where(n0 > 0, n0, 1.0), 0.0)
        d = m1 - m0
        if weights == "clusters":
            w = np.where(both, n1 * n0 / np.where(both, n1 + n0, 1.0), 0.0)
        else:
            ss1 = np.einsum("bit,it->bt", t1, y0 * y0) - n1 * m1 * m1
            ss0 = np.einsum("bit,it->bt", t0, y0 * y0) - n0 * m0 * m0
            dfree = n1 + n0 - 2.0
            s2 = np.maximum(ss1 + ss0, 0.0) / np.where(dfree > 0, dfree, 1.0)
            use = both & (dfree > 0) & (s2 > 1e-300)
            var = s2 * (1.0 / np.where(n1 > 0, n1, 1.0) + 1.0 / np.where(n0 > 0, n0, 1.0))
            w = np.where(use, 1.0 / np.where(use, var, 1.0), 0.0)
        tot = w.sum(axis=1)
        stat = np.where(tot > 0, (w * d).sum(axis=1) / np.where(tot > 0, tot, 1.0), np.nan)
    return stat


def permutation_pvalue(
    observed: float,
    null: FloatArray,
    alternative: Alternative = "two-sided",
    *,
    exact: bool = False,
) -> float:
    r"""Randomisation p-value.

    Two-sided: extremeness is ``|T|``; ``"greater"``: ``T``; ``"less"``: ``-T``.  With
    ``exact=True`` ``null`` is the statistic over the whole admissible space (which
    contains the observed allocation) and ``p = #{extreme} / N``; otherwise ``null`` holds
    ``B`` Monte-Carlo draws and ``p = (1 + #{extreme}) / (1 + B)`` (the observed
    allocation counted once).  Ties (within :data:`TIE_RTOL`) count as extreme.
    """
    null = np.asarray(null, dtype=np.float64)
    if alternative == "two-sided":
        a, z = abs(observed), np.abs(null)
    elif alternative == "greater":
        a, z = observed, null
    else:
        a, z = -observed, -null
    finite = z[np.isfinite(z)]
    scale = max(abs(a), float(np.max(np.abs(finite))) if finite.size else 0.0, 1e-300)
    hits = int(np.count_nonzero(finite >= a - TIE_RTOL * scale))
    if exact:
        return hits / max(finite.size, 1)
    return (1 + hits) / (1 + finite.size)


def invert_test(
    pvalue: Callable[[float], float],
    estimate: float,
    scale: float,
    alpha: float,
    *,
    rtol: float = 1e-7,
    max_doublings: int = 60,
    max_distance: float = np.inf,
) -> tuple[float, float]:
    r"""Confidence set ``{theta0 : p(theta0) > alpha}`` as an interval, by bracketing search.

    From ``estimate`` (where the test accepts) step outwards by ``scale``, doubling the step
    until ``p <= alpha``, then bisect to a width of ``rtol * scale``.  The bound returned is
    the outermost accepted point found (the set is assumed to be an interval; a step
    function p-value makes its ends exact up to the bisection width).  An end is infinite
    when no rejection is found within ``max_distance`` of ``estimate`` (or
    ``max_doublings`` steps).

    Returns
    -------
    tuple of float
        ``(low, high)``; an end is ``-inf``/``inf`` if no rejection is found.
    """
    if not np.isfinite(scale) or scale <= 0:
        scale = max(abs(estimate), 1.0)
    # p-values are ratios of integers: 1 - 0.9 = 0.09999999999999998 must still reject
    # p = 9/90, so compare with a little slack
    alpha = alpha + 1e-12
    ends = []
    for sign in (-1.0, 1.0):
        inside = estimate
        step = scale
        outside = None
        for _ in range(max_doublings):
            cand = estimate + sign * min(step, max_distance)
            if pvalue(cand) <= alpha:
                outside = cand
                break
            inside = cand
            if step >= max_distance:
                break
            step *= 2.0
        if outside is None:
            ends.append(sign * np.inf)
            continue
        while abs(outside - inside) > rtol * scale:
            mid = 0.5 * (inside + outside)
            if pvalue(mid) > alpha:
                inside = mid
            else:
                outside = mid
        ends.append(inside)
    return float(ends[0]), float(ends[1])
