r"""GEE kernels for stepped-wedge working correlations (numpy/scipy only).

The data enter as *units*: a unit is a set of ``w`` observations of one cluster-period cell
that share the same row of the mean model (an individual row has ``w = 1``; a whole cell
without individual-level covariates is one unit with ``w = m_ij``).  A unit carries the sum
of its outcomes ``ysum`` and their sum of squares about the unit mean ``yss``, which is all
the estimating equations, the moment estimators and the sandwiches need.

Working correlation between two *different* observations of cluster ``i`` in periods ``j``
and ``k`` is ``C[j, k]`` (a ``T x T`` matrix shared by all clusters); an observation's
correlation with itself is 1, so the individual-level working correlation is

.. math::  R_i = a I + Z_i C Z_i^\\top, \\qquad a = 1 - C_{jj},

with ``Z_i`` the period-indicator matrix.  Its inverse follows from the push-through form of
the Woodbury identity without forming any ``n_i x n_i`` matrix:

.. math::  R_i^{-1} = a^{-1} \\{I - Z_i (a I + C N_i)^{-1} C Z_i^\\top\\},
           \\quad N_i = Z_i^\\top Z_i = \\operatorname{diag}(m_{i1}, \\dots, m_{iT}),

so each GEE iteration costs ``O(units * p^2 + I * T^3)``: linear in cluster size.  When every
cell holds a single observation (cluster-period counts, for example) the ``T x T``
correlation ``R_i`` is inverted directly ("dense" path, which also allows ``a = 0``, e.g.
AR(1) over periods).

Every bias-corrected sandwich reduces to ``p``-dimensional quantities per cluster: with
``M_i = D_i^T V_i^{-1} D_i``, ``u_i = D_i^T V_i^{-1} e_i``, ``Omega = sum_i M_i`` and the
leverage ``H_i = D_i Omega^{-1} D_i^T V_i^{-1}``,

.. math::  D_i^\\top V_i^{-1} (I - H_i)^{-1} e_i = (I_p - M_i \\Omega^{-1})^{-1} u_i

(Woodbury again), and the Fay--Graubard diagonal uses ``diag(M_i Omega^{-1})``.  The scale
``phi`` cancels from all robust forms.  The kernels return these per-cluster pieces
(``GEECore.M``, ``GEECore.u``); the sandwiches themselves are
:func:`steppedwedge.inference.sandwich.sandwich_vcov`, shared with every other model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = [
    "CORSTRS",
    "WorkingCorrelationError",
    "GEECore",
    "GEEUnits",
    "LinkFunctions",
    "between_correlation",
    "fit_gee_core",
    "link_functions",
]

#: Working-correlation structures and the names of their parameters.
CORSTRS: dict[str, tuple[str, ...]] = {
    "independence": (),
    "exchangeable": ("alpha",),
    "nested-exchangeable": ("alpha0", "alpha1"),
    "decay": ("alpha0", "decay"),
    "ar1": ("decay",),
    "block-exchangeable": ("alpha0", "alpha1", "alpha2"),
}


class WorkingCorrelationError(ArithmeticError):
    """The working correlation implied by the parameters is not positive definite."""


# --------------------------------------------------------------------------------------
# families and links
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkFunctions:
    """Inverse link, its derivative and the variance function of a family/link pair."""

    linkinv: Callable[[FloatArray], FloatArray]
    mu_eta: Callable[[FloatArray], FloatArray]
    variance: Callable[[FloatArray], FloatArray]
    valid_mu: Callable[[FloatArray], bool]
    linkfun: Callable[[FloatArray], FloatArray]


def _identity(x: FloatArray) -> FloatArray:
    return x


def _ones(x: FloatArray) -> FloatArray:
    return np.ones_like(x)


def _logistic_deriv(x: FloatArray) -> FloatArray:
    p: FloatArray = special.expit(x)
    return p * (1.0 - p)


def _exp(x: FloatArray) -> FloatArray:
    return np.exp(x)


def _log(x: FloatArray) -> FloatArray:
    return np.log(x)


def _expit(x: FloatArray) -> FloatArray:
    out: FloatArray = special.expit(x)
    return out


def _logit(x: FloatArray) -> FloatArray:
    out: FloatArray = special.logit(x)
    return out


def _binomial_variance(mu: FloatArray) -> FloatArray:
    return mu * (1.0 - mu)


def _all_finite(mu: FloatArray) -> bool:
    return bool(np.all(np.isfinite(mu)))


def _in_unit_interval(mu: FloatArray) -> bool:
    return bool(np.all((mu > 0.0) & (mu < 1.0)))


def _all_positive(mu: FloatArray) -> bool:
    return bool(np.all(mu > 0.0))


@dataclass(frozen=True)
class _NBVariance:
    """Negative-binomial (NB2) variance ``mu + mu**2 / theta`` (a picklable callable)."""

    theta: float

    def __call__(self, mu: FloatArray) -> FloatArray:
        out: FloatArray = mu + mu * mu / self.theta
        return out


def link_functions(family: str, link: str, *, nb_theta: float | None = None) -> LinkFunctions:
    """Return the :class:`LinkFunctions` for ``family`` and ``link``.

    ``family`` is gaussian, binomial, poisson or negative_binomial (variance
    ``mu + mu**2 / nb_theta``); ``link`` is identity, logit or log.  The caller has already
    checked that the pair is allowed.
    """
    if link == "identity":
        linkinv, mu_eta, linkfun = _identity, _ones, _identity
    elif link == "log":
        linkinv, mu_eta, linkfun = _exp, _exp, _log
    elif link == "logit":
        linkinv, mu_eta, linkfun = _expit, _logistic_deriv, _logit
    else:  # pragma: no cover - validated upstream
        raise ValueError(f"unknown link {link!r}")

    variance: Callable[[FloatArray], FloatArray]
    if family == "gaussian":
        variance, valid = _ones, _all_finite
    elif family == "binomial":
        variance, valid = _binomial_variance, _in_unit_interval
    elif family == "poisson":
        variance, valid = _identity, _all_positive
    elif family == "negative_binomial":
        if nb_theta is None or not nb_theta > 0:  # pragma: no cover - validated upstream
            raise ValueError("negative_binomial needs nb_theta > 0")
        variance, valid = _NBVariance(float(nb_theta)), _all_positive
    else:  # pragma: no cover - validated upstream
        raise ValueError(f"unknown family {family!r}")
    return LinkFunctions(linkinv, mu_eta, variance, valid, linkfun)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GEEUnits:
    """Units of a GEE problem, sorted by cluster.

    Attributes
    ----------
    cluster, period : numpy.ndarray
        Integer codes ``0..I-1`` and ``0..T-1`` of each unit (``cluster`` non-decreasing).
    X : numpy.ndarray
        ``(U, p)`` mean-model rows.
    w : numpy.ndarray
        Number of observations in each unit (> 0).
    ysum, yss : numpy.ndarray
        Sum of the unit's outcomes and their sum of squares about the unit mean.
    offset : numpy.ndarray
        Linear-predictor offset of each unit.
    n_clusters, n_periods : int
        ``I`` and ``T``.
    times : numpy.ndarray
        Numeric time of each period (distances used by the decay structures).
    individual : numpy.ndarray, optional
        Integer code of the person behind each unit (closed cohorts; needed by the
        block-exchangeable structure, whose units are single observations).
    """

    cluster: IntArray
    period: IntArray
    X: FloatArray
    w: FloatArray
    ysum: FloatArray
    yss: FloatArray
    offset: FloatArray
    n_clusters: int
    n_periods: int
    times: FloatArray
    individual: IntArray | None = None

    @cached_property
    def cell(self) -> IntArray:
        """Flat cell index ``cluster * T + period``."""
        return self.cluster * self.n_periods + self.period

    @cached_property
    def starts(self) -> IntArray:
        """Index of the first unit of each cluster."""
        return np.searchsorted(self.cluster, np.arange(self.n_clusters)).astype(np.int64)

    @cached_property
    def one_unit_per_cell(self) -> bool:
        """True when no two units share a cell."""
        counts = np.bincount(self.cell, minlength=self.n_clusters * self.n_periods)
        return bool(counts.max() <= 1)

    @cached_property
    def single(self) -> bool:
        """True when every observed cell is one observation (``w == 1``, one unit)."""
        return bool(np.all(self.w == 1.0)) and self.one_unit_per_cell

    @cached_property
    def block_design(self) -> list[tuple[slice, FloatArray, FloatArray, int]]:
        """Per cluster: row slice, ``U = [Z_period, Z_person]``, ``U'U`` and the person count."""
        if self.individual is None:
            raise ValueError("block-exchangeable needs individual codes")
        out = []
        bounds = np.append(self.starts, self.cluster.shape[0])
        T = self.n_periods
        for i in range(self.n_clusters):
            sl = slice(int(bounds[i]), int(bounds[i + 1]))
            _, loc = np.unique(self.individual[sl], return_inverse=True)
            K = int(loc.max()) + 1 if loc.size else 0
            n = loc.shape[0]
            U = np.zeros((n, T + K))
            U[np.arange(n), self.period[sl]] = 1.0
            U[np.arange(n), T + loc] = 1.0
            out.append((sl, U, U.T @ U, K))
        return out

    @cached_property
    def lag_index(self) -> tuple[FloatArray, IntArray]:
        """Distinct period distances and, for each (j, k), the index of its distance."""
        lag = np.abs(self.times[:, None] - self.times[None, :])
        lags, idx = np.unique(lag, return_inverse=True)
        return lags, idx.reshape(lag.shape).astype(np.int64)


# --------------------------------------------------------------------------------------
# working correlation
# --------------------------------------------------------------------------------------


def between_correlation(corstr: str, params: FloatArray, times: FloatArray) -> FloatArray:
    """``C[j, k]``: working correlation of two different observations in periods j, k.

    For ``"ar1"`` (one observation per cell) the diagonal is 1, so ``C`` is the whole
    ``T x T`` working correlation.
    """
    T = times.shape[0]
    lag = np.abs(times[:, None] - times[None, :])
    if corstr == "independence":
        return np.zeros((T, T))
    if corstr == "exchangeable":
        return np.full((T, T), float(params[0]))
    if corstr == "nested-exchangeable":
        a0, a1 = float(params[0]), float(params[1])
        return np.full((T, T), a1) + (a0 - a1) * np.eye(T)
    if corstr == "decay":
        return float(params[0]) * _power(float(params[1]), lag)
    if corstr == "ar1":
        return _power(float(params[0]), lag)
    raise ValueError(f"unknown corstr {corstr!r}")  # pragma: no cover


def _fbincount(codes: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """Weighted ``bincount`` typed as float64."""
    return np.asarray(np.bincount(codes, weights=weights, minlength=size), dtype=np.float64)


def _power(r: float, lag: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lag == 0, 1.0, np.power(r, lag))


# --------------------------------------------------------------------------------------
# per-cluster pieces
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resid:
    """Correlation-free quantities at one ``beta`` (whitened by ``A^{-1/2}``)."""

    N: FloatArray  # (I, T)     observations per cell
    Se: FloatArray  # (I, T)    sum of Pearson residuals per cell
    E2: FloatArray  # (I, T)    sum of squared Pearson residuals per cell
    Sd: FloatArray  # (I, T, p) sum of whitened D rows per cell
    DD: FloatArray  # (I, p, p) sum over the cluster's observations of whitened D D'
    De: FloatArray  # (I, p)    sum of whitened D times Pearson residuals
    Dt: FloatArray  # (U, p)    whitened D rows of the units
    esum: FloatArray  # (U,)    Pearson residual sums of the units
    e2: FloatArray  # (U,)      squared Pearson residual sums of the units
    Sde: FloatArray  # (I, T, p) per-cell sum of whitened D times Pearson residual
    Vc: FloatArray  # (I, T)    variance function per cell (one unit per cell), else zeros


@dataclass(frozen=True)
class _Pieces:
    M: FloatArray  # (I, p, p)  D' R^-1 D with A^-1/2 whitening, phi-free
    u: FloatArray  # (I, p)     D' R^-1 e, phi-free
    N: FloatArray
    Se: FloatArray
    E2: FloatArray
    De: FloatArray


def _residuals(units: GEEUnits, fam: LinkFunctions, beta: FloatArray) -> _Resid:
    I, T, p = units.n_clusters, units.n_periods, units.X.shape[1]  # noqa: E741
    eta = units.X @ beta + units.offset
    mu = fam.linkinv(eta)
    if not fam.valid_mu(mu):
        raise FloatingPointError("fitted means left the family's range")
    v = fam.variance(mu)
    s = np.sqrt(v)
    Dt = units.X * (fam.mu_eta(eta) / s)[:, None]
    resid = units.ysum - units.w * mu
    esum = resid / s
    e2 = (units.yss + resid * resid / units.w) / v

    cell = units.cell
    size = I * T
    N: FloatArray
    Se: FloatArray
    E2: FloatArray
    Sd: FloatArray
    Sde: FloatArray
    Vc: FloatArray
    if units.one_unit_per_cell:
        N = np.zeros(size)
        Se = np.zeros(size)
        E2 = np.zeros(size)
        Sd = np.zeros((size, p))
        N[cell] = units.w
        Se[cell] = esum
        E2[cell] = e2
        Sd[cell] = units.w[:, None] * Dt
        Sde = np.zeros((size, p))
        Sde[cell] = Dt * esum[:, None]
        Vc = np.zeros(size)
        Vc[cell] = v
        Vc = Vc.reshape(I, T)
        N, Se, E2, Sd = N.reshape(I, T), Se.reshape(I, T), E2.reshape(I, T), Sd.reshape(I, T, p)
        Sde = Sde.reshape(I, T, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            Sd_w = Sd / np.where(N > 0, N, 1.0)[:, :, None]
        SdT = Sd_w.transpose(0, 2, 1)
        DD = SdT @ Sd
        De = (SdT @ Se[:, :, None])[:, :, 0]
    else:
        N = _fbincount(cell, units.w, size).reshape(I, T)
        Se = _fbincount(cell, esum, size).reshape(I, T)
        E2 = _fbincount(cell, e2, size).reshape(I, T)
        Sd = np.empty((size, p))
        Sde = np.empty((size, p))
        for q in range(p):
            Sd[:, q] = np.bincount(cell, weights=units.w * Dt[:, q], minlength=size)
            Sde[:, q] = np.bincount(cell, weights=esum * Dt[:, q], minlength=size)
        Sd = Sd.reshape(I, T, p)
        Sde = Sde.reshape(I, T, p)
        Vc = np.zeros((I, T))
        starts = units.starts
        DD = np.add.reduceat(np.einsum("up,uq->upq", Dt * units.w[:, None], Dt), starts, axis=0)
        De = np.add.reduceat(Dt * esum[:, None], starts, axis=0)
    return _Resid(N, Se, E2, Sd, DD, De, Dt, esum, e2, Sde, Vc)


def _check_positive_definite(corstr: str, C: FloatArray, N: FloatArray, *, dense: bool) -> None:
    """Raise :class:`WorkingCorrelationError` unless every ``R_i`` is positive definite.

    ``R_i = a I + Z_i C Z_i'`` is positive definite iff ``a > 0`` (when some cell has two or
    more observations) and ``a I + N_i^{1/2} C N_i^{1/2}`` is (its other eigenvalues).  With
    one observation per cell, ``R_i`` is ``C`` with unit diagonal on the observed cells.
    """
    T = C.shape[0]
    if corstr in ("exchangeable", "nested-exchangeable") and not dense:
        # C = c I + alpha1 J: eigenvalues a (within cells), a + c N_ij and the root of the
        # rank-one update; positive iff a + c N_ij > 0 and 1 + alpha1 sum_j N_ij / (a + c N_ij) > 0
        a = 1.0 - float(C[0, 0])
        alpha1 = float(C[0, 1]) if T > 1 else 0.0
        c = float(C[0, 0]) - alpha1
        d = a + c * N
        if (a <= 0.0 and np.any(N > 1)) or np.any(d <= 0.0):
            raise WorkingCorrelationError("a within-period eigenvalue is <= 0")
        if np.any(1.0 + alpha1 * np.sum(N / d, axis=1) <= 1e-12):
            raise WorkingCorrelationError("a whole-cluster eigenvalue is <= 0")
        return
    if dense:
        R = C.copy()
        np.fill_diagonal(R, 1.0)
        obs = N > 0
        Ri = np.where(obs[:, :, None] & obs[:, None, :], R[None], 0.0)
        Ri[:, np.arange(T), np.arange(T)] = 1.0
        low = float(np.linalg.eigvalsh(Ri).min())
    else:
        a = 1.0 - float(C[0, 0])
        if a <= 0.0 and np.any(N > 1):
            raise WorkingCorrelationError("within-period correlation >= 1")
        sq = np.sqrt(N)
        A = a * np.eye(T)[None] + sq[:, :, None] * C[None] * sq[:, None, :]
        low = float(np.linalg.eigvalsh(A).min())
    if not low > 1e-10:
        raise WorkingCorrelationError(f"smallest eigenvalue {low:.3g}")


def _corr_pieces(
    units: GEEUnits,
    rs: _Resid,
    corstr: str,
    params: FloatArray,
    *,
    dense: bool,
) -> tuple[FloatArray, FloatArray]:
    """Per-cluster ``M_i`` and ``u_i`` under the working correlation (phi-free)."""
    I, T = units.n_clusters, units.n_periods  # noqa: E741
    p = rs.Sd.shape[2]
    Sd, Se, N = rs.Sd, rs.Se, rs.N
    if corstr == "independence":
        return rs.DD, rs.De
    if corstr == "block-exchangeable":
        return _block_pieces(units, rs, params)
    C = between_correlation(corstr, params, units.times)
    _check_positive_definite(corstr, C, N, dense=dense)
    if dense:
        # one observation per cell: R_i is the T x T matrix with unit diagonal, restricted
        # to the observed cells (unobserved rows/cols replaced by the identity; their
        # Sd/Se are zero so they contribute nothing).
        R = C.copy()
        np.fill_diagonal(R, 1.0)
        obs = N > 0
        Ri = np.where(obs[:, :, None] & obs[:, None, :], R[None], 0.0)
        Ri[:, np.arange(T), np.arange(T)] = 1.0
        W = np.linalg.solve(Ri, np.concatenate([Sd, Se[:, :, None]], axis=2))
        SdT = Sd.transpose(0, 2, 1)
        M = SdT @ W[:, :, :p]
        u = (SdT @ W[:, :, p:])[:, :, 0]
        return M, u

    a = 1.0 - C[0, 0]
    if corstr in ("exchangeable", "nested-exchangeable"):
        # C = c I + alpha1 J: G_i = (a I + C N_i)^{-1} C = c diag(k) + g k k' with
        # k_j = 1 / (a + c N_ij), g = a alpha1 / (1 + alpha1 sum_j N_ij k_j)
        alpha1 = float(C[0, 1]) if T > 1 else 0.0
        c = float(C[0, 0]) - alpha1
        k = 1.0 / (a + c * N)
        g = a * alpha1 / (1.0 + alpha1 * np.sum(N * k, axis=1))
        kSdT = (Sd * k[:, :, None]).transpose(0, 2, 1)  # (I, p, T)
        kSd = kSdT.sum(axis=2)
        SGS = c * (kSdT @ Sd) + g[:, None, None] * (kSd[:, :, None] * kSd[:, None, :])
        SGe = c * (kSdT @ Se[:, :, None])[:, :, 0]
        SGe += (g * np.sum(k * Se, axis=1))[:, None] * kSd
    else:
        # general C (decay): G_i = (a I + C N_i)^{-1} C by batched solves of T x T systems
        A = a * np.eye(T)[None] + C[None] * N[:, None, :]
        G = np.linalg.solve(A, np.broadcast_to(C, (I, T, T)))
        SdT = Sd.transpose(0, 2, 1)
        SGS = SdT @ (G @ Sd)
        SGe = (SdT @ (G @ Se[:, :, None]))[:, :, 0]
    return (rs.DD - SGS) / a, (rs.De - SGe) / a


def _block_pieces(units: GEEUnits, rs: _Resid, params: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Closed-cohort block-exchangeable structure, one cluster at a time.

    ``R_i = a I + U_i C U_i'`` with ``U_i = [Z_period, Z_person]``, ``C = blockdiag((alpha0 -
    alpha1) I + alpha1 J, (alpha2 - alpha1) I)`` and ``a = 1 - alpha0 - alpha2 + alpha1``;
    the Woodbury inverse needs one ``(T + K_i)``-square solve per cluster (K_i people).
    """
    a0, a1, a2 = (float(x) for x in params)
    a = 1.0 - a0 - a2 + a1
    if not a > 0:
        raise FloatingPointError("block-exchangeable working correlation is not positive definite")
    T = units.n_periods
    I, p = rs.DD.shape[0], rs.DD.shape[1]  # noqa: E741
    M = np.empty((I, p, p))
    u = np.empty((I, p))
    Cp = (a0 - a1) * np.eye(T) + a1
    for i, (sl, U, UtU, K) in enumerate(units.block_design):
        Cb = np.zeros((T + K, T + K))
        Cb[:T, :T] = Cp
        Cb[T:, T:] = (a2 - a1) * np.eye(K)
        G = np.linalg.solve(a * np.eye(T + K) + Cb @ UtU, Cb)
        UD = U.T @ rs.Dt[sl]
        Ue = U.T @ rs.esum[sl]
        M[i] = (rs.DD[i] - UD.T @ G @ UD) / a
        u[i] = (rs.De[i] - UD.T @ (G @ Ue)) / a
    return M, u


def _pieces(
    units: GEEUnits,
    fam: LinkFunctions,
    beta: FloatArray,
    corstr: str,
    params: FloatArray,
    *,
    dense: bool,
) -> _Pieces:
    rs = _residuals(units, fam, beta)
    M, u = _corr_pieces(units, rs, corstr, params, dense=dense)
    return _Pieces(M, u, rs.N, rs.Se, rs.E2, rs.De)


# --------------------------------------------------------------------------------------
# moment estimators of phi and the correlation parameters
# --------------------------------------------------------------------------------------


def _lag_sums(
    pc: _Resid, units: GEEUnits, adjust: FloatArray | None = None, ordered: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sum residual cross-products and count pairs by time lag (lag 0 = same period).

    With ``adjust`` (the ``(I, p)`` vectors ``w_i`` of MAEE) the products ``r_j r_k`` are
    replaced by the symmetrised ``[(I - H_i)^{-1} r_i r_i']_{jk}``: with
    ``s_i = (I - H_i)^{-1} r_i = r_i + D_i w_i``, each pair contributes
    ``(s_j r_k + s_k r_j) / 2``.  With ``ordered=True`` (geeCRT's convention) each pair
    ``j < k`` in row order contributes ``s_j r_k``; units must be single observations sorted
    by cluster, then period.
    """
    lags, idx = units.lag_index
    sums: FloatArray
    counts: FloatArray
    if ordered and adjust is not None:
        s_rows = pc.esum + np.einsum("up,up->u", pc.Dt, adjust[units.cluster])
        Ss = pc.Se + np.einsum("itp,ip->it", pc.Sd, adjust)
        upper = np.triu(np.ones_like(idx, dtype=bool), 1)
        prod = Ss.T @ pc.Se
        cnt = pc.N.T @ pc.N
        n_l = lags.shape[0]
        sums = _fbincount(idx[upper], prod[upper], n_l)
        counts = _fbincount(idx[upper], cnt[upper], n_l)
        # same cell, j < k in row order: sum_k r_k * (sum of s_j over earlier rows of the cell)
        cell = units.cell
        cs = np.cumsum(s_rows)
        first = np.r_[True, cell[1:] != cell[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(cell.shape[0]), 0))
        before = cs - s_rows - (cs[start] - s_rows[start])
        sums[0] = float(np.sum(pc.esum * before))
        counts[0] = 0.5 * float(np.sum(pc.N * (pc.N - 1.0)))
        return lags, sums, counts
    if adjust is None:
        Ss = pc.Se
        own = pc.E2
    else:
        Ss = pc.Se + np.einsum("itp,ip->it", pc.Sd, adjust)
        own = pc.E2 + np.einsum("itp,ip->it", pc.Sde, adjust)
    prod = Ss.T @ pc.Se  # sum over clusters of Ss_ij Se_ik (ordered pairs of periods)
    cnt = pc.N.T @ pc.N
    n_l = lags.shape[0]
    sums = 0.5 * _fbincount(idx.ravel(), prod.ravel(), n_l)
    counts = 0.5 * _fbincount(idx.ravel(), cnt.ravel(), n_l)
    if lags[0] == 0:
        # same period: only pairs of different observations
        sums[0] = 0.5 * float(np.sum(Ss * pc.Se - own))
        counts[0] = 0.5 * float(np.sum(pc.N * (pc.N - 1.0)))
    return lags, sums, counts


def _cluster_period_params(corstr: str, rs: _Resid, phi: float) -> FloatArray:
    """Correlation estimates from cluster-period means (geeCRT ``cpgeeSWD``, UEE).

    With ``g_ij = ybar_ij - mu_ij`` and ``v_ij = phi v(mu_ij)``, least squares of
    ``g_ij^2`` on ``v_ij (1 + (m_ij - 1) alpha0) / m_ij`` and of ``g_ij g_ik`` on
    ``sqrt(v_ij v_ik) alpha1`` (exchangeable: ``alpha0 = alpha1``), the unit-weight
    estimating equations of Li et al. (2022).  Units must be whole cells.
    """
    m = rs.N
    obs = m > 0
    v = phi * rs.Vc
    g = np.where(obs, rs.Se * np.sqrt(np.where(obs, v / phi, 0.0)) / np.where(obs, m, 1.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(obs, v * (m - 1.0) / np.where(obs, m, 1.0), 0.0)
        target = np.where(obs, g * g - v / np.where(obs, m, 1.0), 0.0)
    num0, den0 = float(np.sum(d * target)), float(np.sum(d * d))
    sg = np.sum(np.sqrt(v) * g, axis=1)
    num1 = 0.5 * float(np.sum(sg * sg - np.sum(v * g * g, axis=1)))
    sv = np.sum(v, axis=1)
    den1 = 0.5 * float(np.sum(sv * sv - np.sum(v * v, axis=1)))
    if corstr == "exchangeable":
        return np.array([(num0 + num1) / (den0 + den1)])
    return np.array([num0 / den0, num1 / den1])


def _maee_adjust(M: FloatArray, u: FloatArray) -> FloatArray:
    """Return ``w_i = Omega^{-1} (I - M_i Omega^{-1})^{-1} u_i``.

    Then ``(I - H_i)^{-1} r_i = r_i + D_i w_i`` (whitened scale).
    """
    p = M.shape[1]
    Oinv = np.linalg.inv(M.sum(axis=0))
    x = np.linalg.solve(np.eye(p)[None] - M @ Oinv, u[:, :, None])[:, :, 0]
    out: FloatArray = x @ Oinv.T
    return out


def _estimate_params(
    corstr: str,
    pc: _Resid,
    phi: float,
    units: GEEUnits,
    adjust: FloatArray | None = None,
    ordered: bool = False,
) -> FloatArray:
    if corstr == "independence":
        return np.zeros(0)
    lags, sums, counts = _lag_sums(pc, units, adjust, ordered)
    if corstr == "block-exchangeable":
        return _block_params(pc, phi, units, lags, sums, counts)
    sums = sums / phi
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), 0.0)
    if corstr == "exchangeable":
        return np.array([sums.sum() / counts.sum()])
    within = lags == 0
    if corstr == "nested-exchangeable":
        return np.array(
            [sums[within].sum() / counts[within].sum(), sums[~within].sum() / counts[~within].sum()]
        )
    # decay and ar1: least squares of the pairwise products on alpha0 * r^lag
    # (sum over pairs of (z - alpha0 r^L)^2 = sum over lags of counts * (mean_L - ...)^2 + c)
    use = counts > 0
    if corstr == "ar1":
        use &= ~within
    L, nL, mL = lags[use], counts[use], means[use]

    def profile(r: float) -> tuple[float, float]:
        f = _power(r, L)
        if corstr == "ar1":
            a0 = 1.0
        else:
            den = float(np.sum(nL * f * f))
            a0 = float(np.sum(nL * mL * f)) / den if den > 0 else 0.0
        return float(np.sum(nL * (mL - a0 * f) ** 2)), a0

    res = optimize.minimize_scalar(
        lambda r: profile(r)[0],
        bounds=(0.0, 1.0),
        method="bounded",
        options={"xatol": 1e-13},
    )
    r = float(res.x)
    a0 = profile(r)[1]
    if corstr == "ar1":
        return np.array([r])
    return np.array([a0, r])


def _block_params(
    rs: _Resid,
    phi: float,
    units: GEEUnits,
    lags: FloatArray,
    sums: FloatArray,
    counts: FloatArray,
) -> FloatArray:
    """Pair-type means: same period (alpha0), neither (alpha1), same person (alpha2)."""
    assert units.individual is not None
    within = lags == 0
    s0, c0 = float(sums[within].sum()), float(counts[within].sum())
    s_between, c_between = float(sums[~within].sum()), float(counts[~within].sum())
    K = int(units.individual.max()) + 1
    Sk = np.bincount(units.individual, weights=rs.esum, minlength=K)
    E2k = np.bincount(units.individual, weights=rs.e2, minlength=K)
    nk = np.bincount(units.individual, weights=units.w, minlength=K)
    s2 = 0.5 * float(np.sum(Sk * Sk - E2k))
    c2 = 0.5 * float(np.sum(nk * (nk - 1.0)))
    s1, c1 = s_between - s2, c_between - c2
    return np.array([s0 / c0, s1 / c1, s2 / c2]) / phi


# --------------------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GEECore:
    """Result of :func:`fit_gee_core` (all arrays; the domain layer wraps it)."""

    beta: FloatArray
    params: FloatArray  # working-correlation parameters
    phi: float
    M: FloatArray  # (I, p, p) phi-free per-cluster information
    u: FloatArray  # (I, p) phi-free per-cluster scores at beta
    iterations: int
    converged: bool


def _scale(
    rs: _Resid, M: FloatArray | None, u: FloatArray | None, n_obs: float, method: str, p: int
) -> float:
    """Moment estimate of the scale from Pearson residuals.

    ``"geepack"``: sum r^2 / N; ``"residual"``: sum r^2 / (N - p); ``"bias-corrected"``
    (geeCRT): sum_i r_i' (I - H_i)^{-1} r_i / (N - p), evaluated with the p-dimensional
    identity r' (I - H)^{-1} r = r'r + (D~'r)' Omega^{-1} (I - M_i Omega^{-1})^{-1} u_i.
    """
    ss = float(rs.E2.sum())
    if method == "geepack":
        return ss / n_obs
    if method == "residual":
        return ss / (n_obs - p)
    assert M is not None and u is not None
    Oinv = np.linalg.inv(M.sum(axis=0))
    Q = M @ Oinv
    x = np.linalg.solve(np.eye(p)[None] - Q, u[:, :, None])[:, :, 0]
    corr = float(np.einsum("ip,pq,iq->", rs.De, Oinv, x))
    return (ss + corr) / (n_obs - p)


def fit_gee_core(
    units: GEEUnits,
    fam: LinkFunctions,
    corstr: str,
    *,
    beta0: FloatArray,
    params: FloatArray | None = None,
    phi: float | None = None,
    scale_method: str = "geepack",
    maee: bool | str = False,
    corr_method: str = "moment",
    tol: float = 1e-10,
    maxiter: int = 100,
) -> GEECore:
    """Solve the GEE by Fisher scoring with moment updates of ``phi`` and the correlation.

    Parameters
    ----------
    units : GEEUnits
    fam : LinkFunctions
    corstr : str
        One of :data:`CORSTRS`.
    beta0 : numpy.ndarray
        Starting values.
    params : numpy.ndarray, optional
        Fixed working-correlation parameters (not estimated).
    phi : float, optional
        Fixed scale (not estimated).
    scale_method : {"geepack", "residual", "bias-corrected"}
        Moment estimator of ``phi`` (see :func:`_scale`); ignored when ``phi`` is given.
    maee : bool
        Matrix-adjusted estimating equations for the correlation (Preisser, Lu & Qaqish
        2008): pairwise products of ``(I - H_i)^{-1} r_i`` and ``r_i`` (symmetrised)
        instead of ``r_i r_i'``, which removes most of the small-sample bias of the
        moment estimators.  ``"geecrt"``: geeCRT's unsymmetrised form, pairs ``j < k`` in
        row order (needs single-observation units sorted by cluster then period).  Not
        available for the block-exchangeable structure.
    corr_method : {"moment", "cluster-period"}
        Individual-level pairwise moment estimators (default), or the cluster-period-mean
        estimating equations of :func:`_cluster_period_params` (exchangeable and nested
        exchangeable; units must be whole cells).
    tol, maxiter : float, int
        Stop when ``max |beta_new - beta| <= tol * (1 + max |beta|)``.

    Notes
    -----
    The correlation estimators are geepack's (and geeCRT's, whose ``alpadj=FALSE``
    equations have the same solution): exchangeable ``alpha`` is the
    mean over all within-cluster pairs of ``e_k e_l / phi`` (Pearson residuals); nested
    exchangeable uses the same mean separately over same-period and different-period
    pairs; decay (``alpha0 * r^lag``) and AR(1) (``r^lag``) are least-squares fits of the
    pairwise products on the lag, as geepack's AR(1).
    """
    dense = units.single
    n_obs = float(units.w.sum())
    p = units.X.shape[1]
    beta = np.asarray(beta0, dtype=float).copy()
    fixed_params = params is not None
    if fixed_params:
        par = np.asarray(params, dtype=float)
    elif corstr == "decay":
        par = np.array([0.0, 0.5])
    elif corstr == "ar1":
        par = np.array([0.5])
    else:
        par = np.zeros(len(CORSTRS[corstr]))
    ph = 1.0 if phi is None else float(phi)

    def nuisance(
        beta: FloatArray, par: FloatArray
    ) -> tuple[float, FloatArray, FloatArray, FloatArray]:
        # scale and correlation at beta (the bias-corrected scale needs the working
        # correlation of the previous step), then M_i, u_i at the new parameters
        rs = _residuals(units, fam, beta)
        ph_ = ph
        need_old = (phi is None and scale_method == "bias-corrected") or (maee and not fixed_params)
        M0, u0 = _corr_pieces(units, rs, corstr, par, dense=dense) if need_old else (None, None)
        if phi is None:
            ph_ = _scale(rs, M0, u0, n_obs, scale_method, p)
        if not fixed_params and corr_method == "cluster-period":
            par = _cluster_period_params(corstr, rs, ph_)
        elif not fixed_params:
            adj = _maee_adjust(M0, u0) if maee and M0 is not None and u0 is not None else None
            par = _estimate_params(corstr, rs, ph_, units, adj, ordered=maee == "geecrt")
        M, u = _corr_pieces(units, rs, corstr, par, dense=dense)
        return ph_, par, M, u

    converged = False
    it = 0
    for it in range(1, maxiter + 1):  # noqa: B007
        old = par
        ph, par, M, u = nuisance(beta, par)
        step = np.linalg.solve(M.sum(axis=0), u.sum(axis=0))
        beta = beta + step
        small = np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(beta)))
        if small and (fixed_params or np.max(np.abs(par - old), initial=0.0) <= 1e3 * tol):
            converged = True
            break
    # final nuisance parameters and pieces at the returned beta (geepack convention)
    ph, par, M, u = nuisance(beta, par)
    return GEECore(beta, par, ph, M, u, it, converged)


# --------------------------------------------------------------------------------------
# standard errors of the correlation parameters
# --------------------------------------------------------------------------------------


def _corr_scores(
    units: GEEUnits,
    fam: LinkFunctions,
    beta: FloatArray,
    corstr: str,
    params: FloatArray,
    phi: float,
    maee: bool,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-cluster scores of the correlation estimating equations, plus ``M_i``, ``u_i``.

    For nested exchangeable ``U_i = (S0_i / phi - alpha0 c0_i, S1_i / phi - alpha1 c1_i)``
    with ``S0_i``, ``S1_i`` the sums of residual products over same-period and
    different-period pairs of cluster ``i`` (MAEE-adjusted if requested) and ``c0_i``,
    ``c1_i`` the pair counts; exchangeable pools the two.  Returns ``(U, counts, M, u)``.
    """
    rs = _residuals(units, fam, beta)
    M, u = _corr_pieces(units, rs, corstr, params, dense=units.single)
    if maee:
        w = _maee_adjust(M, u)
        Ss = rs.Se + np.einsum("itp,ip->it", rs.Sd, w)
        own = rs.E2 + np.einsum("itp,ip->it", rs.Sde, w)
    else:
        Ss, own = rs.Se, rs.E2
    S0 = 0.5 * np.sum(Ss * rs.Se - own, axis=1)
    S1 = 0.5 * (np.sum(Ss, axis=1) * np.sum(rs.Se, axis=1) - np.sum(Ss * rs.Se, axis=1))
    c0 = 0.5 * np.sum(rs.N * (rs.N - 1.0), axis=1)
    c1 = 0.5 * (np.sum(rs.N, axis=1) ** 2 - np.sum(rs.N * rs.N, axis=1))
    if corstr == "exchangeable":
        S = (S0 + S1)[:, None]
        c = (c0 + c1)[:, None]
    else:
        S = np.column_stack([S0, S1])
        c = np.column_stack([c0, c1])
    return S / phi - params[None, :] * c, c, M, u


def correlation_vcov(
    units: GEEUnits,
    fam: LinkFunctions,
    beta: FloatArray,
    corstr: str,
    params: FloatArray,
    phi: float,
    *,
    maee: bool = False,
    step: float = 1e-6,
) -> FloatArray:
    """Robust (BC0) covariance of the exchangeable / nested-exchangeable correlation estimates.

    Stacked estimating equations ``(u_i / phi, U_i)`` for ``(beta, alpha)`` with the
    block-triangular bread of Prentice (1988) (as geeCRT): ``[[Omega, 0], [-dU/dbeta,
    diag(sum c)]]`` and meat ``sum_i psi_i psi_i'``; ``dU/dbeta`` by central differences.
    ``phi`` is held fixed.
    """
    U, c, M, u = _corr_scores(units, fam, beta, corstr, params, phi, maee)
    p, q = beta.shape[0], U.shape[1]
    J = np.empty((q, p))
    for k in range(p):
        h = step * max(1.0, abs(float(beta[k])))
        bp, bm = beta.copy(), beta.copy()
        bp[k] += h
        bm[k] -= h
        Up = _corr_scores(units, fam, bp, corstr, params, phi, maee)[0].sum(axis=0)
        Um = _corr_scores(units, fam, bm, corstr, params, phi, maee)[0].sum(axis=0)
        J[:, k] = (Up - Um) / (2.0 * h)
    bread = np.zeros((p + q, p + q))
    bread[:p, :p] = M.sum(axis=0) / phi
    bread[p:, :p] = -J
    bread[p:, p:] = np.diag(c.sum(axis=0))
    psi = np.concatenate([u / phi, U], axis=1)
    binv = np.linalg.inv(bread)
    V = binv @ (psi.T @ psi) @ binv.T
    out = V[p:, p:]
    return np.asarray(0.5 * (out + out.T), dtype=np.float64)
