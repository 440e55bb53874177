"""Random draws of stepped-wedge data from the arrays of a validated model.

numpy only (the DataFrame is assembled in :mod:`steppedwedge.simulate`).  Every function
takes a :class:`numpy.random.Generator` and draws in a fixed order, so one generator state
gives one dataset.  All structures are vectorised over clusters and cells; the only
per-row work is for individual-level output.

Model (linear predictor of individual ``k`` in cluster ``i``, period ``j``)::

    eta_ijk = eta_ij + a_i + x_ij r_i + c_ij + p_ik            (+ eps_ijk for Gaussian)

with ``eta_ij = baseline + time_effect_j + effect * x_ij`` precomputed in :class:`DrawArrays`,
``x_ij`` the (curve-scaled) treatment, ``(a_i, r_i)`` bivariate normal with variances
``tau2, eta2`` and correlation ``rho``, ``c_i ~ N(0, gamma2 R(decay))`` and ``p_ik`` the
individual effect (cohorts) with variance ``psi2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from ..exceptions import OptionError

__all__ = ["DrawArrays", "draw_cells", "draw_cluster_effects", "draw_arrays"]


@dataclass(frozen=True, eq=False)
class DrawArrays:
    """Everything needed to draw one dataset, as plain arrays (picklable, read-only).

    Built by :meth:`steppedwedge.simulate._spec.SimulationSpec.arrays` from the keyword-level
    model and a design.
    """

    family: str  # "gaussian" | "binomial" | "poisson" | "negative_binomial"
    link: str  # "identity" | "logit" | "log"
    level: str  # "individual" | "cluster-period"
    sampling: str  # "cross-sectional" | "cohort"
    churn: float  # cohort: share replaced between periods (0 closed)
    treatment: FloatArray  # (I, T) design treatment, NaN where unobserved
    xc: FloatArray  # (I, T) curve-scaled treatment, 0 where unobserved
    exposure_time: IntArray  # (I, T)
    size: FloatArray  # (I, T) individuals (or population for counts); 0 = no data
    observed: BoolArray  # (I, T) cell observed and size > 0
    eta: FloatArray  # (I, T) fixed part of the linear predictor
    sigma2: float
    tau2: float
    gamma2: float
    eta2: float
    rho: float
    psi2: float
    decay: float | None
    chol_period: FloatArray  # (T, T) Cholesky factor of gamma2 * R(decay)
    dispersion: float | None  # NB alpha, or Poisson-lognormal cell variance
    n_stay: IntArray  # (I,) cohort individuals present in every period
    clusters: tuple[Any, ...]
    periods: Any  # period labels (pandas Index), used only when building frames
    times: FloatArray | None = None  # (T,) decay positions (years) for decay_scale="time"

    @property
    def shape(self) -> tuple[int, int]:
        """``(I, T)``."""
        n_clusters, n_periods = self.eta.shape
        return int(n_clusters), int(n_periods)


def draw_cluster_effects(spec: DrawArrays, rng: np.random.Generator) -> FloatArray:
    """Cluster-level random part ``a_i + x_ij r_i + c_ij`` of the linear predictor, (I, T)."""
    n_clusters, n_periods = spec.shape
    z = rng.standard_normal((n_clusters, 2))
    a = np.sqrt(spec.tau2) * z[:, 0]
    r = np.sqrt(spec.eta2) * (spec.rho * z[:, 0] + np.sqrt(1.0 - spec.rho**2) * z[:, 1])
    c = rng.standard_normal((n_clusters, n_periods)) @ spec.chol_period.T
    out: FloatArray = a[:, None] + spec.xc * r[:, None] + c
    return out


def draw_cells(spec: DrawArrays, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Gaussian cross-sectional cell means and within-cell sums of squares, both (I, T).

    Exact in distribution for individual rows: the mean of ``m`` i.i.d. normal residuals
    with variance ``s2`` is ``N(0, s2/m)``, independent of their sum of squared deviations,
    which is ``s2 * chi2(m - 1)``.  Cross-sectionally an individual effect ``psi2`` is just
    more residual variance (``s2 = sigma2 + psi2``).  Unobserved cells are NaN.
    """
    u = draw_cluster_effects(spec, rng)
    s2 = spec.sigma2 + spec.psi2
    m = np.where(spec.observed, spec.size, 1.0)
    means = spec.eta + u + np.sqrt(s2 / m) * rng.standard_normal(spec.shape)
    within = s2 * rng.chisquare(np.maximum(m - 1.0, 1.0))
    within = np.where(m > 1.0, within, 0.0)
    means = np.where(spec.observed, means, np.nan)
    within = np.where(spec.observed, within, np.nan)
    return means, within


def _individual_rows(
    spec: DrawArrays, rng: np.random.Generator
) -> tuple[IntArray, IntArray, IntArray | None, FloatArray]:
    """Cell codes, individual ids (cohorts) and the random linear predictor of every row."""
    n_clusters, n_periods = spec.shape
    u = draw_cluster_effects(spec, rng)
    m = np.where(spec.observed, spec.size, 0).astype(np.int64)
    flat_m = m.ravel()
    cell = np.repeat(np.arange(flat_m.size), flat_m)
    ci, pj = np.divmod(cell, n_periods)
    starts = np.cumsum(flat_m) - flat_m
    k = np.arange(cell.size) - starts[cell]  # position of the row within its cell
    lin = spec.eta.ravel()[cell] + u.ravel()[cell]
    ids: IntArray | None = None
    if spec.sampling == "cohort":
        m_i = m.max(axis=1)  # constant over a cluster's observed periods (validated)
        stay = spec.n_stay
        move = m_i - stay
        per_cluster = stay + n_periods * move
        offset = np.cumsum(per_cluster) - per_cluster
        local = np.where(k < stay[ci], k, stay[ci] + pj * move[ci] + (k - stay[ci]))
        ids = offset[ci] + local
        p = np.sqrt(spec.psi2) * rng.standard_normal(int(per_cluster.sum()))
        lin = lin + p[ids]
    elif spec.psi2 and spec.family != "gaussian":
        lin = lin + np.sqrt(spec.psi2) * rng.standard_normal(cell.size)
    return ci, pj, ids, lin


def _inverse_link(link: str, lin: FloatArray) -> FloatArray:
    if link == "logit":
        return 1.0 / (1.0 + np.exp(-lin))
    if link == "log":
        return np.exp(lin)
    return lin


def _check_probability(spec: DrawArrays, prob: FloatArray, ci: Any, pj: Any) -> None:
    bad = (prob < 0) | (prob > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        cluster = spec.clusters[int(np.asarray(ci).ravel()[first])]
        period = spec.periods[int(np.asarray(pj).ravel()[first])]
        raise OptionError(
            f"the `{spec.link}` link gave a probability of {float(prob.ravel()[first]):.4g} in "
            f"cluster {cluster!r}, period {period!r} (outside [0, 1]); lower `baseline`, "
            "`effect` or the random-effect variances, or use link='logit'."
        )


def draw_arrays(spec: DrawArrays, rng: np.random.Generator) -> dict[str, Any]:
    """Draw one dataset as arrays.

    Returns a dict with ``"kind"``: ``"rows"`` (keys ``cluster_code``, ``period_code``,
    ``individual`` (or None) and ``outcome``) or ``"cells"`` (``(I, T)`` arrays ``outcome``
    plus ``within_ss`` for Gaussian, ``trials`` for binomial or ``population`` for counts).
    """
    if spec.family == "gaussian":
        return _draw_gaussian(spec, rng)
    if spec.family == "binomial":
        return _draw_binomial(spec, rng)
    return _draw_counts(spec, rng)


def _rows(ci: IntArray, pj: IntArray, ids: IntArray | None, y: FloatArray) -> dict[str, Any]:
    return {"kind": "rows", "cluster_code": ci, "period_code": pj, "individual": ids, "outcome": y}


def _draw_gaussian(spec: DrawArrays, rng: np.random.Generator) -> dict[str, Any]:
    if spec.level == "cluster-period" and spec.sampling == "cross-sectional":
        means, within = draw_cells(spec, rng)
        return {"kind": "cells", "outcome": means, "within_ss": within}
    ci, pj, ids, lin = _individual_rows(spec, rng)
    y = lin + np.sqrt(spec.sigma2 if spec.sampling == "cohort" else spec.sigma2 + spec.psi2) * (
        rng.standard_normal(lin.size)
    )
    rows = _rows(ci, pj, ids, y)
    return _aggregate_gaussian(spec, rows) if spec.level == "cluster-period" else rows


def _binomial_cells(spec: DrawArrays, events: FloatArray) -> dict[str, Any]:
    return {
        "kind": "cells",
        "outcome": np.where(spec.observed, events, np.nan),
        "trials": np.where(spec.observed, spec.size, np.nan),
    }


def _draw_binomial(spec: DrawArrays, rng: np.random.Generator) -> dict[str, Any]:
    if spec.level == "cluster-period" and spec.sampling == "cross-sectional" and not spec.psi2:
        u = draw_cluster_effects(spec, rng)
        prob = _inverse_link(spec.link, spec.eta + u)
        prob = np.where(spec.observed, prob, 0.5)
        if spec.link != "logit":
            row_idx, col_idx = np.indices(spec.shape)
            _check_probability(spec, prob, row_idx, col_idx)
        n = np.where(spec.observed, spec.size, 0).astype(np.int64)
        return _binomial_cells(spec, rng.binomial(n, prob).astype(float))
    ci, pj, ids, lin = _individual_rows(spec, rng)
    prob = _inverse_link(spec.link, lin)
    if spec.link != "logit":
        _check_probability(spec, prob, ci, pj)
    y = (rng.random(lin.size) < prob).astype(float)
    if spec.level != "cluster-period":
        return _rows(ci, pj, ids, y)
    flat = ci * spec.shape[1] + pj
    events = np.bincount(flat, weights=y, minlength=spec.eta.size).reshape(spec.shape)
    return _binomial_cells(spec, np.asarray(events, dtype=np.float64))


def _draw_counts(spec: DrawArrays, rng: np.random.Generator) -> dict[str, Any]:
    """Draw counts of a population per cell: Poisson, lognormal-Poisson or negative binomial."""
    u = draw_cluster_effects(spec, rng)
    mu = np.where(spec.observed, spec.size * np.exp(spec.eta + u), 0.0)
    if spec.family == "poisson" and spec.dispersion:
        mu = mu * np.exp(np.sqrt(spec.dispersion) * rng.standard_normal(spec.shape))
    elif spec.family == "negative_binomial":
        alpha = float(spec.dispersion or 0.0)  # validated > 0
        mu = mu * rng.gamma(1.0 / alpha, alpha, size=spec.shape)
    counts = rng.poisson(mu).astype(float)
    return {
        "kind": "cells",
        "outcome": np.where(spec.observed, counts, np.nan),
        "population": np.where(spec.observed, spec.size, np.nan),
    }


def _aggregate_gaussian(spec: DrawArrays, rows: dict[str, Any]) -> dict[str, Any]:
    """Exact cell means and within-cell sums of squares of individual Gaussian rows."""
    flat = rows["cluster_code"] * spec.shape[1] + rows["period_code"]
    y = rows["outcome"]
    size = spec.eta.size
    n = np.bincount(flat, minlength=size)
    total = np.bincount(flat, weights=y, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
    dev = y - mean[flat]
    ss = np.bincount(flat, weights=dev * dev, minlength=size)
    obs = spec.observed.ravel()
    return {
        "kind": "cells",
        "outcome": np.where(obs, mean, np.nan).reshape(spec.shape),
        "within_ss": np.where(obs, ss, np.nan).reshape(spec.shape),
    }
