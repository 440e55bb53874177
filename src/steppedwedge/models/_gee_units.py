"""The mean-model rows of a GEE fit as :class:`~steppedwedge._core.gee.GEEUnits`.

Without individual-level covariates, offsets or a cohort structure the units are whole
cluster-period cells (sizes, sums and within-cell sums of squares: the cluster-period
reduction, exact for the GEE); otherwise they are the rows, sorted by cluster then period
with the data order kept within a cell.  Also the starting values and the moment estimate
of the negative-binomial shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._core import gee as _gee
from ..data import TrialData
from ..exceptions import DataError
from ._gee_options import GEEOptions

__all__ = ["gee_start", "gee_units", "label", "moment_nb_theta"]

#: unit arrays: cluster, period, treatment, w, ysum, yss, offset, covariates, person
_Arrays = tuple[Any, ...]


def label(x: Any) -> str:
    """Term label of a period or cluster value (numpy scalars unwrapped)."""
    return str(x.item() if isinstance(x, np.generic) else x)


def _use_cells(td: TrialData, opts: GEEOptions) -> bool:
    return (
        td.kind == "individual"
        and opts.corstr != "block-exchangeable"
        and opts.maee != "geecrt"
        and not opts.covariates
        and "exposure" not in td.roles
        and "offset" not in td.roles
    )


def _cell_arrays(td: TrialData) -> _Arrays:
    """One unit per observed cluster-period cell."""
    cells = td.cells()
    ci, pj = np.nonzero(cells.observed)
    return (
        ci.astype(np.int64),
        pj.astype(np.int64),
        cells.treatment[ci, pj],
        cells.n[ci, pj].astype(float),
        cells.total[ci, pj].astype(float),
        cells.within_ss[ci, pj].astype(float),
        np.zeros(len(ci)),
        np.zeros((len(ci), 0)),
        None,
    )


def _row_arrays(td: TrialData, opts: GEEOptions) -> _Arrays:
    """One unit per row (binomial aggregates: per cell with trials > 0)."""
    f = td.frame
    # by cluster, then period, keeping the data order within a cell
    order = np.lexsort((td.period_codes, td.cluster_codes))
    cluster = td.cluster_codes[order].astype(np.int64)
    period = td.period_codes[order].astype(np.int64)
    treat = f["treatment"].to_numpy(np.float64)[order]
    y = f["outcome"].to_numpy(np.float64)[order]
    if td.kind == "aggregate" and td.family == "binomial" and "trials" in f.columns:
        w = f["trials"].to_numpy(np.float64)[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            yss = np.where(w > 0, y - y * y / np.where(w > 0, w, 1.0), 0.0)
        keep = w > 0
    else:
        w = np.ones(len(y))
        yss = np.zeros(len(y))
        keep = np.ones(len(y), dtype=bool)
    offset = np.zeros(len(y))
    if "exposure" in td.roles:
        offset = offset + np.log(f["exposure"].to_numpy(np.float64)[order])
    if "offset" in td.roles:
        offset = offset + f["offset"].to_numpy(np.float64)[order]
    cov = (
        np.column_stack([f[c].to_numpy(np.float64)[order] for c in opts.covariates])
        if opts.covariates
        else np.zeros((len(y), 0))
    )
    person = _person(td, order, period) if opts.corstr == "block-exchangeable" else None
    out = [cluster, period, treat, w, y, yss, offset, cov, person]
    return tuple(a[keep] if a is not None else None for a in out)


def _person(td: TrialData, order: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Individual codes of a closed cohort (at most one row per person and period)."""
    codes = pd.factorize(td.frame["individual"])[0].astype(np.int64)[order]
    key = codes * td.n_periods + period
    if np.unique(key).shape[0] < key.shape[0]:
        raise DataError(
            "corstr='block-exchangeable' needs at most one row per individual and "
            f"period; column {td.roles['individual']!r} repeats a person within a "
            "period."
        )
    return np.asarray(codes)


def _design(
    td: TrialData, opts: GEEOptions, period: np.ndarray, treat: np.ndarray, cov: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Period effects (or intercept and trend), treatment and covariates."""
    cols: list[np.ndarray] = []
    names: list[str] = []
    if opts.time == "categorical":
        # one mean per period, no separate intercept (geeCRT's and Li et al.'s coding);
        # the Fay-Graubard correction depends on the coding, the other estimators do not
        for j in np.unique(period):
            cols.append((period == j).astype(float))
            names.append(f"period[{label(td.periods[j])}]")
    else:
        cols.append(np.ones(len(period)))
        names.append("(Intercept)")
        if opts.time == "linear":
            cols.append(period.astype(float))
            names.append("period")
    cols.append(treat)
    names.append("treatment")
    for q, c in enumerate(opts.covariates):
        cols.append(cov[:, q])
        names.append(c)
    return np.column_stack(cols), names


def gee_units(td: TrialData, opts: GEEOptions) -> tuple[_gee.GEEUnits, list[str]]:
    """Mean-model rows as GEE units, plus the term names.

    Raises
    ------
    DataError
        If the mean model is not identifiable (treatment or a covariate collinear with the
        period effects), or a closed cohort repeats a person within a period.
    """
    use_cells = _use_cells(td, opts)
    arrays = _cell_arrays(td) if use_cells else _row_arrays(td, opts)
    cluster, period, treat, w, ysum, yss, offset, cov, person = arrays
    X, names = _design(td, opts, period, treat, cov)
    rank = np.linalg.matrix_rank(X * np.sqrt(w)[:, None])
    if rank < X.shape[1]:
        raise DataError(
            "the mean model is not identifiable: treatment (or a covariate) is collinear "
            f"with the period effects and intercept ({X.shape[1]} columns, rank {rank}); "
            "check the treatment column and covariates."
        )
    units = _gee.GEEUnits(
        cluster=cluster,
        period=period,
        X=X,
        w=w,
        ysum=ysum,
        yss=yss,
        offset=offset,
        n_clusters=td.n_clusters,
        n_periods=td.n_periods,
        times=np.arange(td.n_periods, dtype=float),
        individual=None if use_cells else person,
    )
    return units, names


def gee_start(units: _gee.GEEUnits, fam: _gee.LinkFunctions, opts: GEEOptions) -> np.ndarray:
    """Start from least squares of the link-transformed (shrunk) cell means."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ybar = units.ysum / units.w
    if opts.family == "binomial":
        ybar = (units.ysum + 0.5) / (units.w + 1.0)
    elif opts.family in ("poisson", "negative_binomial"):
        ybar = (units.ysum + 0.5) / units.w
    if opts.link == "log" and opts.family == "gaussian":
        ybar = np.maximum(ybar, 1e-8)
    z = fam.linkfun(ybar) - units.offset
    if opts.link == "identity" and opts.family == "binomial":
        z = np.clip(z, 0.01, 0.99)
    sw = np.sqrt(units.w)
    beta, *_ = np.linalg.lstsq(units.X * sw[:, None], z * sw, rcond=None)
    return np.asarray(beta, dtype=float)


def moment_nb_theta(units: _gee.GEEUnits, opts: GEEOptions) -> float:
    """Moment estimate of the negative-binomial shape from a Poisson working fit."""
    fam = _gee.link_functions("poisson", opts.link)
    core = _gee.fit_gee_core(units, fam, "independence", beta0=gee_start(units, fam, opts), phi=1.0)
    mu = fam.linkinv(units.X @ core.beta + units.offset)
    resid2 = units.yss + (units.ysum - units.w * mu) ** 2 / units.w
    num = float(np.sum(units.w * mu * mu))
    k = float(np.sum(resid2 - units.w * mu)) / num
    if not k > 1e-8:
        raise DataError(
            "the counts show no overdispersion beyond Poisson (moment estimate of the "
            "negative-binomial 1/theta <= 0); use family='poisson' or pass `nb_theta`."
        )
    return 1.0 / k
