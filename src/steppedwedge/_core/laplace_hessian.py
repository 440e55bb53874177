"""Closed-form Hessian of the Laplace log-likelihood in the variance parameters.

For one cluster with parameters ``psi = (beta, theta)`` (``theta``: the SDs, then
``phi = atanh r`` with an AR(1) block), ``A = Z Lambda(theta)``, modes ``v`` of
``f(v) = sum_u ll_u(eta) - v'v / 2`` with ``eta = X beta + A v + offset`` and
``H = I + A'WA``, the Laplace log-likelihood is ``L = F - Q``, ``F = f(v)``,
``Q = log|H| / 2``.  With the direct perturbation of ``eta`` at fixed modes
``e_j = X_j`` (``beta_j``) or ``dA_j v`` (``theta_j``), the mode slopes
``H v_j = g_j = dA_j' s - A'W e_j`` and ``eta_j = e_j + A v_j``::

    d2F_jk = -e_j'W e_k + g_j'H^-1 g_k + s' d2A_jk v
    d2Q_jk = [tr(H^-1 H_jk) - tr(H^-1 H_k H^-1 H_j)] / 2,
    H_j    = dA_j'WA + A'W dA_j + A' diag(w1 eta_j) A,

where ``tr(H^-1 H_jk)`` collects ``2 tr(H^-1 A'W d2A_jk)``, ``2 tr(H^-1 dA_j'W dA_k)``,
``2 sum_u w1 (eta_k m^j + eta_j m^k)`` (``m^j_u = (dA_j H^-1 A')_uu``) and
``sum_u d_u (w2 eta_j eta_k + w1 eta_jk)`` (``d_u = a_u'H^-1 a_u``,
``w2 = dw1/deta``), with ``eta_jk = d2A_jk v + dA_j v_k + dA_k v_j + A v_jk`` and
``v_jk`` from the twice-differentiated mode equation.  ``v_jk`` enters only through
``c'A v_jk`` (``c = w1 d``), i.e. ``r'(H v_jk)`` with the single solve ``r = H^-1 A'c``
per cluster, so no second-order mode slopes are formed.  Every sum runs over units
(``(I, U, .)`` arrays) or random-effect columns: no ``(U, U)`` matrix is built.

The units and the Laplace state (:class:`~steppedwedge._core.laplace.UnitData`,
:class:`~steppedwedge._core.laplace.LaplaceState`) and the AR(1) factor are passed in, so
this module does not import the Laplace module, which calls it (no import cycle).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .families import Family

__all__ = ["ar1_factor_d2", "variance_hessian"]


def ar1_factor_d2(r: float, t: int, times: Any = None) -> np.ndarray:
    """Second derivative ``d2L/dphi2`` of the AR(1) Cholesky factor, ``r = tanh(phi)``.

    ``L[j, k] = r^e s_k`` (``e = t_j - t_k >= 0``, ``s_0 = 1``,
    ``s_k = sqrt(1 - r^(2 d_k))``, ``d_k = t_k - t_{k-1}``; see
    :func:`steppedwedge._core.laplace.ar1_factor`).  With ``L_r = e r^(e-1) s_k + r^e s'_k``,
    ``s'_k = -d r^(2d-1) / s_k`` and ``s''_k = -d (2d-1) r^(2d-2) / s_k - d^2 r^(4d-2) / s_k^3``,
    ``L_rr = e (e-1) r^(e-2) s_k + 2 e r^(e-1) s'_k + r^e s''_k`` and, by the chain rule with
    ``dr/dphi = 1 - r^2``, ``d2L/dphi2 = (1 - r^2)^2 L_rr - 2 r (1 - r^2) L_r``.

    Parameters
    ----------
    r : float
        Lag-1 correlation, ``-1 < r < 1`` (``0 < r < 1`` with fractional ``times``).
    t : int
        Number of periods.
    times : array_like of shape (t,), optional
        Increasing period positions; None for ``0 .. t-1``.

    Returns
    -------
    numpy.ndarray
        ``(t, t)`` lower-triangular ``d2L/dphi2``.

    References
    ----------
    Brooks, M. E. et al. (2017). glmmTMB balances speed and flexibility among packages for
    zero-inflated generalized linear mixed modeling. *The R Journal* 9(2), 378-400 (the
    ``ar1`` covariance structure).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge._core.laplace import ar1_factor
    >>> phi, h = 0.8, 1e-5
    >>> num = (ar1_factor(np.tanh(phi + h), 4, deriv=True)[1]
    ...        - ar1_factor(np.tanh(phi - h), 4, deriv=True)[1]) / (2 * h)
    >>> bool(np.allclose(ar1_factor_d2(float(np.tanh(phi)), 4), num, atol=1e-8))
    True
    """
    if times is None:
        return _d2_unit_gaps(float(r), t)
    tm = np.asarray(times, dtype=float)
    e = tm[:, None] - tm[None, :]
    low = e >= 0
    ee = np.where(low, e, 0.0)
    gap = np.r_[1.0, np.diff(tm)][None, :]  # d_k (column 0 has s_0 = 1: no s-terms)
    first = np.arange(t)[None, :] == 0

    def pw(x: np.ndarray) -> np.ndarray:  # r^x, with r^0 = 1
        return np.where(x == 0, 1.0, float(r) ** x)

    with np.errstate(divide="ignore", invalid="ignore"):
        r2d = pw(2.0 * gap)
        s = np.where(first, 1.0, np.sqrt(np.maximum(1.0 - r2d, 0.0)))
        ds = np.where(first, 0.0, -gap * pw(2.0 * gap - 1.0) / s)
        d2s = np.where(
            first,
            0.0,
            -gap * (2.0 * gap - 1.0) * pw(2.0 * gap - 2.0) / s
            - gap**2 * pw(4.0 * gap - 2.0) / s**3,
        )
        p0, p1 = pw(ee), np.where(ee >= 1.0, ee * pw(np.maximum(ee - 1.0, 0.0)), 0.0)
        p1 = np.where((ee > 0) & (ee < 1.0), ee * pw(ee - 1.0), p1)  # fractional lags
        p2 = np.where(
            (ee > 0) & (ee != 1.0), ee * (ee - 1.0) * pw(np.where(ee > 0, ee - 2.0, 0.0)), 0.0
        )
        l_r = p1 * s + p0 * ds
        l_rr = p2 * s + 2.0 * p1 * ds + p0 * d2s
    dr = 1.0 - float(r) ** 2
    return np.where(low, dr * dr * l_rr - 2.0 * float(r) * dr * l_r, 0.0)


@functools.cache
def _lags(t: int) -> tuple[np.ndarray, np.ndarray]:
    """``(max(j - k, 0), j >= k)`` for ``t`` periods (read-only)."""
    j = np.arange(t)
    e = j[:, None] - j[None, :]
    out = (np.maximum(e, 0), e >= 0)
    for arr in out:
        arr.flags.writeable = False
    return out


def _d2_unit_gaps(r: float, t: int) -> np.ndarray:
    """:func:`ar1_factor_d2` on ``0 .. t-1`` (any sign of ``r``): integer lags, one power table.

    ``s = sqrt(1 - r^2)``, ``s' = -r / s``, ``s'' = -1 / s^3`` in every column but the first.
    """
    ee, low = _lags(t)
    k = np.arange(t, dtype=float)
    pw = np.power(r, k)  # r^e (integer-valued exponents: negative r is fine)
    pw1 = np.zeros(t)
    pw1[1:] = k[1:] * pw[:-1]  # e r^(e-1)
    pw2 = np.zeros(t)
    pw2[2:] = k[2:] * (k[2:] - 1.0) * pw[:-2]  # e (e-1) r^(e-2)
    s = np.sqrt(max(1.0 - r * r, 0.0))
    sc, dsc, d2sc = np.full(t, s), np.full(t, -r / s), np.full(t, -1.0 / s**3)
    sc[0], dsc[0], d2sc[0] = 1.0, 0.0, 0.0
    p0, p1, p2 = pw[ee], pw1[ee], pw2[ee]
    l_r = p1 * sc + p0 * dsc
    l_rr = p2 * sc + 2.0 * p1 * dsc + p0 * d2sc
    dr = 1.0 - r * r
    return np.where(low, dr * dr * l_rr - 2.0 * r * dr * l_r, 0.0)


#: Cache of :func:`ar1_factor_d2` by ``(r, t, times)`` (read-only arrays; cleared when full).
_D2_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def _ar1_d2_cached(r: float, t: int, times: Any) -> np.ndarray:
    """:func:`ar1_factor_d2`, memoised (Newton asks for the same few factors repeatedly)."""
    key = (r, t, None if times is None else tuple(np.asarray(times, dtype=float).tolist()))
    out = _D2_CACHE.get(key)
    if out is None:
        out = ar1_factor_d2(r, t, times)
        out.flags.writeable = False
        if len(_D2_CACHE) >= 256:
            _D2_CACHE.clear()
        _D2_CACHE[key] = out
    return out


def _design_derivs(
    data: Any, sigma: np.ndarray, ar1: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
    """``dA/dtheta_k`` for every variance parameter and the nonzero ``d2A/dtheta_j dtheta_k``.

    Returns ``(da, d2a)``: ``da`` of shape ``(n_var, I, U, q)``; ``d2a`` lists
    ``(j, k, block)`` (``j <= k``) with ``block`` the ``(I, U, T)`` AR(1)-block columns of
    ``d2A`` (zero elsewhere).  ``A`` is linear in an SD outside the AR(1) block
    (``dA = Z E_k``, no second derivative); in the block ``A = gamma Z L(r)``.
    """
    z = data.z
    onehot = (data.comp[None, :] == np.arange(data.n_var)[:, None]).astype(float)
    da = z[None] * onehot[:, None, None, :]  # (K, I, U, q); row n_comp (phi) is 0 here
    d2a: list[tuple[int, int, np.ndarray]] = []
    if data.ar1 is not None:
        s0, t = data.ar1
        kg, kp = int(data.comp[s0]), data.n_comp
        blk = slice(s0, s0 + t)
        r = float(np.tanh(sigma[kp]))
        if ar1 is None:
            raise ValueError("the units have an AR(1) block: pass `ar1_factors` (L, dL/dphi)")
        lo, dlo = ar1
        zb = z[:, :, blk]
        gam = float(sigma[kg])
        da[kg, :, :, blk] = zb @ lo
        zdl = zb @ dlo
        da[kp, :, :, blk] = gam * zdl
        d2a = [(kg, kp, zdl), (kp, kp, gam * (zb @ _ar1_d2_cached(r, t, data.ar1_times)))]
    return da, d2a


def _w2(data: Any, fam: Family, st: Any, alpha: Any) -> np.ndarray:
    """``w2 = dw1/deta`` by central differences (step 1e-4, as the exact ``beta`` Hessian)."""
    al = alpha if np.ndim(alpha) == 0 else np.asarray(alpha)[:, None]
    h = 1e-4
    up = fam.derivs(data.y, data.n, st.eta + h, al)[3]
    dn = fam.derivs(data.y, data.n, st.eta - h, al)[3]
    return np.asarray((up - dn) / (2.0 * h) * data.weight)


def variance_hessian(
    data: Any,
    fam: Family,
    st: Any,
    sigma: np.ndarray,
    alpha: Any = 0.0,
    *,
    ar1_factors: tuple[np.ndarray, np.ndarray] | None = None,
    slopes: bool = False,
) -> Any:
    """Columns of the Hessian of ``-L`` for the variance parameters, in closed form.

    At the converged modes ``st`` (:func:`~steppedwedge._core.laplace.modes` at
    ``(beta, sigma, alpha)``), no mode re-solve: the derivation is in the module docstring.
    The NB log-size ``alpha`` is held fixed: its row and column (and its cross terms) are
    not included (the caller differences that column).  ``w2 = dw1/deta`` by central
    differences (step ``1e-4``), as in the exact ``beta`` Hessian.

    Parameters
    ----------
    data : steppedwedge._core.laplace.UnitData
        Engine units (cells or rows; ``tail_start`` and AR(1) blocks allowed).
    fam : Family
        Binomial (any link), Poisson or negative binomial family.
    st : steppedwedge._core.laplace.LaplaceState
        Converged modes and Laplace pieces at ``(beta, sigma, alpha)``.
    sigma : numpy.ndarray
        ``(n_var,)`` variance parameters: the SDs (``>= 0``; 0 allowed), then ``phi``.
    alpha : float
        NB log-size (ignored for other families).
    ar1_factors : tuple of numpy.ndarray, optional
        With an AR(1) block (``data.ar1``): ``(L, dL/dphi)`` at ``sigma``, as
        ``ar1_factor(tanh(phi), T, deriv=True, times=data.ar1_times)`` returns them.
    slopes : bool
        Also return the mode slopes ``dv/dtheta_k``, shape ``(n_var, I, q)``.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``(p + n_var, n_var)``: rows ``beta`` then the variance parameters, columns the
        variance parameters; ``-d2L / dpsi_j dtheta_k`` summed over clusters (and the mode
        slopes with ``slopes``).

    References
    ----------
    Shun, Z. and McCullagh, P. (1995). Laplace approximation of high dimensional integrals.
    *JRSS B* 57(4), 749-760.  Kristensen, K. et al. (2016). TMB: automatic differentiation
    and Laplace approximation. *J. Stat. Softw.* 70(5).  Bates, D. et al. (2015). Fitting
    linear mixed-effects models using lme4. *J. Stat. Softw.* 67(1) (the parametrisation).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge._core.families import make_family
    >>> from steppedwedge._core.laplace import UnitData, modes
    >>> rng = np.random.default_rng(0)
    >>> ud = UnitData(y=rng.poisson(5.0, (3, 4)).astype(float), n=np.ones((3, 4)),
    ...               offset=np.zeros((3, 4)), weight=np.ones((3, 4)),
    ...               x=np.ones((3, 4, 1)), z=np.ones((3, 4, 1)), comp=np.array([0]), n_comp=1)
    >>> fam = make_family("poisson", "log")
    >>> st = modes(ud, fam, np.array([1.5]), np.array([0.3]))
    >>> variance_hessian(ud, fam, st, np.array([0.3])).shape
    (2, 1)
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        sig = np.asarray(sigma, dtype=float)
        out, v1 = _variance_hessian(data, fam, st, sig, alpha, ar1_factors)
    return (out, v1) if slopes else out


def _first_order(
    data: Any, st: Any, da: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(e, g, v1, eta1)``: the first-order pieces, parameter axis last (beta, then theta).

    Direct perturbations ``e`` of ``eta`` at fixed modes, the mode equation's right sides
    ``g``, the mode slopes ``v1 = H^-1 g`` and the total derivatives ``eta1`` of ``eta``.
    """
    a, s, w, v, hinv = st.a, st.s, st.w, st.v, st.hinv
    p = data.x.shape[2]
    e_var = (da @ v[None, :, :, None])[..., 0]  # (K, I, U)
    e = np.concatenate([data.x, e_var.transpose(1, 2, 0)], axis=2)  # (I, U, P)
    at_w = a.transpose(0, 2, 1) * w[:, None, :]
    g = -(at_w @ e)
    g[:, :, p:] += (s[None, :, None, :] @ da)[..., 0, :].transpose(1, 2, 0)  # dA_k' s
    v1 = hinv @ g
    eta1 = e + a @ v1
    return e, g, v1, eta1


def _kdot(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``sum over (I, N) of left[i, n, j] * right[k, i, n]`` -> ``(J, K)`` in one product."""
    return np.asarray(left.reshape(-1, left.shape[-1]).T @ right.reshape(right.shape[0], -1).T)


def _variance_hessian(
    data: Any,
    fam: Family,
    st: Any,
    sigma: np.ndarray,
    alpha: Any,
    ar1: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Assemble ``-d2L`` and the mode slopes (see :func:`variance_hessian`)."""
    p, kv = data.x.shape[2], data.n_var
    out = np.zeros((p + kv, kv))
    if kv == 0:
        return out, np.zeros((0, *st.v.shape))
    a, s, w, w1, hinv = st.a, st.s, st.w, st.w1, st.hinv
    da, d2a = _design_derivs(data, sigma, ar1)
    e, g, v1, eta1 = _first_order(data, st, da)
    ah = a @ hinv  # (I, U, q)
    d = np.einsum("iuq,iuq->iu", ah, a)
    c = w1 * d
    r = (hinv @ (a.transpose(0, 2, 1) @ c[:, :, None]))[:, :, 0]  # H^-1 A'c
    rho = (a @ r[:, :, None])[:, :, 0]  # A r = P c
    kappa = c - w * rho
    ev = eta1[:, :, p:].transpose(2, 0, 1)  # (K, I, U)
    # terms with a mirror image (j <-> k) in the variance block: w1 eta_j m^k (the dA part
    # of dH_j), -rho_k' W eta_j and v_j' dA_k' kappa (from c'A v_jk and c' eta_jk)
    m = np.einsum("kiuq,iuq->kiu", da, ah)  # m^k_u = (dA_k H^-1 A')_uu
    rho_k = (da @ r[None, :, :, None])[..., 0]  # dA_k r
    dkap = (kappa[None, :, None, :] @ da)[..., 0, :]  # dA_k' kappa  (K, I, q)
    mir = _kdot(eta1, w1[None] * m - 0.5 * w[None] * rho_k) + 0.5 * _kdot(v1, dkap)
    out += mir
    out[p:] += mir[p:].T
    # e_j'W e_k - g_j' v_k and the w2 / w1 eta_j eta_k terms
    coef = 0.5 * (d * _w2(data, fam, st, alpha) - rho * w1)
    out += _kdot(eta1, coef[None] * ev) + _kdot(e, w[None] * e[:, :, p:].transpose(2, 0, 1))
    out -= _kdot(g, v1[:, :, p:].transpose(2, 0, 1))
    # tr(H^-1 H_k H^-1 H_j) / 2: rank-q form for the beta rows, full traces for theta rows
    h_k = _h_derivs(st, da, ev)
    pi = np.einsum("kiuq,iuq->kiu", ah[None] @ h_k, ah)  # (A H^-1 H_k H^-1 A')_uu
    out[:p] -= 0.5 * _kdot(eta1[:, :, :p], w1[None] * pi)
    mk = hinv[None] @ h_k
    kk = mk.shape[0]
    out[p:] -= 0.5 * (mk.reshape(kk, -1) @ mk.transpose(0, 1, 3, 2).reshape(kk, -1).T)
    # tr(H^-1 dA_j'W dA_k) and the d2A terms (AR(1) block only)
    dah = da @ hinv[None]
    out[p:] += dah.reshape(kk, -1) @ (da * w[None, :, :, None]).reshape(kk, -1).T
    if data.ar1 is not None:
        blk = slice(data.ar1[0], data.ar1[0] + data.ar1[1])
        for j, k, d2 in d2a:
            d2v = (d2 @ st.v[:, blk, None])[:, :, 0]
            d2r = (d2 @ r[:, blk, None])[:, :, 0]
            val = float(
                ((0.5 * kappa - s) * d2v).sum()
                + 0.5 * (s * d2r).sum()
                + (w[:, :, None] * d2 * ah[:, :, blk]).sum()
            )
            out[p + j, k] += val
            if j != k:
                out[p + k, j] += val
    return out, v1[:, :, p:].transpose(2, 0, 1)


def _h_derivs(st: Any, da: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """``dH/dtheta_k = Y_k + Y_k'``, ``Y_k = A'(W dA_k + diag(w1 eta_k) A / 2)``, ``(K, I, q, q)``.

    ``ev``: the total derivatives ``eta_k`` of ``eta``, shape ``(K, I, U)``.
    """
    a, w, w1 = st.a, st.w, st.w1
    inner = da * w[None, :, :, None] + (0.5 * w1[None] * ev)[:, :, :, None] * a[None]
    y = a.transpose(0, 2, 1)[None] @ inner
    return np.asarray(y + y.transpose(0, 1, 3, 2))
