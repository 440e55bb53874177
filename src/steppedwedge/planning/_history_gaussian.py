"""Gaussian panel fits for :func:`steppedwedge.estimate_variance`: exact maximum likelihood.

One row per cluster and period, ``y_ij = x_ij' beta + a_i + c_ij + e_ij`` with
``a_i ~ N(0, tau2)``, the cluster-period effects ``c_i ~ N(0, gamma2 R(decay))`` of the
decay structures and ``e_ij ~ N(0, sigma2)``: the cluster's covariance is
``tau2 J + gamma2 R + sigma2 I`` on its observed periods.  The fixed effects are profiled out
by GLS and the log-likelihood (constants included, as lme4's and glmmTMB's ML) is maximised
over ``(log tau, log gamma, atanh decay, log sigma)``; clusters with the same observed periods
share one Cholesky factor.  With one row per cell an exchangeable cluster-period effect is
the residual itself, so ``"nested"`` is not identifiable here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize

from ..exceptions import OptionError
from ._history_fit import HistoryFit, fixed_design
from ._panel import PanelRows

__all__ = ["fit_gaussian", "gaussian_objective"]


def _groups(rows: PanelRows) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(periods, row indices (n_g, m))`` per observed-period pattern, rows in period order."""
    by_pattern: dict[tuple[int, ...], list[np.ndarray]] = {}
    for i in range(len(rows.clusters)):
        idx = np.flatnonzero(rows.cluster_codes == i)
        idx = idx[np.argsort(rows.period_codes[idx])]
        by_pattern.setdefault(tuple(rows.period_codes[idx].tolist()), []).append(idx)
    return [(np.array(k), np.stack(v)) for k, v in by_pattern.items()]


def _unpack(theta: np.ndarray, structure: str) -> tuple[float, float, float, float]:
    """``(tau2, gamma2, decay, sigma2)`` from the unbounded parameters."""
    k = 0
    tau2 = gamma2 = decay = 0.0
    if structure in ("cluster", "nested+decay"):
        tau2, k = math.exp(2 * theta[0]), 1
    if structure in ("decay", "nested+decay"):
        gamma2, decay, k = math.exp(2 * theta[k]), math.tanh(theta[k + 1]), k + 2
    return tau2, gamma2, decay, math.exp(2 * theta[k])


def _profile(
    theta: np.ndarray, structure: str, groups: list[Any], x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """Profile log-likelihood and the GLS ``beta`` at ``theta``."""
    tau2, gamma2, decay, sigma2 = _unpack(theta, structure)
    p = x.shape[1]
    xtx, xty = np.zeros((p, p)), np.zeros(p)
    pieces = []
    for per, idx in groups:
        lag = np.abs(np.subtract.outer(per, per))
        v = tau2 + gamma2 * decay**lag + sigma2 * np.eye(per.size)
        chol = np.linalg.cholesky(v)
        xw = np.linalg.solve(chol, x[idx].transpose(1, 2, 0).reshape(per.size, -1))
        xw = xw.reshape(per.size, p, -1).transpose(2, 0, 1)  # (n_g, m, p) whitened
        yw = np.linalg.solve(chol, y[idx].T).T  # (n_g, m)
        xtx += np.einsum("gmp,gmq->pq", xw, xw)
        xty += np.einsum("gmp,gm->p", xw, yw)
        pieces.append((xw, yw, 2.0 * np.log(np.diag(chol)).sum() * idx.shape[0]))
    beta = np.linalg.solve(xtx, xty)
    quad = sum(float(((yw - xw @ beta) ** 2).sum()) for xw, yw, _ in pieces)
    logdet = sum(ld for _, _, ld in pieces)
    return -0.5 * (y.size * math.log(2 * math.pi) + logdet + quad), beta


def _start(rows: PanelRows, structure: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    beta = np.linalg.solve(x.T @ x, x.T @ y)
    r = y - x @ beta
    n_i = len(rows.clusters)
    cnt = np.bincount(rows.cluster_codes, minlength=n_i)
    mean_i = np.bincount(rows.cluster_codes, weights=r, minlength=n_i) / np.maximum(cnt, 1)
    between = max(float(np.var(mean_i)), 1e-4 * float(np.var(r)) + 1e-12)
    within = max(float(np.var(r - mean_i[rows.cluster_codes])), 1e-12)
    sd = [0.5 * math.log(between)] if structure in ("cluster", "nested+decay") else []
    if structure in ("decay", "nested+decay"):
        sd += [0.5 * math.log(0.5 * within), math.atanh(0.5)]
    return np.array(sd + [0.5 * math.log(0.5 * within)])


def gaussian_objective(
    rows: PanelRows, structure: str, time: str, y: np.ndarray | None = None
) -> Callable[[np.ndarray], float]:
    """Minus the profile (GLS) log-likelihood over the working parameters (see the module).

    Infinite beyond ``|theta| > 30`` (variances outside ``e^-60 .. e^60``).
    """
    x = fixed_design(rows, time)
    groups = _groups(rows)
    yy = rows.y if y is None else y

    def negll(theta: np.ndarray) -> float:
        if np.any(np.abs(theta) > 30):
            return math.inf
        return -_profile(theta, structure, groups, x, yy)[0]

    return negll


def fit_gaussian(
    rows: PanelRows,
    structure: str,
    time: str,
    y: np.ndarray,
    start: HistoryFit | None = None,
) -> HistoryFit:
    """Maximum-likelihood fit of one structure to a Gaussian panel (see the module)."""
    if structure == "nested":
        raise OptionError(
            "structure='nested' is not identifiable for a Gaussian panel with one row per "
            "cluster and period (the cluster-period effect is the residual); use 'cluster', "
            "'decay' or 'nested+decay'."
        )
    x = fixed_design(rows, time)
    groups = _groups(rows)
    theta0 = (
        start.theta
        if start is not None and start.theta is not None
        else _start(rows, structure, x, y)
    )
    negll = gaussian_objective(rows, structure, time, y)
    res = optimize.minimize(negll, theta0, method="BFGS", options={"gtol": 1e-9, "maxiter": 500})
    theta = np.asarray(res.x, dtype=float)
    res = optimize.minimize(
        negll,
        theta,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    theta = np.asarray(res.x, dtype=float)
    ll, beta = _profile(theta, structure, groups, x, y)
    tau2, gamma2, decay, sigma2 = _unpack(theta, structure)
    has_decay = structure in ("decay", "nested+decay")
    return HistoryFit(
        structure=structure,
        tau2=tau2,
        gamma2=gamma2,
        decay=decay if has_decay else None,
        nb_size=None,
        loglik=ll,
        n_par=x.shape[1] + theta.size,
        converged=bool(res.success),
        message=str(res.message),
        beta=beta,
        core=None,
        sigma2=sigma2,
        theta=theta,
    )
