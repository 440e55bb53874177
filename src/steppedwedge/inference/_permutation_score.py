r"""The GLMM score statistic of :func:`~steppedwedge.permutation_test` (``"glmm-score"``).

The GLMM *without* a treatment term (intercept, period effects and the chosen random
effects; with ``theta X_obs`` added to the offset when the interval is searched at
``theta``) is fitted once, on the cluster-period cells, by the Laplace fitter of
:func:`steppedwedge.models.glmm.fit_glmm`.  At that fit the derivative of the Laplace
log-likelihood ``L`` with respect to a treatment coefficient ``beta_x`` (at
``beta_x = 0``, the other parameters held at the null fit) is linear in the treatment
column ``x``::

    U(x) = sum_iu g_iu x_iu,
    g_i = s_i - c_i / 2 + W_i A_i H_i^-1 A_i' c_i / 2,    c_iu = w1_iu a_iu' H_i^-1 a_iu,

(the ``beta`` part of :func:`steppedwedge._core.laplace.laplace_grad`: ``s`` the
score, ``W`` the observed information and ``w1 = dW/deta`` of the cells, ``A = Z Lambda``,
``H = I + A'WA``), so the statistic of every re-randomised treatment matrix is one product.
It is standardised by the efficient information of the envelope ``beta`` Hessian,
``I(x) = x'Mx - x'M X (X'M X)^-1 X'M x`` with ``M_i = W_i - W_i A_i H_i^-1 A_i' W_i`` (the
third-derivative terms and the variance parameters' cross-information are left out):
``use="estimate"`` gives ``U / I``, one Newton step from ``beta_x = 0`` (an approximation
of the GLMM estimate; minus ``theta`` under the offset form), ``use="t"`` the score ``z``
``U / sqrt(I)``.  Any statistic gives an exact randomisation test under the sharp null;
this one borrows the GLMM's weighting of the cells.

References: Rao CR (1948) Proc Camb Philos Soc 44:50-57 (score tests); Rabideau DJ, Wang R
(2021) Stat Med 40:4442-4456 (randomisation intervals of model statistics, offset form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._core.families import Family, make_family
from .._core.laplace import CoreFit, UnitData, modes
from ..exceptions import DataError, OptionError

__all__ = [
    "SCORE_RANDOM",
    "ScoreModel",
    "ScorePieces",
    "fit_null",
    "null_model",
    "information",
    "score_by_sequence",
    "score_pieces",
    "score_statistics",
]

#: Random-effect structures of the score statistic.
SCORE_RANDOM = ("cluster", "nested", "decay", "nested+decay")


@dataclass(frozen=True)
class ScoreModel:
    """The null GLMM on the ``(I, T)`` cell grid and its starting values."""

    fam: Family
    units: UnitData  # one unit per cell (unobserved cells are weight-0 padding)
    offset: np.ndarray  # (I, T) base offset (log exposure)
    x_obs: np.ndarray  # (I, T) observed treatment (0 where unobserved)
    starts: tuple[list[np.ndarray], np.ndarray, float]  # betas, sigma0, alpha0


@dataclass(frozen=True)
class ScorePieces:
    """What ``U(x)`` and ``I(x)`` need from one null fit."""

    g: np.ndarray  # (I, T) score weights
    m: np.ndarray  # (I, T, T) envelope information blocks
    mxn: np.ndarray  # (I, T, p) M X of the nuisance columns
    nn_inv: np.ndarray  # (p, p) (X'MX)^-1
    core: CoreFit


def null_model(td: Any, random: str) -> ScoreModel:
    """Cells, designs and starting values of the GLMM without a treatment term.

    Raises
    ------
    OptionError
        Gaussian outcomes, or a negative binomial with several rows in a cell (its
        likelihood is not that of the cell total).
    """
    from ..models.glmm import _check_decay_periods, _glm_start, _ls_start, _sigma_start

    if td.family == "gaussian":
        raise OptionError(
            "statistic='glmm-score' is the score of a GLMM (binomial or count outcomes); for "
            "a Gaussian outcome use statistic='lmm' or 'twfe'."
        )
    cells = td.cells()
    n_i, n_t = cells.shape
    obs = np.asarray(cells.observed, dtype=bool)
    if td.family == "negative_binomial" and np.any(np.asarray(cells.n)[obs] > 1):
        raise OptionError(
            "statistic='glmm-score' with family='negative_binomial' needs one row per "
            "cluster-period (a sum of NB rows is not NB); aggregate the rows or use "
            "family='poisson'."
        )
    if random in ("decay", "nested+decay"):
        _check_decay_periods(td, random, n_t)
    fam = make_family(td.family)
    y = np.where(obs, np.nan_to_num(np.asarray(cells.total, dtype=float)), 0.0)
    n = (
        np.where(obs, np.asarray(cells.n, dtype=float), 0.0)
        if td.family == "binomial"
        else obs * 1.0
    )
    off = np.zeros((n_i, n_t))
    if td.family != "binomial" and cells.exposure is not None:
        off = np.where(
            obs, np.log(np.where(obs, np.asarray(cells.exposure, dtype=float), 1.0)), 0.0
        )
    seen = np.asarray(obs.any(axis=0), dtype=bool)
    keep = [j for j in range(1, n_t) if seen[j]]  # period dummies (first observed dropped)
    if not seen[0] and keep:
        keep = keep[1:]
    x = np.concatenate([np.ones((n_i, n_t, 1)), np.eye(n_t)[:, keep][None].repeat(n_i, 0)], 2)
    x = x * obs[:, :, None]
    zc, comp, names, tail, ar1 = _random_design(random, n_i, n_t)
    z = zc * obs[:, :, None]
    units = UnitData(
        y=y, n=n, offset=off, weight=obs * 1.0, x=x, z=z, comp=np.asarray(comp),
        n_comp=len(names), tail_start=tail, ar1=ar1,
    )  # fmt: skip
    ci, pj = np.nonzero(obs)
    gx = x[ci, pj]
    beta0, alpha0 = _glm_start(fam, y[ci, pj], n[ci, pj], off[ci, pj], gx)
    sigma0 = _sigma_start(
        fam, beta0, alpha0, y[ci, pj], n[ci, pj], off[ci, pj], gx, ci, pj, names, n_i, n_t,
        ar1 is not None,
    )  # fmt: skip
    if ar1 is not None and fam.has_dispersion:
        sigma0, alpha0 = sigma0[:-1], float(sigma0[-1])
    betas = [beta0, _ls_start(fam, y[ci, pj], n[ci, pj], off[ci, pj], gx)]
    x_obs = np.where(obs, np.nan_to_num(np.asarray(cells.treatment, dtype=float)), 0.0)
    return ScoreModel(fam, units, off, x_obs, (betas, np.asarray(sigma0), float(alpha0)))


def _random_design(
    random: str, n_i: int, n_t: int
) -> tuple[np.ndarray, list[int], list[str], int | None, tuple[int, int] | None]:
    """Random-effect columns per cell ``(I, T, q)`` as :func:`fit_glmm` builds them."""
    cols: list[np.ndarray] = []
    comp: list[int] = []
    names: list[str] = []
    tail = ar1 = None
    if random != "decay":
        cols.append(np.ones((n_i, n_t, 1)))
        comp.append(0)
        names.append("tau2")
    if random != "cluster":
        if random == "nested":
            tail = len(comp)
        else:
            ar1 = (len(comp), n_t)
        cols.append(np.broadcast_to(np.eye(n_t), (n_i, n_t, n_t)))
        comp += [len(names)] * n_t
        names.append("gamma2")
    return np.concatenate(cols, axis=2), comp, names, tail, ar1


def fit_null(model: ScoreModel, theta: float = 0.0, start: CoreFit | None = None) -> ScorePieces:
    """Fit the null GLMM with ``theta X_obs`` in the offset; the score pieces at the fit.

    ``start``: a previous fit to start from (the interval's search at nearby ``theta``).
    """
    from ..models.glmm import _robust_core

    units = replace(model.units, offset=model.offset + theta * model.x_obs * model.units.weight)
    betas, sigma0, alpha0 = model.starts
    if start is not None:
        sig = start.sigma.copy()
        sig[: units.n_comp] = np.maximum(np.abs(sig[: units.n_comp]), 0.05)
        betas, sigma0, alpha0 = [start.beta, *betas], sig, start.alpha
    core = _robust_core(units, model.fam, betas, sigma0, alpha0, 1)
    if not np.all(np.isfinite(core.beta)):
        raise DataError("the GLMM without a treatment term could not be fitted (non-finite).")
    return score_pieces(units, model.fam, core)


def score_pieces(units: UnitData, fam: Family, core: CoreFit) -> ScorePieces:
    """Score weights ``g`` and information blocks ``M`` at the null fit ``core``."""
    st = modes(units, fam, core.beta, core.sigma, core.alpha, core.v)
    a, w = st.a, st.w
    ah = a @ st.hinv  # (I, U, q)
    c = st.w1 * (ah * a).sum(axis=2)  # d log|H| / d eta
    back = (ah @ (a.transpose(0, 2, 1) @ c[:, :, None]))[:, :, 0]  # A H^-1 A' c
    g = st.s - 0.5 * c + 0.5 * w * back
    aw = a * w[:, :, None]
    m = -(ah * w[:, :, None]) @ aw.transpose(0, 2, 1)
    idx = np.arange(w.shape[1])
    m[:, idx, idx] += w
    mxn = m @ units.x
    nn = np.einsum("iup,iuq->pq", units.x, mxn)
    return ScorePieces(g=g, m=m, mxn=mxn, nn_inv=np.linalg.pinv(nn), core=core)


def information(pieces: ScorePieces, xs: np.ndarray) -> np.ndarray:
    """Efficient information ``I(x)`` of each treatment matrix in ``xs`` ``(B, I, T)``."""
    x = np.nan_to_num(np.asarray(xs, dtype=float))
    ixx = np.einsum("bit,itu,biu->b", x, pieces.m, x, optimize=True)
    ixn = np.einsum("bit,itp->bp", x, pieces.mxn, optimize=True)
    info: np.ndarray = ixx - np.einsum("bp,pq,bq->b", ixn, pieces.nn_inv, ixn)
    # relative to x'Mx: an allocation whose treatment the period effects absorb gets 0
    return np.where(info > 1e-10 * np.maximum(ixx, 1e-300), info, 0.0)


def score_statistics(pieces: ScorePieces, xs: np.ndarray, use: str) -> np.ndarray:
    """``U / I`` (``use="estimate"``) or ``U / sqrt(I)`` (``"t"``) for ``xs`` ``(B, I, T)``.

    NaN where the efficient information is not positive (treatment collinear with the
    period effects for that allocation).
    """
    x = np.nan_to_num(np.asarray(xs, dtype=float))
    u = np.einsum("bit,it->b", x, pieces.g)
    info = information(pieces, x)
    ok = info > 0.0
    safe = np.where(ok, info, 1.0)
    out = u / safe if use == "estimate" else u / np.sqrt(safe)
    out = np.where(ok, out, math.nan)
    res: np.ndarray = out
    return res


def score_by_sequence(
    pieces: ScorePieces, seq_matrix: np.ndarray, seq_of: np.ndarray, use: str
) -> np.ndarray:
    """:func:`score_statistics` of allocations given as each cluster's sequence.

    ``seq_matrix`` ``(S, T)`` (NaN = not observed, as 0); ``seq_of`` ``(B, I)``: the
    sequence of each cluster (row of the cell grid) in each allocation.  ``U``, ``x'Mx`` and
    ``x'MX`` are sums over clusters of per-(cluster, sequence) tables, so a batch costs
    ``O(B I p)`` instead of ``O(B I T^2)``; identical to :func:`score_statistics` on the
    treatment matrices.
    """
    sm = np.nan_to_num(np.asarray(seq_matrix, dtype=float))
    g_tab = pieces.g @ sm.T  # (I, S)
    q_tab = np.einsum("st,itu,su->is", sm, pieces.m, sm, optimize=True)
    r_tab = np.einsum("st,itp->isp", sm, pieces.mxn, optimize=True)
    rows = np.arange(seq_of.shape[1])
    out = np.empty(seq_of.shape[0])
    for start in range(0, seq_of.shape[0], 2048):  # bounds the (B, I, p) intermediate
        a = np.asarray(seq_of[start : start + 2048], dtype=np.intp)
        u = g_tab[rows, a].sum(axis=1)
        ixx = q_tab[rows, a].sum(axis=1)
        ixn = r_tab[rows, a].sum(axis=1)
        info = ixx - np.einsum("bp,pq,bq->b", ixn, pieces.nn_inv, ixn)
        ok = info > 1e-10 * np.maximum(ixx, 1e-300)
        safe = np.where(ok, info, 1.0)
        val = u / safe if use == "estimate" else u / np.sqrt(safe)
        out[start : start + a.shape[0]] = np.where(ok, val, math.nan)
    return out
