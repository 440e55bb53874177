r"""Implied weights of the immediate-treatment (IT) estimator on exposure times and periods.

Every linear estimator of the immediate effect is ``theta_hat = sum_ij w_ij Ybar_ij`` (the
cluster-period means).  When the true effect varies with exposure time, ``delta_e``, its
expectation is ``sum_e omega_e delta_e`` with ``omega_e = sum_{ij: e_ij = e} w_ij``; when it
varies with calendar time, ``sum_t omega_t delta_t`` with ``omega_t = sum_{i: X_it = 1}
w_it``.  Both sets sum to one and can be negative: the IT estimator then weights some
effects negatively (Kenny et al. 2022 for mixed models; the "forbidden comparisons" of the
two-way fixed-effects literature, de Chaisemartin & D'Haultfoeuille 2020, Goodman-Bacon
2021, in which already-treated cells serve as controls).

The weights are computed exactly from the GLS/OLS algebra, ``w' = c' (Z' V^{-1} Z)^{-1} Z'
V^{-1}``: for ``"gls"`` with the design ``[period dummies, X]`` and the cluster covariance
``V`` of the fitted mixed model; for ``"twfe"`` by OLS with cluster and period dummies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._core.covariance import mask_unobserved, mean_covariance
from .._core.gls import cell_weights
from ..exceptions import DataError

__all__ = ["ImpliedWeights", "implied_weights"]


@dataclass(frozen=True, eq=False)
class ImpliedWeights:
    """Weights of the IT estimator on cells, exposure times and calendar periods.

    Attributes
    ----------
    kind : {"gls", "twfe"}
        ``"gls"``: the mixed model's GLS estimator at its variance components; ``"twfe"``:
        OLS with cluster and period fixed effects.
    cells : pandas.DataFrame
        Clusters x periods: ``w_ij`` (NaN for unobserved cells).
    exposure : pandas.DataFrame
        ``exposure_time, weight, cells``: ``omega_e`` over the treated cells ``e = 1, 2, ...``
        (exposure time 1 is the first treated period).
    calendar : pandas.DataFrame
        ``period, weight, cells``: ``omega_t`` over the periods with treated cells.
    description : str
        How the weights were obtained.
    treated : numpy.ndarray
        Boolean ``(I, T)``: the treated, observed cells.
    """

    kind: str
    cells: pd.DataFrame
    exposure: pd.DataFrame
    calendar: pd.DataFrame
    description: str
    treated: np.ndarray = field(repr=False)

    @property
    def negative_exposure_times(self) -> list[int]:
        """Exposure times with a negative weight (beyond rounding, ``< -1e-10``)."""
        w = self.exposure
        return [int(e) for e in w.loc[w["weight"] < -1e-10, "exposure_time"]]

    @property
    def negative_cells(self) -> int:
        """Number of treated cells with a negative weight (``< -1e-10``)."""
        return int(np.sum((np.nan_to_num(self.cells.to_numpy()) < -1e-10) & self.treated))


def _twfe_design(x: np.ndarray) -> np.ndarray:
    """Per-cluster design ``(I, T, I + T)``: cluster dummies, periods 2..T, treatment."""
    n_i, n_t = x.shape
    z = np.zeros((n_i, n_t, n_i + n_t))
    z[np.arange(n_i), :, np.arange(n_i)] = 1.0
    for j in range(1, n_t):
        z[:, j, n_i + j - 1] = 1.0
    z[:, :, -1] = x
    return z


def _gls_design(x: np.ndarray) -> np.ndarray:
    """Per-cluster design ``(I, T, T + 1)``: one dummy per period, treatment."""
    n_i, n_t = x.shape
    z = np.zeros((n_i, n_t, n_t + 1))
    z[:, np.arange(n_t), np.arange(n_t)] = 1.0
    z[:, :, -1] = x
    return z


def implied_weights(
    treatment: np.ndarray,
    *,
    clusters: Any,
    periods: Any,
    kind: str = "twfe",
    inv_size: np.ndarray | None = None,
    components: dict[str, float] | None = None,
) -> ImpliedWeights:
    """Compute the IT estimator's weights on cells, exposure times and calendar periods.

    Parameters
    ----------
    treatment : ndarray, shape (I, T)
        0/1 treatment of each cluster-period; NaN marks an unobserved cell.
    clusters, periods : sequence
        Labels of the rows and columns.
    kind : {"twfe", "gls"}
        OLS with cluster and period fixed effects, or GLS with period effects and the
        cluster covariance ``tau2 J + gamma2 R(decay) + diag(sigma2 * inv_size)``.
    inv_size : ndarray, shape (I, T), optional
        ``"gls"``: the residual variance multiplier of each cell mean (``1 / m_ij`` for
        Gaussian means; ``1 / mu_ij`` for the log of a Poisson count).
    components : dict, optional
        ``"gls"``: ``sigma2`` (default 1), ``tau2``, ``gamma2``, ``decay``.

    Returns
    -------
    ImpliedWeights

    Raises
    ------
    DataError
        Non-0/1 treatment (the exposure time of a fractional cell is not defined) or no
        treated cell.

    References
    ----------
    Kenny A, Voldal EC, Xia F, Heagerty PJ, Hughes JP (2022). Analysis of stepped wedge
    cluster randomized trials in the presence of a time-varying treatment effect. Stat Med
    41:4311-4339.
    de Chaisemartin C, D'Haultfoeuille X (2020). Two-way fixed effects estimators with
    heterogeneous treatment effects. Am Econ Rev 110:2964-2996.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.compare import implied_weights
    >>> x = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=float)
    >>> w = implied_weights(x, clusters=["a", "b", "c"], periods=[1, 2, 3, 4])
    >>> w.exposure["weight"].round(4).tolist()
    [1.2, 0.1, -0.3]
    >>> w.negative_exposure_times
    [3]
    """
    x = np.asarray(treatment, dtype=float)
    observed = ~np.isnan(x)
    xv = np.where(observed, x, 0.0)
    if np.any((xv != 0) & (xv != 1)):
        raise DataError(
            "implied weights need a 0/1 treatment: the exposure time of a partially "
            "treated cell is not defined."
        )
    if not xv.any():
        raise DataError("implied weights need at least one treated cell.")
    z = _twfe_design(xv) if kind == "twfe" else _gls_design(xv)
    z = z * observed[:, :, None]
    if kind == "twfe":
        cov = np.broadcast_to(np.eye(x.shape[1]), (x.shape[0], x.shape[1], x.shape[1])).copy()
        description = "OLS with cluster and period fixed effects (two-way fixed effects)"
    else:
        vc = dict(components or {})
        m = np.ones_like(xv) if inv_size is None else np.where(observed, inv_size, 1.0)
        cov = mean_covariance(
            m,
            sigma2=float(vc.get("sigma2", 1.0)),
            tau2=float(vc.get("tau2", 0.0)),
            gamma2=float(vc.get("gamma2", 0.0)),
            decay=vc.get("decay"),
        )
        description = "GLS with period effects at the fitted variance components"
    cov = mask_unobserved(cov, observed)
    contrast = np.zeros(z.shape[2])
    contrast[-1] = 1.0
    w = np.where(observed, cell_weights(z, cov, contrast), np.nan)
    on = xv.astype(bool)
    start = np.where(on.any(axis=1), on.argmax(axis=1), x.shape[1])
    exposure_time = np.where(on, np.arange(x.shape[1])[None, :] - start[:, None] + 1, 0)
    return _tabulate(kind, w, exposure_time, clusters, periods, description)


def _tabulate(
    kind: str,
    w: np.ndarray,
    exposure_time: np.ndarray,
    clusters: Any,
    periods: Any,
    description: str,
) -> ImpliedWeights:
    """Sum the cell weights by exposure time (periods since the start) and by period."""
    treated = (exposure_time > 0) & ~np.isnan(w)
    ww = np.where(treated, np.nan_to_num(w), 0.0)
    times = range(1, int(exposure_time.max()) + 1)
    exposure = pd.DataFrame(
        {
            "exposure_time": list(times),
            "weight": [float(ww[exposure_time == e].sum()) for e in times],
            "cells": [int((exposure_time == e).sum()) for e in times],
        }
    )
    cols = np.nonzero(treated.any(axis=0))[0]
    calendar = pd.DataFrame(
        {
            "period": [list(periods)[j] for j in cols],
            "weight": [float(ww[:, j].sum()) for j in cols],
            "cells": [int(treated[:, j].sum()) for j in cols],
        }
    )
    cells = pd.DataFrame(w, index=pd.Index(list(clusters)), columns=pd.Index(list(periods)))
    return ImpliedWeights(kind, cells, exposure, calendar, description, treated)
