"""Laplace approximation to the GLMM log-likelihood with exact gradients, vectorised over clusters.

Model (per cluster ``i``, units ``u`` = cluster-period cells or groups of rows)::

    eta_iu = x_iu' beta + offset_iu + z_iu' Lambda v_i,    v_i ~ N(0, I_q)

with ``Lambda = diag(sigma[comp])``: every random-effect column ``j`` belongs to one
variance component ``comp[j]`` (cluster intercept, cluster-period, treatment slope) whose
standard deviation ``sigma`` is an outer parameter (``sigma >= 0``, lme4's spherical
parametrisation, so a zero variance is an ordinary boundary point).

An optional AR(1) block (``UnitData.ar1 = (start, T)``: columns ``start .. start+T-1``, one
per period) makes ``Lambda`` lower triangular there: ``Lambda_block = gamma * L(r)`` with
``L(r)`` the Cholesky factor of the AR(1) correlation matrix ``R_jk = r^|j-k|``, in closed
form ``L[j, 0] = r^j``, ``L[j, k] = r^(j-k) sqrt(1 - r^2)`` (``1 <= k <= j``), so that the
block's effects ``b = gamma L v`` have covariance ``gamma^2 R(r)`` (glmmTMB's
``ar1(period + 0 | cluster)``).  The correlation is an extra outer parameter on an unbounded
scale, ``r = tanh(phi)`` (``-1 < r < 1``: negative correlations allowed, as in glmmTMB), the
last entry of the variance-parameter vector ``sigma``.

For given ``(beta, sigma, alpha)`` the conditional modes ``v_i`` maximise the penalised
log-likelihood ``f_i(v) = sum_u ll_iu - v'v / 2`` (Newton with step halving, all clusters
at once on ``(I, q, q)`` arrays).  The Laplace log-likelihood is

    L = sum_i [ f_i(v_i) - log|H_i| / 2 ] + const,     H_i = I + A_i' W_i A_i,   A_i = Z_i Lambda

with ``W`` the observed information (so the approximation is the one glmmTMB/TMB make;
for canonical links it is also lme4's).  Its gradient with respect to ``beta``, ``sigma``
and the NB log-size ``alpha`` is exact: the envelope theorem for the first term and the
implicit-function derivative of the modes for ``log|H|``, which brings in the third
derivative ``w1 = dW/deta``.  For a variance parameter ``t`` with ``D = dLambda/dt`` the
derivative is

    dL/dt = s' Z D v - [ 2 tr(H^-1 A'W Z D) + sum_u w1_u d_u deta_u ] / 2,
    deta = Z D v + A dv,   dv = H^-1 (D' Z' s - A' W Z D v),   d_u = a_u' H^-1 a_u,

(``D = E_k``, the indicator of component ``k``, for a standard deviation; ``D = L(r)`` for
the AR(1) SD and ``gamma dL/dphi`` for its correlation, with ``dL/dphi = (1 - r^2) dL/dr``
in closed form).  The Hessian of ``-L`` in the variance parameters, which the outer
Newton iterations and the reported standard errors use, is in closed form too
(:mod:`~steppedwedge._core.laplace_hessian`).  Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import lapack

from .agq import agq_value_grad
from .blas import single_threaded_blas
from .families import Family
from .laplace_hessian import variance_hessian

__all__ = [
    "UnitData",
    "LaplaceState",
    "ar1_factor",
    "cluster_beta_hessians",
    "modes",
    "laplace",
    "laplace_grad",
]


@dataclass(frozen=True)
class UnitData:
    """Units of all clusters, padded to a common number of units per cluster.

    Attributes
    ----------
    y, n, offset, weight : (I, U) arrays
        Counts/events, trials (binomial; 1 otherwise), offsets, and 1 for real units, 0
        for padding.
    x : (I, U, p) array
        Fixed-effect design.
    z : (I, U, q) array
        Random-effect design (columns grouped by ``comp``).
    comp : (q,) int array
        Variance component of each random-effect column.
    n_comp : int
        Number of variance components.
    const : float
        Data-only log-likelihood constant (summed over units).
    tail_start : int or None
        Random-effect columns from here on are one-hot (at most one nonzero per unit) and
        uncorrelated: the Laplace Hessian is an arrowhead.
    ar1 : (int, int) or None
        ``(start, T)``: columns ``start .. start + T - 1`` (one per period, all of
        component ``comp[start]``) form an AR(1) block; the variance-parameter vector then
        has ``n_comp + 1`` entries, the last being ``phi`` with ``r = tanh(phi)``.
    ar1_times : (T,) array or None
        Positions of the AR(1) block's periods (continuous-time decay,
        ``R_jk = r^|t_j - t_k|``); None for ``0 .. T-1``.  With fractional gaps ``r`` must be
        positive, and the fitter bounds ``phi`` below by :data:`PHI_MIN_TIME`.
    """

    y: np.ndarray
    n: np.ndarray
    offset: np.ndarray
    weight: np.ndarray
    x: np.ndarray
    z: np.ndarray
    comp: np.ndarray
    n_comp: int
    const: float = 0.0
    tail_start: int | None = None
    ar1: tuple[int, int] | None = None
    ar1_times: np.ndarray | None = None

    @property
    def n_var(self) -> int:
        """Number of variance parameters: the SDs, plus ``phi`` with an AR(1) block."""
        return self.n_comp + (1 if self.ar1 is not None else 0)


@dataclass
class LaplaceState:
    """Conditional modes and the pieces of the Laplace approximation at one parameter value."""

    v: np.ndarray  # (I, q) modes (spherical scale)
    eta: np.ndarray  # (I, U)
    ll: np.ndarray  # (I, U) weighted unit log-likelihoods
    s: np.ndarray
    w: np.ndarray
    w1: np.ndarray
    a: np.ndarray  # (I, U, q)  Z Lambda
    h: np.ndarray  # (I, q, q)
    hinv: np.ndarray  # (I, q, q)
    logdet: np.ndarray  # (I,)
    converged: bool
    value: float
    per_cluster: np.ndarray | None = None  # (I,) cluster contributions (without the constant)


def ar1_factor(r: Any, t: int, deriv: bool = False, times: Any = None) -> Any:
    """Cholesky factor of the AR(1) correlation matrix ``R_jk = r^|j-k|`` (and ``dL/dphi``).

    ``r`` is a scalar or an array of shape ``(I,)`` (one factor per cluster).  Closed form:
    ``L[j, 0] = r^j``, ``L[j, k] = r^(j-k) s`` for ``1 <= k <= j`` with ``s = sqrt(1 - r^2)``;
    with ``deriv`` also ``dL/dphi`` for ``r = tanh(phi)`` (``dr/dphi = s^2``):
    ``j r^(j-1) s^2`` in column 0 and ``(j-k) r^(j-k-1) s^3 - r^(j-k+1) s`` elsewhere.

    With ``times`` (unequal gaps ``d_k = t_k - t_{k-1}``: continuous-time decay
    ``R_jk = r^|t_j - t_k|``) the factor is that of ``b_0 = e_0``,
    ``b_j = rho_j b_{j-1} + sqrt(1 - rho_j^2) e_j`` with ``rho_j = r^(d_j)``:
    ``L[j, k] = r^(t_j - t_k) s_k`` with ``s_0 = 1``, ``s_k = sqrt(1 - r^(2 d_k))``, and
    ``dL/dr = e r^(e-1) s_k - r^e d_k r^(2 d_k - 1) / s_k`` (``e = t_j - t_k``), times
    ``dr/dphi = 1 - r^2``.

    Parameters
    ----------
    r : float or numpy.ndarray
        Lag-1 correlation(s), ``-1 < r < 1`` (``0 < r < 1`` with fractional ``times``).
    t : int
        Number of periods.
    deriv : bool
        Also return the derivative with respect to ``phi = atanh(r)``.
    times : array_like of shape (t,), optional
        Increasing period positions; None for ``0 .. t-1`` (the closed form above).

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``L`` with shape ``(t, t)`` (or ``(I, t, t)``), and ``dL/dphi`` with ``deriv``.

    Examples
    --------
    >>> import numpy as np
    >>> lo = ar1_factor(0.6, 4)
    >>> bool(np.allclose(lo @ lo.T, 0.6 ** np.abs(np.subtract.outer(range(4), range(4)))))
    True
    """
    r = np.asarray(r, dtype=float)
    if r.ndim == 0 or (r.ndim == 1 and r.size > 1):
        # the optimiser asks for the same few factors again and again, and batched
        # evaluations repeat each r once per cluster: build each distinct factor once
        key_t = None if times is None else tuple(np.asarray(times, dtype=float).tolist())
        if r.ndim == 0:  # a copy: the cached arrays are read-only
            out = _ar1_cached(float(r), t, deriv, key_t)
            return (out[0].copy(), out[1].copy()) if deriv else out.copy()
        uniq, inverse = np.unique(r, return_inverse=True)
        if uniq.size < r.size:
            outs = [_ar1_cached(float(u), t, deriv, key_t) for u in uniq]
            if deriv:
                return tuple(np.stack([o[m] for o in outs])[inverse] for m in range(2))
            return np.stack(outs)[inverse]
    return _ar1_compute(r, t, deriv, times)


#: Cache of AR(1) factors by ``(r, t, deriv, times)`` (read-only arrays; cleared when full).
_AR1_CACHE: dict[tuple[Any, ...], Any] = {}
_AR1_CACHE_SIZE = 256


def _ar1_cached(r: float, t: int, deriv: bool, times: tuple[float, ...] | None) -> Any:
    """:func:`ar1_factor` of one scalar ``r``, memoised (the same bits as computing it)."""
    key = (r, t, deriv, times)
    out = _AR1_CACHE.get(key)
    if out is None:
        out = _ar1_compute(np.asarray(r), t, deriv, None if times is None else np.array(times))
        for arr in out if deriv else (out,):
            arr.flags.writeable = False
        if len(_AR1_CACHE) >= _AR1_CACHE_SIZE:
            _AR1_CACHE.clear()
        _AR1_CACHE[key] = out
    return out


def _ar1_compute(r: np.ndarray, t: int, deriv: bool, times: Any) -> Any:
    """Compute :func:`ar1_factor` from its closed forms (``r`` of any shape, no caching)."""
    if times is not None:
        return _ar1_factor_times(r, np.asarray(times, dtype=float), deriv)
    r = r[..., None, None]
    j = np.arange(t)
    e = j[:, None] - j[None, :]
    low = e >= 0
    ee = np.where(low, e, 0)
    pw = r**ee
    s = np.sqrt(np.maximum(1.0 - r * r, 0.0))
    first = j[None, :] == 0
    lo = np.where(low, np.where(first, pw, pw * s), 0.0)
    if not deriv:
        return lo
    epw = np.where(ee >= 1, ee * r ** np.maximum(ee - 1, 0), 0.0)  # e r^(e-1), 0 at e = 0
    s2 = s * s
    dlo = np.where(low, np.where(first, epw * s2, epw * s2 * s - pw * r * s), 0.0)
    return lo, dlo


def _ar1_factor_times(r: np.ndarray, times: np.ndarray, deriv: bool) -> Any:
    """:func:`ar1_factor` on increasing positions ``times`` (any positive gaps, ``r > 0``)."""
    r = r[..., None, None]
    e = times[:, None] - times[None, :]
    low = e >= 0
    ee = np.where(low, e, 0.0)
    gap = np.r_[0.0, np.diff(times)]  # d_k, column-wise; column 0 has s_0 = 1
    first = np.arange(times.size)[None, :] == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pw = np.where(ee == 0, 1.0, r**ee)
        rho2 = r ** (2.0 * gap)
        s = np.where(first, 1.0, np.sqrt(np.maximum(1.0 - rho2, 0.0)))
        lo = np.where(low, pw * s, 0.0)
        if not deriv:
            return lo
        dpw = np.where(ee == 0, 0.0, ee * r ** (ee - 1.0))
        ds = np.where(first, 0.0, -gap * r ** (2.0 * gap - 1.0) / s)
        dlo = np.where(low, (dpw * s + pw * ds) * (1.0 - r * r), 0.0)
    return lo, dlo


def _design_a(data: UnitData, sigma: np.ndarray) -> np.ndarray:
    """Return ``A = Z Lambda`` for variance parameters ``sigma`` ((n_var,) or (I, n_var))."""
    lam = sigma[..., data.comp]
    a = data.z * (lam if lam.ndim == 1 else lam[:, None, :])
    if data.ar1 is not None:
        s0, t = data.ar1
        lo = ar1_factor(np.tanh(sigma[..., data.n_comp]), t, times=data.ar1_times)
        a[:, :, s0 : s0 + t] = a[:, :, s0 : s0 + t] @ lo
    return np.asarray(a)


def _pieces(
    data: UnitData, fam: Family, eta: np.ndarray, alpha: Any, order: int = 3
) -> tuple[np.ndarray, ...]:
    ll, s, w, w1 = fam.derivs(data.y, data.n, eta, alpha)
    wt = data.weight
    return ll * wt, s * wt, w * wt, w1 * wt


def _chol_inv_logdet(h: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inverse and log-determinant of SPD blocks by a batched Cholesky factorisation.

    ``H = C C'``: ``log|H| = 2 sum log diag C``; ``C^-1`` by vectorised forward substitution
    (one step per row), ``H^-1 = C^-T C^-1``.  ``None`` when some block is not positive
    definite (the caller falls back to LU, which reports it).
    """
    try:
        c = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        return None
    return _chol_inverse(c)


def _chol_inverse(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H^-1, log|H|)`` from the batched lower Cholesky factors ``c`` of ``H``.

    ``C^-1`` block by block with LAPACK ``dtrtri`` (a loop over the blocks: several times
    faster than numpy's batched inverse for blocks of this size), ``H^-1 = C^-T C^-1``.
    """
    diag = np.diagonal(c, axis1=1, axis2=2)
    cinv = np.empty_like(c)
    for i in range(c.shape[0]):
        cinv[i], info = lapack.dtrtri(c[i], lower=1)
        if info != 0:  # a zero pivot: the block is singular (the callers check logdet)
            cinv[i] = np.nan
    return cinv.transpose(0, 2, 1) @ cinv, 2.0 * np.log(diag).sum(axis=1)


def _dense(h: np.ndarray, tail_start: int | None) -> bool:
    """Whether the blocks are dense and large enough for the Cholesky path."""
    return bool(
        (tail_start is None or tail_start == 0 or tail_start >= h.shape[1]) and h.shape[1] >= 8
    )


def _newton_step(
    h: np.ndarray, g: np.ndarray, tail_start: int | None, pd: bool = False
) -> tuple[np.ndarray | None, Any]:
    """Newton step ``H^-1 g`` for the modes and the factorisation it used (``None``: not PD).

    Dense blocks: Cholesky (the positive-definiteness check and, later, the inverse), with
    the step from one batched LAPACK solve for up to 100 blocks or two vectorised triangular
    solves for more (the inverse is formed only once the modes have converged); with ``pd``
    (``H = I + A'WA`` with ``W >= 0``, positive definite by construction) up to 100 blocks
    are solved directly, without the check.  Otherwise the inverse of :func:`_inv_logdet`.
    """
    if _dense(h, tail_start):
        if pd and h.shape[0] <= 100:
            try:
                return np.linalg.solve(h, g[:, :, None])[:, :, 0], ("pd",)
            except np.linalg.LinAlgError:  # singular in floating point (huge A): checked below
                pass
        try:
            c = np.linalg.cholesky(h)
        except np.linalg.LinAlgError:
            c = None
        if c is not None:
            q = h.shape[1]
            if h.shape[0] <= 100:  # few blocks: one batched LAPACK solve beats the row loops
                return np.linalg.solve(h, g[:, :, None])[:, :, 0], ("chol", c)
            y = np.empty_like(g)
            for i in range(q):  # C y = g
                y[:, i] = (g[:, i] - (c[:, i, :i] * y[:, :i]).sum(axis=1)) / c[:, i, i]
            x = np.empty_like(g)
            for i in range(q - 1, -1, -1):  # C' x = y
                x[:, i] = (y[:, i] - (c[:, i + 1 :, i] * x[:, i + 1 :]).sum(axis=1)) / c[:, i, i]
            return x, ("chol", c)
    hinv, logdet = _inv_logdet(h, tail_start)
    if np.all(np.isfinite(logdet)):
        return (hinv @ g[:, :, None])[:, :, 0], ("inv", hinv, logdet)
    return None, None


def _inv_logdet(h: np.ndarray, tail_start: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log-determinant of the SPD blocks ``h``; closed form for an arrowhead.

    With ``tail_start = m`` the trailing block ``h[m:, m:]`` is diagonal (one-hot random-effect
    columns such as cluster-period effects), so only an ``m x m`` Schur complement is inverted.
    Returns ``logdet = inf`` where a block is not positive definite.
    """
    if tail_start is None or tail_start == 0 or tail_start >= h.shape[1]:
        if h.shape[1] >= 8:  # dense blocks (AR(1) periods): Cholesky beats LU inv + slogdet
            out = _chol_inv_logdet(h)
            if out is not None:
                return out
        sign, logdet = np.linalg.slogdet(h)
        logdet = np.where(sign > 0, logdet, np.inf)
        try:
            return np.linalg.inv(h), logdet
        except np.linalg.LinAlgError:
            return np.full_like(h, np.nan), np.full(h.shape[0], np.inf)
    m = tail_start
    a = h[:, :m, :m]
    b = h[:, :m, m:]
    dd = np.diagonal(h[:, m:, m:], axis1=1, axis2=2)
    if np.any(dd <= 0):
        return np.full_like(h, np.nan), np.full(h.shape[0], np.inf)
    dinv = 1.0 / dd
    e = b * dinv[:, None, :]  # (I, m, T)
    schur = a - e @ b.transpose(0, 2, 1)
    if m == 1:
        sv = schur[:, 0, 0]
        ok = sv > 0
        sinv = (1.0 / np.where(ok, sv, 1.0))[:, None, None]
        logdet_s = np.where(ok, np.log(np.where(ok, sv, 1.0)), np.inf)
    else:
        sign, logdet_s = np.linalg.slogdet(schur)
        logdet_s = np.where(sign > 0, logdet_s, np.inf)
        sinv = np.linalg.inv(schur)
    se = sinv @ e  # (I, m, T)
    hinv = np.empty_like(h)
    hinv[:, :m, :m] = sinv
    hinv[:, :m, m:] = -se
    hinv[:, m:, :m] = -se.transpose(0, 2, 1)
    tail = e.transpose(0, 2, 1) @ se
    idx = np.arange(h.shape[1] - m)
    tail[:, idx, idx] += dinv
    hinv[:, m:, m:] = tail
    return hinv, np.log(dd).sum(axis=1) + logdet_s


def modes(
    data: UnitData,
    fam: Family,
    beta: np.ndarray,
    sigma: np.ndarray,
    alpha: float = 0.0,
    v0: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int = 60,
    near: bool | None = None,
) -> LaplaceState:
    """Conditional modes by vectorised Newton iterations and the Laplace log-likelihood.

    Trial points far from the optimum may overflow; they give a non-finite value, which the
    step-halving here and the outer line search reject, so floating-point warnings are muted.
    ``near`` says that ``v0`` is (almost) at the modes, so that the first iteration is
    probably the convergence check (default: whenever ``v0`` is given); it only changes how
    the first step is computed.
    """
    near = v0 is not None if near is None else near
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _modes(data, fam, beta, sigma, alpha, v0, tol=tol, max_iter=max_iter, near=near)


def _modes(
    data: UnitData,
    fam: Family,
    beta: np.ndarray,
    sigma: np.ndarray,
    alpha: Any,
    v0: np.ndarray | None,
    *,
    tol: float,
    max_iter: int,
    near: bool = False,
) -> LaplaceState:
    """Newton iterations with per-cluster step halving (see :func:`modes`).

    Converged when the largest Newton step is below ``tol``, or, without a further check
    iteration, once a full Newton step of at most ``sqrt(tol) / 100`` has been taken (its
    quadratic convergence leaves an error far below ``tol``).  A cluster whose step gives no
    ascent even at ``2^-30`` of it (a rounding-level stall, or a useless step at a far-off
    trial point) stays where it is from then on; the state is then flagged not converged.
    """
    n_i, _, q = data.z.shape
    beta = np.asarray(beta, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if beta.ndim == 1:
        fixed = data.x @ beta + data.offset
    else:  # one beta per cluster (batched evaluation of several parameter values)
        fixed = (data.x @ beta[:, :, None])[:, :, 0] + data.offset
    a = _design_a(data, sigma)
    if np.ndim(alpha) > 0:
        alpha = np.asarray(alpha, dtype=float)[:, None]
    v = np.zeros((n_i, q)) if v0 is None else v0.copy()
    eye = np.eye(q)
    converged = False
    quick = 0.01 * np.sqrt(tol)  # a full step this small: converged without a check

    def evaluate(vv: np.ndarray) -> tuple[np.ndarray, ...]:
        eta = fixed + (a @ vv[:, :, None])[:, :, 0]
        ll, s, w, w1 = _pieces(data, fam, eta, alpha)
        f = ll.sum(axis=1) - 0.5 * (vv * vv).sum(axis=1)
        return eta, ll, s, w, w1, f

    eta, ll, s, w, w1, f = evaluate(v)
    if not np.all(np.isfinite(f)):
        v = np.zeros((n_i, q))
        eta, ll, s, w, w1, f = evaluate(v)
    stuck = np.zeros(n_i, dtype=bool)
    h = hinv = None
    for _ in range(max_iter):
        g = (s[:, None, :] @ a)[:, 0, :] - v
        at_w = a.transpose(0, 2, 1) * w[:, None, :]
        h = at_w @ a + eye
        pd = bool(np.all(w >= 0.0))  # then H >= I: positive definite without a check
        if near and _dense(h, data.tail_start):
            # probably the last check: the inverse (needed at convergence) gives the step
            hinv_n, logdet_n = _inv_logdet(h, data.tail_start)
            ok = bool(np.all(np.isfinite(logdet_n)))
            newton = (hinv_n @ g[:, :, None])[:, :, 0] if ok else None
            fact = ("inv", hinv_n, logdet_n) if ok else None
        else:
            newton, fact = _newton_step(h, g, data.tail_start, pd)
        step = g if newton is None else newton
        step[stuck] = 0.0
        dec = np.abs(step).max() if step.size else 0.0
        if dec < tol and fact is not None:
            converged = not stuck.any()
            if fact[0] == "chol":
                hinv, logdet = _chol_inverse(fact[1])
            elif fact[0] == "inv":
                hinv, logdet = fact[1:]
            break
        t = np.ones(n_i)
        for _half in range(30):
            v_new = v + t[:, None] * step
            eta_n, ll_n, s_n, w_n, w1_n, f_n = evaluate(v_new)
            bad = ~np.isfinite(f_n) | (f_n < f - 1e-12 * (1 + np.abs(f)))
            if not bad.any():
                break
            t = np.where(bad, t * 0.5, t)
        else:
            # no ascent along the step for some clusters even at 2^-30 of it: they stay put
            # from now on (rounding-level stall or a useless step); stop if none can move
            stuck |= bad
            if stuck.all():
                break
            v_new = np.where(bad[:, None], v, v_new)
            eta_n, ll_n, s_n, w_n, w1_n, f_n = evaluate(v_new)
        v, eta, ll, s, w, w1, f = v_new, eta_n, ll_n, s_n, w_n, w1_n, f_n
        h = None
        near = fact is not None and dec <= 1e-5 and bool(np.all(t == 1.0))
        if fact is not None and dec <= quick and np.all(t == 1.0) and not stuck.any():
            converged = True  # quadratic convergence: the remaining error is ~dec^2 << tol
            break
    if h is None or hinv is None:
        at_w = a.transpose(0, 2, 1) * w[:, None, :]
        h = at_w @ a + eye
        hinv, logdet = _inv_logdet(h, data.tail_start)
        converged = converged and bool(np.all(np.isfinite(logdet)))
    per_cluster = ll.sum(axis=1) - 0.5 * (v * v).sum(axis=1) - 0.5 * logdet
    value = float(per_cluster.sum() + data.const)
    return LaplaceState(
        v=v,
        eta=eta,
        ll=ll,
        s=s,
        w=w,
        w1=w1,
        a=a,
        h=h,
        hinv=hinv,
        logdet=logdet,
        converged=converged,
        value=value,
        per_cluster=per_cluster,
    )


def _var_terms(
    data: UnitData,
    sigma: np.ndarray,
    k: int,
    v: np.ndarray,
    zts: np.ndarray,
    cache: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces of the derivative in variance parameter ``k``, with ``D = dLambda / d sigma_k``.

    Returns ``Z D v`` ``(I, U)``, ``D' Z's`` ``(I, q)`` and ``D``: the 0/1 column mask of
    component ``k`` (``(q,)``) for a standard deviation, or the ``(T, T)`` (or ``(I, T, T)``)
    AR(1) block ``L(r)`` (its SD) or ``gamma dL/dphi`` (its correlation).  ``cache`` keeps
    the AR(1) factor between the calls of one gradient.
    """
    if data.ar1 is not None:
        s0, t = data.ar1
        kg = int(data.comp[s0])
        if k in (kg, data.n_comp):
            cache = {} if cache is None else cache
            if "ar1" not in cache:  # the factor and its derivative, shared by both parameters
                cache["ar1"] = ar1_factor(
                    np.tanh(sigma[..., data.n_comp]), t, deriv=True, times=data.ar1_times
                )
            lo, dlo = cache["ar1"]
            dd = lo if k == kg else dlo * np.asarray(sigma[..., kg])[..., None, None]
            blk = slice(s0, s0 + t)
            dv = (dd @ v[:, blk, None])[:, :, 0]
            ck = (data.z[:, :, blk] @ dv[:, :, None])[:, :, 0]
            dzs = np.zeros_like(v)
            dzs[:, blk] = (np.swapaxes(dd, -1, -2) @ zts[:, blk, None])[:, :, 0]
            return ck, dzs, dd
    ek = (data.comp == k).astype(float)
    ck = (data.z @ (v * ek)[:, :, None])[:, :, 0]
    return ck, zts * ek, ek


def laplace(
    data: UnitData,
    fam: Family,
    beta: np.ndarray,
    sigma: np.ndarray,
    alpha: float = 0.0,
    v0: np.ndarray | None = None,
) -> LaplaceState:
    """Laplace log-likelihood (``.value``) at ``(beta, sigma, alpha)``."""
    return modes(data, fam, beta, sigma, alpha, v0)


def laplace_grad(
    data: UnitData,
    fam: Family,
    st: LaplaceState,
    sigma: np.ndarray,
    alpha: Any = 0.0,
    want_hessian: bool = False,
    per_cluster: bool = False,
    exact_hessian: bool = False,
) -> tuple[Any, ...]:
    """Exact gradient (see :func:`_laplace_grad`); floating-point warnings muted as in modes."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _laplace_grad(data, fam, st, sigma, alpha, want_hessian, per_cluster, exact_hessian)


def _laplace_grad(
    data: UnitData,
    fam: Family,
    st: LaplaceState,
    sigma: np.ndarray,
    alpha: Any = 0.0,
    want_hessian: bool = False,
    per_cluster: bool = False,
    exact_hessian: bool = False,
) -> tuple[Any, ...]:
    """Exact gradient of the Laplace log-likelihood: ``(d/d beta, d/d sigma, d/d alpha)``.

    ``sigma`` is the variance-parameter vector (the SDs, then ``phi = atanh(r)`` when the
    data have an AR(1) block), as passed to :func:`modes`.  With ``per_cluster`` the cluster
    contributions of every outer parameter, shapes ``(I, p), (I, n_var), (I,)``.  With
    ``want_hessian`` also the envelope part of the ``beta`` Hessian of ``-L``,
    ``X'WX - X'WA H^-1 A'WX`` (the third-derivative terms left out), or with
    ``exact_hessian`` the exact ``beta`` Hessian of ``-L`` (:func:`_beta_hessian_terms`).
    """
    x, z, a = data.x, data.z, st.a
    s, w, w1 = st.s, st.w, st.w1
    hinv = st.hinv
    n_i = x.shape[0]
    # leverages d_u = a_u' H^-1 a_u
    ah = a @ hinv  # (I, U, q)
    d = (ah * a).sum(axis=2)
    c = w1 * d  # d(log|H|)/d eta_u
    at_w = a.transpose(0, 2, 1) * w[:, None, :]  # (I, q, U)
    # beta: envelope + log-det term with deta/dbeta = X - A H^-1 A' W X
    atwx = at_w @ x  # (I, q, p)
    # c' deta/dbeta = c'X - (c' A H^-1) A'WX: no (I, U, p) intermediate
    cx = (c[:, None, :] @ x)[:, 0, :] - ((c[:, None, :] @ ah) @ atwx)[:, 0, :]
    g_beta = (s[:, None, :] @ x)[:, 0, :] - 0.5 * cx
    # variance parameters: SDs (columns of comp k), then the AR(1) phi
    n_var = data.n_var
    g_sigma = np.zeros((n_i, n_var))
    ahw = ah * w[:, :, None]  # rows w_u a_u' H^-1
    # diag(H^-1 A'WZ)_j = sum_u (H^-1 a_u)_j w_u z_uj (H^-1 symmetric)
    hm_diag = (ahw * z).sum(axis=1)
    zts = (s[:, None, :] @ z)[:, 0, :]
    cache: dict[str, Any] = {}
    cks, dzss = [], []
    for k in range(n_var):
        ck, dzs, dd = _var_terms(data, sigma, k, st.v, zts, cache)
        cks.append(ck)
        dzss.append(dzs)
        if dd.ndim == 1:
            g_sigma[:, k] = -(hm_diag * dd).sum(axis=1)  # -tr1 / 2
        else:  # tr(H^-1 A'W Z D) = sum_u w_u (z_u' D) H^-1 a_u over the AR(1) block
            assert data.ar1 is not None
            blk = slice(data.ar1[0], data.ar1[0] + data.ar1[1])
            g_sigma[:, k] = -((z[:, :, blk] @ dd) * ahw[:, :, blk]).sum(axis=(1, 2))
    if n_var:  # all variance parameters at once: columns k of (I, U, n_var) / (I, q, n_var)
        ck_all = np.stack(cks, axis=2)
        dg = np.stack(dzss, axis=2) - at_w @ ck_all
        deta = ck_all + a @ (hinv @ dg)
        env = (s[:, :, None] * ck_all).sum(axis=1)
        g_sigma += env - 0.5 * (c[:, :, None] * deta).sum(axis=1)
    g_alpha = np.zeros(n_i)
    if fam.has_dispersion:
        al = alpha if np.ndim(alpha) == 0 else np.asarray(alpha)[:, None]
        dll, ds, dw = fam.dalpha(data.y, st.eta, al)
        wt = data.weight
        dll, ds, dw = dll * wt, ds * wt, dw * wt
        atds = (ds[:, None, :] @ a).transpose(0, 2, 1)  # (I, q, 1)
        deta = (a @ (hinv @ atds))[:, :, 0]
        g_alpha = dll.sum(axis=1) - 0.5 * ((dw + w1 * deta) * d).sum(axis=1)
    if per_cluster:
        out: tuple[Any, ...] = (g_beta, g_sigma, g_alpha)
    else:
        out = (g_beta.sum(axis=0), g_sigma.sum(axis=0), float(g_alpha.sum()))
    if not want_hessian:
        return out
    # one GEMM over all units (a batched product of transposed views falls off BLAS)
    xf = x.reshape(-1, x.shape[2])
    xtwx = (xf * w.reshape(-1)[:, None]).T @ xf
    hb = xtwx - (atwx.transpose(0, 2, 1) @ (hinv @ atwx)).sum(axis=0)
    if exact_hessian:
        hb = hb + _beta_hessian_terms(data, fam, st, alpha, ah, atwx, d)
    return (*out, hb)


def cluster_beta_hessians(
    data: UnitData, fam: Family, st: LaplaceState, alpha: Any = 0.0
) -> np.ndarray:
    """Each cluster's exact ``beta`` Hessian of ``-L_i`` in closed form, shape ``(I, p, p)``.

    The cluster's modes depend on ``beta`` only through its own units, so the exact Hessian
    of :func:`laplace_grad` (``exact_hessian``) splits over clusters:
    ``X_i'W_i X_i - X_i'W_i A_i H_i^-1 A_i'W_i X_i`` plus the cluster's log-determinant terms
    (:func:`_beta_hessian_terms`).  Their sum is the fit's ``beta`` block.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge._core.families import make_family
    >>> rng = np.random.default_rng(0)
    >>> ud = UnitData(y=rng.poisson(5.0, (3, 4)).astype(float), n=np.ones((3, 4)),
    ...               offset=np.zeros((3, 4)), weight=np.ones((3, 4)),
    ...               x=np.ones((3, 4, 1)), z=np.ones((3, 4, 1)), comp=np.array([0]), n_comp=1)
    >>> fam = make_family("poisson", "log")
    >>> st = modes(ud, fam, np.array([1.5]), np.array([0.3]))
    >>> hb = laplace_grad(ud, fam, st, np.array([0.3]), want_hessian=True, exact_hessian=True)[3]
    >>> bool(np.allclose(cluster_beta_hessians(ud, fam, st).sum(axis=0), hb))
    True
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        x, a, w = data.x, st.a, st.w
        ah = a @ st.hinv
        d = (ah * a).sum(axis=2)
        atwx = (a.transpose(0, 2, 1) * w[:, None, :]) @ x
        xtwx = (x.transpose(0, 2, 1) * w[:, None, :]) @ x
        env = xtwx - atwx.transpose(0, 2, 1) @ (st.hinv @ atwx)
        return np.asarray(
            env + _beta_hessian_terms(data, fam, st, alpha, ah, atwx, d, per_cluster=True)
        )


def _beta_hessian_terms(
    data: UnitData,
    fam: Family,
    st: LaplaceState,
    alpha: Any,
    ah: np.ndarray,
    atwx: np.ndarray,
    d: np.ndarray,
    per_cluster: bool = False,
) -> np.ndarray:
    """Return the log-determinant part of the exact ``beta`` Hessian of ``-L``.

    With ``Xt = deta/dbeta = X - P W X`` (``P = A H^-1 A'``, per cluster), leverages
    ``d = diag P``, ``c = w1 d`` and ``w2 = d w1 / d eta``, differentiating
    ``dL/dbeta = X's - Xt'c / 2`` once more gives ``-d2L/dbeta2 = X'W Xt +``

        ( Xt' diag(w2 d) Xt - Xt' diag(w1 (P c)) Xt - Xt' diag(w1) (P o P) diag(w1) Xt ) / 2

    (``dXt/dbeta_j = -P diag(w1 Xt_j) Xt``, ``dd_u/dbeta_j = -sum_t P_ut^2 w1_t Xt_tj``;
    ``o`` is the elementwise product).  ``w2`` (a fourth derivative of the log-likelihood) by
    central differences of ``w1`` in ``eta`` (step 1e-4: error ~1e-8 relative in a term that
    is itself a small correction).  Replaces differencing the gradient in every ``beta``.
    """
    x, a, w1 = data.x, st.a, st.w1
    al = alpha if np.ndim(alpha) == 0 else np.asarray(alpha)[:, None]
    h = 1e-4
    w2 = (
        (
            fam.derivs(data.y, data.n, st.eta + h, al)[3]
            - fam.derivs(data.y, data.n, st.eta - h, al)[3]
        )
        / (2.0 * h)
        * data.weight
    )
    xt = x - ah @ atwx  # (I, U, p)
    # P c = A H^-1 (A' c): rank q, no (U, U) matrix
    pc = (ah @ (a.transpose(0, 2, 1) @ (w1 * d)[:, :, None]))[:, :, 0]
    diag_w = w2 * d - w1 * pc
    xw1 = xt * w1[:, :, None]
    n_u, q = a.shape[1], a.shape[2]
    if per_cluster:  # (I, p, p): one cluster's terms each
        out = (xt.transpose(0, 2, 1) * diag_w[:, None, :]) @ xt
    else:
        xf = xt.reshape(-1, xt.shape[2])
        out = (xf * diag_w.reshape(-1)[:, None]).T @ xf
    if n_u <= q * q:  # small cells: P o P directly
        pm = ah @ a.transpose(0, 2, 1)  # P = A H^-1 A'  (I, U, U)
        pp = xw1.transpose(0, 2, 1) @ ((pm * pm) @ xw1)
    else:  # many units (rows): P_ut^2 = (ah_u (x) ah_u) . (a_t (x) a_t), Khatri-Rao rank q^2
        kh = (ah[:, :, :, None] * ah[:, :, None, :]).reshape(ah.shape[0], n_u, q * q)
        ka = (a[:, :, :, None] * a[:, :, None, :]).reshape(a.shape[0], n_u, q * q)
        k1 = kh.transpose(0, 2, 1) @ xw1  # (I, q^2, p)
        k2 = ka.transpose(0, 2, 1) @ xw1
        pp = k1.transpose(0, 2, 1) @ k2
    out = out - (pp if per_cluster else pp.sum(axis=0))
    return np.asarray(0.5 * out)


# ------------------------------------------------------------------------------ outer fit


@dataclass
class CoreFit:
    """Maximum (approximate) likelihood fit of a GLMM."""

    beta: np.ndarray
    sigma: np.ndarray  # variance parameters: SDs, then phi = atanh(r) with an AR(1) block
    alpha: float
    loglik: float
    hessian: np.ndarray  # (P, P) Hessian of -loglik over (beta, sigma, [alpha])
    free: np.ndarray  # (P,) bool: parameters not on a boundary
    grad: np.ndarray  # gradient of loglik at the optimum
    v: np.ndarray  # conditional modes (spherical scale)
    converged: bool
    message: str
    n_eval: int
    #: The optimum is the end ``tau = 0`` of the ridge of decays near 1, checked to be a
    #: maximum of the full problem there (``d2L/dtau2 <= 0``; :func:`_ridge_probe`).
    ridge_end: bool = False


class _Objective:
    """``theta -> (loglik, exact gradient, envelope beta-Hessian)`` with warm-started modes.

    ``theta = (beta, sigma, [alpha])``; the SDs in ``sigma`` enter through ``|sigma|`` (the
    likelihood is even in them), so the optimiser may work without bounds; an AR(1) ``phi``
    (last entry of ``sigma``) is used as it is.
    """

    def __init__(self, data: UnitData, fam: Family, n_quadrature: int) -> None:
        self.data, self.fam, self.nq = data, fam, n_quadrature
        self.p = data.x.shape[2]
        self.k = data.n_var
        self.even = np.arange(self.k) < data.n_comp  # SDs: the likelihood is even in them
        self.v0: np.ndarray | None = None
        self.n_eval = 0
        self.batch = True  # vectorised finite differences (faster than sequential evaluations)

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        p, k = self.p, self.k
        alpha = float(theta[p + k]) if self.fam.has_dispersion else 0.0
        return theta[:p], np.where(self.even, np.abs(theta[p : p + k]), theta[p : p + k]), alpha

    def signs(self, var: np.ndarray) -> np.ndarray:
        """``d|sigma|/d sigma`` for the variance parameters ``var`` (``(k,)`` or ``(R, k)``)."""
        return np.where(self.even & (var < 0), -1.0, 1.0)

    def state(
        self, theta: np.ndarray, want_hessian: bool = True
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        beta, sigma, alpha = self.split(theta)
        self.n_eval += 1
        if self.nq > 1:
            st = modes(self.data, self.fam, beta, sigma, alpha, self.v0)
            val, gb, gs, ga = agq_value_grad(self.data, self.fam, st, alpha, self.nq)
            hb = _envelope_hessian(self.data, st) if want_hessian else None
        else:
            v0 = self._predicted_modes(theta)
            st = modes(self.data, self.fam, beta, sigma, alpha, v0, near=False)
            val = st.value
            if np.isfinite(val):
                out = laplace_grad(
                    self.data,
                    self.fam,
                    st,
                    sigma,
                    alpha,
                    want_hessian=want_hessian,
                    exact_hessian=True,
                )
                gb, gs, ga = out[:3]
                hb = out[3] if want_hessian else None
        if not np.isfinite(val):
            return -np.inf, np.zeros_like(theta), np.zeros((beta.size, beta.size))
        if st.converged:
            self.v0 = st.v
            self._last = (theta.copy(), st, alpha)
        sgn = self.signs(theta[self.p : self.p + self.k])
        g = np.concatenate([gb, gs * sgn] + ([np.array([ga])] if self.fam.has_dispersion else []))
        return val, g, hb

    def _predicted_modes(self, theta: np.ndarray) -> np.ndarray | None:
        """Modes at ``theta`` to first order from the last converged point (warm start).

        ``v + dv/dbeta (beta - beta_0) + sum_j dv/dtheta_j (theta_j - theta_0j)`` with the
        variance-parameter slopes of the last :meth:`exact_columns` (closed form) or
        :meth:`jacobian_columns` (implicit function theorem) at that point; the
        last modes themselves when there is nothing to extrapolate from.
        """
        last = getattr(self, "_last", None)
        if last is None or self.nq > 1:
            return self.v0
        th0, st, _ = last
        delta = theta - th0
        if not np.any(delta):
            return np.asarray(st.v)
        p = self.p
        at_w = st.a.transpose(0, 2, 1) * st.w[:, None, :]
        xd = self.data.x @ delta[:p]
        dv = -(st.hinv @ (at_w @ xd[:, :, None]))[:, :, 0]
        slopes = getattr(self, "_slopes", None)
        if slopes is not None and np.array_equal(slopes[0], th0):
            dv = dv + np.tensordot(delta[slopes[1]], slopes[2], axes=1)
        v: np.ndarray = st.v + dv
        return v if np.all(np.isfinite(v)) else self.v0

    def _mode_slopes(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
        """``d v / d theta_j`` at the last evaluated point (implicit function theorem)."""
        last = getattr(self, "_last", None)
        if last is None or not np.array_equal(last[0], theta) or self.nq > 1:
            return None
        _, st, alpha = last
        d, p = self.data, self.p
        at_w = st.a.transpose(0, 2, 1) * st.w[:, None, :]
        out = np.zeros((len(cols), *st.v.shape))
        zts = (st.s[:, None, :] @ d.z)[:, 0, :]
        for c, j in enumerate(cols):
            if j < p:
                rhs = -(at_w @ d.x[:, :, j : j + 1])[:, :, 0]
            elif j < p + self.k:
                sig = self.split(theta)[1]
                ck, dzs, _ = _var_terms(d, sig, j - p, st.v, zts)
                rhs = dzs - (at_w @ ck[:, :, None])[:, :, 0]
                rhs = rhs * self.signs(theta[p : p + self.k])[j - p]
            else:
                ds = self.fam.dalpha(d.y, st.eta, alpha)[1] * d.weight
                rhs = (ds[:, None, :] @ st.a)[:, 0, :]
            out[c] = (st.hinv @ rhs[:, :, None])[:, :, 0]
        return out

    def value_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        val, g, _ = self.state(theta, want_hessian=False)
        return val, g

    def _tiled(self, r: int) -> UnitData:
        if getattr(self, "_tile_r", None) != r:
            d = self.data
            self._tile_data = UnitData(
                y=np.tile(d.y, (r, 1)),
                n=np.tile(d.n, (r, 1)),
                offset=np.tile(d.offset, (r, 1)),
                weight=np.tile(d.weight, (r, 1)),
                x=np.tile(d.x, (r, 1, 1)),
                z=np.tile(d.z, (r, 1, 1)),
                comp=d.comp,
                n_comp=d.n_comp,
                const=0.0,
                tail_start=d.tail_start,
                ar1=d.ar1,
                ar1_times=d.ar1_times,
            )
            self._tile_r = r
        return self._tile_data

    def batch_grads(
        self, thetas: np.ndarray, v_start: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Exact Laplace gradients at several parameter vectors in one vectorised pass.

        The clusters are replicated once per parameter vector, so ``R`` gradients cost about
        as much as one evaluation with ``R`` times as many clusters.  ``None`` for AGQ.
        """
        if self.nq > 1:
            return None
        r = thetas.shape[0]
        n_i = self.data.x.shape[0]
        p, k = self.p, self.k
        td = self._tiled(r)
        beta = np.repeat(thetas[:, :p], n_i, axis=0)
        var = thetas[:, p : p + k]
        sigma = np.repeat(np.where(self.even, np.abs(var), var), n_i, axis=0)
        alpha: Any = np.repeat(thetas[:, p + k], n_i) if self.fam.has_dispersion else 0.0
        v0: np.ndarray | None
        if v_start is not None:
            v0 = v_start.reshape(r * n_i, -1)
        else:
            v0 = None if self.v0 is None else np.tile(self.v0, (r, 1))
        self.n_eval += 1
        st = modes(td, self.fam, beta, sigma, alpha, v0)
        if not np.isfinite(st.value):
            return None
        gb, gs, ga = laplace_grad(td, self.fam, st, sigma, alpha, per_cluster=True)
        gb = gb.reshape(r, n_i, p).sum(axis=1)
        gs = gs.reshape(r, n_i, k).sum(axis=1) * self.signs(var)
        parts = [gb, gs]
        if self.fam.has_dispersion:
            parts.append(ga.reshape(r, n_i).sum(axis=1)[:, None])
        return np.concatenate(parts, axis=1)

    def jacobian_columns(self, theta: np.ndarray, g0: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Forward differences (step ``1e-6``) of the exact gradient: ``-dg/dtheta_j``."""
        n = theta.size
        if len(cols) == 0:  # every variance parameter held (a profile over beta alone)
            return np.zeros((n, 0))
        hs = 1e-6 * np.maximum(1.0, np.abs(theta[cols]))
        thetas = np.repeat(theta[None, :], len(cols), axis=0)
        thetas[np.arange(len(cols)), cols] += hs
        slopes = self._mode_slopes(theta, cols) if self.batch else None
        v_start = None
        if slopes is not None:
            self._slopes = (theta.copy(), np.asarray(cols), slopes)
            # modes at theta + h e_j to O(h^2): one Newton check instead of two steps
            v_start = self._last[1].v[None] + hs[:, None, None] * slopes
        grads = self.batch_grads(thetas, v_start) if self.batch else None
        if grads is None:
            grads = np.array([self.value_grad(th)[1] for th in thetas])
        out = np.zeros((n, len(cols)))
        out[:, :] = (-(grads - g0[None, :]) / hs[:, None]).T
        return out

    def exact_columns(
        self, theta: np.ndarray, g0: np.ndarray, cols: np.ndarray, st: LaplaceState, alpha: float
    ) -> np.ndarray:
        """``-dg/dtheta_j`` like :meth:`jacobian_columns`, in closed form (Laplace only).

        The variance parameters from :func:`~.laplace_hessian.variance_hessian` at the
        converged state ``st`` at ``theta`` (times the signs ``d|sigma|/dsigma``, rows and
        columns); the NB log-size column by :meth:`jacobian_columns` (its cross terms fill
        the log-size row of the variance columns).  Keeps the mode slopes ``dv/dtheta_j``
        for the warm start of the next state (:meth:`_predicted_modes`).
        """
        p, k, n = self.p, self.k, theta.size
        cols = np.asarray(cols)
        done = getattr(self, "_exact", None)
        if done is not None and np.array_equal(done[0], theta) and np.array_equal(done[1], cols):
            return np.array(done[2])  # the same point again (the final Hessian of a fit)
        out = np.zeros((n, cols.size))
        if cols.size == 0:
            return out
        var = cols < p + k
        sig = self.split(theta)[1]
        sgn = self.signs(theta[p : p + k])
        fac = None
        if self.data.ar1 is not None:
            t, times = self.data.ar1[1], self.data.ar1_times
            fac = ar1_factor(np.tanh(sig[self.data.n_comp]), t, deriv=True, times=times)
        hv, dv = variance_hessian(self.data, self.fam, st, sig, alpha, ar1_factors=fac, slopes=True)
        hv = hv * sgn[None, :]
        hv[p:] *= sgn[:, None]
        jv = cols[var] - p
        out[: p + k, var] = hv[:, jv]
        slopes = dv * sgn[:, None, None]
        if var.all():
            self._slopes = (theta.copy(), cols, slopes[jv])
            self._exact = (theta.copy(), cols.copy(), out)
            return np.array(out)
        ja = np.flatnonzero(~var)  # the NB log-size: differenced
        fd = self.jacobian_columns(theta, g0, cols[ja])
        out[:, ja] = fd
        out[p + k, var] = fd[p + jv, 0]
        prev = getattr(self, "_slopes", None)
        if (
            prev is not None
            and np.array_equal(prev[0], theta)
            and np.array_equal(prev[1], cols[ja])
        ):
            all_slopes = np.zeros((cols.size, *st.v.shape))
            all_slopes[var] = slopes[jv]
            all_slopes[ja] = prev[2]
            self._slopes = (theta.copy(), cols, all_slopes)
        self._exact = (theta.copy(), cols.copy(), out)
        return np.array(out)

    def hessian(
        self,
        theta: np.ndarray,
        free: np.ndarray,
        g0: np.ndarray | None = None,
        columns: np.ndarray | None = None,
    ) -> np.ndarray:
        """Hessian of ``-loglik``: forward differences (step ``1e-6``) of the exact gradient.

        ``columns``: indices to difference (default all free ones); others are left 0.
        """
        n = theta.size
        hess = np.zeros((n, n))
        idx = np.flatnonzero(free) if columns is None else np.asarray(columns)
        if g0 is None:
            g0 = self.value_grad(theta)[1]
        if idx.size:
            hess[:, idx] = self.jacobian_columns(theta, g0, idx)
        return hess


def _envelope_hessian(data: UnitData, st: LaplaceState) -> np.ndarray:
    """``X'WX - X'WA H^-1 A'WX`` summed over clusters (third-derivative terms left out)."""
    x = data.x
    xt_w = x.transpose(0, 2, 1) * st.w[:, None, :]
    atwx = (st.a.transpose(0, 2, 1) * st.w[:, None, :]) @ x
    out = (xt_w @ x).sum(axis=0) - (atwx.transpose(0, 2, 1) @ (st.hinv @ atwx)).sum(axis=0)
    return np.asarray(out)


def _bounds(obj: _Objective, n_par: int) -> tuple[np.ndarray, np.ndarray]:
    """Box bounds: the NB log-size below ALPHA_MAX, the AR(1) phi within +-PHI_MAX."""
    p = obj.p
    lower = np.full(n_par, -np.inf)
    upper = np.full(n_par, np.inf)
    if obj.fam.has_dispersion:
        upper[p + obj.k] = ALPHA_MAX
    if obj.data.ar1 is not None:
        lower[p + obj.data.n_comp] = -PHI_MAX if obj.data.ar1_times is None else PHI_MIN_TIME
        upper[p + obj.data.n_comp] = PHI_MAX
    return lower, upper


def _snap_alpha(
    obj: _Objective, theta: np.ndarray, state: tuple[Any, ...], ia: int | None, fixed: np.ndarray
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """NB size beyond 1e4 and still increasing: try the cap ALPHA_MAX (the Poisson limit).

    The likelihood is flat towards the Poisson limit, so go straight to the cap instead of
    creeping along the plateau; kept if the log-likelihood does not decrease.
    """
    val, g = state[0], state[1]
    if ia is None or fixed[ia] or not (ALPHA_SNAP < theta[ia] < ALPHA_MAX and g[ia] > 0):
        return theta, state
    cand = theta.copy()
    cand[ia] = ALPHA_MAX
    new = obj.state(cand)
    if np.isfinite(new[0]) and new[0] >= val - 1e-9 * max(1.0, abs(val)):
        return cand, new
    return theta, state


def _modified_newton_step(hess: np.ndarray, g: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Newton step ``hess^-1 g``, modified where ``hess`` is not positive definite.

    Returns ``(step, indefinite)``; ``step`` is None when no damping makes the matrix
    positive definite.  Indefinite matrices: Levenberg damping shrinks every direction alike
    and creeps along weakly curved ones (e.g. r while gamma is small), so the negative
    curvatures of the diagonally scaled matrix are flipped instead (a modified Newton step;
    the line search keeps ascent).
    """
    lam = 0.0
    diag = np.abs(np.diag(hess)) + 1e-8
    chol = None
    for _ in range(40):
        try:
            chol = np.linalg.cholesky(hess + lam * np.diag(diag))
            break
        except np.linalg.LinAlgError:
            lam = 1e-4 if lam == 0.0 else lam * 10.0
    if chol is None:
        return None, True
    if lam == 0.0:
        return np.linalg.solve(chol.T, np.linalg.solve(chol, g)), False
    sc = 1.0 / np.sqrt(diag)
    ev, vec = np.linalg.eigh(sc[:, None] * hess * sc[None, :])
    ev = np.maximum(np.abs(ev), 1e-8 * max(float(np.abs(ev).max()), 1e-300))
    return sc * (vec @ ((vec.T @ (sc * g)) / ev)), True


def _newton_matrix(
    obj: _Objective, theta: np.ndarray, g: np.ndarray, hb: np.ndarray, var_idx: np.ndarray
) -> np.ndarray:
    """Hessian of ``-L``: the closed-form ``beta`` block and the variance columns.

    The variance columns in closed form at the last converged state when it is at ``theta``
    (the Laplace approximation: :meth:`_Objective.exact_columns`), else (AGQ, an
    unconverged state) forward differences of the exact gradient.  Also forward differences
    while a free SD is 0 or below :data:`SD_NEAR_ZERO`: the likelihood is even in an SD, so
    there its gradient and its exact cross terms vanish (or nearly) and Newton would stay at
    0 even at a saddle (0 a minimum along the SD); the differences, taken at ``+h``, see the
    slope off 0 and let it leave.
    """
    n_par, p = theta.size, obj.p
    hess = np.zeros((n_par, n_par))
    hess[:p, :p] = hb
    last = getattr(obj, "_last", None)
    sds = var_idx[var_idx < p + obj.data.n_comp]
    at_zero = bool(np.any(np.abs(theta[sds]) < SD_NEAR_ZERO))
    if obj.nq == 1 and not at_zero and last is not None and np.array_equal(last[0], theta):
        cols = obj.exact_columns(theta, g, var_idx, last[1], last[2])
    else:
        cols = obj.jacobian_columns(theta, g, var_idx)
    hess[:, var_idx] = cols
    hess[var_idx, :] = cols.T
    return hess


def _newton(
    obj: _Objective, theta: np.ndarray, max_iter: int, fixed: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray | None, bool, str]:
    """Damped Newton on ``-L`` with the exact Hessian (:func:`_newton_matrix`).

    ``fixed``: ``(n_par,)`` bool mask of parameters held at their values in ``theta`` (their
    gradient entries are ignored and their Hessian columns not computed).  With a persistent
    effect beside an AR(1) block, accepted steps heading along the ridge of decays near 1
    are followed by a probe of its end, the boundary tau = 0 (:func:`_ridge_probe`).
    Returns ``(theta, value, gradient, last variance columns or None, converged, message)``.
    """
    p, n_par = obj.p, theta.size
    fixed = np.zeros(n_par, dtype=bool) if fixed is None else fixed
    var_idx = np.arange(p, n_par)[~fixed[p:]]
    ia = p + obj.k if obj.fam.has_dispersion else None
    pair = _ridge_pair(obj.data, fixed[p:])
    ridge = None if pair is None else (p + pair[0], p + pair[1], p + obj.data.n_comp)
    lower, upper = _bounds(obj, n_par)
    theta = np.clip(theta, lower, upper)
    state = obj.state(theta)
    if not np.isfinite(state[0]):
        raise _NonFinite("the log-likelihood is not finite at the starting values")
    streak, last_length = 0, 0.0
    for _it in range(max_iter):
        theta, state = _snap_alpha(obj, theta, state, ia, fixed)
        if state[2] is None:  # after a "final" step that needed halving: the beta block
            state = obj.state(theta)
        val, g, hb = state
        assert hb is not None
        # parameters at a bound with the likelihood still increasing beyond it: held there
        held = ((theta >= upper - 1e-9) & (g > 0)) | ((theta <= lower + 1e-9) & (g < 0))
        held |= fixed
        hess = _newton_matrix(obj, theta, g, hb, var_idx)
        if not (np.all(np.isfinite(hess)) and np.all(np.isfinite(g))):
            return theta, val, g, None, False, "non-finite derivatives"
        h_use = hess.copy()
        h_use[held, :] = 0.0
        h_use[:, held] = 0.0
        h_use[held, held] = 1.0
        g_use = np.where(held, 0.0, g)
        step, indefinite = _modified_newton_step(h_use, g_use)
        if step is None:
            return theta, val, g, None, False, "no positive-definite Newton matrix"
        step[fixed] = 0.0
        decrement = float(g_use @ step)
        if decrement < 1e-16 * max(1.0, abs(val)) or np.max(np.abs(step)) < 1e-10:
            return theta, val, g, hess[:, var_idx], True, "converged"
        final = not indefinite and decrement < 1e-9 and np.max(np.abs(step)) < 1e-5
        big = float(np.max(np.abs(step[var_idx]))) if var_idx.size else 0.0
        if big > STEP_MAX:
            # trust region on the variance parameters: far from the optimum (an indefinite
            # matrix, a flat direction) the Newton step can leave for points where the modes
            # overflow; shorten it to STEP_MAX on the SD / atanh(r) scale
            step = step * (STEP_MAX / big)
        found = _line_search(obj, theta, val, step, lower, upper, final)
        if found is None:
            # no further increase possible: accept if the predicted gain is negligible
            ok = bool(decrement < 1e-8 * max(1.0, abs(val)) or np.max(np.abs(g_use)) < 1e-4)
            return theta, val, g, None, ok, "line search failed"
        new_theta, state, t = found
        if final and t == 1.0:
            # the last, quadratically convergent, Newton step has been taken
            return new_theta, state[0], state[1], hess[:, var_idx], True, "converged"
        if ridge is not None and not final:
            # a crawl: steps along the ridge, each cutting tau by RIDGE_SHRINK or more and
            # at least 0.6 times as long as the one before (linear convergence)
            d_tau = abs(new_theta[ridge[0]]) - abs(theta[ridge[0]])
            length = float(np.linalg.norm(new_theta[p:] - theta[p:]))
            crawl = (
                d_tau <= -RIDGE_SHRINK * abs(theta[ridge[0]])
                and length >= 0.6 * last_length
                and _on_ridge(theta, new_theta, state[1], ridge)
            )
            streak, last_length = (streak + 1 if crawl else 0), length
            if streak == RIDGE_STREAK:  # probed once per run
                end = _ridge_probe(obj, new_theta, state[0], ridge, max_iter)
                if end is not None:
                    return *end, None, True, RIDGE_END
        theta = new_theta
    return theta, state[0], state[1], None, False, "maximum number of iterations reached"


def _line_search(
    obj: _Objective,
    theta: np.ndarray,
    val: float,
    step: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    final: bool,
) -> tuple[np.ndarray, tuple[Any, ...], float] | None:
    """Step halving until the log-likelihood does not decrease; None after 30 halvings.

    Returns ``(theta + t step, its state, t)``.
    """
    t = 1.0
    for _ in range(30):
        cand = np.clip(theta + t * step, lower, upper)
        new = obj.state(cand, want_hessian=not final)
        if np.isfinite(new[0]) and new[0] >= val - 1e-12 * max(1.0, abs(val)):
            return cand, new, t
        t *= 0.5
    return None


def _ridge_pair(data: UnitData, fixed_var: np.ndarray) -> tuple[int, int] | None:
    """``(k_tau, k_gamma)``: a persistent cluster effect beside the AR(1) block, if any.

    The persistent component is a single column equal, on every real unit, to the sum of
    the AR(1) block's columns (a cluster intercept beside cluster-period effects: the
    ``nested+decay`` structure).  None without such a pair or when one of the three
    variance parameters is held (``fixed_var``, indices into the variance parameters).
    """
    if data.ar1 is None:
        return None
    s0, t = data.ar1
    k_gamma, k_phi = int(data.comp[s0]), data.n_comp
    block = data.z[:, :, s0 : s0 + t].sum(axis=2)
    real = data.weight > 0
    for k in range(data.n_comp):
        cols = np.flatnonzero(data.comp == k)
        if k == k_gamma or cols.size != 1:
            continue
        if np.array_equal(data.z[:, :, cols[0]][real], block[real]):
            if fixed_var[[k, k_gamma, k_phi]].any():
                return None
            return k, k_gamma
    return None


def _on_ridge(
    before: np.ndarray, theta: np.ndarray, g: np.ndarray, idx: tuple[int, int, int]
) -> bool:
    """Whether the step ``before`` -> ``theta`` crawls along the ridge towards ``tau = 0``.

    The ridge: ``tau^2 + gamma^2 = V`` and ``gamma^2 (1 - r) = B`` fixed (see
    :func:`_ridge_probe`).  True when the step shrank ``tau`` and raised ``gamma`` and ``r``,
    ``r >= RIDGE_R``, ``gamma^2 >= V / 10`` and the gradient ``g`` at ``theta`` says the
    likelihood increases along the ridge towards ``tau = 0`` (slope in ``u = tau^2``, with
    ``tau = sqrt u``, ``gamma = sqrt(V - u)``, ``r = 1 - B / (V - u)``).
    """
    it, ig, iphi = idx
    tau, gam, phi = abs(theta[it]), abs(theta[ig]), float(theta[iphi])
    if not (0.0 < tau < abs(before[it]) and gam > abs(before[ig]) and phi > before[iphi]):
        return False
    r = float(np.tanh(phi))
    v, b = tau * tau + gam * gam, gam * gam * (1.0 - r)
    if r < RIDGE_R or gam * gam < 0.1 * v:
        return False
    slope = (
        g[it] * np.sign(theta[it]) / (2.0 * tau)
        - g[ig] * np.sign(theta[ig]) / (2.0 * gam)
        - g[iphi] * b / (gam**4 * (1.0 - r * r))
    )
    return bool(slope < 0.0)


def _ridge_probe(
    obj: _Objective,
    theta: np.ndarray,
    val: float,
    idx: tuple[int, int, int],
    max_iter: int,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Try the end ``tau = 0`` of the ridge ``tau^2 + gamma^2 = V``, ``gamma^2 (1 - r) = B``.

    A persistent SD ``tau`` and a decaying one ``gamma`` with lag-1 correlation ``r`` near 1
    are nearly exchangeable: the data pin down the variance at lag 0, ``V``, and the decline
    per lag, ``B``, far better than their split, so the likelihood has a long curved ridge
    along which Newton steps crawl (many steps, ``tau`` shrinking a little each: the
    boundary fits of the count audit).  Once they do (:func:`_on_ridge`), the ridge's end
    with the same ``V`` and ``B`` and ``tau = 0`` starts a Newton run with ``tau`` held at 0.
    Its optimum is returned when its log-likelihood is above ``val`` and it is a boundary
    maximum of the full problem: ``d2L/dtau2 <= 0`` there (the likelihood is even in
    ``tau``, so ``dL/dtau = 0`` and the curvature is ``2 dL/d(tau^2)``; a forward
    difference of the exact gradient).  Otherwise (an interior optimum, ``tau > 0``) None:
    the caller goes on from ``theta``.  Returns ``(theta, value, gradient)`` or None.
    """
    it, ig, iphi = idx
    tau, gam = abs(theta[it]), abs(theta[ig])
    r = float(np.tanh(theta[iphi]))
    v, b = tau * tau + gam * gam, gam * gam * (1.0 - r)
    cand = theta.copy()
    cand[it], cand[ig] = 0.0, np.sqrt(v)
    cand[iphi] = min(float(np.arctanh(min(1.0 - b / v, 1.0 - 1e-12))), PHI_MAX)
    held = np.zeros(theta.size, dtype=bool)
    held[it] = True
    try:
        th, val_end, g_end, _, converged, _ = _newton(obj, cand, max_iter, held)
    except _NonFinite:
        return None
    if not (converged and val_end > val):
        return None
    curvature = -obj.jacobian_columns(th, g_end, np.array([it]))[it, 0]
    if not curvature <= 0.0:
        return None
    return th, val_end, g_end


#: Message of a Newton run that ended at a checked ridge end (:func:`_ridge_probe`).
RIDGE_END = "converged at the ridge end (tau = 0, a boundary maximum)"
#: Consecutive crawling Newton steps along the ridge of decays near 1 after which the
#: ridge's end is probed (once per run).
RIDGE_STREAK = 1
#: Smallest relative cut of the persistent SD ``tau`` in a crawling step.
RIDGE_SHRINK = 0.02
#: Smallest lag-1 correlation at which a step counts as along the ridge.
RIDGE_R = 0.9


class _NonFinite(ArithmeticError):
    """The Laplace log-likelihood is not finite at the starting values (caught by callers)."""


#: A free SD below this (the forward-difference step) takes the differenced Hessian columns
#: (:func:`_newton_matrix`): the exact ones vanish at 0 and Newton cannot leave a saddle there.
SD_NEAR_ZERO = 1e-6
#: Largest change of a variance parameter (an SD or ``atanh r``) in one outer Newton step.
STEP_MAX = 1.0
#: Bound of the AR(1) working parameter ``|phi| = |atanh(r)|``: ``|r| <= 1 - 1e-6``.
PHI_MAX = float(np.arctanh(1.0 - 1e-6))
#: Lower bound of ``phi`` for continuous-time decay (``r = tanh(phi) >= 1e-6``: ``r^t`` needs
#: ``r > 0`` at fractional ``t``).
PHI_MIN_TIME = float(np.arctanh(1e-6))
#: Upper bound of the NB log-size ``alpha = log k`` (k = 1e6: indistinguishable from Poisson).
ALPHA_MAX = float(np.log(1e6))
#: Beyond ``k = 1e4`` with the likelihood still increasing in ``k``, jump to ALPHA_MAX.
ALPHA_SNAP = float(np.log(1e4))


def fit_glmm_core(
    data: UnitData,
    fam: Family,
    beta0: np.ndarray,
    sigma0: np.ndarray,
    alpha0: float = 0.0,
    *,
    n_quadrature: int = 1,
    max_iter: int = 200,
    fixed: Mapping[int, float] | None = None,
) -> CoreFit:
    """Maximise the Laplace (``n_quadrature == 1``) or AGQ log-likelihood.

    Parameters are ``(beta, sigma, alpha)``.  ``fixed`` maps indices into the
    variance-parameter vector ``sigma`` (the engine's parametrisation: the standard
    deviations ``>= 0`` of the ``n_comp`` components, then ``phi = atanh(r)`` with an AR(1)
    block; index ``n_var`` is the NB log-size ``alpha`` for families with a dispersion) to
    values at which they are held while everything else, the fixed effects included, is
    maximised: the profile log-likelihood (for profile-likelihood intervals).  Held
    parameters are reported as not ``free`` (zero rows and columns of the Hessian) and the
    starting values ``sigma0``/``alpha0`` are overridden there.  A ``ValueError`` names an
    index out of range, a negative SD or a ``phi`` (``alpha``) outside the engine's bounds.

    Damped Newton iterations on the exact Hessian of ``-L``: the closed-form ``beta`` block
    and, for the Laplace approximation, the closed-form variance-parameter columns of
    :func:`~steppedwedge._core.laplace_hessian.variance_hessian` (``sigma`` is free in sign:
    the likelihood is even in it).  Forward differences of the exact gradient remain for
    AGQ (which starts from the Laplace optimum), the NB log-size column, a free SD below
    :data:`SD_NEAR_ZERO` and the ridge probe's curvature.  The reported Hessian is the one
    at the optimum, over the parameters not on the boundary (a standard deviation below
    ``1e-5`` is set to 0 and flagged).  Trial points that overflow are rejected by
    finiteness checks, so floating-point warnings are muted.
    BLAS runs single-threaded inside (:func:`~steppedwedge._core.blas.single_threaded_blas`:
    the blocks are too small for threads to pay).
    """
    with (
        single_threaded_blas(),
        np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"),
    ):
        return _fit_glmm_core(data, fam, beta0, sigma0, alpha0, n_quadrature, max_iter, fixed)


def _fixed_mask(
    data: UnitData, fam: Family, fixed: Mapping[int, float] | None, theta: np.ndarray
) -> np.ndarray:
    """Validate ``fixed`` (see :func:`fit_glmm_core`), write its values into ``theta``.

    Returns the ``(n_par,)`` bool mask of the held parameters.
    """
    p, kv = data.x.shape[2], data.n_var
    mask = np.zeros(theta.size, dtype=bool)
    n_ok = kv + (1 if fam.has_dispersion else 0)
    for key, value in (fixed or {}).items():
        j, val = int(key), float(value)
        if not (0 <= j < n_ok) or j != key:
            raise ValueError(
                f"`fixed` index {key!r} is not a variance-parameter index (0 .. {n_ok - 1})"
            )
        if not np.isfinite(val):
            raise ValueError(f"`fixed[{j}]` must be finite; got {value!r}")
        if j < data.n_comp and val < 0:
            raise ValueError(f"`fixed[{j}]` is a standard deviation and must be >= 0; got {val}")
        if j == data.n_comp and data.ar1 is not None:
            lo = -PHI_MAX if data.ar1_times is None else PHI_MIN_TIME
            if not lo <= val <= PHI_MAX:
                raise ValueError(
                    f"`fixed[{j}]` is phi = atanh(r) and must lie in [{lo:.6g}, {PHI_MAX:.6g}]"
                )
        if j == kv and val > ALPHA_MAX:
            raise ValueError(f"`fixed[{j}]` is the NB log-size; at most {ALPHA_MAX:.6g}")
        theta[p + j] = val
        mask[p + j] = True
    return mask


def _final_hessian(
    obj: _Objective,
    theta: np.ndarray,
    g: np.ndarray,
    cols: np.ndarray | None,
    free: np.ndarray,
    st: LaplaceState,
    alpha: float,
) -> np.ndarray:
    """Hessian of ``-L`` at the optimum over the ``free`` parameters (zero elsewhere).

    The Laplace approximation: everything in closed form at ``theta`` (the ``beta`` block,
    the variance columns of :meth:`_Objective.exact_columns`; the NB log-size column by
    forward differences of the exact gradient).  AGQ: the variance columns of the last
    Newton iteration (``cols``, taken < 1e-5 away) or forward differences at ``theta``,
    and a differenced ``beta`` block.
    """
    data, fam, p, kv = obj.data, obj.fam, obj.p, obj.k
    n_par = theta.size
    var_idx = np.arange(p, n_par)
    if obj.nq == 1 and np.isfinite(st.value):
        hess = np.zeros((n_par, n_par))
        idx = var_idx[free[var_idx]]
        if idx.size:
            exact = obj.exact_columns(theta, g, idx, st, alpha)
            hess[:, idx] = exact
            hess[idx, :p] = exact[:p].T
        # the beta block in closed form (exact Laplace Hessian, no differencing)
        sig = np.where(obj.even, np.abs(theta[p : p + kv]), theta[p : p + kv])
        hess[:p, :p] = laplace_grad(
            data, fam, st, sig, alpha, want_hessian=True, exact_hessian=True
        )[3]
    elif cols is not None:
        hess = obj.hessian(theta, free, g0=g, columns=np.arange(p))
        hess[:, var_idx] = cols
        hess[var_idx, :p] = cols[:p].T
    else:
        hess = obj.hessian(theta, free, g0=g)
    hess = 0.5 * (hess + hess.T)
    hess[~free, :] = 0.0
    hess[:, ~free] = 0.0
    return np.asarray(hess)


def _fit_glmm_core(
    data: UnitData,
    fam: Family,
    beta0: np.ndarray,
    sigma0: np.ndarray,
    alpha0: float,
    n_quadrature: int,
    max_iter: int,
    fixed: Mapping[int, float] | None = None,
) -> CoreFit:
    p, k, kv = data.x.shape[2], data.n_comp, data.n_var
    theta = np.concatenate([beta0, sigma0, [alpha0] if fam.has_dispersion else []]).astype(float)
    held = _fixed_mask(data, fam, fixed, theta)
    n_par = theta.size
    ia = p + kv if fam.has_dispersion else None
    obj = _Objective(data, fam, 1)
    theta, val, g, cols, converged, message = _newton(obj, theta, max_iter, held)
    n_eval = obj.n_eval
    if n_quadrature > 1:
        theta[p : p + k] = np.abs(theta[p : p + k])
        v0 = obj.v0
        obj = _Objective(data, fam, n_quadrature)
        obj.v0 = v0
        theta, val, g, cols, converged, message = _newton(obj, theta, max_iter, held)
        n_eval += obj.n_eval
    g = g.copy()
    g[p : p + k] *= np.where(theta[p : p + k] < 0, -1.0, 1.0)  # the gradient at |sigma|
    theta[p : p + k] = np.abs(theta[p : p + k])
    sig_idx = np.arange(p, p + k)
    zero = np.zeros(n_par, dtype=bool)
    zero[sig_idx[theta[sig_idx] < 1e-5]] = True
    zero &= ~held  # held SDs keep their given values
    free = ~(zero | held)
    if ia is not None and theta[ia] >= ALPHA_MAX - 1e-9:
        free[ia] = False  # NB size at its upper bound (Poisson limit): held fixed
    if data.ar1 is not None:
        i_phi = p + k
        low_phi = data.ar1_times is not None and theta[i_phi] <= PHI_MIN_TIME + 1e-9
        no_var = theta[p + int(data.comp[data.ar1[0]])] < 1e-5  # (a held SD too)
        if no_var or abs(theta[i_phi]) >= PHI_MAX - 1e-9 or low_phi:
            free[i_phi] = False  # no AR(1) variance (r unidentified) or |r| at its bound
    if zero.any():
        theta[zero] = 0.0
        val, g = obj.value_grad(theta)
    if not free.all():
        cols = None
    alpha = float(theta[ia]) if ia is not None else 0.0
    last = getattr(obj, "_last", None)
    if obj.nq == 1 and last is not None and np.array_equal(last[0], theta):
        st = last[1]  # the converged state of the last evaluation, at this very theta
    else:
        st = modes(data, fam, theta[:p], theta[p : p + kv], alpha, obj.v0)
    hess = _final_hessian(obj, theta, g, cols, free, st, alpha)
    n_eval = n_eval + obj.n_eval if obj.nq > 1 else obj.n_eval
    converged = converged and st.converged and bool(np.all(np.isfinite(hess)))
    try:
        if np.linalg.eigvalsh(hess[np.ix_(free, free)]).min() <= 0:
            converged = False
            message += "; Hessian not positive definite"
    except np.linalg.LinAlgError:
        converged = False
        message += "; Hessian not available"
    return CoreFit(
        beta=theta[:p].copy(),
        sigma=theta[p : p + kv].copy(),
        alpha=alpha,
        loglik=float(val),
        hessian=hess,
        free=free,
        grad=g,
        v=st.v,
        converged=converged,
        message=message,
        n_eval=n_eval,
        ridge_end=message.startswith(RIDGE_END),
    )
