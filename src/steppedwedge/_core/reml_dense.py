"""REML / ML with an individual random intercept (closed or open cohorts), cluster by cluster.

With repeated measures on the same individuals the covariance of the rows of cluster ``i``
is ``V_i = A_i G_i A_i' + psi2 B_i B_i' + sigma2 I`` (``A_i`` maps rows to periods, ``B_i``
rows to individuals).  The individual effects cross the cells, so the cell-mean reduction
of :mod:`steppedwedge._core.reml` is exact only for balanced closed cohorts; here each
cluster's ``n_i x n_i`` block is handled exactly instead (cost ``O(sum_i n_i^3)``, linear in
the number of clusters; clusters of a few hundred rows take milliseconds).  Everything else
(profiling of ``sigma2``, relative parameters, bounds, lme4 constants, the derivative
quantities for Kenward-Roger and Satterthwaite) mirrors the cell engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .reml import (
    _LOG2PI,
    CellData,
    CovarianceStructure,
    LMMFit,
    VarianceDerivatives,
    _boundary_names,
    _start_values,
    gradient_from_derivatives,
    kkt_converged,
    lbfgsb,
    phi_box,
    projected_newton,
)

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "RowData",
    "fit_lmm_rows",
    "loglik_rows",
    "variance_derivatives_rows",
    "gradient_natural_rows",
]


@dataclass(frozen=True)
class RowData:
    """Rows grouped by cluster: design, outcome, period index and individual index."""

    x: tuple[FloatArray, ...]
    y: tuple[FloatArray, ...]
    period: tuple[npt.NDArray[np.int64], ...]
    individual: tuple[npt.NDArray[np.int64], ...]
    cells: CellData  # cell statistics of the same rows (treatment, observed pattern, times)

    @classmethod
    def from_arrays(
        cls,
        cluster_index: npt.ArrayLike,
        period_index: npt.ArrayLike,
        individual_index: npt.ArrayLike,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        n_clusters: int,
        n_periods: int,
        treatment: npt.ArrayLike,
        times: npt.ArrayLike | None = None,
    ) -> RowData:
        """Split row arrays by cluster (integer codes)."""
        ci = np.asarray(cluster_index, dtype=np.int64)
        pi = np.asarray(period_index, dtype=np.int64)
        ii = np.asarray(individual_index, dtype=np.int64)
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        order = np.argsort(ci, kind="stable")
        bounds = np.searchsorted(ci[order], np.arange(n_clusters + 1))
        xs, ys, ps, ids = [], [], [], []
        for i in range(n_clusters):
            sel = order[bounds[i] : bounds[i + 1]]
            xs.append(x[sel])
            ys.append(y[sel])
            ps.append(pi[sel])
            _, codes = np.unique(ii[sel], return_inverse=True)
            ids.append(np.asarray(codes, dtype=np.int64).reshape(-1))
        cells = CellData.from_individual(
            ci,
            pi,
            x,
            y,
            n_clusters=n_clusters,
            n_periods=n_periods,
            treatment=treatment,
            times=times,
        )
        return cls(tuple(xs), tuple(ys), tuple(ps), tuple(ids), cells)

    @property
    def n_total(self) -> int:
        """Number of rows."""
        return int(sum(len(v) for v in self.y))


def _blocks(
    data: RowData, i: int, g_cell: FloatArray, dg_cell: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    p = data.period[i]
    ind = data.individual[i]
    g = g_cell[i][np.ix_(p, p)]
    dg = dg_cell[:, i][:, p][:, :, p]
    same = (ind[:, None] == ind[None, :]).astype(float)
    return g, dg, same


def _phi_jacobian(structure: CovarianceStructure, phi: FloatArray) -> FloatArray:
    """``d natural / d phi`` at ``sigma2 = 1`` (identity except for a correlated slope)."""
    k = structure.n_phi
    jac = np.eye(k)
    if structure.slope == "correlated":
        l11, l21, l22 = phi[0:3]
        jac[0:3, 0:3] = [[2 * l11, 0.0, 0.0], [l21, l11, 0.0], [0.0, 2 * l21, 2 * l22]]
    return jac


def _cluster_blocks_phi(
    structure: CovarianceStructure, phi: FloatArray, cells: CellData
) -> tuple[FloatArray, FloatArray]:
    """Per-cluster relative ``G~`` (I, T, T) and ``dG~/dphi`` (k, I, T, T)."""
    g, dg_nat = structure.blocks_natural(structure.phi_to_natural(phi, 1.0), cells)
    if dg_nat.shape[0] == 0:
        return g, dg_nat
    jac = _phi_jacobian(structure, phi)
    return g, np.tensordot(jac.T, dg_nat, axes=1)


def profiled_deviance_rows(
    phi: FloatArray, data: RowData, structure: CovarianceStructure, reml: bool = True
) -> tuple[float, FloatArray, dict[str, object]]:
    """Profiled ``-2 log L``; ``phi`` = structure's relative parameters + ``psi2 / sigma2``."""
    k_s = structure.n_phi
    g_cell, dg_cell = _cluster_blocks_phi(structure, phi[:k_s], data.cells)
    lam_p = float(phi[k_s])
    p = data.x[0].shape[1]
    logdet = 0.0
    a = np.zeros((p + 1, p + 1))
    store = []
    for i in range(len(data.y)):
        if len(data.y[i]) == 0:
            continue
        g, dg, same = _blocks(data, i, g_cell, dg_cell)
        v = g + lam_p * same + np.eye(len(data.y[i]))
        chol = np.linalg.cholesky(v)
        logdet += 2.0 * float(np.log(np.diag(chol)).sum())
        vinv = np.linalg.inv(v)
        u = np.column_stack([data.x[i], data.y[i]])
        vu = vinv @ u
        a += u.T @ vu
        store.append((vinv, vu, dg, same))
    m_t = a[:p, :p]
    chol_m = np.linalg.cholesky(m_t)
    beta = np.linalg.solve(m_t, a[:p, p])
    q = float(a[p, p] - a[p, :p] @ beta)
    n = data.n_total
    dfn = n - p if reml else n
    sigma2 = q / dfn
    dev = dfn * (1.0 + _LOG2PI + np.log(sigma2)) + logdet
    if reml:
        dev += 2.0 * float(np.log(np.diag(chol_m)).sum())
    w = np.append(-beta, 1.0)
    m_inv = np.linalg.inv(m_t)
    grad = np.zeros(k_s + 1)
    for vinv, vu, dg, same in store:
        r = vu @ w
        c = vinv - (dfn / q) * np.outer(r, r)
        if reml:
            vx = vu[:, :p]
            c = c - vx @ m_inv @ vx.T
        grad[:k_s] += np.tensordot(dg, c, axes=2) if k_s else 0.0
        grad[k_s] += float(np.sum(same * c))
    return float(dev), grad, {"beta": beta, "sigma2": sigma2, "m_tilde": m_t}


def fit_lmm_rows(
    data: RowData, structure: CovarianceStructure, *, reml: bool = True, maxiter: int = 1000
) -> LMMFit:
    """Fit the model with an individual random intercept (names end with ``psi2``)."""
    bounds = structure.phi_bounds() + [(0.0, None)]
    x0 = np.append(_start_values(data.cells, structure), 0.1)
    lo, hi = phi_box(bounds)
    n_eval = 0

    def fun(x: FloatArray) -> tuple[float, FloatArray]:
        nonlocal n_eval
        n_eval += 1
        try:
            f, g, _ = profiled_deviance_rows(x, data, structure, reml)
        except np.linalg.LinAlgError:
            return 1e300, np.zeros_like(x)
        return f, g

    x, ok, message = projected_newton(fun, np.clip(x0, lo, hi), lo, hi)
    if not ok:
        res = lbfgsb(fun, x, bounds, maxiter)
        x = np.asarray(res.x, dtype=float)
        message = "projected Newton failed; L-BFGS-B: " + str(res.message)
    f, g, extras = profiled_deviance_rows(x, data, structure, reml)
    converged = kkt_converged(x, lo, hi, f, g)
    sigma2 = float(extras["sigma2"])  # type: ignore[arg-type]
    natural = np.append(structure.phi_to_natural(x[:-1], sigma2), x[-1] * sigma2)
    at_bound = _boundary_names(x[:-1], structure) + (("psi2",) if x[-1] < 1e-8 else ())
    cov_beta = sigma2 * np.linalg.inv(np.asarray(extras["m_tilde"]))
    return LMMFit(
        beta=np.asarray(extras["beta"]),
        cov_beta=0.5 * (cov_beta + cov_beta.T),
        natural=natural,
        sigma2=sigma2,
        names=structure.natural_names + ("psi2",),
        phi=x,
        loglik=-0.5 * f,
        reml=reml,
        converged=converged,
        singular=bool(at_bound),
        at_bound=at_bound,
        n_evaluations=n_eval,
        message=message,
        structure=structure,
    )


def _dense_terms(
    natural: FloatArray, sigma2: float, data: RowData, structure: CovarianceStructure
) -> Iterator[tuple[int, FloatArray, list[FloatArray]]]:
    k_s = structure.n_phi
    g_cell, dg_cell = structure.blocks_natural(natural[:k_s], data.cells)
    psi2 = float(natural[k_s])
    for i in range(len(data.y)):
        if len(data.y[i]) == 0:
            continue
        g, dg, same = _blocks(data, i, g_cell, dg_cell)
        n_i = len(data.y[i])
        v = g + psi2 * same + sigma2 * np.eye(n_i)
        gs = list(dg) + [same, np.eye(n_i)]
        yield i, v, gs


def loglik_rows(
    natural: FloatArray,
    sigma2: float,
    data: RowData,
    structure: CovarianceStructure,
    *,
    reml: bool = True,
) -> float:
    """Log-likelihood (lme4 constants) at given parameters (natural + psi2, then sigma2)."""
    p = data.x[0].shape[1]
    logdet = 0.0
    a = np.zeros((p + 1, p + 1))
    for i, v, _ in _dense_terms(natural, sigma2, data, structure):
        logdet += np.linalg.slogdet(v)[1]
        u = np.column_stack([data.x[i], data.y[i]])
        a += u.T @ np.linalg.solve(v, u)
    m = a[:p, :p]
    beta = np.linalg.solve(m, a[:p, p])
    quad = float(a[p, p] - a[p, :p] @ beta)
    n = data.n_total
    if reml:
        return float(-0.5 * ((n - p) * _LOG2PI + logdet + np.linalg.slogdet(m)[1] + quad))
    return float(-0.5 * (n * _LOG2PI + logdet + quad))


def variance_derivatives_rows(
    natural: FloatArray, sigma2: float, data: RowData, structure: CovarianceStructure
) -> VarianceDerivatives:
    """Dense per-cluster version of :func:`steppedwedge._core.reml.variance_derivatives`."""
    p = data.x[0].shape[1]
    terms = list(_dense_terms(natural, sigma2, data, structure))
    k_n = len(terms[0][2])
    m = np.zeros((p, p))
    xy = np.zeros(p)
    cache = []
    for i, v, gs in terms:
        vinv = np.linalg.inv(v)
        vx = vinv @ data.x[i]
        m += data.x[i].T @ vx
        xy += vx.T @ data.y[i]
        cache.append((i, vinv, vx, gs))
    phi = np.linalg.inv(m)
    phi = 0.5 * (phi + phi.T)
    beta = phi @ xy
    xgx = np.zeros((k_n, p, p))
    q = np.zeros((k_n, k_n, p, p))
    ktrace = np.zeros((k_n, k_n))
    trace = np.zeros(k_n)
    rgr = np.zeros(k_n)
    for i, vinv, vx, gs in cache:
        r = vinv @ (data.y[i] - data.x[i] @ beta)
        h = [gr @ vinv for gr in gs]
        gx = [gr @ vx for gr in gs]
        for a_ in range(k_n):
            trace[a_] += np.trace(h[a_])
            xgx[a_] += vx.T @ gx[a_]
            rgr[a_] += r @ gs[a_] @ r
            for b_ in range(k_n):
                ktrace[a_, b_] += float(np.sum(h[a_] * h[b_].T))
                q[a_, b_] += gx[a_].T @ vinv @ gx[b_]
    return VarianceDerivatives(
        beta=beta,
        phi=phi,
        xgx=xgx,
        q=q,
        ktrace=ktrace,
        trace=trace,
        rgr=rgr,
        names=structure.natural_names + ("psi2", "sigma2"),
    )


def gradient_natural_rows(
    natural: FloatArray,
    sigma2: float,
    data: RowData,
    structure: CovarianceStructure,
    *,
    reml: bool = True,
) -> FloatArray:
    """Gradient of ``-2 log L`` in (natural parameters, psi2, sigma2)."""
    return gradient_from_derivatives(
        variance_derivatives_rows(natural, sigma2, data, structure), reml
    )
