"""From validated rows to the GLMM's likelihood units (:mod:`.glmm`).

The fixed-effect columns are built on the cluster-period cells (intercept, secular trend,
treatment-effect columns) and carried to the rows with the covariates; rows with identical
(cell, covariates) are summed into units (events / trials, counts / summed exposure: the
likelihood is the rows' up to a constant that is added back); the random-effect columns of
each structure are attached, and the units are padded into the per-cluster arrays of
:class:`~steppedwedge._core.laplace.UnitData`.  Collinear columns, complete separation and
decay structures on too few (or unordered) periods are refused here, naming the term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core.families import log_constant
from .._core.laplace import UnitData
from ..data import TrialData
from ..exceptions import DataError, DesignError
from ._formula import covariate_matrix
from .mixed import _first_dependent_column, _time_columns, _treatment_columns

__all__: list[str] = []

_DECAY = ("decay", "nested+decay")


@dataclass(frozen=True, eq=False)
class _CellDesign:
    """Fixed-effect columns on the ``(I, T)`` cells: intercept, time, treatment effect."""

    xbar: np.ndarray  # (I, T, p0)
    names: list[str]
    eff_idx: list[int]
    exp_levels: Any
    tcols: np.ndarray  # (T, k) time columns
    knots_used: Any
    trt: np.ndarray  # (I, T) treatment, 0 where unobserved


@dataclass(frozen=True, eq=False)
class _Units:
    """Likelihood units: rows with identical (cell, covariates) summed (see module notes)."""

    y: np.ndarray
    n: np.ndarray
    off: np.ndarray
    const: np.ndarray
    x: np.ndarray
    c: np.ndarray  # cluster code of each unit
    p: np.ndarray  # period code of each unit
    t: np.ndarray  # treatment of each unit's cell
    names: list[str]  # every fixed-effect column (cell columns, then covariates)
    n_rows: np.ndarray  # per row: trials (binomial aggregates) or 1
    n_frame: int  # rows as given
    one_row_per_cell: bool


def _cell_design(cells: Any, periods: Any, time: str, knots: Any, effect: str) -> _CellDesign:
    """Intercept, time and treatment-effect columns on the cells (``td.cells()``)."""
    n_i, n_t = cells.shape
    observed = np.asarray(cells.observed)
    trt = np.where(observed, np.asarray(cells.treatment, dtype=float), 0.0)
    tcols, tnames, knots_used = _time_columns(time, list(periods), knots)
    xcell = [np.ones((n_i, n_t, 1)), np.broadcast_to(tcols, (n_i, n_t, tcols.shape[1]))]
    names = ["(Intercept)"] + tnames
    eff_cols, eff_names, exp_levels = _treatment_columns(effect, trt, observed)
    xcell.append(eff_cols)
    names += eff_names
    xbar = np.concatenate(xcell, axis=2)
    p0 = xbar.shape[2]
    eff_idx = list(range(p0 - len(eff_names), p0))
    return _CellDesign(xbar, names, eff_idx, exp_levels, tcols, knots_used, trt)


def _row_arrays(td: TrialData, family: str) -> tuple[np.ndarray, ...]:
    """Per row: outcome, trials (or 1), log-scale offset and log-likelihood constant."""
    n_frame = td.n_rows
    y_rows = td._role_values("outcome")
    if family == "binomial":
        n_rows = td._role_values("trials") if td.kind == "aggregate" else np.ones(n_frame)
    else:
        n_rows = np.ones(n_frame)
    off_rows = np.zeros(n_frame)
    if "exposure" in td.roles:
        off_rows = off_rows + np.log(td._role_values("exposure"))
    if "offset" in td.roles:
        off_rows = off_rows + td._role_values("offset")
    const_rows = log_constant(family, y_rows, n_rows, binomial_coefficient=(td.kind == "aggregate"))
    if family != "binomial":
        const_rows = const_rows + y_rows * off_rows  # the offset's part of y * eta, restored below
    return y_rows, n_rows, off_rows, const_rows


def _unit_groups(td: TrialData, xr: np.ndarray, p0: int, family: str) -> np.ndarray:
    """Return each row's unit: identical (cell, covariates); NB: rows, if several per cell."""
    p = xr.shape[1]
    key_cols = (
        np.column_stack([td.cell_index.astype(float), xr[:, p0:]])
        if p > p0
        else td.cell_index.astype(float)[:, None]
    )
    if family == "negative_binomial" and np.any(np.bincount(td.cell_index) > 1):
        group = np.arange(len(td.frame))
    elif p == p0:  # the rank of each row's cell among the non-empty cells (np.unique's inverse)
        present = np.bincount(td.cell_index, minlength=1) > 0
        group = (np.cumsum(present) - 1)[td.cell_index]
    else:  # hash-grouped, numbered in sorted (lexicographic) order as np.unique(axis=0)
        keys = pd.DataFrame(key_cols)
        group = keys.groupby(list(keys.columns), sort=True).ngroup().to_numpy()
    return np.asarray(group).ravel()


def _units(td: TrialData, design: _CellDesign, family: str, covariates: str | None) -> _Units:
    """Sum the rows into likelihood units (see module notes)."""
    frame = td.frame
    ci = np.asarray(td.cluster_codes)
    pi = np.asarray(td.period_codes)
    y_rows, n_rows, off_rows, const_rows = _row_arrays(td, family)
    names = list(design.names)
    xr = design.xbar[ci, pi]
    if covariates:
        cm = covariate_matrix(covariates, frame)
        xr = np.concatenate([xr, cm.values], axis=1)
        names += list(cm.names)
    group = _unit_groups(td, xr, design.xbar.shape[2], family)
    n_g = int(group.max()) + 1 if len(group) else 0
    first = np.full(n_g, -1)
    first[group[::-1]] = np.arange(len(group))[::-1]
    g_y = np.bincount(group, weights=y_rows, minlength=n_g)
    g_n = np.bincount(group, weights=n_rows, minlength=n_g)
    g_e = np.bincount(group, weights=np.exp(off_rows), minlength=n_g)
    g_off = np.log(g_e) if family != "binomial" else np.zeros(n_g)
    g_const: np.ndarray = np.bincount(group, weights=const_rows, minlength=n_g)
    if family != "binomial":
        g_const = g_const - g_y * g_off
    g_c = ci[first]
    g_p = pi[first]
    return _Units(
        y=g_y,
        n=g_n,
        off=g_off,
        const=g_const,
        x=xr[first],
        c=g_c,
        p=g_p,
        t=design.trt[g_c, g_p],
        names=names,
        n_rows=n_rows,
        n_frame=len(frame),
        one_row_per_cell=not np.any(np.bincount(td.cell_index) > 1),
    )


def _check_identifiable(units: _Units, design: _CellDesign, time: str) -> None:
    """Refuse a fixed-effect column collinear with earlier ones, naming the term at fault."""
    dep = _first_dependent_column(units.x) if _nearly_collinear(units.x) else None
    if dep is None:
        return
    bad = units.names[dep]
    if dep in design.eff_idx:
        raise DataError(
            f"The treatment effect term {bad!r} is not identifiable: it is collinear with the "
            "period "
            "effects (or earlier terms). Check that some periods contain both control and "
            "treated "
            "clusters and that every exposure time is observed."
        )
    if dep >= design.xbar.shape[2]:
        raise DataError(
            f"Covariate column {bad!r} is collinear with the treatment, period or other "
            "covariate "
            "columns; remove it from `covariates`."
        )
    raise DataError(
        f"Fixed-effect column {bad!r} is collinear with earlier columns; the time model "
        f"`time={time!r}` cannot be estimated with these periods."
    )


def _random_design(
    units: _Units, random: str, n_i: int, n_t: int, ar1_times: np.ndarray | None
) -> tuple[UnitData, list[str]]:
    """Random-effect columns of ``random`` on the units, padded per cluster into UnitData."""
    n_g = len(units.y)
    zcols: list[np.ndarray] = []
    comp: list[int] = []
    comp_names: list[str] = []
    if random != "decay":
        zcols.append(np.ones((n_g, 1)))
        comp.append(0)
        comp_names.append("tau2")
    if random in ("random-slope", "nested+random-slope"):
        zcols.append(units.t[:, None])
        comp.append(len(comp_names))
        comp_names.append("eta2")
    tail_start = None
    if random in ("nested", "nested+random-slope"):
        tail_start = len(comp)  # one-hot cluster-period columns last: arrowhead Laplace Hessian
        zcols.append(np.eye(n_t)[units.p])
        comp += [len(comp_names)] * n_t
        comp_names.append("gamma2")
    ar1 = None
    if random in _DECAY:
        # AR(1) cluster-period effects, one column per period (position in td.periods)
        ar1 = (len(comp), n_t)
        zcols.append(np.eye(n_t)[units.p])
        comp += [len(comp_names)] * n_t
        comp_names.append("gamma2")
    g_z = np.concatenate(zcols, axis=1)
    pad = _Padding(units.c, n_i)
    ud = UnitData(
        y=pad(units.y),
        n=pad(units.n),
        offset=pad(units.off),
        weight=pad(np.ones(n_g)),
        x=pad(units.x),
        z=pad(g_z),
        comp=np.asarray(comp),
        n_comp=len(comp_names),
        const=float(units.const.sum()),
        tail_start=tail_start,
        ar1=ar1,
        ar1_times=ar1_times,
    )
    return ud, comp_names


class _Padding:
    """Place per-unit arrays into per-cluster rows: ``(n_units, ...)`` -> ``(I, U, ...)``.

    Cluster ``i``'s units keep their order and fill row ``i`` from the left; the rest of
    the row (up to the largest cluster's ``U`` units) is 0.
    """

    def __init__(self, cluster: np.ndarray, n_i: int) -> None:
        order = np.argsort(cluster, kind="stable")
        counts = np.bincount(cluster, minlength=n_i)
        starts = np.cumsum(counts) - counts
        self.order, self.row = order, cluster[order]
        self.col = np.arange(len(order)) - starts[self.row]
        self.shape = (n_i, int(counts.max()))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape + values.shape[1:], dtype=float)
        out[self.row, self.col] = values[self.order]
        return out


def _nearly_collinear(x: np.ndarray) -> bool:
    """Whether the column-scaled ``x`` has singular-value ratio below 1e-9.

    A well-conditioned Gram matrix (eigenvalue ratio above 1e-12, so singular values above
    ~1e-6 relative) settles it without a LAPACK call on the tall matrix; otherwise the
    singular values of ``x`` decide.
    """
    xs = x / np.maximum(np.sqrt((x * x).sum(axis=0)), 1e-300)
    ev = np.linalg.eigvalsh(xs.T @ xs)
    if ev[0] > 1e-12 * max(ev[-1], 1.0):
        return False
    sv = np.linalg.svd(xs, compute_uv=False)
    return bool(sv[-1] < 1e-9 * max(1.0, sv[0]))


def _check_separation(
    y: np.ndarray, n: np.ndarray, trt: np.ndarray, treatment: str, effect: str
) -> None:
    """Raise when the treatment completely separates the binary outcome (or it never varies)."""
    tot_y, tot_n = y.sum(), n.sum()
    if tot_y == 0 or tot_y == tot_n:
        raise DataError(
            f"The binary outcome is {'always 0' if tot_y == 0 else 'always 1'}: a binomial model "
            "cannot be fitted (complete separation)."
        )
    treated = trt > 0
    for arm, mask in (("treated", treated), ("control", ~treated)):
        ya, na = y[mask].sum(), n[mask].sum()
        if na > 0 and (ya == 0 or ya == na):
            raise DataError(
                f"Complete separation: every {arm} observation (treatment column {treatment!r}) "
                "has outcome "
                f"{'0' if ya == 0 else '1'}, so the treatment effect is infinite on the link scale "
                "and the "
                "model cannot be estimated; consider an exact or penalised (Firth) analysis."
            )


def _check_decay_periods(td: TrialData, random: str, n_t: int) -> None:
    """Decay needs enough periods and a known period order (distance = index distance).

    The order is known for numbers, dates, pandas Periods, ordered categoricals, ISO-like
    text labels and a design's periods (:attr:`TrialData.periods_ordered`); other text labels
    would be sorted alphabetically and raise :class:`DataError`.
    """
    need = 3 if random == "nested+decay" else 2
    if n_t < need:
        raise DesignError(
            f"random={random!r} needs at least {need} periods (it estimates "
            + ("tau2, gamma2 and r" if need == 3 else "gamma2 and r")
            + f" from the covariances between a cluster's periods); the data have {n_t}. "
            "Use random='cluster'."
        )
    td.require_period_order(f"random={random!r} (decay with the distance between periods)")
