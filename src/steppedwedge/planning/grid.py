"""Vectorised power over parameter grids (arrays in, array out)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import closed_forms as cf
from .._core import power_kernels as pk
from .._validation import check_option
from ..design import Design
from ..exceptions import DesignError, OptionError
from .analytic import _as_design

__all__ = ["power_grid"]


def _unit(name: str, value: Any, *, open_right: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr) | (arr < 0) | ((arr >= 1) if open_right else (arr > 1))
    if np.any(bad):
        interval = "[0, 1)" if open_right else "[0, 1]"
        raise OptionError(f"`{name}` must lie in {interval}; got {arr[bad].ravel()[0]!r}.")
    return arr


def power_grid(
    design: Design | Any,
    *,
    effect: Any,
    icc: Any,
    cluster_size: Any,
    cac: Any = 1.0,
    iac: Any = 0.0,
    decay: Any = None,
    churn: Any = 1.0,
    total_variance: Any = 1.0,
    alpha: Any = 0.05,
    output: str = "power",
) -> np.ndarray:
    r"""Power (or variance) for every combination of broadcast parameter arrays.

    The standard closed-form cases are evaluated without any loop: a complete design (every
    cell observed), the same cluster-period size ``m`` in every cell, categorical period
    effects, Gaussian outcome (or any identity-scale plug-in), and the nested-exchangeable
    family with closed or open cohorts.  Then every cluster's covariance is
    ``a I + b J`` with

    ``a = total [icc (1 - cac) + (1 - icc)(1 - iac)/m + churn (1 - icc) iac / m]``,
    ``b = total [icc cac + (1 - churn)(1 - icc) iac / m]``

    and the two-eigenvalue formula (methods.md section 2.3) gives the variance (0/1
    designs).  With ``decay`` (an array allowed) or fractional cells the same broadcasting
    is used with a batched GLS over the distinct sequences of the design
    (:func:`steppedwedge._core.power_kernels.sequence_batched_variance`).

    Parameters
    ----------
    design : Design or array_like
        A complete design (fractional cells allowed).
    effect, icc, cluster_size, cac, iac, decay, churn, total_variance, alpha : array_like
        Broadcast against each other (NumPy rules).  ``churn`` = 1 is cross-sectional,
        0 a closed cohort; ``iac`` only matters for cohorts.
    output : {"power", "power_one_tail", "variance", "std_error"}
        What to return.

    Returns
    -------
    ndarray
        The broadcast shape of the inputs.

    Raises
    ------
    ValueError
        Correlations outside [0, 1], non-positive cluster sizes or variances.
    DesignError
        If the design has unobserved cells (use :func:`power`).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.planning import power_grid
    >>> p = power_grid(Design.stepped_wedge(3, 3), effect=0.2, icc=0.0,
    ...                cluster_size=np.array([49, 50]))
    >>> np.round(p, 4)
    array([0.7996, 0.8074])
    >>> power_grid(Design.stepped_wedge(4, 2), effect=[[0.2], [0.3]], icc=[0.01, 0.05, 0.1],
    ...            cluster_size=20).shape
    (2, 3)
    """
    output = check_option("output", output, ("power", "power_one_tail", "variance", "std_error"))
    d = _as_design(design)
    if not d.observed.all():
        raise DesignError(
            "power_grid needs a complete design (every cell observed); use power() for "
            "incomplete designs."
        )
    icc_a = _unit("icc", icc, open_right=True)
    cac_a = _unit("cac", cac)
    iac_a = _unit("iac", iac, open_right=True)
    churn_a = _unit("churn", churn)
    m = np.asarray(cluster_size, dtype=float)
    if np.any(~np.isfinite(m) | (m <= 0)):
        raise OptionError("`cluster_size` must be > 0 everywhere.")
    tot = np.asarray(total_variance, dtype=float)
    if np.any(~np.isfinite(tot) | (tot <= 0)):
        raise OptionError("`total_variance` must be > 0.")
    alpha_a = np.asarray(alpha, dtype=float)
    if np.any((alpha_a <= 0) | (alpha_a >= 1)):
        raise OptionError("`alpha` must lie in (0, 1).")
    eff = np.asarray(effect, dtype=float)
    x = np.asarray(d.matrix, dtype=float)
    within = (1 - icc_a) * (1 - iac_a) / m  # sigma2 / m
    psi_m = (1 - icc_a) * iac_a / m  # psi2 / m
    binary = bool(np.all((x == 0) | (x == 1)))
    if decay is None and binary:
        s = cf.design_summaries(x)
        a = tot * (icc_a * (1 - cac_a) + within + churn_a * psi_m)
        b = tot * (icc_a * cac_a + (1 - churn_a) * psi_m)
        var = cf.two_eigenvalue_variance(s["I"], s["T"], s["U"], s["V"], s["W"], a, a + s["T"] * b)
        var = np.broadcast_to(var, np.broadcast_shapes(var.shape, eff.shape, alpha_a.shape))
    else:
        var, shape = _batched_variance(d, (icc_a, cac_a, within, psi_m, churn_a, tot), decay)
        var = np.broadcast_to(var, np.broadcast_shapes(shape, eff.shape, alpha_a.shape))
    if output == "variance":
        return np.array(var)
    se = np.sqrt(var)
    if output == "std_error":
        return np.array(se)
    p2, p1 = pk.normal_power(eff, se, alpha_a)
    return np.asarray(p2 if output == "power" else p1)


def _batched_variance(
    d: Any, grids: tuple[np.ndarray, ...], decay: Any
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Treatment-effect variance over the broadcast grids, one batched GLS per scenario.

    ``grids`` are the ICC, CAC, within-cell and individual variances (per unit of total
    variance), churn and total variance; ``decay`` the CAC decay grid (None: no decay).
    """
    icc_a, cac_a, within, psi_m, churn_a, tot = grids
    n_periods = d.n_periods
    r = _unit("decay", 0.0 if decay is None else decay)
    shape = np.broadcast_shapes(
        icc_a.shape, cac_a.shape, within.shape, psi_m.shape, churn_a.shape, tot.shape, r.shape
    )
    args = [
        np.broadcast_to(v, shape).ravel() for v in (icc_a, cac_a, within, psi_m, churn_a, tot, r)
    ]
    icc_f, cac_f, within_f, psi_f, churn_f, tot_f, r_f = args
    lag = np.abs(np.arange(n_periods)[:, None] - np.arange(n_periods)[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        rpow = np.where(lag[None] == 0, 1.0, r_f[:, None, None] ** lag[None])
    if decay is None:
        rpow = np.broadcast_to(np.eye(n_periods), rpow.shape)
    eye = np.eye(n_periods)
    cov = tot_f[:, None, None] * (
        (icc_f * cac_f + (1 - churn_f) * psi_f)[:, None, None]
        + (icc_f * (1 - cac_f))[:, None, None] * rpow
        + (within_f + churn_f * psi_f)[:, None, None] * eye
    )
    seq = np.asarray(d.sequence_matrix)
    sizes = np.asarray(d.sequence_sizes, dtype=float)
    var = pk.sequence_batched_variance(seq, sizes, cov).reshape(shape)
    return var, shape
