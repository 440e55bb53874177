"""The GLM engine of the cluster fixed-effects analysis: families, IRLS and column rank.

R's ``glm.fit`` (Fisher scoring, started like R's ``mustart``) for the canonical binomial,
Gaussian and Poisson links, and the column selection of R's pivoting QR (tolerance 1e-7) that
names the aliased terms.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, special

__all__ = ["deviance", "independent_columns", "inv_link", "irls", "mu_eta", "variance"]


def inv_link(family: str, eta: np.ndarray) -> np.ndarray:
    """Inverse canonical link ``mu = h(eta)``."""
    if family == "binomial":
        return np.asarray(special.expit(eta), dtype=np.float64)
    if family == "poisson":
        return np.asarray(np.exp(eta), dtype=np.float64)
    return np.asarray(eta, dtype=np.float64)


def mu_eta(family: str, eta: np.ndarray) -> np.ndarray:
    """Return the derivative ``d mu / d eta`` of the inverse link."""
    if family == "binomial":
        p = special.expit(eta)
        return np.asarray(p * (1.0 - p), dtype=np.float64)
    if family == "poisson":
        return np.asarray(np.exp(eta), dtype=np.float64)
    return np.ones_like(eta, dtype=np.float64)


def variance(family: str, mu: np.ndarray) -> np.ndarray:
    """Variance function ``V(mu)`` (unit dispersion)."""
    if family == "binomial":
        return mu * (1.0 - mu)
    if family == "poisson":
        return mu
    return np.ones_like(mu)


def deviance(family: str, y: np.ndarray, mu: np.ndarray) -> float:
    """Deviance of the fit (residual sum of squares for the Gaussian family)."""
    if family == "binomial":
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where(y > 0, y * np.log(y / mu), 0.0)
            t0 = np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
        return float(2.0 * np.sum(t1 + t0))
    if family == "poisson":
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(y > 0, y * np.log(y / mu), 0.0)
        return float(2.0 * np.sum(t - (y - mu)))
    return float(np.sum((y - mu) ** 2))


def irls(
    family: str,
    x: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray,
    *,
    tol: float = 1e-13,
    maxit: int = 100,
) -> tuple[np.ndarray, bool, int]:
    """Fisher scoring (IRLS) as R's glm.fit, started like R (mustart)."""
    if family == "gaussian":
        beta = np.linalg.lstsq(x, y - offset, rcond=None)[0]
        return beta, True, 1
    if family == "binomial":
        mu = (y + 0.5) / 2.0
        eta = np.log(mu / (1.0 - mu))
    else:
        mu = y + 0.1
        eta = np.log(mu)
    dev_old = np.inf
    beta = np.zeros(x.shape[1])
    for it in range(1, maxit + 1):
        d = mu_eta(family, eta)
        v = variance(family, inv_link(family, eta))
        z = (eta - offset) + (y - inv_link(family, eta)) / d
        w = np.sqrt(d * d / v)
        q, r = np.linalg.qr(x * w[:, None])
        beta = linalg.solve_triangular(r, q.T @ (z * w))
        eta = x @ beta + offset
        mu = inv_link(family, eta)
        dev = deviance(family, y, mu)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            return beta, True, it
        dev_old = dev
    return beta, False, maxit


def independent_columns(x: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Keep columns in order when they add rank (as R's pivoting QR with tol 1e-7)."""
    n, p = x.shape
    q = np.zeros((n, 0))
    keep = np.zeros(p, dtype=bool)
    for j in range(p):
        col = x[:, j]
        norm = float(np.linalg.norm(col))
        if norm == 0.0:
            continue
        r = col - q @ (q.T @ col)
        r = r - q @ (q.T @ r)
        rn = float(np.linalg.norm(r))
        if rn > tol * norm:
            keep[j] = True
            q = np.hstack([q, (r / rn)[:, None]])
    return keep
