r"""Imputation estimator of Borusyak, Jaravel & Spiess (2024) on a balanced panel (numpy only).

Unit and period fixed effects are fitted by least squares on the untreated cells
(``Y_it = alpha_i + lambda_t``), the untreated outcome of each treated cell is imputed, and
the estimate is ``sum_it w_it (Y_it - alpha_i - lambda_t)`` over treated cells.  It is linear
in ``Y``: ``tau = sum_it v_it Y_it`` with ``v_it = w_it`` on treated cells and
``v = -Z_0 (Z_0' Z_0)^+ Z_1' w`` on untreated ones (BJS Theorem 1).  The conservative
variance (BJS Theorem 3) is ``sum_i (sum_t v_it e_it)^2`` with ``e_it`` the untreated
residuals and, on treated cells, ``tau_it`` minus its cohort-by-period mean.

The normal equations of the two-way model are solved through the ``T x T`` Schur complement
of the unit block, so the cost is ``O(I T + T^3)`` whatever the number of units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImputationFit", "imputation"]


@dataclass(frozen=True)
class ImputationFit:
    """Estimate, BJS conservative standard error and the treated-cell effects ``tau_it``."""

    estimate: float
    std_error: float
    tau: np.ndarray


def _two_way_solve(
    d0: np.ndarray, r_unit: np.ndarray, r_period: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the untreated-cell normal equations (``lambda_0 = 0``).

    ``d0`` (I, T) marks the untreated cells; ``r_unit`` (I,) and ``r_period`` (T,) are the
    right-hand sides ``Z_0' y`` split by unit and period.  Returns ``(alpha, lambda)``.
    """
    n_unit = d0.sum(axis=1)
    n_period = d0.sum(axis=0)
    scaled = d0 / n_unit[:, None]
    schur = np.diag(n_period) - d0.T @ scaled
    rhs = r_period - scaled.T @ r_unit
    lam = np.zeros(d0.shape[1])
    lam[1:] = np.linalg.solve(schur[1:, 1:], rhs[1:])
    alpha = (r_unit - d0 @ lam) / n_unit
    return alpha, lam


def imputation(
    y: np.ndarray, cohort: np.ndarray, weights_gt: np.ndarray, glist: np.ndarray
) -> ImputationFit:
    """Imputation estimate of ``sum_gt W[g, t] ATT(g, t)`` and its conservative SE.

    ``weights_gt`` (G, T) are the estimand's weights on the group-time effects (rows in the
    order of ``glist``); each cohort's weight is shared equally by its units.  Every unit needs
    an untreated period and every period in the estimand an untreated unit (checked by the
    caller).
    """
    # periods from the last start on have no untreated cell (and no weight): drop them;
    # they form a suffix, so the cohort indices are unchanged
    n_use = min(int(cohort.max()), y.shape[1])
    y, weights_gt = y[:, :n_use], weights_gt[:, :n_use]
    n_i, n_t = y.shape
    k_of = np.searchsorted(glist, cohort)
    n_g = np.bincount(k_of, minlength=len(glist)).astype(float)
    treated = np.arange(n_t)[None, :] >= cohort[:, None]
    d0 = (~treated).astype(float)
    w = weights_gt[k_of] / n_g[k_of][:, None] * treated
    alpha, lam = _two_way_solve(d0, (y * d0).sum(axis=1), (y * d0).sum(axis=0))
    fitted = alpha[:, None] + lam[None, :]
    tau = np.where(treated, y - fitted, 0.0)
    estimate = float(np.sum(w * tau))
    a, b = _two_way_solve(d0, w.sum(axis=1), w.sum(axis=0))
    v = np.where(treated, w, -(a[:, None] + b[None, :]) * d0)
    # cohort-by-period means of tau on treated cells (weights v are equal within a cell)
    cell = k_of[:, None] * n_t + np.arange(n_t)[None, :]
    size = np.bincount(cell[treated], minlength=len(glist) * n_t)
    mean_tau = np.bincount(cell[treated], weights=tau[treated], minlength=len(glist) * n_t)
    mean_tau = np.divide(mean_tau, size, out=np.zeros_like(mean_tau), where=size > 0)
    resid = np.where(treated, tau - mean_tau[cell], y - fitted)
    var = float(np.sum(np.sum(v * resid, axis=1) ** 2))
    return ImputationFit(estimate, float(np.sqrt(var)), np.where(treated, tau, np.nan))
