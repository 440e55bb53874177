"""Sampling uncertainty and fit diagnostics of :func:`steppedwedge.estimate_variance`.

Two jobs: the parametric bootstrap of the variance components (simulate the fitted model,
refit the same structure), and the observed-vs-fitted correlation of log rates by lag.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._parallel import spawn_seeds
from ..exceptions import SteppedWedgeError
from ..variance import VarianceComponents
from ._history_fit import HistoryFit, fit_structure, simulate_counts
from ._panel import PanelRows

__all__ = ["bootstrap", "correlation_by_lag"]


def bootstrap(
    rows: PanelRows,
    fit: HistoryFit,
    time: str,
    family: str,
    n_boot: int,
    root: np.random.SeedSequence,
) -> tuple[tuple[VarianceComponents, ...], tuple[float, ...], int]:
    """``n_boot`` parametric-bootstrap refits: (components, NB sizes, number failed).

    Replicate ``b`` uses its own stream, child ``b`` of ``root`` (the library's convention,
    :func:`steppedwedge._parallel.spawn_seeds`), so a draw does not depend on how many
    replicates are run before it.  A refit that does not converge, or fails
    numerically, is left out and counted.
    """
    draws: list[VarianceComponents] = []
    sizes: list[float] = []
    failed = 0
    for child in spawn_seeds(root, n_boot):
        y = simulate_counts(rows, fit, time, family, np.random.default_rng(child))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                refit = fit_structure(rows, fit.structure, time, family, y=y, start=fit)
        except (SteppedWedgeError, ArithmeticError, np.linalg.LinAlgError):
            failed += 1
            continue
        if not refit.converged:
            failed += 1
            continue
        decay = refit.decay
        if decay is not None and decay < 0.0:
            decay = 0.0
        draws.append(
            VarianceComponents(
                sigma2=refit.sigma2, tau2=refit.tau2, gamma2=refit.gamma2, decay=decay
            )
        )
        if refit.nb_size is not None:
            sizes.append(refit.nb_size)
    return tuple(draws), tuple(sizes), failed


def _log_rates(rows: PanelRows, family: str) -> np.ndarray:
    """(I, T) empirical link-scale values (NaN where unobserved), period means removed."""
    n_i, n_t = len(rows.clusters), len(rows.periods)
    if family == "gaussian":
        val = rows.y.copy()
    elif family == "binomial":
        val = np.log((rows.y + 0.5) / (rows.trials - rows.y + 0.5))
    else:
        val = np.log(rows.y + 0.5) - rows.offset
    out = np.full((n_i, n_t), np.nan)
    out[rows.cluster_codes, rows.period_codes] = val
    return np.asarray(out - np.nanmean(out, axis=0, keepdims=True))


def _sampling_variance(rows: PanelRows, fit: HistoryFit, family: str) -> float:
    """Mean sampling variance of the empirical link-scale values (delta method)."""
    if family == "gaussian":
        return fit.sigma2
    if family == "binomial":
        p = (rows.y + 0.5) / (rows.trials + 1.0)
        return float(np.mean(1.0 / (rows.trials * p * (1.0 - p))))
    extra = 0.0 if fit.nb_size is None else 1.0 / fit.nb_size
    return float(np.mean(1.0 / (rows.y + 0.5)) + extra)


def correlation_by_lag(rows: PanelRows, fit: HistoryFit, family: str) -> pd.DataFrame:
    """``lag, n_pairs, observed, fitted``: correlation of a cluster's log rates by lag.

    Observed: mean product of the centred log rates of the same cluster ``lag`` periods apart
    over their mean square (lag 0).  Fitted: ``(tau2 + gamma2 R(lag)) / (tau2 + gamma2 + s2)``
    with ``R`` the structure's correlation of the cluster-period effects and ``s2`` the mean
    sampling variance of a log count (``1/y``, plus ``1/k`` for the negative binomial), so the
    two are on the same scale.
    """
    lr = _log_rates(rows, family)
    n_t = lr.shape[1]
    s2 = _sampling_variance(rows, fit, family)
    total = fit.tau2 + fit.gamma2 + s2
    out = []
    var0 = float(np.nanmean(lr * lr))
    for k in range(n_t):
        prod = lr[:, : n_t - k] * lr[:, k:]
        ok = np.isfinite(prod)
        if not ok.any():
            continue
        if fit.structure in ("decay", "nested+decay"):
            r = 0.0 if fit.decay is None else max(fit.decay, 0.0) ** k
        else:
            r = 1.0 if k == 0 else 0.0
        fitted = 1.0 if k == 0 else (fit.tau2 + fit.gamma2 * r) / total
        out.append((k, int(ok.sum()), float(prod[ok].mean()) / var0, fitted))
    table: pd.DataFrame = pd.DataFrame(out, columns=["lag", "n_pairs", "observed", "fitted"])
    return table
