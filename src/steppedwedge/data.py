"""Validated trial data: column roles, checks against a design, exact cell aggregation.

:class:`TrialData` is what every analysis function works from.  It is built once, at the
public boundary, by :meth:`TrialData.from_frame`, which

* copies the user's rows (the caller's DataFrame is never modified) and renames the role
  columns to canonical names (``cluster``, ``period``, ``treatment``, ``outcome`` and,
  when given, ``individual``, ``trials``, ``exposure``, ``offset``, ``size``);
* checks every role column (missing labels, non-numeric or infinite outcomes, negative or
  non-integer counts, non-positive exposure, events greater than trials, duplicated
  aggregate cells, an individual id used in two clusters) and raises
  :class:`~steppedwedge.exceptions.DataError` naming the column, row, cluster or period at
  fault;
* optionally checks the rows against a :class:`~steppedwedge.design.Design` (labels, rows in
  cells the design marks unobserved, a treatment column that disagrees with the design).

:meth:`TrialData.cells` then returns a :class:`CellSummary`: the exact cluster-period
sufficient statistics (size, total, mean, within-cell sum of squares, exposure, treatment)
as ``(I, T)`` arrays, computed with integer codes and :func:`numpy.bincount` (no Python
loops), so a million individual rows aggregate in a fraction of a second.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._typing import BoolArray, FloatArray, IntArray
from ._validation import check_option
from ._warnings import warn
from .exceptions import DataError, MissingDataWarning, OptionError

__all__ = [
    "CellSummary",
    "TrialData",
    "apply_period_order",
    "check_period_order",
    "ordered_periods",
]

DataKind = Literal["individual", "aggregate"]
_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")
_COUNT_FAMILIES = ("poisson", "negative_binomial")
_MAX_LISTED = 5  # how many offending rows/cells an error message lists
_NAT_ORDINAL = np.iinfo(np.int64).min  # the ordinal of NaT in a Period array


# --------------------------------------------------------------------------------------
# CellSummary
# --------------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class CellSummary:
    """Exact cluster-period sufficient statistics of a :class:`TrialData`.

    Every array is ``(I, T)`` with rows in the order of :attr:`clusters` and columns in the
    order of :attr:`periods`, and is read-only.

    Attributes
    ----------
    clusters : tuple
        Cluster labels (row order).
    periods : tuple
        Period labels (column order).
    n : numpy.ndarray
        Cell size: the number of rows (individual data), the summed ``trials`` (binomial
        aggregates), the summed ``size`` column (Gaussian aggregates with a size column), or
        the number of rows (other aggregates, i.e. 1 per observed cell).
    total : numpy.ndarray
        Sum of the outcome in the cell (events or counts for aggregates).
    mean : numpy.ndarray
        ``total / n``; NaN where ``n == 0``.
    within_ss : numpy.ndarray
        Sum of squared deviations of the outcome from the cell mean.  Computed with the
        corrected two-pass algorithm for individual rows.  For binomial aggregates it is the
        value the implied 0/1 rows would give, ``total - total**2 / n``; for other aggregates
        it is 0 (the within-cell spread is not in the data).
    exposure : numpy.ndarray or None
        Summed exposure ``exposure * exp(offset)`` for count families when an ``exposure``
        or ``offset`` column was given, else None.
    treatment : numpy.ndarray
        The treatment value of the cell (constant within a cell); NaN where unobserved.
    observed : numpy.ndarray
        Boolean, ``n > 0``.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.data import TrialData
    >>> df = pd.DataFrame({"c": [1, 1, 1, 2, 2, 2], "t": [1, 1, 2, 1, 2, 2],
    ...                    "x": [0, 0, 1, 0, 0, 0], "y": [1.0, 3.0, 5.0, 2.0, 4.0, 8.0]})
    >>> cells = TrialData.from_frame(df, outcome="y", cluster="c", period="t",
    ...                              treatment="x").cells()
    >>> cells.n
    array([[2., 1.],
           [1., 2.]])
    >>> cells.within_ss
    array([[2., 0.],
           [0., 8.]])
    """

    clusters: tuple[Hashable, ...]
    periods: tuple[Hashable, ...]
    n: FloatArray
    total: FloatArray
    mean: FloatArray
    within_ss: FloatArray
    exposure: FloatArray | None
    treatment: FloatArray
    observed: BoolArray

    @property
    def shape(self) -> tuple[int, int]:
        """``(I, T)``: the number of clusters and periods."""
        return (len(self.clusters), len(self.periods))

    def to_frame(self) -> pd.DataFrame:
        """Return the cells as a long DataFrame, one row per cluster-period.

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster, period, n, total, mean, within_ss, [exposure,] treatment,
            observed``; rows ordered by cluster, then period.

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.data import TrialData
        >>> df = pd.DataFrame({"c": ["a", "a", "b"], "t": [1, 2, 2], "x": [0, 1, 1],
        ...                    "y": [2.0, 4.0, 6.0]})
        >>> TrialData.from_frame(df, outcome="y", cluster="c", period="t",
        ...                      treatment="x").cells().to_frame()[["cluster", "period", "n"]]
          cluster  period    n
        0       a       1  1.0
        1       a       2  1.0
        2       b       1  0.0
        3       b       2  1.0
        """
        n_i, n_t = self.shape
        out: dict[str, Any] = {
            "cluster": np.repeat(np.array(self.clusters, dtype=object), n_t),
            "period": np.tile(np.array(self.periods, dtype=object), n_i),
            "n": self.n.ravel(),
            "total": self.total.ravel(),
            "mean": self.mean.ravel(),
            "within_ss": self.within_ss.ravel(),
        }
        if self.exposure is not None:
            out["exposure"] = self.exposure.ravel()
        out["treatment"] = self.treatment.ravel()
        out["observed"] = self.observed.ravel()
        frame = pd.DataFrame(out)
        # typed label columns (ints, Periods, strings) where the labels allow it
        frame["cluster"] = pd.Index(list(self.clusters)).take(np.repeat(np.arange(n_i), n_t))
        frame["period"] = pd.Index(list(self.periods)).take(np.tile(np.arange(n_t), n_i))
        out_frame: pd.DataFrame = frame
        return out_frame

    def __repr__(self) -> str:
        n_i, n_t = self.shape
        return (
            f"CellSummary({n_i} clusters x {n_t} periods, "
            f"{int(self.observed.sum())} observed cells, total n = {self.n.sum():g})"
        )


# --------------------------------------------------------------------------------------
# TrialData
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrialData:
    """Trial rows checked against their declared roles (and optionally a design).

    Build with :meth:`from_frame`; do not call the constructor directly.

    Attributes
    ----------
    frame : pandas.DataFrame
        A validated copy of the user's rows.  Role columns carry canonical names
        (``cluster``, ``period``, ``treatment``, ``outcome`` and, if given, ``individual``,
        ``trials``, ``exposure``, ``offset``, ``size``); every other column is kept as is
        (a non-role column whose name clashes with a canonical name gets a trailing ``_``).
        ``cluster`` and ``period`` hold labels from :attr:`clusters` and :attr:`periods`;
        ``treatment`` and ``outcome`` are float64.  The original index is kept.
    kind : {"individual", "aggregate"}
        One row per individual observation, or one row per cluster-period cell.
    family : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"`` or ``"negative_binomial"``.
    clusters : tuple
        Cluster labels; the row order of every ``(I, T)`` array.  Sorted unique labels, or
        the design's labels when a design was given.
    periods : pandas.Index
        Period labels; the column order of every ``(I, T)`` array.  Sorted unique labels, or
        the design's ``periods`` when a design was given.
    roles : Mapping[str, str]
        Canonical role -> the user's column name (for messages and summaries).
    covariates : tuple of str
        Extra columns checked for missing values (kept under their own names).
    cluster_codes, period_codes : numpy.ndarray
        For each row of :attr:`frame`, the index of its cluster in :attr:`clusters` and of
        its period in :attr:`periods`.
    design : Design or None
        The design the rows were checked against.
    periods_ordered : bool
        True when :attr:`periods` are in a known natural order (numbers, dates, pandas
        ``Period`` labels, an ordered categorical, ``period_order=`` or a design); False for
        plain text labels, which are then sorted alphabetically ("P10" before "P4"): fine
        for categorical period effects, refused by anything that uses period distance
        (:meth:`require_period_order`).
    """

    frame: pd.DataFrame
    kind: DataKind
    family: str
    clusters: tuple[Hashable, ...]
    periods: pd.Index
    roles: Mapping[str, str]
    covariates: tuple[str, ...] = ()
    cluster_codes: IntArray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    period_codes: IntArray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    design: Any = field(default=None, repr=False)
    periods_ordered: bool = True
    _values: Mapping[str, FloatArray] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- constructor
    @classmethod
    def from_frame(
        cls,
        data: pd.DataFrame,
        *,
        outcome: str,
        cluster: str,
        period: str,
        treatment: str,
        individual: str | None = None,
        family: str = "gaussian",
        trials: str | None = None,
        exposure: str | None = None,
        offset: str | None = None,
        size: str | None = None,
        covariates: Sequence[str] | None = None,
        kind: DataKind | None = None,
        design: Any = None,
        missing: Literal["raise", "drop"] = "raise",
        period_order: Sequence[Hashable] | None = None,
        allow_reversal: bool = False,
    ) -> TrialData:
        """Validate trial rows and record which column plays which role.

        Parameters
        ----------
        data : pandas.DataFrame
            The rows.  Never modified.
        outcome, cluster, period, treatment : str
            Column names.  ``treatment`` is numeric in [0, 1] (0 control, 1 treated, a
            fraction for partial exposure) or boolean.
        individual : str, optional
            Individual identifier (closed cohorts); an id may not appear in two clusters.
        family : {"gaussian", "binomial", "poisson", "negative_binomial"}
            Outcome family.  Binomial individual outcomes must be 0/1 (or boolean).
        trials : str, optional
            Binomial aggregates: the column of trials; ``outcome`` is then the events.
        exposure : str, optional
            Count families: the exposure (e.g. population), positive; logged by the model.
        offset : str, optional
            Count families: an offset already on the log scale.
        size : str, optional
            Gaussian aggregates: the number of individuals behind each cell mean.
        covariates : sequence of str, optional
            Further columns the analysis will use; only checked for presence and missing
            values (they may be numeric or categorical).
        kind : {"individual", "aggregate"}, optional
            Overrides the default: rows with an ``individual`` column are individual;
            otherwise binomial with ``trials``, count families, and Gaussian with ``size``
            are aggregates (one row per cluster-period), and Gaussian and 0/1 binomial rows
            are individual.  Count rows per individual without an id need
            ``kind="individual"``.
        design : Design, optional
            If given, clusters and periods must be the design's labels (string or date
            periods are converted to the design's ``PeriodIndex`` frequency), no row may lie
            in a cell the design marks unobserved, and the treatment column must equal the
            design's matrix.  :attr:`clusters` and :attr:`periods` are then the design's.
        missing : {"raise", "drop"}
            What to do with missing values in the outcome, trials, exposure, offset, size or
            covariates: raise :class:`DataError` (default) or drop the rows with a
            :class:`MissingDataWarning` saying how many and where.  Missing cluster,
            period, treatment or individual values always raise.
        period_order : sequence, optional
            The periods in calendar order, e.g. ``["Jan-20", "Feb-20", ...]``; every period
            label of the data must be listed.  Needed for text labels when the analysis uses
            period distance (linear or spline time, decay, exposure time); numbers, dates,
            ``pd.Period`` and ordered categoricals carry their own order.
        allow_reversal : bool, default False
            Accept a cluster whose treatment decreases over time (a crossover or withdrawal);
            by default that is a :class:`DataError`, as in :class:`~steppedwedge.Design`.

        Returns
        -------
        TrialData

        Raises
        ------
        DataError
            For any inconsistency; the message names the column, row, cluster or period:
            no rows; duplicated cluster-period rows of aggregate data (and rows repeated
            verbatim among several count rows of one cell); labels that differ only by
            surrounding whitespace or case; a treatment that goes back from treated to
            control; an outcome with no variation (all zero counts, all 0 or all 1, one
            constant value).
        OptionError
            For conflicting options (``exposure`` with ``offset``) or a bad ``period_order``.
        TypeError
            If ``data`` is not a DataFrame.

        Warns
        -----
        MissingDataWarning
            When rows are dropped (``missing="drop"``), or when cells the design marks
            observed have no rows.

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.data import TrialData
        >>> df = pd.DataFrame({
        ...     "site": ["A", "A", "B", "B"], "month": [1, 2, 1, 2],
        ...     "arm": [0, 1, 0, 0], "deaths": [3, 1, 4, 5], "admissions": [40, 38, 52, 50],
        ... })
        >>> td = TrialData.from_frame(df, outcome="deaths", trials="admissions",
        ...                           family="binomial", cluster="site", period="month",
        ...                           treatment="arm")
        >>> td.kind, td.clusters, list(td.periods)
        ('aggregate', ('A', 'B'), [1, 2])
        >>> td.cells().mean.round(3)
        array([[0.075, 0.026],
               [0.077, 0.1  ]])
        """
        return _from_frame_iv(
            cls,
            data,
            outcome=outcome,
            cluster=cluster,
            period=period,
            treatment=treatment,
            individual=individual,
            family=family,
            trials=trials,
            exposure=exposure,
            offset=offset,
            size=size,
            covariates=covariates,
            kind=kind,
            design=design,
            missing=missing,
            period_order=period_order,
            allow_reversal=allow_reversal,
        )

    # ---------------------------------------------------------------- properties
    @property
    def n_clusters(self) -> int:
        """Number of clusters ``I``."""
        return len(self.clusters)

    @property
    def n_periods(self) -> int:
        """Number of periods ``T``."""
        return len(self.periods)

    @property
    def n_rows(self) -> int:
        """Number of rows in :attr:`frame`."""
        return len(self.frame)

    def require_period_order(self, why: str) -> None:
        """Raise :class:`DataError` if the period order is not known (text labels).

        Parameters
        ----------
        why : str
            What needs the order, e.g. ``"time='linear'"``.

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.data import TrialData
        >>> df = pd.DataFrame({"c": [1, 1, 2, 2], "t": ["P9", "P10"] * 2, "x": [0, 1, 0, 0],
        ...                    "y": [1.0, 2.0, 3.0, 5.0]})
        >>> td = TrialData.from_frame(df, outcome="y", cluster="c", period="t", treatment="x")
        >>> td.require_period_order("time='linear'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        steppedwedge.exceptions.DataError: time='linear' needs the order of the periods, ...
        """
        if not self.periods_ordered:
            raise DataError(_order_message(why, self.roles["period"], list(self.periods)))

    def _role_values(self, role: str) -> FloatArray:
        """Return the float64 values of a numeric role column (``treatment``, ``outcome``, ...).

        Kept (read-only) from the validation, so the frame's column is not read again: a
        snapshot of :attr:`frame` as validated (edit a ``TrialData``'s frame in place and
        the two disagree; build a new one instead).
        """
        values = self._values.get(role)
        if values is None:
            return np.asarray(self.frame[role].to_numpy(dtype=np.float64), dtype=np.float64)
        return values

    @cached_property
    def cell_index(self) -> IntArray:
        """For each row of :attr:`frame`, its flat cell index ``cluster * T + period``."""
        return _readonly(self.cluster_codes * self.n_periods + self.period_codes)

    def cell_sum(self, values: Any) -> FloatArray:
        """Sum row values within cluster-period cells.

        Parameters
        ----------
        values : array_like
            Shape ``(n_rows,)`` or ``(n_rows, p)``, aligned with :attr:`frame`; e.g. a
            covariate, or products of covariates for cross-product matrices.

        Returns
        -------
        numpy.ndarray
            ``(I, T)`` or ``(I, T, p)`` float64 sums (0 in empty cells).

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.data import TrialData
        >>> df = pd.DataFrame({"c": [1, 1, 2], "t": [1, 1, 2], "x": [0, 0, 1],
        ...                    "y": [1.0, 2.0, 3.0], "age": [30, 40, 50]})
        >>> td = TrialData.from_frame(df, outcome="y", cluster="c", period="t", treatment="x")
        >>> td.cell_sum(td.frame["age"] * td.frame["outcome"])
        array([[110.,   0.],
               [  0., 150.]])
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[0] != self.n_rows:
            raise OptionError(
                f"`values` must have shape ({self.n_rows},) or ({self.n_rows}, p); got {arr.shape}."
            )
        k = self.n_clusters * self.n_periods
        idx = self.cell_index
        if arr.ndim == 1:
            out = np.bincount(idx, weights=arr, minlength=k)
            return np.asarray(out, dtype=np.float64).reshape(self.n_clusters, self.n_periods)
        cols = [np.bincount(idx, weights=arr[:, j], minlength=k) for j in range(arr.shape[1])]
        stacked = np.stack(cols, axis=-1) if cols else np.zeros((k, 0))
        return np.asarray(stacked, dtype=np.float64).reshape(
            self.n_clusters, self.n_periods, arr.shape[1]
        )

    def cells(self) -> CellSummary:
        """Return the exact cluster-period sufficient statistics.

        Returns
        -------
        CellSummary
            Cached: repeated calls return the same (read-only) object.

        Raises
        ------
        DataError
            If the treatment varies within a cluster-period cell (the message names the
            cells).

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.data import TrialData
        >>> df = pd.DataFrame({"c": [1, 1, 2, 2], "t": [1, 2, 1, 2], "x": [0, 1, 0, 0],
        ...                    "y": [10, 6, 12, 14], "pop": [1000, 1000, 1500, 1500]})
        >>> cells = TrialData.from_frame(df, outcome="y", exposure="pop", family="poisson",
        ...                              cluster="c", period="t", treatment="x").cells()
        >>> (cells.total / cells.exposure * 1000).round(1)
        array([[10. ,  6. ],
               [ 8. ,  9.3]])
        """
        return self._cells

    @cached_property
    def _cells(self) -> CellSummary:
        return _aggregate(self)

    def __repr__(self) -> str:
        return (
            f"TrialData({self.kind}, family={self.family!r}, {self.n_rows} rows, "
            f"{self.n_clusters} clusters x {self.n_periods} periods, "
            f"outcome={self.roles.get('outcome')!r})"
        )


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------


def _lab(value: Any) -> str:
    """Format a label for messages (numpy scalars as Python values, Periods as text)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (pd.Period, pd.Timestamp)):
        return str(value)
    return repr(value)


def _list(items: Sequence[Any] | np.ndarray, limit: int = _MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(str(x.item() if isinstance(x, np.generic) else x) for x in items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in all)"
    return shown


def _where(frame: pd.DataFrame, mask: np.ndarray, cols: tuple[str, str]) -> str:
    """Describe the rows selected by ``mask``: index label, cluster and period."""
    idx = np.flatnonzero(mask)
    parts = []
    for i in idx[:_MAX_LISTED]:
        parts.append(
            f"row {_lab(frame.index[i])} (cluster {_lab(frame[cols[0]].iat[i])}, "
            f"period {_lab(frame[cols[1]].iat[i])})"
        )
    text = "; ".join(parts)
    if len(idx) > _MAX_LISTED:
        text += f"; ... ({len(idx)} rows in all)"
    return text


class _Columns:
    """Columns of our frame, each read once (pandas builds a new Series on every access).

    ``cols[name]`` is ``frame[name]``; :meth:`forget` after assigning a column.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._read: dict[str, pd.Series] = {}

    @property
    def index(self) -> pd.Index:
        """The frame's index (row labels for messages)."""
        return self.frame.index

    def __getitem__(self, name: str) -> pd.Series:
        column = self._read.get(name)
        if column is None:
            column = self._read[name] = self.frame[name]
        return column

    def forget(self, *names: str) -> None:
        """Drop the cached columns ``names`` (after they were assigned)."""
        for name in names:
            self._read.pop(name, None)


def _numeric(frame: pd.DataFrame | _Columns, col: str, user: str, role: str) -> FloatArray:
    """Return ``frame[col]`` as float64 (NaN for missing) or raise if non-numeric."""
    s = frame[col]
    if s.dtype == np.float64:  # already the values (NaN for missing)
        return np.asarray(s.to_numpy(), dtype=np.float64)
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        try:
            return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        except (TypeError, ValueError):  # pragma: no cover - defensive
            pass
    # object column: accept only real numbers / missing
    conv = pd.to_numeric(s, errors="coerce")
    bad = conv.isna().to_numpy() & ~s.isna().to_numpy()
    if bad.any() or not (
        pd.api.types.is_numeric_dtype(conv.dtype) or pd.api.types.is_bool_dtype(conv.dtype)
    ):
        i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise DataError(
            f"`{role}` column {user!r} must be numeric; got dtype {s.dtype} "
            f"(e.g. {s.iat[i]!r} in row {frame.index[i]!r})."
        )
    return np.asarray(conv.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _codes_for(
    values: pd.Series, labels: pd.Index, role: str, user: str, one_label: bool = False
) -> IntArray:
    """Map ``values`` onto ``labels``; strings/dates are read as Periods if labels are Periods."""
    row_codes, uniques = pd.factorize(values)
    uniq = pd.Index(uniques)
    codes = np.asarray(labels.get_indexer(uniq), dtype=np.int64)
    if (codes < 0).any() and isinstance(labels, pd.PeriodIndex):
        try:
            if isinstance(uniq, pd.DatetimeIndex):
                conv = uniq.to_period(labels.freq)  # type: ignore[arg-type]
            else:
                freq: Any = labels.freq
                conv = pd.PeriodIndex([pd.Period(v, freq=freq) for v in uniq])
            codes2 = np.asarray(labels.get_indexer(conv), dtype=np.int64)
            if (codes2 >= 0).sum() > (codes >= 0).sum():
                codes = codes2
        except (TypeError, ValueError, AttributeError):
            pass
    if one_label:  # aggregate rows: one period label per design period
        _check_one_label_per_period(uniq, codes, labels, user)
    if (codes < 0).any():
        extra = list(uniq[codes < 0])
        raise DataError(
            f"{role} labels in column {user!r} are not in the design: {_list(extra)}. "
            f"The design's {role}s are: {_list(list(labels), 10)}."
        )
    return np.asarray(codes[row_codes], dtype=np.int64)


def _check_one_label_per_period(
    uniq: pd.Index, codes: IntArray, labels: pd.Index, user: str
) -> None:
    """Refuse several distinct data labels read into one design period (a grid mismatch)."""
    ok = codes >= 0
    if not ok.any():
        return
    per = np.bincount(codes[ok], minlength=len(labels))
    clash = np.flatnonzero(per > 1)
    if not clash.size:
        return
    k = int(clash[0])
    shared = [_lab(v) for v, c in zip(uniq, codes, strict=True) if c == k]
    freq = f" (frequency {labels.freqstr})" if isinstance(labels, pd.PeriodIndex) else ""
    raise DataError(
        f"period labels {_list(shared)} in column {user!r} all fall in the design's period "
        f"{labels[k]}{freq}: the data are on a finer or shifted grid "
        f"than the design. Aggregate the rows to the design's periods, or build the design "
        f"on the data's grid ({len(clash)} design period(s) affected)."
    )


def _from_frame_iv(
    cls: type[TrialData],
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None,
    family: str,
    trials: str | None,
    exposure: str | None,
    offset: str | None,
    size: str | None,
    covariates: Sequence[str] | None,
    kind: DataKind | None,
    design: Any,
    missing: str,
    period_order: Sequence[Hashable] | None = None,
    allow_reversal: bool = False,
) -> TrialData:
    """Validate the rows and build the :class:`TrialData` (see :meth:`TrialData.from_frame`)."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame; got {type(data).__name__}.")
    family = check_option("family", family, _FAMILIES)
    missing = check_option("missing", missing, ("raise", "drop"))
    if kind is not None:
        check_option("kind", kind, ("individual", "aggregate"))
    given: dict[str, str | None] = {
        "cluster": cluster,
        "period": period,
        "treatment": treatment,
        "outcome": outcome,
        "individual": individual,
        "trials": trials,
        "exposure": exposure,
        "offset": offset,
        "size": size,
    }
    roles, covs = _resolve_roles(data, given, covariates)
    _check_role_options(data, given, family, period_order, design)
    kind = _resolve_kind(kind, given, family)
    frame = _canonical_copy(data, roles, given, covs)
    cols = _Columns(frame)
    _check_structural(cols, roles)
    frame, num = _drop_missing(cols, roles, covs, missing)
    if frame is not cols.frame:  # rows dropped: a new frame
        cols = _Columns(frame)
    y = num["outcome"]
    _check_outcome_values(frame, y, roles, family, kind)
    _check_measured_values(frame, y, num, roles)
    tr = _treatment_values(cols, roles)
    codes = _label_codes(cols, roles, design, kind, period_order)
    clusters, periods, c_codes, p_codes, periods_ordered = codes
    cell = c_codes * len(periods) + p_codes
    if kind == "aggregate":
        _check_one_row_per_cell(cell, clusters, periods)
    elif family in _COUNT_FAMILIES and individual is None:
        _check_repeated_count_rows(frame, cell)
    if individual is not None:
        _check_individuals(frame, c_codes, clusters, roles["individual"])
    if design is not None:
        _check_against_design(frame, design, tr, cell, clusters, periods, roles["treatment"])
    # ---- treatment never goes back; the outcome varies -----------------------------------
    if design is None and periods_ordered and not allow_reversal:
        _check_no_reversal(tr, cell, clusters, periods, roles["treatment"])
    _check_outcome_varies(y, num.get("trials"), family, kind, roles)
    # ---- store canonical numeric columns ---------------------------------------------
    # (a float64 column already holds exactly these values: no need to re-assign it)
    role_values = {"treatment": tr, **num}
    for role, values in role_values.items():
        if cols[role].dtype != np.float64:
            frame[role] = values
    return cls(
        frame=frame,
        kind=kind,
        family=family,
        clusters=clusters,
        periods=periods,
        roles=dict(roles),
        covariates=covs,
        cluster_codes=_readonly(np.ascontiguousarray(c_codes, dtype=np.int64)),
        period_codes=_readonly(np.ascontiguousarray(p_codes, dtype=np.int64)),
        design=design,
        periods_ordered=periods_ordered,
        _values={role: _readonly(v.view()) for role, v in role_values.items()},
    )


def check_role_column(data: pd.DataFrame, role: str, col: Any) -> str:
    """Return ``col`` if it names a column of ``data``; else a :class:`DataError` naming ``role``.

    The one check (and message) of a role column, shared by :meth:`TrialData.from_frame` and
    the fitters that read a frame themselves (fixed effects).
    """
    if not isinstance(col, str):
        raise DataError(f"`{role}` must be a column name (str); got {col!r}.")
    if col not in data.columns:
        raise DataError(
            f"column {col!r} given as `{role}` is not in `data`; "
            f"available columns: {_list([str(c) for c in data.columns], 20)}."
        )
    return col


def check_covariate_column(data: pd.DataFrame, col: Any) -> None:
    """Raise a :class:`DataError` unless the covariate ``col`` is a column of ``data``."""
    if col not in data.columns:
        raise DataError(f"covariate column {col!r} is not in `data`.")


def _resolve_roles(
    data: pd.DataFrame, given: Mapping[str, str | None], covariates: Sequence[str] | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Check the role and covariate columns exist, are distinct and unambiguous."""
    roles: dict[str, str] = {}
    for role, col in given.items():
        if col is None:
            continue
        roles[role] = check_role_column(data, role, col)
    seen: dict[str, str] = {}
    for role, col in roles.items():
        if col in seen:
            raise DataError(f"column {col!r} is given both as `{seen[col]}` and as `{role}`.")
        seen[col] = role
    covs = tuple(covariates) if covariates is not None else ()
    if isinstance(covariates, str):
        covs = (covariates,)
    for c in covs:
        check_covariate_column(data, c)
        if c in seen:
            raise DataError(f"column {c!r} is given both as `{seen[c]}` and as a covariate.")
        if c in given:
            raise DataError(
                f"covariate column {c!r} has the name of a trial role; rename it first."
            )
    if data.columns.duplicated().any():
        dup = data.columns[data.columns.duplicated()].unique()
        raise DataError(f"`data` has duplicated column names: {_list([repr(c) for c in dup])}.")
    return roles, covs


def _check_role_options(
    data: pd.DataFrame,
    given: Mapping[str, str | None],
    family: str,
    period_order: Sequence[Hashable] | None,
    design: Any,
) -> None:
    """Refuse roles the family does not use, conflicting options and empty data."""
    trials, exposure, offset = given["trials"], given["exposure"], given["offset"]
    if trials is not None and family != "binomial":
        raise DataError(f"`trials` is only used with family='binomial'; got family={family!r}.")
    if (exposure is not None or offset is not None) and family not in _COUNT_FAMILIES:
        which = "exposure" if exposure is not None else "offset"
        raise DataError(
            f"`{which}` is only used with count families ('poisson', 'negative_binomial'); "
            f"got family={family!r}."
        )
    if given["size"] is not None and family != "gaussian":
        raise DataError(f"`size` is only used with family='gaussian'; got family={family!r}.")
    if exposure is not None and offset is not None:
        raise OptionError(
            f"`exposure` ({exposure!r}) and `offset` ({offset!r}) cannot be combined: both "
            "would enter the model as log(exposure) + offset, which doubles the offset if they "
            "carry the same information. Give one: `exposure=` (logged for you) or `offset=` "
            "(already on the log scale); combine them into one column yourself if both apply."
        )
    if period_order is not None and design is not None:
        raise OptionError(
            "`period_order` and `design` cannot be combined: the design fixes the periods and "
            "their order."
        )
    if len(data) == 0:
        raise DataError(
            f"`data` has no rows (columns: {_list([str(c) for c in data.columns], 20)}); "
            "nothing to analyse."
        )


def _resolve_kind(kind: DataKind | None, given: Mapping[str, str | None], family: str) -> DataKind:
    """Individual or aggregate rows: the default from the roles, checked against them."""
    trials, size = given["trials"], given["size"]
    if kind is None:
        if given["individual"] is not None:
            kind = "individual"
        elif trials is not None or size is not None or family in _COUNT_FAMILIES:
            kind = "aggregate"
        else:
            kind = "individual"
    if kind == "individual" and (trials is not None or size is not None):
        raise DataError("`trials` and `size` describe aggregate rows; they need kind='aggregate'.")
    if kind == "aggregate" and family == "binomial" and trials is None:
        raise DataError("binomial aggregate rows need `trials` (the column of trials).")
    return kind


def _canonical_copy(
    data: pd.DataFrame,
    roles: Mapping[str, str],
    given: Mapping[str, str | None],
    covs: tuple[str, ...],
) -> pd.DataFrame:
    """Return a deep copy of ``data`` with the role columns renamed to the role names."""
    rename = {col: role for role, col in roles.items()}
    clash = {c: f"{c}_" for c in data.columns if c not in rename and c in given and c not in covs}
    frame: pd.DataFrame = data.copy(deep=True)
    if clash or rename:
        # relabel the columns of our own copy in place (``rename`` would copy again)
        mapping = {**clash, **rename}
        frame.columns = pd.Index([mapping.get(c, c) for c in frame.columns])
    return frame


def _check_structural(frame: pd.DataFrame | _Columns, roles: Mapping[str, str]) -> None:
    """Refuse missing cluster, period, treatment or individual labels (never dropped)."""
    for role in ("cluster", "period", "treatment", "individual"):
        if role not in roles:
            continue
        na = _isna(frame[role])
        if na.any():
            idx = np.flatnonzero(na)
            raise DataError(
                f"`{role}` column {roles[role]!r} has {len(idx)} missing value(s), in rows "
                f"{_list([frame.index[int(i)] for i in idx])}; {role} labels cannot be missing."
            )


def _drop_missing(
    cols: _Columns, roles: Mapping[str, str], covs: tuple[str, ...], missing: str
) -> tuple[pd.DataFrame, dict[str, FloatArray]]:
    """Read the measured columns as numbers; raise on missing values, or drop with a warning.

    Returns the frame of ``cols`` itself when no row is dropped.
    """
    frame = cols.frame
    measured = [r for r in ("outcome", "trials", "exposure", "offset", "size") if r in roles]
    num: dict[str, FloatArray] = {}
    for role in measured:
        num[role] = _numeric(cols, role, roles[role], role)
    miss = np.zeros(len(frame), dtype=bool)
    miss_by: dict[str, int] = {}
    for role in measured:
        m = np.isnan(num[role])
        if m.any():
            miss_by[roles[role]] = int(m.sum())
            miss |= m
    for c in covs:
        m = cols[c].isna().to_numpy()
        if m.any():
            miss_by[c] = int(m.sum())
            miss |= m
    if not miss.any():
        return frame, num
    where = _where(frame, miss, ("cluster", "period"))
    counts = ", ".join(f"{k!r}: {v}" for k, v in miss_by.items())
    if missing == "raise":
        raise DataError(
            f"{int(miss.sum())} row(s) have missing values (by column: {counts}): {where}. "
            "Pass missing='drop' to drop them."
        )
    if miss.all():
        raise DataError(
            f"every row has a missing value (by column: {counts}); no rows are left to "
            "analyse after missing='drop'."
        )
    cl = frame.loc[miss, "cluster"].value_counts(sort=False)
    per_cluster = ", ".join(f"{_lab(k)} ({v})" for k, v in cl.items())
    warn(
        f"dropped {int(miss.sum())} of {len(frame)} rows with missing values "
        f"(by column: {counts}); by cluster: {per_cluster}.",
        MissingDataWarning,
    )
    keep = ~miss
    kept: pd.DataFrame = frame.loc[keep].copy()
    return kept, {k: v[keep] for k, v in num.items()}


def _check_outcome_values(
    frame: pd.DataFrame, y: FloatArray, roles: Mapping[str, str], family: str, kind: str
) -> None:
    """Refuse non-finite outcomes, non-integer counts and non-0/1 binomial rows."""
    cols = ("cluster", "period")
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(
            f"`outcome` column {roles['outcome']!r} has non-finite values: "
            f"{_where(frame, bad, cols)}."
        )
    is_count_outcome = family in _COUNT_FAMILIES or (family == "binomial" and kind == "aggregate")
    if is_count_outcome:
        what = "events" if family == "binomial" else "counts"
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"`outcome` column {roles['outcome']!r} must hold non-negative integer {what}; "
                f"bad values {_list(pd.unique(y[bad]))} at {_where(frame, bad, cols)}."
            )
    elif family == "binomial":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise DataError(
                f"binomial `outcome` column {roles['outcome']!r} must be 0/1 for individual rows "
                f"(pass `trials=` for events out of trials); bad values "
                f"{_list(pd.unique(y[bad]))} at {_where(frame, bad, cols)}."
            )


def _check_measured_values(
    frame: pd.DataFrame, y: FloatArray, num: Mapping[str, FloatArray], roles: Mapping[str, str]
) -> None:
    """Refuse bad trials (or events above them), exposure, offset and size values."""
    cols = ("cluster", "period")
    if "trials" in num:
        n_tr = num["trials"]
        bad = ~np.isfinite(n_tr) | (n_tr < 0) | (n_tr != np.round(n_tr))
        if bad.any():
            raise DataError(
                f"`trials` column {roles['trials']!r} must hold non-negative integers; "
                f"bad values at {_where(frame, bad, cols)}."
            )
        bad = y > n_tr
        if bad.any():
            raise DataError(
                f"events (column {roles['outcome']!r}) exceed trials (column {roles['trials']!r}) "
                f"at {_where(frame, bad, cols)}."
            )
    if "exposure" in num:
        bad = ~np.isfinite(num["exposure"]) | (num["exposure"] <= 0)
        if bad.any():
            raise DataError(
                f"`exposure` column {roles['exposure']!r} must be positive and finite; "
                f"bad values {_list(pd.unique(num['exposure'][bad]))} at "
                f"{_where(frame, bad, cols)}."
            )
    if "offset" in num:
        bad = ~np.isfinite(num["offset"])
        if bad.any():
            raise DataError(
                f"`offset` column {roles['offset']!r} must be finite (it is on the log scale); "
                f"bad values at {_where(frame, bad, cols)}."
            )
    if "size" in num:
        bad = ~np.isfinite(num["size"]) | (num["size"] < 0)
        if bad.any():
            raise DataError(
                f"`size` column {roles['size']!r} must be non-negative and finite; "
                f"bad values at {_where(frame, bad, cols)}."
            )


def _treatment_values(cols: _Columns, roles: Mapping[str, str]) -> FloatArray:
    """Return the treatment column as numbers in [0, 1], or raise naming the bad rows."""
    tr = _numeric(cols, "treatment", roles["treatment"], "treatment")
    bad = ~np.isfinite(tr) | (tr < 0) | (tr > 1)
    if bad.any():
        raise DataError(
            f"`treatment` column {roles['treatment']!r} must lie in [0, 1] (0 control, 1 treated); "
            f"bad values {_list(pd.unique(tr[bad]))} at "
            f"{_where(cols.frame, bad, ('cluster', 'period'))}."
        )
    return tr


_Codes = tuple[tuple[Hashable, ...], pd.Index, IntArray, IntArray, bool]


def _label_codes(
    cols: _Columns,
    roles: Mapping[str, str],
    design: Any,
    kind: str,
    period_order: Sequence[Hashable] | None,
) -> _Codes:
    """Cluster and period labels and each row's codes; the design's labels when given.

    With a design, the frame's (our copy's) cluster and period columns are set to the
    design's labels (e.g. Periods for "2023Q1" strings).
    """
    for role in ("cluster", "period"):
        _check_near_duplicate_labels(cols[role], role, roles[role])
    if design is not None:
        d_clusters = pd.Index(list(design.clusters))
        d_periods = (
            design.periods
            if isinstance(design.periods, pd.Index)
            else pd.Index(list(design.periods))
        )
        c_codes = _codes_for(cols["cluster"], d_clusters, "cluster", roles["cluster"])
        p_codes = _codes_for(
            cols["period"], d_periods, "period", roles["period"], one_label=kind == "aggregate"
        )
        cols.frame["cluster"] = np.asarray(d_clusters.take(c_codes), dtype=object)
        cols.frame["period"] = d_periods.take(p_codes)
        cols.forget("cluster", "period")
        return tuple(d_clusters), d_periods, c_codes, p_codes, True
    periods_ordered = True
    cl_labels, c_codes = _sorted_codes(cols["cluster"])
    period = cols["period"]
    if period_order is not None:
        periods, p_codes = _codes_in_order(period, period_order, roles["period"])
    else:
        periods, p_codes = _sorted_index_codes(period)
        periods_ordered = ordered_periods(period)
    return tuple(cl_labels), periods, c_codes, p_codes, periods_ordered


def repeated_cells(data: pd.DataFrame, cluster: str, period: str) -> bool:
    """Whether a ``(cluster, period)`` pair of labels occurs in more than one row of ``data``.

    The same as ``data.duplicated([cluster, period]).any()`` (labels equal as pandas compares
    them; missing labels equal to each other), without pandas' per-column overhead for
    integer, boolean, Period and text labels.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.data import repeated_cells
    >>> df = pd.DataFrame({"c": ["a", "a", "b"], "t": [1, 2, 1]})
    >>> repeated_cells(df, "c", "t"), repeated_cells(pd.concat([df, df]), "c", "t")
    (False, True)
    """
    if cluster == period or not data.columns.is_unique:
        return bool(data.duplicated([cluster, period]).any())
    a, n_a = _equality_codes(data[cluster])
    b, n_b = _equality_codes(data[period])
    key = a * n_b + b
    return bool(np.unique(key).size < key.size)


def _equality_codes(values: pd.Series) -> tuple[IntArray, int]:
    """Codes ``0 .. k-1``, equal exactly where ``values`` are (as in ``duplicated``), and k."""
    dtype = values.dtype
    if isinstance(dtype, pd.PeriodDtype) or (isinstance(dtype, np.dtype) and dtype.kind in "iub"):
        # integers, booleans, Period ordinals (NaT: one ordinal): equal labels, equal numbers
        raw = values.array.asi8 if isinstance(dtype, pd.PeriodDtype) else values.to_numpy()
        uniq, inverse = np.unique(raw, return_inverse=True)
        return np.asarray(inverse, dtype=np.int64).ravel(), len(uniq)
    target: Any = values.to_numpy() if isinstance(dtype, pd.StringDtype) else values
    codes, uniques = pd.factorize(target)  # missing labels: code -1, equal to each other
    return np.asarray(codes, dtype=np.int64) + 1, len(uniques) + 1


def _check_one_row_per_cell(
    cell: IntArray, clusters: tuple[Hashable, ...], periods: pd.Index
) -> None:
    """Aggregate rows: refuse a cluster-period cell with more than one row."""
    n_i, n_t = len(clusters), len(periods)
    per_cell = np.bincount(cell, minlength=n_i * n_t)
    dup = np.flatnonzero(per_cell > 1)
    if dup.size:
        names = [f"({_lab(clusters[k // n_t])}, {_lab(periods[k % n_t])})" for k in dup]
        raise DataError(
            f"aggregate data must have one row per cluster-period; duplicated cells "
            f"(cluster, period): {_list(names)}. Pass kind='individual' if rows are "
            "individual observations."
        )


def _check_individuals(
    frame: pd.DataFrame, c_codes: IntArray, clusters: tuple[Hashable, ...], user: str
) -> None:
    """Refuse an individual id that appears in more than one cluster."""
    ind_codes, ind_uniques = pd.factorize(frame["individual"])
    first = np.full(len(ind_uniques), -1, dtype=np.int64)
    first[ind_codes] = c_codes  # one cluster per id (the last row's, for fancy assignment)
    reused = c_codes != first[ind_codes]
    if not reused.any():
        return
    bad_ind = np.unique(ind_codes[reused])
    msgs = []
    for k in bad_ind[:_MAX_LISTED]:
        cls_k = sorted({clusters[c] for c in np.unique(c_codes[ind_codes == k])}, key=str)
        msgs.append(f"{_lab(ind_uniques[int(k)])} in clusters {_list(cls_k)}")
    raise DataError(
        f"`individual` ids in column {user!r} must be unique to one "
        f"cluster; reused: {'; '.join(msgs)}"
        + (f" ({bad_ind.size} ids in all)." if bad_ind.size > _MAX_LISTED else ".")
    )


def _check_against_design(
    frame: pd.DataFrame,
    design: Any,
    tr: FloatArray,
    cell: IntArray,
    clusters: tuple[Hashable, ...],
    periods: pd.Index,
    user: str,
) -> None:
    """Rows in unobserved cells or disagreeing with the design's treatment raise; empty warn."""
    cols = ("cluster", "period")
    n_i, n_t = len(clusters), len(periods)
    matrix = np.asarray(design.matrix, dtype=np.float64)
    if matrix.shape != (n_i, n_t):
        raise DataError(
            f"design matrix has shape {matrix.shape} but the design lists {n_i} clusters "
            f"and {n_t} periods."
        )
    dm = matrix.ravel()[cell]
    bad = np.isnan(dm)
    if bad.any():
        raise DataError(
            f"rows lie in cells the design marks unobserved: {_where(frame, bad, cols)}."
        )
    bad = np.abs(tr - dm) > 1e-9
    if bad.any():
        idx = np.flatnonzero(bad)
        parts = [
            f"cluster {_lab(frame['cluster'].iat[i])}, period {_lab(frame['period'].iat[i])}: "
            f"data {tr[i]:g}, design {dm[i]:g}"
            for i in idx[:_MAX_LISTED]
        ]
        raise DataError(
            f"`treatment` column {user!r} disagrees with the design in "
            f"{idx.size} row(s): "
            + "; ".join(parts)
            + (" ..." if idx.size > _MAX_LISTED else "")
            + "."
        )
    has_rows = np.zeros(n_i * n_t, dtype=bool)
    has_rows[cell] = True
    empty = np.flatnonzero(~has_rows & ~np.isnan(matrix.ravel()))
    if empty.size:
        names = [f"({_lab(clusters[k // n_t])}, {_lab(periods[k % n_t])})" for k in empty]
        warn(
            f"{empty.size} cell(s) the design marks observed have no rows "
            f"(cluster, period): {_list(names)}.",
            MissingDataWarning,
        )


def _isna(values: pd.Series) -> BoolArray:
    """Missing-value mask of a column (numpy integer/bool columns cannot hold any)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iub":
            return np.zeros(len(values), dtype=bool)
        if dtype.kind == "f":
            return np.asarray(np.isnan(values.to_numpy()), dtype=bool)
        return np.asarray(values.isna().to_numpy(), dtype=bool)
    return np.asarray(values.array.isna(), dtype=bool)  # an extension array's own mask


def _int_table_codes(v: np.ndarray) -> tuple[np.ndarray, IntArray] | None:
    """Sorted unique integers and codes by an O(n) table look-up (None: range too wide)."""
    lo, hi = int(v.min()), int(v.max())
    if hi - lo > 4 * len(v) + 1024:
        return None
    off = (v - lo).astype(np.int64)
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[off] = True
    code_of = np.cumsum(present, dtype=np.int64) - 1
    return (np.flatnonzero(present) + lo).astype(v.dtype), code_of[off]


def _sorted_codes(values: pd.Series) -> tuple[list[Hashable], IntArray]:
    """Factorise ``values`` with sorted unique labels (order of appearance if unsortable)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(values):
        # integer labels with a moderate range: O(n) table look-up instead of a sort
        table = _int_table_codes(values.to_numpy())
        if table is not None:
            return table[0].tolist(), table[1]
    target: Any = values
    if isinstance(dtype, pd.StringDtype):
        # the same codes and labels as the Series (text sorts by code point either way),
        # without the extension array's per-call overhead
        target = values.to_numpy()
    try:
        codes, uniques = pd.factorize(target, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(target, sort=False)
    return list(uniques), np.asarray(codes, dtype=np.int64)


def _sorted_index_codes(values: pd.Series) -> tuple[pd.Index, IntArray]:
    """Sorted unique labels as an index (:func:`_as_index`) and each value's code.

    Periods without ``NaT`` are coded by their integer ordinals (the order of Periods of one
    frequency), as :func:`_sorted_codes` codes integers.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.PeriodDtype) and len(values):
        ordinals = np.asarray(values.array.asi8)
        table = None if (ordinals == _NAT_ORDINAL).any() else _int_table_codes(ordinals)
        if table is not None:
            return pd.PeriodIndex(pd.arrays.PeriodArray(table[0], dtype=dtype)), table[1]
    labels, codes = _sorted_codes(values)
    return _as_index(values, labels), codes


def _as_index(values: pd.Series, labels: list[Hashable]) -> pd.Index:
    index: pd.Index
    if isinstance(values.dtype, pd.PeriodDtype):
        index = pd.PeriodIndex(labels, freq=values.dtype.freq)
    else:
        index = pd.Index(labels)
    return index


# --------------------------------------------------------------------------------------
# integrity checks (labels, period order, repeated rows, reversal, degenerate outcomes)
# --------------------------------------------------------------------------------------


def _check_near_duplicate_labels(values: pd.Series, role: str, user: str) -> None:
    """Refuse text labels that differ only by surrounding whitespace or letter case."""
    if isinstance(values.dtype, (pd.PeriodDtype, pd.DatetimeTZDtype)):
        return  # never text
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.asarray(values.cat.codes, dtype=np.int64)
        uniq = list(values.cat.categories.take(np.unique(codes[codes >= 0])))
    else:
        dtype = values.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iufbmM":
            return
        # text: the same labels in the same order from the plain object array, faster
        uniq = list(pd.unique(values.to_numpy() if isinstance(dtype, pd.StringDtype) else values))
    seen: dict[str, Any] = {}
    clashes: list[str] = []
    for lab in uniq:
        if not isinstance(lab, str):
            continue
        key = " ".join(lab.split()).casefold()
        if key in seen and seen[key] != lab:
            clashes.append(f"{seen[key]!r} and {lab!r}")
        else:
            seen.setdefault(key, lab)
    if clashes:
        raise DataError(
            f"`{role}` column {user!r} has labels that differ only by surrounding or repeated "
            f"whitespace or by letter case: {_list(clashes)}. They would be analysed as "
            f"different {role}s; clean the labels (e.g. str.strip()) or make them distinct."
        )


_ISO_PERIOD_TEXT = tuple(
    re.compile(p) for p in (r"\d{4}-\d{2}-\d{2}", r"\d{4}-\d{2}", r"\d{4}Q[1-4]", r"\d{4}")
)


def ordered_periods(values: pd.Series) -> bool:
    """Return True if period labels carry a natural order (not plain text).

    Numbers, booleans, datetimes, timedeltas, :class:`pandas.Period`, ordered categoricals
    (and categoricals of numbers) are ordered, and so is text in one fixed-width ISO-8601-like
    form (``"2023-01-31"``, ``"2023-01"``, ``"2023Q1"``, ``"2023"``), whose alphabetical order
    is its calendar order; other strings and mixed objects are not.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.data import ordered_periods
    >>> ordered_periods(pd.Series([1, 2, 10])), ordered_periods(pd.Series(["P1", "P10"]))
    (True, False)
    >>> ordered_periods(pd.Series(["2023Q4", "2024Q1"]))
    True
    >>> ordered_periods(pd.Series(pd.Categorical(["b", "a"], categories=["b", "a"],
    ...                                          ordered=True)))
    True
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return bool(dtype.ordered) or ordered_periods(pd.Series(dtype.categories))
    if isinstance(dtype, (pd.PeriodDtype, pd.DatetimeTZDtype)):
        return True
    if isinstance(dtype, np.dtype) and dtype.kind in "iufbmM":
        return True
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    uniq = pd.unique(values)
    kinds = {type(v) for v in uniq}
    ordered_types = (int, float, np.integer, np.floating, pd.Period, pd.Timestamp)
    if bool(kinds) and all(issubclass(k, ordered_types) for k in kinds):
        return True
    if kinds and all(issubclass(k, str) for k in kinds):
        # ISO-8601-like labels of one fixed-width form ("2023-01-31", "2023-01", "2023Q1",
        # "2023"): their text order is their calendar order
        return any(all(pat.fullmatch(v) for v in uniq) for pat in _ISO_PERIOD_TEXT)
    return False


def _order_message(why: str, user: str, labels: Sequence[Any]) -> str:
    shown = _list([str(x) for x in labels], 6)
    return (
        f"{why} needs the order of the periods, but the `period` column {user!r} holds text "
        f"labels ({shown}), which would be sorted alphabetically (e.g. 'P10' before 'P4', "
        "'Apr' before 'Jan'). Give the order: `period_order=[...]` listing the periods in "
        "calendar order, or make the column an ordered categorical "
        "(pd.Categorical(..., categories=[...], ordered=True)), numbers or pandas Periods."
    )


def check_period_order(
    data: pd.DataFrame, period: str, why: str, period_order: Sequence[Hashable] | None = None
) -> None:
    """Raise :class:`DataError` if ``why`` needs period order and ``data[period]`` lacks one.

    Parameters
    ----------
    data : pandas.DataFrame
        The rows (not modified).
    period : str
        The period column.
    why : str
        What needs the order (for the message), e.g. ``"time='linear'"``.
    period_order : sequence, optional
        An explicit order; if given, no check is needed.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.data import check_period_order
    >>> check_period_order(pd.DataFrame({"t": [1, 2]}), "t", "time='linear'")  # numbers: fine
    """
    if period_order is not None or period not in data.columns:
        return
    col = data[period]
    if not ordered_periods(col):
        raise DataError(_order_message(why, period, sorted(map(str, pd.unique(col)))))


def apply_period_order(
    data: pd.DataFrame, period: str, period_order: Sequence[Hashable]
) -> pd.DataFrame:
    """Return a copy of ``data`` whose ``period`` column is ordered as ``period_order``.

    The column becomes an ordered :class:`pandas.Categorical`; the caller's frame is not
    modified.

    Raises
    ------
    OptionError
        If ``period_order`` repeats a period, misses a period of the data or lists one
        with no rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.data import apply_period_order
    >>> df = pd.DataFrame({"t": ["Feb", "Jan", "Mar"]})
    >>> apply_period_order(df, "t", ["Jan", "Feb", "Mar"])["t"].cat.codes.tolist()
    [1, 0, 2]
    """
    if period not in data.columns:
        raise DataError(f"column {period!r} given as `period` is not in `data`.")
    order, _ = _codes_in_order(data[period], period_order, period)
    out: pd.DataFrame = data.copy(deep=False)
    out[period] = pd.Categorical(data[period], categories=list(order), ordered=True)
    return out


def _codes_in_order(
    values: pd.Series, period_order: Sequence[Hashable], user: str
) -> tuple[pd.Index, IntArray]:
    """Codes of ``values`` in the user's ``period_order``."""
    listlike = isinstance(period_order, (Sequence, pd.Index, np.ndarray, pd.Series))
    if isinstance(period_order, (str, bytes)) or not listlike:
        raise OptionError(f"`period_order` must be a list of period labels; got {period_order!r}.")
    order = pd.Index(list(period_order))
    if order.has_duplicates:
        repeated = _list([_lab(x) for x in order[order.duplicated()]])
        raise OptionError(f"`period_order` lists periods more than once: {repeated}.")
    codes = np.asarray(order.get_indexer(pd.Index(pd.unique(values))), dtype=np.int64)
    uniq = pd.unique(values)
    if (codes < 0).any():
        absent = _list([_lab(x) for x in uniq[codes < 0]])
        raise OptionError(
            f"`period_order` does not list the period(s) {absent} of column {user!r}; it must "
            "list every period of the data."
        )
    unused = sorted(set(range(len(order))) - set(codes.tolist()))
    if unused:
        raise OptionError(
            f"`period_order` lists period(s) with no rows in column {user!r}: "
            f"{_list([_lab(order[k]) for k in unused])}; list only the periods of the data."
        )
    row_codes = np.asarray(order.get_indexer(values), dtype=np.int64)
    return order, row_codes


def _check_repeated_count_rows(frame: pd.DataFrame, cell: IntArray) -> None:
    """Refuse a repeated row in otherwise one-row-per-cell count data (counted twice).

    Count rows of one cluster-period are added up (several areas or people per cell).  When
    the rows beyond the first in every cell are verbatim copies of it, the data are one row
    per cell with duplicates -- typically a row appended twice -- and summing would count
    them twice.  Data with genuinely several rows per cell (some differing) are accepted.
    """
    if not (np.bincount(cell) > 1).any():
        return  # one row per cell: no row can repeat another (equal rows share a cell)
    dup = frame.duplicated(keep="first").to_numpy()
    if not dup.any():
        return
    per_cell = np.bincount(cell[~dup])
    if per_cell.max(initial=0) > 1:
        return  # genuinely several rows per cell: equal rows are distinct units
    rows = frame.duplicated(keep=False).to_numpy()
    raise DataError(
        f"{int(dup.sum())} row(s) repeat another row exactly (same cluster, period, counts and "
        f"every other column): {_where(frame, rows, ('cluster', 'period'))}. Apart from these "
        "the data have one row per cluster-period, and count rows of one cell are added up, "
        "so the repeated rows would be counted twice. Drop them (DataFrame.drop_duplicates()), "
        "or, if they are distinct units (areas, people) that happen to agree, add a column "
        "that tells them apart."
    )


def _check_no_reversal(
    tr: FloatArray,
    cell: IntArray,
    clusters: Sequence[Hashable],
    periods: pd.Index,
    user: str,
) -> None:
    """Refuse a cluster whose treatment decreases from one observed period to a later one."""
    n_i, n_t = len(clusters), len(periods)
    k = n_i * n_t
    hi_flat = np.full(k, -np.inf)
    lo_flat = np.full(k, np.inf)
    if np.bincount(cell, minlength=k).max(initial=0) <= 1:  # one row per cell: its value
        hi_flat[cell] = tr
        lo_flat[cell] = tr
    else:
        np.maximum.at(hi_flat, cell, tr)
        np.minimum.at(lo_flat, cell, tr)
    hi = hi_flat.reshape(n_i, n_t)
    lo = lo_flat.reshape(n_i, n_t)
    # running maximum of the earlier observed periods against each period's minimum
    run = np.maximum.accumulate(hi, axis=1)
    prev = np.concatenate([np.full((n_i, 1), -np.inf), run[:, :-1]], axis=1)
    bad = np.isfinite(lo) & (lo < prev - 1e-9)
    if not bad.any():
        return
    parts: list[str] = []
    for i, j in zip(*np.nonzero(bad), strict=True):
        if len(parts) == _MAX_LISTED:
            parts.append("...")
            break
        j0 = int(np.flatnonzero(hi[i, :j] >= prev[i, j] - 1e-9)[0])
        parts.append(
            f"cluster {_lab(clusters[i])}: {hi[i, j0]:g} in period {_lab(periods[j0])}, then "
            f"{lo[i, j]:g} in period {_lab(periods[j])}"
        )
    raise DataError(
        f"`treatment` column {user!r} goes back from treated to control: {'; '.join(parts)}. "
        "A stepped wedge never withdraws the intervention; check the rows and the period order "
        "(pass `period_order=` if the labels do not sort in calendar order), or pass a Design "
        "built with allow_reversal=True (or allow_reversal=True here) for a crossover."
    )


def _check_outcome_varies(
    y: FloatArray,
    trials: FloatArray | None,
    family: str,
    kind: str,
    roles: Mapping[str, str],
) -> None:
    """Refuse outcomes with no variation: nothing can be estimated from them."""
    col = roles["outcome"]
    if family in _COUNT_FAMILIES:
        if not np.any(y > 0):
            raise DataError(
                f"`outcome` column {col!r} is 0 in every row (no events at all): a rate ratio "
                "cannot be estimated. Check the column, or the period/cluster filter."
            )
        return
    if family == "binomial":
        n = trials if trials is not None else np.ones_like(y)
        if not np.any(y > 0):
            raise DataError(
                f"`outcome` column {col!r} has no events (0 in every row): an odds ratio or "
                "risk difference cannot be estimated."
            )
        if not np.any(y < n):
            what = "equals the trials in every row" if trials is not None else "is 1 in every row"
            raise DataError(
                f"`outcome` column {col!r} {what} (no non-events): an odds ratio or risk "
                "difference cannot be estimated."
            )
        return
    if len(y) > 1 and np.all(y == y[0]):
        raise DataError(
            f"`outcome` column {col!r} takes the single value {y[0]:g} in every row: there is "
            "no variation to analyse."
        )


# --------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------


def _aggregate(td: TrialData) -> CellSummary:
    n_i, n_t = td.n_clusters, td.n_periods
    k = n_i * n_t
    cell = td.cell_index
    f = td.frame
    y = td._role_values("outcome")
    tr = td._role_values("treatment")
    rows: FloatArray = np.bincount(cell, minlength=k).astype(np.float64)

    # treatment: constant within a cell
    treat = np.full(k, np.nan)
    treat[cell] = tr
    bad = tr != treat[cell]
    if bad.any():
        bad_cells = np.unique(cell[bad])
        names = [f"({_lab(td.clusters[c // n_t])}, {_lab(td.periods[c % n_t])})" for c in bad_cells]
        raise DataError(
            f"`treatment` column {td.roles['treatment']!r} varies within cluster-period cells "
            f"{_list(names)}; cell summaries need one treatment value per cell."
        )

    total = np.bincount(cell, weights=y, minlength=k)
    n: FloatArray
    if td.kind == "individual":
        n = rows
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n
        mean_rows = mean[cell]
        dev = y - mean_rows
        # corrected two-pass: refine the mean with the (tiny) mean deviation, then
        # subtract its contribution from the sum of squares
        sdev = np.bincount(cell, weights=dev, minlength=k)
        ss = np.bincount(cell, weights=dev * dev, minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(n > 0, sdev / n, 0.0)
        mean = np.where(n > 0, mean + corr, np.nan)
        within = np.where(n > 0, ss - sdev * corr, 0.0)
        within = np.maximum(within, 0.0)
    else:
        if td.family == "binomial":
            n = np.bincount(cell, td._role_values("trials"), k).astype(np.float64)
        elif "size" in td.roles:
            n = np.bincount(cell, td._role_values("size"), k).astype(np.float64)
        else:
            n = rows
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, total / n, np.nan)
        if td.family == "binomial":
            within = np.where(n > 0, total - total * np.where(n > 0, mean, 0.0), 0.0)
            within = np.maximum(within, 0.0)
        else:
            within = np.zeros(k)

    exposure = None
    if "exposure" in td.roles or "offset" in td.roles:
        e = np.ones(len(f))
        if "exposure" in td.roles:
            e = td._role_values("exposure")
        if "offset" in td.roles:
            e = e * np.exp(td._role_values("offset"))
        exposure = _readonly(np.bincount(cell, weights=e, minlength=k).reshape(n_i, n_t))

    observed = n > 0
    treat = np.where(observed, treat, np.nan)
    shape = (n_i, n_t)
    return CellSummary(
        clusters=tuple(td.clusters),
        periods=tuple(td.periods),
        n=_readonly(n.reshape(shape)),
        total=_readonly(total.reshape(shape)),
        mean=_readonly(mean.reshape(shape)),
        within_ss=_readonly(within.reshape(shape)),
        exposure=exposure,
        treatment=_readonly(treat.reshape(shape)),
        observed=_readonly(observed.reshape(shape)),
    )
