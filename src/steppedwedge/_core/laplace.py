"""Laplace approximation to the GLMM log-likelihood with exact gradients, vectorised over clusters.

Model (per cluster ``i``, units ``u`` = cluster-period cells or groups of rows)::

    eta_iu = x_iu' beta + offset_iu + z_iu' Lambda v_i,    v_i ~ N(0, I_q)

with ``Lambda = diag(sigma[comp])``: every random-effect column ``j`` belongs to one
variance component ``comp[j]`` (cluster intercept, cluster-period, treatment slope) whose
standard deviation ``sigma`` is an outer parameter (``sigma >= 0``, lme4's spherical
parametrisation, so a zero variance is an ordinary boundary point).

For given ``(beta, sigma, alpha)`` the conditional modes ``v_i`` maximise the penalised
log-likelihood ``f_i(v) = sum_u ll_iu - v'v / 2`` (Newton with step halving, all clusters
at once on ``(I, q, q)`` arrays).  The Laplace log-likelihood is

    L = sum_i [ f_i(v_i) - log|H_i| / 2 ] + const,     H_i = I + A_i' W_i A_i,   A_i = Z_i Lambda

with ``W`` the observed information (so the approximation is the one glmmTMB/TMB make;
for canonical links it is also lme4's).  Its gradient with respect to ``beta``, ``sigma``
and the NB log-size ``alpha`` is exact: the envelope theorem for the first term and the
implicit-function derivative of the modes for ``log|H|``, which brings in the third
derivative ``w1 = dW/deta``.  Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .families import Family

__all__ = ["UnitData", "LaplaceState", "modes", "laplace", "laplace_grad"]


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


@dataclass
class LaplaceState:
    """Conditional modes and the pieces of the Laplace approximation at one parameter value."""

    v: np.ndarray          # (I, q) modes (spherical scale)
    eta: np.ndarray        # (I, U)
    ll: np.ndarray         # (I, U) weighted unit log-likelihoods
    s: np.ndarray
    w: np.ndarray
    w1: np.ndarray
    a: np.ndarray          # (I, U, q)  Z Lambda
    h: np.ndarray          # (I, q, q)
    hinv: np.ndarray       # (I, q, q)
    logdet: np.ndarray     # (I,)
    converged: bool
    value: float


def _pieces(data: UnitData, fam: Family, eta: np.ndarray, alpha: float, order: int = 3
            ) -> tuple[np.ndarray, ...]:
    ll, s, w, w1 = fam.derivs(data.y, data.n, eta, alpha)
    wt = data.weight
    return ll * wt, s * wt, w * wt, w1 * wt


def modes(data: UnitData, fam: Family, beta: np.ndarray, sigma: np.ndarray, alpha: float = 0.0,
          v0: np.ndarray | None = None, *, tol: float = 1e-10, max_iter: int = 60) -> LaplaceState:
    """Conditional modes by vectorised Newton iterations and the Laplace log-likelihood."""
    n_i, _, q = data.z.shape
    lam = sigma[data.comp]
    a = data.z * lam
    fixed = data.x @ beta + data.offset
    v = np.zeros((n_i, q)) if v0 is None else v0.copy()
    eye = np.eye(q)
    converged = False

    def evaluate(vv: np.ndarray) -> tuple[np.ndarray, ...]:
        eta = fixed + (a @ vv[:, :, None])[:, :, 0]
        ll, s, w, w1 = _pieces(data, fam, eta, alpha)
        f = ll.sum(axis=1) - 0.5 * (vv * vv).sum(axis=1)
        return eta, ll, s, w, w1, f

    eta, ll, s, w, w1, f = evaluate(v)
    if not np.all(np.isfinite(f)):
        v = np.zeros((n_i, q))
        eta, ll, s, w, w1, f = evaluate(v)
    h = hinv = None
    for _ in range(max_iter):
        g = (s[:, None, :] @ a)[:, 0, :] - v
        at_w = a.transpose(0, 2, 1) * w[:, None, :]
        h = at_w @ a + eye
        try:
            hinv = np.linalg.inv(h)
            step = (hinv @ g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            hinv = None
            step = g
        dec = np.abs(step).max() if step.size else 0.0
        if dec < tol and hinv is not None:
            converged = True
            break
        t = np.ones(n_i)
        for _half in range(30):
            v_new = v + t[:, None] * step
            eta_n, ll_n, s_n, w_n, w1_n, f_n = evaluate(v_new)
            bad = ~np.isfinite(f_n) | (f_n < f - 1e-12 * (1 + np.abs(f)))
            if not bad.any():
                break
            t = np.where(bad, t * 0.5, t)
        v, eta, ll, s, w, w1, f = v_new, eta_n, ll_n, s_n, w_n, w1_n, f_n
        h = None
    if h is None or hinv is None:
        at_w = a.transpose(0, 2, 1) * w[:, None, :]
        h = at_w @ a + eye
        try:
            hinv = np.linalg.inv(h)
        except np.linalg.LinAlgError:
            hinv = np.full_like(h, np.nan)
    sign, logdet = np.linalg.slogdet(h)
    if np.any(sign <= 0):
        logdet = np.where(sign > 0, logdet, np.inf)
    value = float(ll.sum() - 0.5 * (v * v).sum() - 0.5 * logdet.sum() + data.const)
    return LaplaceState(v=v, eta=eta, ll=ll, s=s, w=w, w1=w1, a=a, h=h, hinv=hinv, logdet=logdet,
                        converged=converged, value=value)


def laplace(data: UnitData, fam: Family, beta: np.ndarray, sigma: np.ndarray, alpha: float = 0.0,
            v0: np.ndarray | None = None) -> LaplaceState:
    """Laplace log-likelihood (``.value``) at ``(beta, sigma, alpha)``."""
    return modes(data, fam, beta, sigma, alpha, v0)


def laplace_grad(data: UnitData, fam: Family, st: LaplaceState, sigma: np.ndarray, alpha: float = 0.0,
                 want_hessian: bool = False) -> tuple[Any, ...]:
    """Exact gradient of the Laplace log-likelihood: ``(d/d beta, d/d sigma, d/d alpha)``.

    With ``want_hessian`` also the envelope part of the ``beta`` Hessian of ``-L``,
    ``X'WX - X'WA H^-1 A'WX`` (the third-derivative terms left out).
    """
    x, z, a = data.x, data.z, st.a
    s, w, w1 = st.s, st.w, st.w1
    hinv = st.hinv
    # leverages d_u = a_u' H^-1 a_u
    ah = a @ hinv                                        # (I, U, q)
    d = (ah * a).sum(axis=2)
    c = w1 * d                                           # d(log|H|)/d eta_u
    at_w = a.transpose(0, 2, 1) * w[:, None, :]          # (I, q, U)
    # beta: envelope + log-det term with deta/dbeta = X - A H^-1 A' W X
    g_beta = (s[:, None, :] @ x).sum(axis=0)[0]
    atwx = at_w @ x                                      # (I, q, p)
    deta_db = x - ah @ atwx                              # (I, U, p)
    g_beta = g_beta - 0.5 * (c[:, None, :] @ deta_db).sum(axis=0)[0]
    # sigma_k
    n_comp = data.n_comp
    g_sigma = np.zeros(n_comp)
    m = at_w @ z                                         # A' W Z  (I, q, q)
    hm_diag = (hinv * m.transpose(0, 2, 1)).sum(axis=2)  # diag(H^-1 A'WZ)
    zts = (s[:, None, :] @ z)[:, 0, :]
    for k in range(n_comp):
        ek = (data.comp == k).astype(float)
        ck = z @ (st.v * ek)[:, :, None]                 # (I, U, 1)  Z E_k v
        env = float((s * ck[:, :, 0]).sum())
        dg = (zts * ek)[:, :, None] - at_w @ ck
        deta = ck + a @ (hinv @ dg)
        tr1 = 2.0 * float((hm_diag * ek).sum())
        tr2 = float((c * deta[:, :, 0]).sum())
        g_sigma[k] = env - 0.5 * (tr1 + tr2)
    g_alpha = 0.0
    if fam.has_dispersion:
        dll, ds, dw = fam.dalpha(data.y, st.eta, alpha)
        wt = data.weight
        dll, ds, dw = dll * wt, ds * wt, dw * wt
        atds = (ds[:, None, :] @ a).transpose(0, 2, 1)   # (I, q, 1)
        deta = (a @ (hinv @ atds))[:, :, 0]
        g_alpha = float(dll.sum() - 0.5 * ((dw + w1 * deta) * d).sum())
    if not want_hessian:
        return g_beta, g_sigma, g_alpha
    xtwx = ((x.transpose(0, 2, 1) * w[:, None, :]) @ x).sum(axis=0)
    hb = xtwx - (atwx.transpose(0, 2, 1) @ (hinv @ atwx)).sum(axis=0)
    return g_beta, g_sigma, g_alpha, hb


# ------------------------------------------------------------------------------ outer fit


@dataclass
class CoreFit:
    """Maximum (approximate) likelihood fit of a GLMM."""

    beta: np.ndarray
    sigma: np.ndarray
    alpha: float
    loglik: float
    hessian: np.ndarray        # (P, P) Hessian of -loglik over (beta, sigma, [alpha])
    free: np.ndarray           # (P,) bool: parameters not on a boundary
    grad: np.ndarray           # gradient of loglik at the optimum
    v: np.ndarray              # conditional modes (spherical scale)
    converged: bool
    message: str
    n_eval: int


class _Objective:
    """``theta -> (loglik, gradient)`` with warm-started modes."""

    def __init__(self, data: UnitData, fam: Family, n_quadrature: int) -> None:
        self.data, self.fam, self.nq = data, fam, n_quadrature
        self.p = data.x.shape[2]
        self.k = data.n_comp
        self.v0: np.ndarray | None = None
        self.n_eval = 0

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        p, k = self.p, self.k
        alpha = float(theta[p + k]) if self.fam.has_dispersion else 0.0
        return theta[:p], np.abs(theta[p:p + k]), alpha

    def value(self, theta: np.ndarray) -> float:
        beta, sigma, alpha = self.split(theta)
        self.n_eval += 1
        if self.nq > 1:
            from .agq import agq_value

            val, st = agq_value(self.data, self.fam, beta, sigma, alpha, self.nq, self.v0)
        else:
            st = modes(self.data, self.fam, beta, sigma, alpha, self.v0)
            val = st.value
        if np.isfinite(val) and st.converged:
            self.v0 = st.v
        return val

    def state(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Laplace value, exact gradient (sigma free in sign) and the envelope beta-Hessian of -L."""
        beta, sigma, alpha = self.split(theta)
        self.n_eval += 1
        st = modes(self.data, self.fam, beta, sigma, alpha, self.v0)
        if not np.isfinite(st.value):
            return -np.inf, np.zeros_like(theta), np.zeros((beta.size, beta.size))
        if st.converged:
            self.v0 = st.v
        gb, gs, ga, hb = laplace_grad(self.data, self.fam, st, sigma, alpha, want_hessian=True)
        sgn = np.where(theta[self.p:self.p + self.k] < 0, -1.0, 1.0)
        g = np.concatenate([gb, gs * sgn] + ([np.array([ga])] if self.fam.has_dispersion else []))
        return st.value, g, hb

    def value_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        if self.nq > 1:
            val = self.value(theta)
            return val, self._fd_grad(theta)
        beta, sigma, alpha = self.split(theta)
        self.n_eval += 1
        st = modes(self.data, self.fam, beta, sigma, alpha, self.v0)
        if not np.isfinite(st.value):
            return -np.inf, np.zeros_like(theta)
        if st.converged:
            self.v0 = st.v
        gb, gs, ga = laplace_grad(self.data, self.fam, st, sigma, alpha)
        g = np.concatenate([gb, gs * np.where(theta[self.p:self.p + self.k] < 0, -1.0, 1.0)])
        if self.fam.has_dispersion:
            g = np.append(g, ga)
        return st.value, g

    def _fd_grad(self, theta: np.ndarray) -> np.ndarray:
        g = np.zeros_like(theta)
        for j in range(theta.size):
            h = 1e-6 * max(1.0, abs(theta[j]))
            e = np.zeros_like(theta)
            e[j] = h
            g[j] = (self.value(theta + e) - self.value(theta - e)) / (2 * h)
        return g

    def hessian(self, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Hessian of ``-loglik`` (central differences of the exact gradient; of the value for AGQ)."""
        n = theta.size
        hess = np.zeros((n, n))
        idx = np.flatnonzero(free)
        if self.nq > 1:
            hs = {j: 1e-4 * max(1.0, abs(theta[j])) for j in idx}
            f0 = self.value(theta)
            for a_, j in enumerate(idx):
                for k in idx[a_:]:
                    ej = np.zeros(n)
                    ek = np.zeros(n)
                    ej[j] = hs[j]
                    ek[k] = hs[k]
                    if j == k:
                        val = (self.value(theta + ej) - 2 * f0 + self.value(theta - ej)) / hs[j] ** 2
                    else:
                        val = (self.value(theta + ej + ek) - self.value(theta + ej - ek)
                               - self.value(theta - ej + ek) + self.value(theta - ej - ek)) / (4 * hs[j] * hs[k])
                    hess[j, k] = hess[k, j] = -val
            return hess
        g0 = self.value_grad(theta)[1]
        for j in idx:
            h = 1e-6 * max(1.0, abs(theta[j]))
            e = np.zeros(n)
            e[j] = h
            hess[:, j] = -(self.value_grad(theta + e)[1] - g0) / h
        hess = 0.5 * (hess + hess.T)
        mask = np.outer(free, free)
        return np.where(mask, hess, 0.0)


def fit_glmm_core(data: UnitData, fam: Family, beta0: np.ndarray, sigma0: np.ndarray, alpha0: float = 0.0,
                  *, n_quadrature: int = 1, max_iter: int = 200) -> CoreFit:
    """Maximise the Laplace (``n_quadrature == 1``) or AGQ log-likelihood over ``(beta, sigma, alpha)``.

    Laplace: damped Newton iterations whose Hessian combines the envelope ``beta`` block
    (``X'WX - X'WA H^-1 A'WX``) with forward differences of the exact gradient in the
    variance parameters (``sigma`` is free in sign: the likelihood is even in it).  AGQ:
    L-BFGS-B on finite-difference gradients, started at the Laplace optimum.  The reported
    Hessian is the forward-difference Jacobian of the exact gradient (of the AGQ value:
    central second differences) at the optimum, over the parameters not on the boundary.
    """
    obj = _Objective(data, fam, 1)
    p, k = data.x.shape[2], data.n_comp
    theta = np.concatenate([beta0, sigma0, [alpha0] if fam.has_dispersion else []]).astype(float)
    n_par = theta.size
    var_idx = np.arange(p, n_par)
    val, g, hb = obj.state(theta)
    if not np.isfinite(val):
        raise FloatingPointError("the log-likelihood is not finite at the starting values")
    converged = False
    message = "maximum number of iterations reached"
    last_var_cols = None
    for _it in range(max_iter):
        hess = np.zeros((n_par, n_par))
        hess[:p, :p] = hb
        for j in var_idx:
            h = 1e-6 * max(1.0, abs(theta[j]))
            e = np.zeros(n_par)
            e[j] = h
            gj = obj.state(theta + e)[1]
            col = -(gj - g) / h
            hess[:, j] = col
            hess[j, :] = col
        hess = 0.5 * (hess + hess.T)
        # Levenberg damping until positive definite
        lam = 0.0
        diag = np.abs(np.diag(hess)) + 1e-8
        for _ in range(40):
            try:
                chol = np.linalg.cholesky(hess + lam * np.diag(diag))
                break
            except np.linalg.LinAlgError:
                lam = 1e-4 if lam == 0.0 else lam * 10.0
        else:
            message = "no positive-definite Newton matrix"
            break
        step = np.linalg.solve(chol.T, np.linalg.solve(chol, g))
        decrement = float(g @ step)
        if decrement < 1e-16 * max(1.0, abs(val)) or np.max(np.abs(step)) < 1e-10:
            converged = True
            message = "converged"
            break
        if lam == 0.0 and decrement < 1e-9 and np.max(np.abs(step)) < 1e-5:
            # last (quadratically convergent) Newton step: take it and stop
            v2, g2, hb2 = obj.state(theta + step)
            if np.isfinite(v2) and v2 >= val - 1e-12 * max(1.0, abs(val)):
                theta, val, g, hb = theta + step, v2, g2, hb2
                converged = True
                message = "converged"
                last_var_cols = hess[:, var_idx]
                break
        t = 1.0
        moved = False
        for _ in range(30):
            cand = theta + t * step
            v2, g2, hb2 = obj.state(cand)
            if np.isfinite(v2) and v2 >= val - 1e-12 * max(1.0, abs(val)):
                theta, val, g, hb = cand, v2, g2, hb2
                moved = True
                break
            t *= 0.5
        if not moved:
            message = "line search failed"
            converged = bool(np.max(np.abs(g)) < 1e-4)
            break
    theta[var_idx[:k]] = np.abs(theta[var_idx[:k]])
    free = np.ones(n_par, dtype=bool)
    sig_idx = np.arange(p, p + k)
    free[sig_idx[theta[sig_idx] < 1e-5]] = False
    theta[~free] = 0.0
    if n_quadrature > 1:
        return _fit_agq(data, fam, theta, free, n_quadrature, converged, message)
    if last_var_cols is not None and free.all():
        # variance columns from the last Newton iteration (a step < 1e-5 away: error ~1e-5 * 1e-5);
        # forward differences of the exact gradient in beta
        hess = np.zeros((n_par, n_par))
        hess[:, var_idx] = last_var_cols
        hess[var_idx, :] = last_var_cols.T
        for j in range(p):
            h = 1e-6 * max(1.0, abs(theta[j]))
            e = np.zeros(n_par)
            e[j] = h
            col = -(obj.state(theta + e)[1] - g) / h
            hess[:p, j] = col[:p]
        hess[:p, :p] = 0.5 * (hess[:p, :p] + hess[:p, :p].T)
    else:
        val, g = obj.value_grad(theta)
        hess = obj.hessian(theta, free)
    st = modes(data, fam, theta[:p], theta[p:p + k], float(theta[p + k]) if fam.has_dispersion else 0.0, obj.v0)
    converged = converged and st.converged
    try:
        if np.linalg.eigvalsh(hess[np.ix_(free, free)]).min() <= 0:
            converged = False
            message += "; Hessian not positive definite"
    except np.linalg.LinAlgError:
        converged = False
    return CoreFit(beta=theta[:p].copy(), sigma=theta[p:p + k].copy(),
                   alpha=float(theta[p + k]) if fam.has_dispersion else 0.0, loglik=float(val), hessian=hess,
                   free=free, grad=g, v=st.v, converged=converged, message=message, n_eval=obj.n_eval)


def _fit_agq(data: UnitData, fam: Family, theta0: np.ndarray, free0: np.ndarray, n_quadrature: int,
             converged0: bool, message0: str) -> CoreFit:
    from scipy import optimize

    obj = _Objective(data, fam, n_quadrature)
    p, k = data.x.shape[2], data.n_comp
    n_par = theta0.size
    bounds = [(None, None)] * p + [(0.0, None)] * k + ([(None, None)] if fam.has_dispersion else [])

    def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
        val, g = obj.value_grad(th)
        if not np.isfinite(val):
            return 1e300, np.zeros_like(th)
        return -val, -g

    res = optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-8, "maxcor": 30})
    theta = res.x.copy()
    sig_idx = np.arange(p, p + k)
    free = np.ones(n_par, dtype=bool)
    free[sig_idx[theta[sig_idx] < 1e-5]] = False
    theta[~free] = 0.0
    # polish with Newton steps on the finite-difference Hessian
    val = obj.value(theta)
    hess = obj.hessian(theta, free)
    for _ in range(3):
        g = obj.value_grad(theta)[1]
        try:
            step = np.linalg.solve(hess[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        cand = theta.copy()
        cand[free] += step
        v2 = obj.value(cand)
        if not (np.isfinite(v2) and v2 >= val):
            break
        theta, val = cand, v2
        hess = obj.hessian(theta, free)
    g = obj.value_grad(theta)[1]
    st = modes(data, fam, theta[:p], theta[p:p + k], float(theta[p + k]) if fam.has_dispersion else 0.0)
    converged = bool(res.success or np.max(np.abs(g[free])) < 1e-4) and st.converged
    try:
        if np.linalg.eigvalsh(hess[np.ix_(free, free)]).min() <= 0:
            converged = False
    except np.linalg.LinAlgError:
        converged = False
    return CoreFit(beta=theta[:p].copy(), sigma=theta[p:p + k].copy(),
                   alpha=float(theta[p + k]) if fam.has_dispersion else 0.0, loglik=float(val), hessian=hess,
                   free=free, grad=g, v=st.v, converged=converged, message=str(res.message), n_eval=obj.n_eval)
