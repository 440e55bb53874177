"""REML / ML for Gaussian stepped-wedge mixed models on cluster-period sufficient statistics.

Model, for individual ``k`` in cluster ``i`` and period ``j``::

    y_ijk = x_ijk' beta + u_ij + e_ijk,     e_ijk ~ N(0, sigma2),

where the cluster-level random effects ``u_i = (u_i1..u_iT)`` have covariance ``G_i`` (a
``T x T`` block built from the variance components, see :class:`CovarianceStructure`).
Because every random effect is constant within a cluster-period cell, an orthogonal
(Helmert) rotation inside each cell splits the data into the scaled cell means
``sqrt(m_ij) * ybar_ij`` (covariance ``D (G_i + sigma2 diag(1/m)) D``) and ``N - C``
within-cell contrasts that are independent ``N(., sigma2)``.  Hence, exactly,

* ``log|V| = sum_i log|Sigma_i| + sum_ij log m_ij + (N - C) log sigma2`` with
  ``Sigma_i = G_i + sigma2 diag(1/m_i)`` the covariance of the cell means;
* ``X'V^{-1}X = sum_i Xbar_i' Sigma_i^{-1} Xbar_i + W_xx / sigma2`` and likewise for ``X'V^{-1}y``
  and ``y'V^{-1}y``, where ``W`` is the pooled within-cell cross-product matrix of
  ``[X, y]`` (``W_yy`` = within-cell sum of squares).

So the likelihood needs only cell sizes, cell means of ``[X, y]`` and one
``(p+1) x (p+1)`` matrix of within-cell cross-products, whatever the number of individuals.
The log-likelihoods use lme4's constants: ML ``-N/2 log(2 pi) - ...`` and REML
``-(N-p)/2 log(2 pi) - 1/2 (log|V| + log|X'V^{-1}X| + r'V^{-1}r)`` (no ``log|X'X|`` term),
so :attr:`LMMFit.loglik` equals ``logLik()`` of the corresponding ``lmer`` fit.

Optimisation profiles out ``sigma2``: the covariance is written ``sigma2 * (diag(1/m) + G~)``
with relative parameters ``phi`` (variance ratios ``lambda = v / sigma2`` bounded at 0, a
relative Cholesky factor for a correlated intercept/slope pair, and the decay ``r``), and the
profiled deviance is minimised by L-BFGS-B with its analytic gradient, then polished with
a few projected Newton steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy.linalg.lapack import dpotrf as _dpotrf
from scipy.linalg.lapack import dpotri as _dpotri
from scipy.linalg.lapack import dpotrs as _dpotrs
from scipy.linalg.lapack import dsyevd as _dsyevd

from .covariance import decay_matrix

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "CellData",
    "CovarianceStructure",
    "LMMFit",
    "VarianceDerivatives",
    "fit_lmm",
    "profiled_deviance",
    "variance_derivatives",
    "loglik_at",
]

_LOG2PI = float(np.log(2.0 * np.pi))
_TRIU: dict[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = {}  # upper-triangle pairs
_DECAY_BOUND = 1.0 - 1e-6
#: Lower bound of a decay on fractional distances (continuous time): r**t needs r > 0.
_DECAY_FLOOR = 1e-6


@dataclass(frozen=True)
class CellData:
    """Sufficient statistics of a Gaussian model with cell-level random effects.

    Parameters
    ----------
    n : ndarray, shape (I, T)
        Rows per cell (0 where unobserved).
    xbar : ndarray, shape (I, T, p)
        Cell means of the fixed-effect design (any value where unobserved).
    ybar : ndarray, shape (I, T)
        Cell means of the outcome (any value where unobserved).
    within : ndarray, shape (p + 1, p + 1)
        Pooled within-cell cross-products of ``[X, y]`` about the cell means.
    treatment : ndarray, shape (I, T)
        Cell treatment intensity (used by random treatment effects).
    times : ndarray, shape (T,)
        Period positions for the decay distance (default ``0..T-1``).
    """

    n: FloatArray
    xbar: FloatArray
    ybar: FloatArray
    within: FloatArray
    treatment: FloatArray
    times: FloatArray
    observed: BoolArray = field(init=False)
    inv_m: FloatArray = field(init=False)
    n_total: float = field(init=False)
    n_cells: int = field(init=False)
    sum_log_m: float = field(init=False)
    xa: FloatArray = field(init=False)
    obs2: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        n = np.asarray(self.n, dtype=float)
        observed = n > 0
        inv_m = np.where(observed, 1.0 / np.where(observed, n, 1.0), 0.0)
        xbar = np.where(observed[:, :, None], np.asarray(self.xbar, dtype=float), 0.0)
        ybar = np.where(observed, np.asarray(self.ybar, dtype=float), 0.0)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "xbar", xbar)
        object.__setattr__(self, "ybar", ybar)
        object.__setattr__(self, "within", np.asarray(self.within, dtype=float))
        object.__setattr__(
            self,
            "treatment",
            np.where(observed, np.nan_to_num(np.asarray(self.treatment, dtype=float)), 0.0),
        )
        object.__setattr__(self, "times", np.asarray(self.times, dtype=float))
        object.__setattr__(self, "observed", observed)
        object.__setattr__(self, "inv_m", inv_m)
        object.__setattr__(self, "n_total", float(n.sum()))
        object.__setattr__(self, "n_cells", int(observed.sum()))
        object.__setattr__(self, "sum_log_m", float(np.log(n[observed]).sum()))
        object.__setattr__(self, "xa", np.concatenate([xbar, ybar[:, :, None]], axis=2))
        object.__setattr__(
            self, "obs2", (observed[:, :, None] & observed[:, None, :]).astype(float)
        )

    @property
    def n_fixed(self) -> int:
        """Number of fixed-effect columns ``p``."""
        return int(self.xbar.shape[2])

    @classmethod
    def from_individual(
        cls,
        cluster_index: npt.ArrayLike,
        period_index: npt.ArrayLike,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        n_clusters: int,
        n_periods: int,
        treatment: npt.ArrayLike | None = None,
        times: npt.ArrayLike | None = None,
    ) -> CellData:
        """Aggregate individual rows (integer cluster/period codes) into cell statistics."""
        ci = np.asarray(cluster_index, dtype=np.int64)
        pi = np.asarray(period_index, dtype=np.int64)
        xa = np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
        p1 = xa.shape[1]
        cell = ci * n_periods + pi
        n_all = n_clusters * n_periods
        n = np.bincount(cell, minlength=n_all).astype(float)
        sums = np.zeros((n_all, p1))
        for k in range(p1):
            sums[:, k] = np.bincount(cell, weights=xa[:, k], minlength=n_all)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / n[:, None]
        means = np.where(n[:, None] > 0, means, 0.0)
        dev = xa - means[cell]
        within = dev.T @ dev
        n2 = n.reshape(n_clusters, n_periods)
        means3 = means.reshape(n_clusters, n_periods, p1)
        if treatment is None:
            trt = np.zeros((n_clusters, n_periods))
        else:
            trt = np.asarray(treatment, dtype=float)
        if times is None:
            times = np.arange(n_periods, dtype=float)
        return cls(
            n=n2,
            xbar=means3[:, :, :-1],
            ybar=means3[:, :, -1],
            within=within,
            treatment=trt,
            times=np.asarray(times, dtype=float),
        )


SlopeKind = Literal["none", "independent", "correlated"]


@dataclass(frozen=True)
class CovarianceStructure:
    """Which random effects make up the cluster block ``G_i``.

    ``G_i = tau2 J + gamma2 R(r) + eta2 x_i x_i' + c (1 x_i' + x_i 1')`` with the terms
    switched on by the flags.  ``R(r) = I`` without decay.

    Natural parameters (order): ``tau2`` (if ``intercept``), ``cov_te`` (if the slope is
    correlated), ``eta2`` (if any slope), ``gamma2`` (if ``cluster_period``), ``decay``
    (if ``decay``); ``sigma2`` is always last and handled separately.  ``positive_decay``
    confines the decay to ``(0, 1)``: needed when the distances ``|t_j - t_k|`` are not
    whole numbers (continuous-time decay, ``decay_scale="time"``), where ``r**t`` is not
    real for ``r < 0``.
    """

    intercept: bool = True
    cluster_period: bool = True
    decay: bool = False
    slope: SlopeKind = "none"
    positive_decay: bool = False

    def __post_init__(self) -> None:
        if self.decay and not self.cluster_period:
            raise ValueError("`decay` needs the cluster-period term.")
        if self.slope == "correlated" and not self.intercept:
            raise ValueError("A correlated treatment slope needs the cluster intercept.")

    # ------------------------------------------------------------------ names
    @property
    def natural_names(self) -> tuple[str, ...]:
        """Names of the natural parameters, ``sigma2`` excluded."""
        names: list[str] = []
        if self.intercept:
            names.append("tau2")
        if self.slope == "correlated":
            names.append("cov_te")
        if self.slope != "none":
            names.append("eta2")
        if self.cluster_period:
            names.append("gamma2")
        if self.decay:
            names.append("decay")
        return tuple(names)

    @property
    def n_phi(self) -> int:
        """Number of relative (optimisation) parameters."""
        return len(self.natural_names)

    def phi_bounds(self) -> list[tuple[float | None, float | None]]:
        """Box bounds of the relative parameters."""
        out: list[tuple[float | None, float | None]] = []
        if self.slope == "correlated":
            out += [(0.0, None), (None, None), (0.0, None)]
        else:
            if self.intercept:
                out.append((0.0, None))
            if self.slope == "independent":
                out.append((0.0, None))
        if self.cluster_period:
            out.append((0.0, None))
        if self.decay:
            out.append((_DECAY_FLOOR if self.positive_decay else -_DECAY_BOUND, _DECAY_BOUND))
        return out

    # ------------------------------------------------------- conversions
    def phi_to_natural(self, phi: FloatArray, sigma2: float) -> FloatArray:
        """Natural parameters (absolute variances) from relative ones."""
        phi = np.asarray(phi, dtype=float)
        out: list[float] = []
        k = 0
        if self.slope == "correlated":
            l11, l21, l22 = phi[0:3]
            out += [l11 * l11 * sigma2, l11 * l21 * sigma2, (l21 * l21 + l22 * l22) * sigma2]
            k = 3
        else:
            if self.intercept:
                out.append(phi[k] * sigma2)
                k += 1
            if self.slope == "independent":
                out.append(phi[k] * sigma2)
                k += 1
        if self.cluster_period:
            out.append(phi[k] * sigma2)
            k += 1
        if self.decay:
            out.append(phi[k])
        return np.array(out, dtype=float)

    def natural_to_phi(self, natural: FloatArray, sigma2: float) -> FloatArray:
        """Inverse of :meth:`phi_to_natural` (for start values)."""
        nat = np.asarray(natural, dtype=float)
        out: list[float] = []
        k = 0
        if self.slope == "correlated":
            t2, c, e2 = nat[0:3] / sigma2
            l11 = np.sqrt(max(t2, 0.0))
            l21 = c / l11 if l11 > 0 else 0.0
            l22 = np.sqrt(max(e2 - l21 * l21, 0.0))
            out += [l11, l21, l22]
            k = 3
        else:
            if self.intercept:
                out.append(nat[k] / sigma2)
                k += 1
            if self.slope == "independent":
                out.append(nat[k] / sigma2)
                k += 1
        if self.cluster_period:
            out.append(nat[k] / sigma2)
            k += 1
        if self.decay:
            out.append(nat[k])
        return np.array(out, dtype=float)

    # ------------------------------------------------------------ blocks
    def _pieces(self, cells: CellData) -> tuple[FloatArray, FloatArray, FloatArray]:
        t = cells.n.shape[1]
        x = cells.treatment
        ones = np.ones(t)
        jmat = np.ones((t, t))
        xx = x[:, :, None] * x[:, None, :]
        cross = x[:, None, :] * ones[None, :, None] + x[:, :, None] * ones[None, None, :]
        return jmat, xx, cross

    def blocks_natural(self, natural: FloatArray, cells: CellData) -> tuple[FloatArray, FloatArray]:
        """``G`` (I, T, T) and ``dG/d natural`` (k, I, T, T), both masked to observed cells."""
        nat = np.asarray(natural, dtype=float)
        i_n, t = cells.n.shape
        jmat, xx, cross = self._pieces(cells)
        g = np.zeros((i_n, t, t))
        d: list[FloatArray] = []
        k = 0
        if self.intercept:
            g = g + nat[k] * jmat
            d.append(np.broadcast_to(jmat, (i_n, t, t)))
            k += 1
        if self.slope == "correlated":
            g = g + nat[k] * cross
            d.append(cross)
            k += 1
        if self.slope != "none":
            g = g + nat[k] * xx
            d.append(xx)
            k += 1
        if self.cluster_period:
            gamma2 = nat[k]
            r = nat[k + 1] if self.decay else None
            rmat = decay_matrix(r, cells.times)
            g = g + gamma2 * rmat
            d.append(np.broadcast_to(rmat, (i_n, t, t)))
            k += 1
            if self.decay:
                lag = np.abs(cells.times[:, None] - cells.times[None, :])
                assert r is not None
                with np.errstate(divide="ignore", invalid="ignore"):
                    dr = np.where(lag == 0, 0.0, lag * np.power(r, lag - 1.0))
                d.append(np.broadcast_to(gamma2 * dr, (i_n, t, t)))
        mask = cells.obs2
        dg = np.stack(d) * mask[None] if d else np.zeros((0, i_n, t, t))
        return g * mask, dg

    def blocks_phi(self, phi: FloatArray, cells: CellData) -> tuple[FloatArray, FloatArray]:
        """Relative ``G~`` and ``dG~/dphi`` (masked)."""
        phi = np.asarray(phi, dtype=float)
        ws = _workspace(cells)
        d: list[FloatArray] = []
        g: FloatArray | float = 0.0
        k = 0
        if self.slope == "correlated":
            l11, l21, l22 = phi[0:3]
            c00, c01, c11 = l11 * l11, l11 * l21, l21 * l21 + l22 * l22
            g = c00 * ws.jm + c01 * ws.cross + c11 * ws.xx
            d.append(2 * l11 * ws.jm + l21 * ws.cross)
            d.append(l11 * ws.cross + 2 * l21 * ws.xx)
            d.append(2 * l22 * ws.xx)
            k = 3
        elif not self.decay:
            # linear in phi: G~ = sum_k phi_k B_k with a cached basis
            basis = ws.linear_basis(self)
            return (phi @ basis.reshape(basis.shape[0], -1)).reshape(basis.shape[1:]), basis
        else:
            if self.intercept:
                g = g + phi[k] * ws.jm
                d.append(ws.jm)
                k += 1
            if self.slope == "independent":
                g = g + phi[k] * ws.xx
                d.append(ws.xx)
                k += 1
        if self.cluster_period:
            lam = phi[k]
            if self.decay:
                r = float(phi[k + 1])
                rmat, dr = ws.decay(r)
                g = g + lam * rmat
                d.append(rmat)
                d.append(lam * dr)
            else:
                g = g + lam * ws.eye
                d.append(ws.eye)
        if isinstance(g, float):
            g = np.zeros_like(ws.jm)
        return g, (np.stack(d) if d else np.zeros((0,) + ws.jm.shape))


class _Workspace:
    """Constant pieces of the likelihood for one :class:`CellData`, cached on it.

    Clusters with the same observed pattern, cell sizes and treatment row share one
    covariance block, so blocks are built and inverted once per *pattern* ``g``; the data
    enter through ``C_g = sum_{i in g} xa_i (x) xa_i`` (``T x T x P x P``).
    """

    def __init__(self, cells: CellData) -> None:
        i_n, t = cells.n.shape
        keys = np.ascontiguousarray(
            np.concatenate([cells.observed.astype(float), cells.inv_m, cells.treatment], axis=1)
        )
        first: dict[bytes, int] = {}
        inverse = np.empty(i_n, dtype=np.int64)
        for i in range(i_n):
            inverse[i] = first.setdefault(keys[i].tobytes(), len(first))
        n_g = len(first)
        uniq = keys[[inverse.tolist().index(g) for g in range(n_g)]]
        self.count = np.bincount(inverse, minlength=n_g).astype(float)
        obs = uniq[:, :t] > 0.5
        inv_m = uniq[:, t : 2 * t]
        x = uniq[:, 2 * t :]
        mask = (obs[:, :, None] & obs[:, None, :]).astype(float)
        self.mask = mask
        self.jm = mask
        self.xx = x[:, :, None] * x[:, None, :] * mask
        self.cross = (x[:, None, :] + x[:, :, None]) * mask
        idx = np.arange(t)
        eye = np.zeros((n_g, t, t))
        eye[:, idx, idx] = obs
        self.eye = eye
        self.lag = np.abs(cells.times[:, None] - cells.times[None, :])
        base = np.zeros((n_g, t, t))
        base[:, idx, idx] = np.where(obs, inv_m, 1.0)
        self.base = base
        self.base_diag = np.where(obs, inv_m, 1.0)
        self.obs_f = obs.astype(float)
        self.idx = idx
        xa = cells.xa
        big = xa.shape[2]
        outer = (xa[:, :, None, :, None] * xa[:, None, :, None, :]).reshape(i_n, -1)
        onehot = np.zeros((n_g, i_n))
        onehot[inverse, np.arange(i_n)] = 1.0
        cg = onehot @ outer
        self.c_flat = cg.reshape(n_g * t * t, big * big)
        self.n_groups = n_g
        self.big = big

    def linear_basis(self, structure: CovarianceStructure) -> FloatArray:
        """Stacked ``dG~/dphi`` for structures linear in ``phi`` (cached)."""
        key = (structure.intercept, structure.slope, structure.cluster_period)
        cache = self.__dict__.setdefault("_basis", {})
        if key not in cache:
            d = []
            if structure.intercept:
                d.append(self.jm)
            if structure.slope == "independent":
                d.append(self.xx)
            if structure.cluster_period:
                d.append(self.eye)
            cache[key] = np.ascontiguousarray(np.stack(d)) if d else np.zeros((0,) + self.jm.shape)
        out: FloatArray = cache[key]
        return out

    def decay(self, r: float) -> tuple[FloatArray, FloatArray]:
        lag = self.lag
        with np.errstate(divide="ignore", invalid="ignore"):
            rmat = np.where(lag == 0, 1.0, np.power(r, lag))
            dr = np.where(lag == 0, 0.0, lag * np.power(r, lag - 1.0))
        return rmat * self.mask, dr * self.mask


def _workspace(cells: CellData) -> _Workspace:
    ws = cells.__dict__.get("_ws")
    if ws is None:
        ws = _Workspace(cells)
        object.__setattr__(cells, "_ws", ws)
    return ws


# ---------------------------------------------------------------------------- kernels


def _inv_logdet(s: FloatArray) -> tuple[FloatArray, float]:
    """Batched inverse and total log-determinant of SPD blocks (raises LinAlgError)."""
    chol = np.linalg.cholesky(s)
    logdet = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
    t = s.shape[1]
    linv = np.linalg.solve(chol, np.broadcast_to(np.eye(t), s.shape))
    sinv = np.einsum("iks,ikt->ist", linv, linv)
    return sinv, logdet


def _closed_form_sinv(
    structure: CovarianceStructure, natural: FloatArray, sigma2: float, cells: CellData
) -> FloatArray:
    """Inverse of ``tau2 o o' + diag(gamma2 o + sigma2/m)`` per cluster (Sherman-Morrison).

    Unobserved rows/columns hold the identity, as in :func:`_masked_cov`.
    """
    nat = np.asarray(natural, dtype=float)
    tau2 = float(nat[0]) if structure.intercept else 0.0
    gamma2 = float(nat[int(structure.intercept)]) if structure.cluster_period else 0.0
    obs = cells.observed
    d = np.where(obs, sigma2 * cells.inv_m + gamma2, 1.0)
    if d.min() <= 0:
        raise np.linalg.LinAlgError("covariance block not positive definite")
    dinv = 1.0 / d
    do = np.where(obs, dinv, 0.0)
    denom = 1.0 + tau2 * do.sum(axis=1)
    if denom.min() <= 0:
        raise np.linalg.LinAlgError("covariance block not positive definite")
    sinv: FloatArray = (-(tau2 / denom)[:, None] * do)[:, :, None] * do[:, None, :]
    t = sinv.shape[1]
    sinv.reshape(sinv.shape[0], t * t)[:, :: t + 1] += dinv
    return sinv


def _masked_cov(cells: CellData, g: FloatArray, diag_scale: float) -> FloatArray:
    """``g + diag_scale * diag(1/m)`` with unobserved rows/cols replaced by the identity."""
    s = g.copy()
    t = s.shape[1]
    idx = np.arange(t)
    s[:, idx, idx] += np.where(cells.observed, diag_scale * cells.inv_m, 1.0)
    out: FloatArray = s
    return out


def profiled_deviance(
    phi: FloatArray,
    cells: CellData,
    structure: CovarianceStructure,
    reml: bool = True,
    gradient: bool = True,
    *,
    closed_form: bool = True,
    hessian: bool = False,
) -> tuple[float, FloatArray, dict[str, object]]:
    """Profiled ``-2 log L`` (sigma2 profiled out) and its gradient in ``phi``.

    Returns ``(deviance, gradient, extras)`` where ``extras`` holds ``beta``, ``sigma2``,
    ``m_tilde`` (``X'V~^{-1}X``) for reuse.

    For the cluster and nested structures (no slope, no decay) the relative block of a
    cluster pattern is ``D + lam_tau o o'`` with ``D`` diagonal, so its inverse and
    log-determinant come from Sherman-Morrison and the gradient from closed forms;
    ``closed_form=False`` forces the general batched-LAPACK path (used by the tests).
    """
    p = cells.n_fixed
    ws = _workspace(cells)
    fast = closed_form and structure.slope == "none" and not structure.decay
    if fast:
        sm = _nested_inverse(phi, ws, structure)
        logdet, sinv = sm.logdet, sm.sinv
    else:
        g, dg = structure.blocks_phi(phi, cells)
        s = ws.base + g
        sign, logdets = np.linalg.slogdet(s)
        if np.any(sign <= 0):
            raise np.linalg.LinAlgError("covariance block not positive definite")
        logdet = float(ws.count @ logdets)
        sinv = np.asarray(np.linalg.inv(s), dtype=np.float64)
    n_g, t = ws.n_groups, sinv.shape[1]
    big = ws.big
    a = (sinv.reshape(1, -1) @ ws.c_flat).reshape(big, big) + cells.within
    m_t = a[:p, :p]
    chol_m, info = _dpotrf(m_t, lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError("X'V^{-1}X is not positive definite")
    beta = _dpotrs(chol_m, a[:p, p], lower=1)[0]
    q = float(a[p, p] - a[p, :p] @ beta)
    n = cells.n_total
    dfn = n - p if reml else n
    if q <= 0 or dfn <= 0:
        raise np.linalg.LinAlgError("non-positive residual sum of squares")
    sigma2 = q / dfn
    dev = dfn * (1.0 + _LOG2PI + math.log(sigma2)) + logdet + cells.sum_log_m
    logdet_m = 2.0 * float(np.log(chol_m.diagonal()).sum())
    if reml:
        dev += logdet_m
    grad = np.zeros(len(phi))
    if gradient and len(phi):
        w = np.empty(p + 1)
        w[:p] = -beta
        w[p] = 1.0
        inner = (dfn / q) * (w[:, None] * w[None, :])
        if reml:
            # dpotri fills the lower triangle; the upper one is zero (clean Cholesky)
            low = _dpotri(chol_m, lower=1)[0]
            m_inv = low + low.T
            m_inv.flat[:: p + 1] *= 0.5
            inner[:p, :p] += m_inv
        r_g = (ws.c_flat @ inner.reshape(-1)).reshape(n_g, t, t)
        if fast:
            grad = _nested_gradient(sm, r_g, ws, structure, len(phi))
        else:
            c = ws.count[:, None, None] * sinv - sinv @ r_g @ sinv
            grad = dg.reshape(dg.shape[0], -1) @ c.reshape(-1)
    extras: dict[str, object] = {
        "beta": beta,
        "sigma2": sigma2,
        "m_tilde": m_t,
        "logdet_m": logdet_m,
        "chol_m": chol_m,
    }
    if hessian and len(phi):
        if structure.decay or structure.slope == "correlated":
            raise ValueError("the analytic Hessian needs a structure linear in phi")
        extras["hessian"] = _closed_form_hessian(sinv, ws, structure, chol_m, beta, q, dfn, reml, p)
    return float(dev), grad, extras


class _NestedInverse(NamedTuple):
    """Sherman-Morrison pieces of the cluster / nested blocks ``D + lam_tau o o'``."""

    logdet: float
    sinv: FloatArray
    dinv: FloatArray
    do: FloatArray
    s_o: FloatArray
    denom: FloatArray
    coef: FloatArray


def _nested_inverse(
    phi: FloatArray, ws: _Workspace, structure: CovarianceStructure
) -> _NestedInverse:
    """Inverse and log-determinant of ``G~ = lam_tau o o' + lam_gamma diag(o)`` blocks.

    Sherman-Morrison on the diagonal ``D``: no LAPACK call on the blocks.
    """
    k = 0
    lam_t = 0.0
    if structure.intercept:
        lam_t = float(phi[0])
        k = 1
    lam_g = float(phi[k]) if structure.cluster_period else 0.0
    d = ws.base_diag + lam_g * ws.obs_f  # (G, T)
    dinv = 1.0 / d
    do = dinv * ws.obs_f
    s_o = do.sum(axis=1)
    denom = 1.0 + lam_t * s_o
    if d.min() <= 0 or denom.min() <= 0:
        raise np.linalg.LinAlgError("covariance block not positive definite")
    logdet = float(ws.count @ (np.log(d).sum(axis=1) + np.log(denom)))
    coef = lam_t / denom
    sinv = (-coef[:, None] * do)[:, :, None] * do[:, None, :]
    n_t = sinv.shape[1]
    sinv.reshape(sinv.shape[0], n_t * n_t)[:, :: n_t + 1] += dinv
    return _NestedInverse(logdet, sinv, dinv, do, s_o, denom, coef)


def _nested_gradient(
    sm: _NestedInverse,
    r_g: FloatArray,
    ws: _Workspace,
    structure: CovarianceStructure,
    n_phi: int,
) -> FloatArray:
    """Closed-form profiled-deviance gradient of the cluster / nested structures.

    ``d/d lam_tau = sum_g [n_g o'S^{-1}o - u'R u]`` with ``u = S^{-1}o = do / denom``;
    ``d/d lam_gamma = sum_g [n_g tr(O S^{-1}) - tr(O S^{-1} R S^{-1})]``.
    """
    grad = np.empty(n_phi)
    k = 0
    if structure.intercept:
        u = sm.do / sm.denom[:, None]
        ru = (r_g @ u[:, :, None])[:, :, 0]
        grad[0] = ws.count @ (sm.s_o / sm.denom) - float(np.vdot(u, ru))
        k = 1
    if structure.cluster_period:
        sr = sm.sinv @ r_g
        diag_sinv = sm.dinv - sm.coef[:, None] * sm.do * sm.do
        grad[k] = float(ws.count @ (diag_sinv * ws.obs_f).sum(axis=1)) - float(
            np.vdot(ws.obs_f[:, :, None] * sr, sm.sinv)
        )
    return grad


def _closed_form_hessian(
    sinv: FloatArray,
    ws: _Workspace,
    structure: CovarianceStructure,
    chol_m: FloatArray,
    beta: FloatArray,
    q: float,
    dfn: float,
    reml: bool,
    p: int,
) -> FloatArray:
    """Exact Hessian of the profiled deviance in ``phi`` for structures linear in ``phi``.

    With ``A_k = dS/dphi_k`` (constant), ``B_k = C[S^-1 A_k S^-1]`` and
    ``F_kl = C[S^-1 A_k S^-1 A_l S^-1 + (k <-> l)]`` (``C[E] = sum_g sum_st E_st C_g,st``),
    ``a = C[S^-1] + W`` has ``da_k = -B_k`` and ``d2a_kl = F_kl``; ``q = w'a w``
    (``w = [-beta, 1]``) then has ``q_k = -w'B_k w`` and
    ``q_kl = w'F_kl w - 2 (B_k w)_x' M^-1 (B_l w)_x``, and
    ``D_kl = dfn (q_kl/q - q_k q_l/q^2) - sum_g n_g tr(S^-1 A_k S^-1 A_l)
    [+ tr(M^-1 F_kl,xx) - tr(M^-1 B_l,xx M^-1 B_k,xx)]``.
    """
    basis = ws.linear_basis(structure)  # (K, G, T, T)
    k_n = basis.shape[0]
    sa = sinv[None] @ basis  # (K, G, T, T): S^-1 A_k
    e = sa @ sinv[None]  # S^-1 A_k S^-1
    pair_idx = _TRIU.get(k_n)
    if pair_idx is None:
        pair_idx = _TRIU[k_n] = np.triu_indices(k_n)
    ks, ls = pair_idx
    f_blocks = sa[ks] @ e[ls] + sa[ls] @ e[ks]  # (pairs, G, T, T)
    n_pairs = ks.size
    stack = np.concatenate([e.reshape(k_n, -1), f_blocks.reshape(n_pairs, -1)])
    big = ws.big
    mats = (stack @ ws.c_flat).reshape(-1, big, big)
    b_m, f_m = mats[:k_n], mats[k_n:]
    w = np.empty(p + 1)
    w[:p] = -beta
    w[p] = 1.0
    bw = b_m @ w  # (K, big)
    q_k = -(bw @ w)
    low = _dpotri(chol_m, lower=1)[0]
    m_inv = low + low.T
    m_inv.flat[:: p + 1] *= 0.5
    bwx = bw[:, :p]
    cross = bwx @ m_inv @ bwx.T  # (K, K)
    sa_c = sa * ws.count[None, :, None, None]
    trace_ss = sa_c.reshape(k_n, -1) @ sa.transpose(0, 1, 3, 2).reshape(k_n, -1).T
    q_kl = (f_m @ w) @ w - 2.0 * cross[ks, ls]
    vals = dfn * (q_kl / q - q_k[ks] * q_k[ls] / (q * q)) - trace_ss[ks, ls]
    if reml:
        mb = m_inv @ b_m[:, :p, :p]  # (K, p, p): M^-1 B_k,xx
        tr_mb = mb.reshape(k_n, -1) @ mb.transpose(0, 2, 1).reshape(k_n, -1).T
        vals = vals + f_m[:, :p, :p].reshape(n_pairs, -1) @ m_inv.reshape(-1) - tr_mb[ks, ls]
    hess = np.empty((k_n, k_n))
    hess[ks, ls] = vals
    hess[ls, ks] = vals
    return hess


@dataclass(frozen=True)
class VarianceDerivatives:
    """Quantities at given natural parameters used by REML gradients, KR and Satterthwaite.

    ``g_list`` runs over the natural parameters followed by ``sigma2``.
    """

    beta: FloatArray  # GLS estimate at these parameters
    phi: FloatArray  # (X'V^{-1}X)^{-1}
    xgx: FloatArray  # (K, p, p): X'V^{-1} G_r V^{-1} X  (= -P_r)
    q: FloatArray  # (K, K, p, p): X'V^{-1} G_r V^{-1} G_s V^{-1} X
    ktrace: FloatArray  # (K, K): tr(V^{-1} G_r V^{-1} G_s)
    trace: FloatArray  # (K,): tr(V^{-1} G_r)
    rgr: FloatArray  # (K,): r'V^{-1} G_r V^{-1} r at beta
    names: tuple[str, ...]


def variance_derivatives(
    natural: FloatArray, sigma2: float, cells: CellData, structure: CovarianceStructure
) -> VarianceDerivatives:
    """Exact individual-level REML derivative quantities computed on cells.

    The within-cell subspace adds ``(N - C)/sigma2^k`` and ``W / sigma2^k`` terms to the
    ``sigma2`` entries only (its ``G`` there is the identity).
    """
    p = cells.n_fixed
    g, dg_nat = structure.blocks_natural(natural, cells)
    if structure.slope == "none" and not structure.decay:
        sinv = _closed_form_sinv(structure, natural, sigma2, cells)
    else:
        sinv, _ = _inv_logdet(_masked_cov(cells, g, sigma2))
    i_n, t = cells.n.shape
    d_sig = np.zeros((i_n, t, t))
    idx = np.arange(t)
    d_sig[:, idx, idx] = cells.inv_m
    dg = np.concatenate([dg_nat, d_sig[None]], axis=0)  # (K, I, T, T)
    k_n = dg.shape[0]
    xbar = cells.xbar
    wxx = cells.within[:p, :p]
    wxy = cells.within[:p, p]
    wyy = cells.within[p, p]
    sx = sinv @ xbar
    m = xbar.reshape(i_n * t, p).T @ sx.reshape(i_n * t, p) + wxx / sigma2
    xy = sx.reshape(i_n * t, p).T @ cells.ybar.reshape(-1) + wxy / sigma2
    phi = np.linalg.inv(m)
    phi = 0.5 * (phi + phi.T)
    beta = phi @ xy
    resid = cells.ybar - np.einsum("itp,p->it", xbar, beta)
    resid = np.where(cells.observed, resid, 0.0)
    sr = (sinv @ resid[:, :, None])[:, :, 0]
    w_res = float(wyy - 2 * beta @ wxy + beta @ wxx @ beta)
    k_n = dg.shape[0]
    h = dg @ sinv  # G_r Sigma^{-1}, (K, I, T, T)
    trace = np.einsum("kiss->k", h)
    hf = h.reshape(k_n, -1)
    ktrace = hf @ h.transpose(0, 1, 3, 2).reshape(k_n, -1).T
    gx = dg @ sx  # (K, I, T, p)
    gxf = gx.reshape(k_n, i_n * t, p)
    sxf = sx.reshape(i_n * t, p)
    xgx = sxf.T @ gxf  # (K, p, p)
    sgxf = (sinv @ gx).reshape(k_n, i_n * t, p)
    q = np.tensordot(gxf, sgxf, axes=([1], [1])).transpose(0, 2, 1, 3)  # (K, K, p, p)
    gsr = dg @ sr[:, :, None]
    rgr = np.tensordot(gsr[..., 0], sr, axes=2)
    n_within = cells.n_total - cells.n_cells
    trace[-1] += n_within / sigma2
    ktrace[-1, -1] += n_within / sigma2**2
    xgx[-1] += wxx / sigma2**2
    rgr[-1] += w_res / sigma2**2
    q[-1, -1] += wxx / sigma2**3
    return VarianceDerivatives(
        beta=beta,
        phi=phi,
        xgx=xgx,
        q=q,
        ktrace=ktrace,
        trace=trace,
        rgr=rgr,
        names=structure.natural_names + ("sigma2",),
    )


def loglik_at(
    natural: FloatArray,
    sigma2: float,
    cells: CellData,
    structure: CovarianceStructure,
    *,
    reml: bool = True,
) -> float:
    """Log-likelihood (lme4 constants) at given absolute variance parameters."""
    p = cells.n_fixed
    g, _ = structure.blocks_natural(natural, cells)
    s = _masked_cov(cells, g, sigma2)
    sinv, logdet = _inv_logdet(s)
    u = np.einsum("ist,itq->isq", sinv, cells.xa)
    a = np.einsum("isp,isq->pq", cells.xa, u) + cells.within / sigma2
    m = a[:p, :p]
    beta = np.linalg.solve(m, a[:p, p])
    quad = float(a[p, p] - a[p, :p] @ beta)
    n = cells.n_total
    logdet_v = logdet + cells.sum_log_m + (n - cells.n_cells) * np.log(sigma2)
    if reml:
        sign, logdet_m = np.linalg.slogdet(m)
        return float(-0.5 * ((n - p) * _LOG2PI + logdet_v + logdet_m + quad))
    return float(-0.5 * (n * _LOG2PI + logdet_v + quad))


def reml_gradient_natural(
    natural: FloatArray,
    sigma2: float,
    cells: CellData,
    structure: CovarianceStructure,
    *,
    reml: bool = True,
) -> FloatArray:
    """Gradient of ``-2 log L`` in the natural parameters followed by ``sigma2``."""
    return gradient_from_derivatives(variance_derivatives(natural, sigma2, cells, structure), reml)


def gradient_from_derivatives(d: VarianceDerivatives, reml: bool) -> FloatArray:
    """Gradient of ``-2 log L`` from its derivative pieces (cell-level or row-level).

    ``tr(V^-1 dV) - y'P dV P y``, less ``tr(Phi X'V^-1 dV V^-1 X)`` for REML.
    """
    grad: FloatArray
    if reml:
        grad = d.trace - np.einsum("pq,kqp->k", d.phi, d.xgx) - d.rgr
    else:
        grad = d.trace - d.rgr
    return grad


# ---------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class LMMFit:
    """Result of :func:`fit_lmm` (plain arrays; the domain layer wraps it)."""

    beta: FloatArray
    cov_beta: FloatArray  # model-based (X'V^{-1}X)^{-1}
    natural: FloatArray  # natural parameters (sigma2 excluded)
    sigma2: float
    names: tuple[str, ...]
    phi: FloatArray
    loglik: float
    reml: bool
    converged: bool
    singular: bool
    at_bound: tuple[str, ...]
    n_evaluations: int
    message: str
    structure: CovarianceStructure

    @property
    def variance_components(self) -> dict[str, float]:
        """Natural parameters and ``sigma2`` by name."""
        out = {k: float(v) for k, v in zip(self.names, self.natural, strict=True)}
        out["sigma2"] = float(self.sigma2)
        return out


def _start_values(cells: CellData, structure: CovarianceStructure) -> FloatArray:
    """Moment-type start: residual variance from within cells, the rest split evenly."""
    p = cells.n_fixed
    n_within = cells.n_total - cells.n_cells
    # OLS on cell means weighted by n to get residuals
    w = cells.n.ravel()
    x = cells.xbar.reshape(-1, p)
    y = cells.ybar.ravel()
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)
    res = (y - x @ coef)[w > 0]
    if n_within > p:
        sigma2 = max(float(cells.within[p, p]) / n_within, 1e-12)
    else:
        sigma2 = max(float(np.var(res)) / 2.0, 1e-12)
    between = max(
        float(np.mean(res**2)) - sigma2 * float(np.mean(cells.inv_m[cells.observed])), 0.0
    )
    n_var = (
        int(structure.intercept) + int(structure.cluster_period) + int(structure.slope != "none")
    )
    share = max(
        between / max(n_var, 1),
        0.05 * sigma2 * float(np.mean(cells.inv_m[cells.observed])) + 1e-3 * sigma2,
    )
    nat: list[float] = []
    if structure.intercept and structure.slope == "none" and not structure.decay:
        # cluster / nested: ANOVA-type split of the cell-mean residuals into between-cluster
        # and within-cluster (cluster-period + sampling) parts
        obs = cells.observed
        r = np.where(obs, (y - x @ coef).reshape(obs.shape), 0.0)
        t_i = obs.sum(axis=1)
        keep = t_i > 0
        if int(keep.sum()) >= 2:
            rbar = r[keep].sum(axis=1) / t_i[keep]
            dev = np.where(obs[keep], r[keep] - rbar[:, None], 0.0)
            n_w = float((t_i[keep] - 1).sum())
            samp = sigma2 * float(np.mean(cells.inv_m[obs]))
            within_cl = float((dev**2).sum()) / n_w if n_w > 0 else samp
            floor = 0.05 * samp + 1e-3 * sigma2
            tau = max(float(np.var(rbar, ddof=1)) - within_cl / float(np.mean(t_i[keep])), floor)
            nat.append(tau)
            if structure.cluster_period:
                nat.append(max(within_cl - samp, floor))
            return structure.natural_to_phi(np.array(nat), sigma2)
    if structure.intercept:
        nat.append(share)
    if structure.slope == "correlated":
        nat.append(0.0)
    if structure.slope != "none":
        nat.append(share)
    if structure.cluster_period:
        nat.append(share)
    if structure.decay:
        nat.append(0.5)
    return structure.natural_to_phi(np.array(nat), sigma2)


def fit_lmm(
    cells: CellData,
    structure: CovarianceStructure,
    *,
    reml: bool = True,
    start: FloatArray | None = None,
    maxiter: int = 1000,
) -> LMMFit:
    """Fit the model by REML (default) or ML.

    Parameters
    ----------
    cells : CellData
        Sufficient statistics.
    structure : CovarianceStructure
        Random-effects structure.
    reml : bool
        REML when True, else ML.
    start : ndarray, optional
        Start values of the relative parameters ``phi``.
    maxiter : int
        Iteration cap of L-BFGS-B.

    Returns
    -------
    LMMFit
    """
    bounds = structure.phi_bounds()
    # cluster / nested: exact Newton with the closed-form Hessian (fewer evaluations)
    exact = structure.slope == "none" and not structure.decay
    fun = _CachedDeviance(cells, structure, reml, exact)
    x0 = _start_values(cells, structure) if start is None else np.asarray(start, dtype=float)
    lo, hi = phi_box(bounds)
    x0 = np.clip(x0, lo, hi)
    message = ""
    if structure.n_phi:
        x, ok, message = projected_newton(fun, x0, lo, hi, hess=fun.hess if exact else None)
        if not ok:
            res = lbfgsb(fun, x, bounds, maxiter)
            x = np.asarray(fun.best_x if fun.best_x is not None else res.x, dtype=float)
            message = "projected Newton failed; L-BFGS-B: " + str(res.message)
            x = _newton_polish(x, lo, hi, cells, structure, reml)
        if start is None and (structure.decay or structure.slope == "correlated"):
            x, message = _restart(fun, x, x0, lo, hi, structure, message)
    else:
        x = np.zeros(0)
    cached = fun.last.get(np.asarray(x, dtype=float).tobytes())
    f, g, extras = cached if cached is not None else profiled_deviance(x, cells, structure, reml)
    converged = kkt_converged(x, lo, hi, f, g)
    sigma2 = float(extras["sigma2"])  # type: ignore[arg-type]
    natural = structure.phi_to_natural(x, sigma2)
    # (X'V~^{-1}X)^{-1} from its Cholesky factor (dpotri fills the lower triangle)
    low, info = _dpotri(np.asarray(extras["chol_m"]), lower=1)
    if info != 0:  # pragma: no cover - the factor came from a successful dpotrf
        raise np.linalg.LinAlgError("X'V^{-1}X is singular")
    m_inv = low + low.T
    m_inv.flat[:: m_inv.shape[0] + 1] *= 0.5
    at_bound = _boundary_names(x, structure)
    return LMMFit(
        beta=np.asarray(extras["beta"]),
        cov_beta=sigma2 * m_inv,
        natural=natural,
        sigma2=sigma2,
        names=structure.natural_names,
        phi=x,
        loglik=-0.5 * f,
        reml=reml,
        converged=converged,
        singular=bool(at_bound),
        at_bound=at_bound,
        n_evaluations=fun.n_eval,
        message=message,
        structure=structure,
    )


class _CachedDeviance:
    """The profiled deviance as an objective: counts calls, keeps the best and latest points.

    Calling it returns ``(f, gradient)`` (``(1e300, 0)`` where the covariance is not
    positive definite); :meth:`hess` returns the closed-form Hessian stored with the latest
    evaluations at ``x`` (``None`` when ``x`` was not evaluated recently; needs ``exact``).
    """

    def __init__(
        self, cells: CellData, structure: CovarianceStructure, reml: bool, exact: bool
    ) -> None:
        self.cells, self.structure, self.reml, self.exact = cells, structure, reml, exact
        self.n_eval = 0
        self.best_f = np.inf
        self.best_x: FloatArray | None = None
        self.last: dict[bytes, tuple[float, FloatArray, dict[str, object]]] = {}

    def __call__(self, x: FloatArray) -> tuple[float, FloatArray]:
        self.n_eval += 1
        try:
            f, g, extras = profiled_deviance(
                x, self.cells, self.structure, self.reml, hessian=self.exact
            )
        except np.linalg.LinAlgError:
            return 1e300, np.zeros_like(x)
        # keep the latest evaluations: the final point is usually one of them
        if len(self.last) > 8:
            self.last.clear()
        self.last[np.asarray(x, dtype=float).tobytes()] = (f, g, extras)
        if f < self.best_f:
            self.best_f, self.best_x = f, x.copy()
        return f, g

    def hess(self, x: FloatArray) -> FloatArray | None:
        cached = self.last.get(np.asarray(x, dtype=float).tobytes())
        if cached is None:
            return None  # projected_newton falls back to finite differences
        return np.asarray(cached[2]["hessian"])


def phi_box(bounds: list[tuple[float | None, float | None]]) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds as arrays (``None`` becomes an infinite bound)."""
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    return lo, hi


def lbfgsb(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x: FloatArray,
    bounds: list[tuple[float | None, float | None]],
    maxiter: int,
) -> optimize.OptimizeResult:
    """Minimise by L-BFGS-B (tight tolerances): the fallback when projected Newton fails."""
    return optimize.minimize(
        fun,
        x,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20},
    )


def kkt_converged(x: FloatArray, lo: FloatArray, hi: FloatArray, f: float, g: FloatArray) -> bool:
    """Whether the free gradient is below ``1e-4 max(1, |f|)`` (no parameters: converged)."""
    if not x.size:
        return True
    free = _free_mask(x, lo, hi, g)
    return bool(np.all(np.abs(g[free]) <= 1e-4 * max(1.0, abs(f))))


def _restart(
    fun: _CachedDeviance,
    x: FloatArray,
    x0: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    structure: CovarianceStructure,
    message: str,
) -> tuple[FloatArray, str]:
    """Restart multimodal likelihoods from other basins; keep the best optimum.

    The decay ``r`` and the sign of the intercept-slope covariance can leave several local
    optima.  At ``tau2 = 0`` the sign of ``l21`` is arbitrary for G but not for the gradient
    in ``l11``: it is flipped and the fit continued, which leaves a spurious boundary optimum.
    """
    f_best = fun(x)[0]
    for xs, label in _extra_starts(x0, structure):
        xr, ok_r, msg_r = projected_newton(fun, xs, lo, hi)
        fr = fun(xr)[0]
        if fr < f_best - 1e-9 * max(1.0, abs(f_best)):
            x, f_best, message = xr, fr, f"{msg_r} (restart from {label})"
    if structure.slope == "correlated":
        for _ in range(3):
            if x[0] > 1e-8 or abs(x[1]) <= 1e-12:
                break
            xs = x.copy()
            xs[1] = -xs[1]
            xr, ok_r, msg_r = projected_newton(fun, xs, lo, hi)
            fr = fun(xr)[0]
            if not (ok_r and fr < f_best - 1e-9 * max(1.0, abs(f_best))):
                break
            x, f_best, message = xr, fr, f"{msg_r} (after flipping the slope covariance)"
    return x, message


def _extra_starts(x0: FloatArray, structure: CovarianceStructure) -> list[tuple[FloatArray, str]]:
    """Alternative start values for multimodal structures (decay, correlated slope)."""
    out: list[tuple[FloatArray, str]] = []
    if structure.decay:
        for r0 in (0.1, 0.9) if structure.positive_decay else (0.1, 0.9, -0.5):
            xs = x0.copy()
            xs[-1] = r0
            out.append((xs, f"decay {r0}"))
    if structure.slope == "correlated":
        c = 0.5 * float(np.sqrt(max(x0[0] * x0[2], 1e-8)))
        for sign in (1.0, -1.0):
            xs = x0.copy()
            xs[1] = sign * c
            xs[2] = float(np.sqrt(max(x0[2] ** 2 - c * c, 1e-8)))
            out.append((xs, f"intercept-slope covariance sign {sign:+.0f}"))
    return out


def projected_newton(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    *,
    gtol: float = 1e-7,
    maxiter: int = 60,
    hess: Callable[[FloatArray], FloatArray | None] | None = None,
) -> tuple[FloatArray, bool, str]:
    """Minimise a smooth function with box bounds by projected Newton steps.

    The Hessian of the free (not actively bounded) parameters comes from forward
    differences of the analytic gradient, then BFGS updates while the free set stays the
    same (re-computed when it changes), or ``hess(x)`` (exact Newton) when given;
    non-positive curvature is replaced by its absolute value; steps are projected on the
    box and backtracked (Armijo).  Returns
    ``(x, converged, message)``; the caller falls back to L-BFGS-B when not converged.
    """
    x = np.minimum(np.maximum(np.asarray(x0, dtype=float), lo), hi)
    f, g = fun(x)
    if not np.isfinite(f):
        return x, False, "non-finite start"
    h_prev: FloatArray | None = None
    idx_prev = np.zeros(0, dtype=np.int64)
    x_prev, g_prev = x, g
    for it in range(maxiter):
        active = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        idx = np.flatnonzero(~active)
        gf = g[idx]
        # scaled gradient |g_k| * max(|x_k|, 1e-3): the first-order change of f for a
        # relative change of x_k; below ~1e-10 |f| the parameters are accurate to ~1e-8.
        agf = np.abs(gf)
        if (
            gf.size == 0
            or (agf * np.maximum(np.abs(x[idx]), 1e-3)).max() <= 1e-3 * gtol * max(1.0, abs(f))
            or agf.max() < gtol
        ):
            return x, True, f"projected Newton converged in {it} iterations"
        h_exact = hess(x) if hess is not None else None
        h: FloatArray | None
        if h_exact is not None:
            # exact Newton: the analytic Hessian of the free parameters
            h = h_exact[np.ix_(idx, idx)]
        elif h_prev is not None and idx.size == idx_prev.size and bool((idx == idx_prev).all()):
            h = _bfgs_update(h_prev, x[idx] - x_prev[idx], g[idx] - g_prev[idx])
        else:
            h = None
        if h is None:
            h = _fd_hessian(fun, x, g, idx, hi)
            if h is None:
                return x, False, "non-finite objective near the iterate"
        h = 0.5 * (h + h.T)
        h_prev, idx_prev = h, idx
        # LAPACK syevd directly (what numpy.linalg.eigh calls, without its overhead)
        w, v, info = _dsyevd(h)
        if info != 0:
            w, v = np.linalg.eigh(h)
        aw = np.abs(w)
        w = np.maximum(aw, 1e-10 * max(1.0, float(aw.max())))
        d = -(v @ ((v.T @ gf) / w))
        step = _armijo(fun, x, f, gf, idx, d, lo, hi)
        if step is None:
            # at the optimum the objective is flat to rounding; accept a tiny gradient
            return x, bool(agf.max() < 1e-5), "line search could not improve"
        x_prev, g_prev = x, g
        x, f, g = step
    active = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
    gf = g[~active]
    ok = gf.size == 0 or np.max(np.abs(gf)) < 1e-4
    return x, bool(ok), "projected Newton stopped at the iteration limit"


def _bfgs_update(h_prev: FloatArray, s_k: FloatArray, y_k: FloatArray) -> FloatArray | None:
    """BFGS update of the previous Hessian on the same free set (``None``: no curvature)."""
    sy = float(s_k @ y_k)
    hs = h_prev @ s_k
    shs = float(s_k @ hs)
    if sy > 1e-12 * np.sqrt(float(s_k @ s_k) * float(y_k @ y_k)) and shs > 0:
        out: FloatArray = (
            h_prev + (y_k[:, None] * y_k[None, :]) / sy - (hs[:, None] * hs[None, :]) / shs
        )
        return out
    return None


def _fd_hessian(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x: FloatArray,
    g: FloatArray,
    idx: npt.NDArray[np.intp],
    hi: FloatArray,
) -> FloatArray | None:
    """Forward differences of the gradient in the free parameters (``None``: non-finite)."""
    h = np.empty((idx.size, idx.size))
    for a, k in enumerate(idx):
        step = 1e-6 * max(abs(x[k]), 1e-2)
        xs = x.copy()
        if xs[k] + step > hi[k]:
            step = -step
        xs[k] += step
        fs, gs = fun(xs)
        if not np.isfinite(fs):
            return None
        h[:, a] = (gs[idx] - g[idx]) / step
    return h


def _armijo(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x: FloatArray,
    f: float,
    gf: FloatArray,
    idx: npt.NDArray[np.intp],
    d: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
) -> tuple[FloatArray, float, FloatArray] | None:
    """Backtrack the projected step ``d`` (Armijo); ``(x, f, g)`` accepted, else ``None``."""
    t = 1.0
    x_i, lo_i, hi_i = x[idx], lo[idx], hi[idx]
    slack = 1e-12 * max(1.0, abs(f))  # rounding of f near the optimum
    for _ in range(40):
        xn = x.copy()
        xn_i = np.minimum(np.maximum(x_i + t * d, lo_i), hi_i)
        xn[idx] = xn_i
        fn, gn = fun(xn)
        if np.isfinite(fn) and fn <= f + 1e-4 * float(gf @ (xn_i - x_i)) + slack:
            return xn, fn, gn
        t *= 0.5
    return None


def _free_mask(x: FloatArray, lo: FloatArray, hi: FloatArray, g: FloatArray) -> BoolArray:
    """Parameters not held at a bound by the sign of the gradient (KKT)."""
    at_lo = (x <= lo + 1e-12) & (g >= 0)
    at_hi = (x >= hi - 1e-12) & (g <= 0)
    return ~(at_lo | at_hi)


def _boundary_names(x: FloatArray, structure: CovarianceStructure) -> tuple[str, ...]:
    """Components estimated on the boundary (zero variance, |corr| = 1, |decay| = 1)."""
    out: list[str] = []
    k = 0
    tol = 1e-8  # on variance ratios (lme4 flags relative SDs below 1e-4)
    if structure.slope == "correlated":
        l11, l21, l22 = x[0:3]
        if l11 * l11 < tol:
            out.append("tau2")
        if l21 * l21 + l22 * l22 < tol:
            out.append("eta2")
        elif l22 * l22 < tol or (l11 > 0 and abs(l21) / np.hypot(l21, l22) > 1 - 1e-6):
            out.append("rho")
        k = 3
    else:
        if structure.intercept:
            if x[k] < tol:
                out.append("tau2")
            k += 1
        if structure.slope == "independent":
            if x[k] < tol:
                out.append("eta2")
            k += 1
    if structure.cluster_period:
        if x[k] < tol:
            out.append("gamma2")
        k += 1
    if structure.decay and (
        abs(x[k]) >= _DECAY_BOUND - 1e-9
        or (structure.positive_decay and x[k] <= _DECAY_FLOOR + 1e-9)
    ):
        out.append("decay")
    return tuple(out)


def _newton_polish(
    x: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    cells: CellData,
    structure: CovarianceStructure,
    reml: bool,
    n_steps: int = 6,
) -> FloatArray:
    """Projected Newton steps (finite-difference Hessian of the analytic gradient)."""
    x = x.copy()
    try:
        f, g, _ = profiled_deviance(x, cells, structure, reml)
    except np.linalg.LinAlgError:
        return x
    for _ in range(n_steps):
        free = _free_mask(x, lo, hi, g) & ~((x <= lo + 1e-12) & (lo == 0.0) & (x < 1e-10))
        if not free.any() or np.max(np.abs(g[free])) < 1e-10:
            break
        idx = np.flatnonzero(free)
        h = np.zeros((idx.size, idx.size))
        for a, k in enumerate(idx):
            step = 1e-6 * max(abs(x[k]), 1e-3)
            xp, xm = x.copy(), x.copy()
            xp[k] += step
            xm[k] -= step
            if xm[k] < lo[k]:
                xm[k] = x[k]
                denom = step
            else:
                denom = 2 * step
            try:
                gp = profiled_deviance(xp, cells, structure, reml)[1]
                gm = profiled_deviance(xm, cells, structure, reml)[1]
            except np.linalg.LinAlgError:
                return x
            h[:, a] = (gp[idx] - gm[idx]) / denom
        h = 0.5 * (h + h.T)
        try:
            w, v = np.linalg.eigh(h)
        except np.linalg.LinAlgError:
            return x
        if w.min() <= 0:
            break
        delta = -(v @ ((v.T @ g[idx]) / w))
        t = 1.0
        improved = False
        while t > 1e-4:
            xn = x.copy()
            xn[idx] = np.clip(x[idx] + t * delta, lo[idx], hi[idx])
            try:
                fn, gn, _ = profiled_deviance(xn, cells, structure, reml)
            except np.linalg.LinAlgError:
                fn = np.inf
            if fn <= f + 1e-12 * abs(f):
                x, f, g = xn, fn, gn
                improved = True
                break
            t *= 0.5
        if not improved:
            break
    return x
