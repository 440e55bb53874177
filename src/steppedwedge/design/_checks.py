"""Input validation and calendar helpers for :class:`steppedwedge.design.Design`.

Everything here checks and standardises; nothing here knows about plotting or power.  The
functions raise :class:`~steppedwedge.exceptions.DesignError` with messages that name the
argument, cluster or period at fault.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._validation import parse_date_text
from .._warnings import caller_stacklevel
from ..exceptions import DesignError, OptionError, SteppedWedgeWarning

__all__ = [
    "check_cells",
    "check_labels",
    "check_period_index",
    "parse_period_grid",
    "parse_start_dates",
    "parse_window",
]


def _fmt(label: Any) -> str:
    return repr(label) if isinstance(label, str) else str(label)


# --------------------------------------------------------------------------------------
# matrix and labels
# --------------------------------------------------------------------------------------
def as_matrix(matrix: Any) -> np.ndarray:
    """Return ``matrix`` as a fresh 2-D float64 array or raise DesignError."""
    try:
        arr = np.array(matrix, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise DesignError(
            "`matrix` must be a 2-D array of numbers (0 control, 1 treated, a fraction for "
            f"partial exposure, NaN for not observed); got {type(matrix).__name__}."
        ) from None
    if arr.ndim != 2:
        raise DesignError(
            f"`matrix` must be 2-D (clusters x periods); got an array with {arr.ndim} "
            f"dimension(s) and shape {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DesignError(
            f"`matrix` must have at least one cluster and one period; got shape {arr.shape}."
        )
    if np.isinf(arr).any():
        i, j = np.argwhere(np.isinf(arr))[0]
        raise DesignError(
            f"`matrix` must be finite or NaN; got {float(arr[i, j])} at row {i}, column {j}."
        )
    return arr


def check_labels(labels: Sequence[Hashable], what: str) -> tuple[Hashable, ...]:
    """Check that labels are hashable and unique; return them as a tuple."""
    out = tuple(labels)
    seen: dict[Hashable, int] = {}
    for k, lab in enumerate(out):
        try:
            hash(lab)
        except TypeError:
            raise DesignError(
                f"`{what}` labels must be hashable; got {lab!r} at position {k}."
            ) from None
        if lab in seen:
            raise DesignError(
                f"`{what}` labels must be unique; {_fmt(lab)} appears at positions "
                f"{seen[lab]} and {k}."
            )
        seen[lab] = k
    return out


def check_period_index(periods: pd.Index) -> None:
    """Require a PeriodIndex to be strictly increasing and without gaps."""
    if not isinstance(periods, pd.PeriodIndex) or len(periods) < 2:
        return
    ords = periods.asi8
    step = np.diff(ords)
    if (step <= 0).any():
        k = int(np.argmax(step <= 0))
        raise DesignError(
            "`periods` must be strictly increasing; "
            f"{periods[k + 1]} follows {periods[k]} (position {k + 1})."
        )
    if (step != 1).any():
        k = int(np.argmax(step != 1))
        raise DesignError(
            "`periods` must be a regular grid without gaps; "
            f"{periods[k + 1]} follows {periods[k]} (position {k + 1}), skipping "
            f"{int(step[k]) - 1} "
            f"period(s) of frequency {periods.freqstr}."
        )


def check_cells(
    matrix: np.ndarray,
    clusters: tuple[Hashable, ...],
    periods: pd.Index,
    *,
    allow_reversal: bool,
    check_identifiable: bool,
) -> None:
    """Check the semantic rules of a design matrix (see :class:`Design` Notes)."""
    obs = ~np.isnan(matrix)
    vals = matrix[obs]
    bad = (vals < 0) | (vals > 1)
    if bad.any():
        i, j = np.argwhere(obs & ((np.nan_to_num(matrix) < 0) | (np.nan_to_num(matrix) > 1)))[0]
        raise DesignError(
            "`matrix` values must lie in [0, 1] (0 control, 1 treated, a fraction for partial "
            f"exposure) or be NaN; got {float(matrix[i, j]):g} for cluster {_fmt(clusters[i])} in "
            f"period {periods[j]}."
        )
    empty_rows = np.flatnonzero(~obs.any(axis=1))
    if empty_rows.size:
        labs = ", ".join(_fmt(clusters[i]) for i in empty_rows[:5])
        raise DesignError(
            f"every cluster needs at least one observed cell; cluster(s) {labs} have only NaN. "
            "Drop them from the design."
        )
    if not allow_reversal:
        for i in range(matrix.shape[0]):
            row = matrix[i][obs[i]]
            drop = np.flatnonzero(np.diff(row) < 0)
            if drop.size:
                cols = np.flatnonzero(obs[i])
                j0, j1 = cols[drop[0]], cols[drop[0] + 1]
                raise DesignError(
                    f"cluster {_fmt(clusters[i])} goes back towards control: treatment "
                    f"{matrix[i, j0]:g} in period {periods[j0]} then {matrix[i, j1]:g} in period "
                    f"{periods[j1]}. Pass `allow_reversal=True` for crossover-type designs."
                )
    if check_identifiable:
        if (vals == 0).all():
            raise DesignError(
                "no observed cell is treated, so there is no treatment effect to estimate. "
                "Pass `check_identifiable=False` to build it anyway."
            )
        if (vals == 1).all():
            raise DesignError(
                "every observed cell is treated, so there is no control condition. "
                "Pass `check_identifiable=False` to build it anyway."
            )
        col_max = np.where(obs, matrix, -np.inf).max(axis=0)
        col_min = np.where(obs, matrix, np.inf).min(axis=0)
        has = obs.any(axis=0)
        if np.all(col_max[has] == col_min[has]):
            raise DesignError(
                "treatment is collinear with period: in every period all observed clusters are "
                "in the same state, so the effect cannot be separated from the period effects. "
                "Pass `check_identifiable=False` to build it anyway."
            )


# --------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------
def _to_timestamp(
    value: Any, what: str, dayfirst: bool | None = None, date_format: str | None = None
) -> pd.Timestamp | None:
    """Parse one date; None/NaT/NaN -> None; anything unparseable -> DesignError.

    Text must be ISO 8601 unless ``dayfirst`` or ``date_format`` says how to read it
    (:func:`steppedwedge._validation.parse_date_text`): ``"01/07/2024"`` is never guessed.
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Period):
        start: pd.Timestamp = value.start_time.normalize()
        return start
    if isinstance(value, str):
        if not value.strip():
            raise DesignError(f"{what} is an empty string; use None (never treated) or a date.")
        if value.strip().lower() in ("nat", "nan", "none"):
            return None
        try:
            value = parse_date_text(value, what, dayfirst=dayfirst, date_format=date_format)
        except OptionError as exc:
            raise DesignError(str(exc)) from None
    if isinstance(value, (_dt.date, _dt.datetime, pd.Timestamp, np.datetime64)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts = pd.Timestamp(value)
        except (TypeError, ValueError, OverflowError):
            raise DesignError(f"{what} is not a date; got {value!r}.") from None
        if ts is pd.NaT:
            return None
        if ts.tzinfo is not None:
            ts = ts.tz_localize(None)
        out: pd.Timestamp = ts
        return out
    raise DesignError(f"{what} is not a date; got {value!r} ({type(value).__name__}).")


def parse_start_dates(
    start_dates: Any, dayfirst: bool | None = None, date_format: str | None = None
) -> tuple[tuple[Hashable, ...], list[pd.Timestamp | None]]:
    """Normalise ``start_dates`` to (labels, timestamps) preserving order."""
    if isinstance(start_dates, pd.DataFrame):
        if start_dates.shape[1] != 2:
            raise DesignError(
                "`start_dates` as a DataFrame must have exactly two columns (cluster label, "
                f"start date); got {start_dates.shape[1]} columns: {list(start_dates.columns)}."
            )
        labels = list(start_dates.iloc[:, 0])
        raw = list(start_dates.iloc[:, 1])
    elif isinstance(start_dates, pd.Series):
        labels = list(start_dates.index)
        raw = list(start_dates.array)
    elif isinstance(start_dates, Mapping):
        labels = list(start_dates.keys())
        raw = list(start_dates.values())
    else:
        raise DesignError(
            "`start_dates` must be a mapping {cluster: date}, a pandas Series indexed by "
            f"cluster, or a two-column DataFrame; got {type(start_dates).__name__}."
        )
    if not labels:
        raise DesignError("`start_dates` must name at least one cluster; got none.")
    clusters = check_labels(labels, "start_dates")
    dates = [
        _to_timestamp(v, f"the start date of cluster {_fmt(c)}", dayfirst, date_format)
        for c, v in zip(clusters, raw, strict=True)
    ]
    for c, d in zip(clusters, dates, strict=True):
        if d is not None and d != d.normalize():
            raise DesignError(
                f"the start date of cluster {_fmt(c)} must be a calendar day without a time of "
                f"day; got {d}."
            )
    return clusters, dates


def parse_period_grid(periods: Any) -> pd.PeriodIndex:
    """Turn a PeriodIndex, a list of Periods or a ``"start/end"`` string into a PeriodIndex."""
    if isinstance(periods, str):
        parts = periods.split("/")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise DesignError(
                '`periods` as a string must be "start/end", e.g. "2023Q1/2027Q4", '
                f'"2023-01/2024-12" or "2020/2025", or "starts"; got {periods!r}.'
            )
        try:
            first, last = (pd.Period(p.strip()) for p in parts)
        except (TypeError, ValueError):
            raise DesignError(f"`periods` {periods!r}: cannot read {parts!r} as periods.") from None
        if first.freqstr != last.freqstr:
            raise DesignError(
                f"`periods` {periods!r}: both ends must have the same frequency; got "
                f"{first.freqstr} and {last.freqstr}."
            )
        if last < first:
            raise DesignError(f"`periods` {periods!r}: the end {last} is before the start {first}.")
        return pd.period_range(first, last, freq=first.freq)
    if isinstance(periods, pd.PeriodIndex):
        out = periods
    else:
        try:
            out = pd.PeriodIndex(list(periods))
        except (TypeError, ValueError):
            raise DesignError(
                "`periods` must be a pandas PeriodIndex, a list of pandas Periods, a string "
                f'"start/end" such as "2023Q1/2027Q4", or "starts"; got {type(periods).__name__}.'
            ) from None
    if len(out) == 0:
        raise DesignError("`periods` must contain at least one period; got none.")
    if out.hasnans:
        raise DesignError("`periods` must not contain missing periods (NaT).")
    check_period_index(out)
    return out


def parse_window(
    window: Any, dayfirst: bool | None = None, date_format: str | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Parse ``window=(start, end)`` (end inclusive)."""
    if window is None:
        raise DesignError(
            '`window=(first_day, last_day)` is required with `periods="starts"`; got None.'
        )
    try:
        a, b = window
    except (TypeError, ValueError):
        raise DesignError(
            f"`window` must be a pair (first_day, last_day); got {window!r}."
        ) from None
    start = _to_timestamp(a, "`window[0]`", dayfirst, date_format)
    end = _to_timestamp(b, "`window[1]`", dayfirst, date_format)
    if start is None or end is None:
        raise DesignError(f"`window` must be two dates; got {window!r}.")
    if end < start:
        raise DesignError(
            f"`window` must end on or after its start; got {start.date()} to {end.date()}."
        )
    return start, end


def warn_design(message: str) -> None:
    """Issue a :class:`SteppedWedgeWarning` attributed to the caller of the constructor."""
    warnings.warn(message, SteppedWedgeWarning, stacklevel=caller_stacklevel())
