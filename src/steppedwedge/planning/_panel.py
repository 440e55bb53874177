"""Rows of a historical panel for :func:`steppedwedge.estimate_variance`: selection and checks.

One job: turn a long panel (one row per cluster-period) into the arrays a variance-component
fit needs, applying the documented selection (boundary-change councils, a ``councils=`` subset,
missing values) and refusing data that cannot be fitted, with errors that name the column,
cluster and period at fault.  The caller's DataFrame is never modified.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_option
from .._warnings import warn
from ..exceptions import DataError, MissingDataWarning, OptionError

__all__ = ["PanelRows", "prepare_panel"]

#: Name of the flag column excluded by default (the DfE panel's boundary-change councils).
BOUNDARY_COLUMN = "boundary_change"


@dataclass(frozen=True)
class PanelRows:
    """The rows used by the fit, as arrays (``cluster_codes``/``period_codes`` index the labels)."""

    y: np.ndarray
    trials: np.ndarray  # binomial trials; 1 otherwise
    offset: np.ndarray  # log exposure (0 without one)
    cluster_codes: np.ndarray
    period_codes: np.ndarray
    clusters: tuple[Any, ...]
    periods: tuple[Any, ...]
    excluded: tuple[Any, ...]  # clusters removed by `exclude`
    exclude_reason: str
    n_missing: int  # rows dropped for a missing outcome / exposure
    missing_note: str


def _check_columns(panel: pd.DataFrame, roles: dict[str, str | None]) -> None:
    for role, col in roles.items():
        if col is not None and col not in panel.columns:
            raise DataError(
                f"`{role}={col!r}` is not a column of the panel; columns are {list(panel.columns)}."
            )


def _exclusions(
    panel: pd.DataFrame, cluster: str, exclude: str | Sequence[Hashable] | None
) -> tuple[set[Any], str]:
    """Clusters removed by ``exclude`` and a sentence saying why."""
    if exclude is None:
        if BOUNDARY_COLUMN not in panel.columns:
            return set(), ""
        exclude = BOUNDARY_COLUMN
    if isinstance(exclude, str):
        if exclude not in panel.columns:
            raise OptionError(
                f"`exclude={exclude!r}` must name a boolean flag column of the panel (councils "
                "with any flagged row are left out) or be a list of cluster labels; there is no "
                "such column."
            )
        flag = panel[exclude]
        if flag.isna().any() or not pd.api.types.is_bool_dtype(flag):
            raise DataError(f"The exclusion flag column {exclude!r} must be boolean without gaps.")
        out = set(panel.loc[flag.to_numpy(dtype=bool), cluster])
        return out, f"flagged in column {exclude!r}"
    labels = list(exclude)
    unknown = [c for c in labels if c not in set(panel[cluster])]
    if unknown:
        raise DataError(f"`exclude` names clusters that are not in the panel: {unknown}.")
    return set(labels), "listed in `exclude`"


def _select_councils(
    panel: pd.DataFrame, cluster: str, councils: Sequence[Hashable] | None, dropped: set[Any]
) -> pd.DataFrame:
    if councils is None:
        kept: pd.DataFrame = panel[~panel[cluster].isin(list(dropped))]
        return kept
    wanted = list(councils)
    if isinstance(councils, str) or not wanted:
        raise OptionError("`councils` must be a non-empty list of cluster labels.")
    present = set(panel[cluster])
    unknown = [c for c in wanted if c not in present]
    if unknown:
        raise DataError(f"`councils` names clusters that are not in the panel: {unknown}.")
    clash = [c for c in wanted if c in dropped]
    if clash:
        raise DataError(
            f"`councils` includes {clash}, which the exclusion rule leaves out (e.g. a boundary "
            "change makes their earlier years a different area); drop them from `councils`, or "
            "pass `exclude=()` to keep every council."
        )
    chosen: pd.DataFrame = panel[panel[cluster].isin(wanted)]
    return chosen


def _drop_missing(
    rows: pd.DataFrame, cols: list[str], period: str, missing: str
) -> tuple[pd.DataFrame, int, str]:
    bad = rows[cols].isna().any(axis=1).to_numpy()
    n_bad = int(bad.sum())
    if not n_bad:
        return rows, 0, ""
    by_col = ", ".join(
        f"{int(rows[c].isna().sum())} in {c!r}" for c in cols if rows[c].isna().any()
    )
    periods_all = rows.loc[bad, period].value_counts()
    size = rows[period].value_counts()
    empty = sorted(p for p in periods_all.index if periods_all[p] == size[p])
    scattered = n_bad - int(sum(size[p] for p in empty))
    note = f"{n_bad} rows with a missing value ({by_col}) dropped"
    if empty:
        note += f": {n_bad - scattered} in periods with no value at all ({empty}: not published)"
        note += f" and {scattered} suppressed or missing elsewhere"
    if missing == "raise":
        raise DataError(
            f"The panel has {note.replace(' dropped', '')}; pass `missing='drop'` to fit the "
            "remaining rows (suppressed small counts are then left out, which slightly "
            "overstates the rates of small councils)."
        )
    warn(note + " (`missing='raise'` refuses them).", MissingDataWarning)
    return rows[~bad], n_bad, note + "."


def _numeric(rows: pd.DataFrame, col: str, role: str) -> np.ndarray:
    try:
        values = rows[col].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"`{role}` column {col!r} must be numeric.") from exc
    return values


def _check_counts(
    rows: pd.DataFrame, y: np.ndarray, outcome: str, cluster: str, period: str, family: str
) -> None:
    if family == "gaussian":
        bad = ~np.isfinite(y)
        if bad.any():
            first = rows.iloc[int(np.flatnonzero(bad)[0])]
            raise DataError(
                f"`{outcome}` must be finite for family='gaussian'; {int(bad.sum())} rows are "
                f"not (first: {cluster}={first[cluster]!r}, {period}={first[period]!r}, e.g. the "
                "log of a zero count)."
            )
        return
    bad = (y < 0) | (np.round(y) != y)
    if bad.any():
        first = rows.iloc[int(np.flatnonzero(bad)[0])]
        raise DataError(
            f"`{outcome}` must hold non-negative whole counts for family={family!r}; "
            f"{int(bad.sum())} rows do not (first: {cluster}={first[cluster]!r}, "
            f"{period}={first[period]!r}, value {first[outcome]!r})."
        )


def _log_exposure(rows: pd.DataFrame, exposure: str, cluster: str, period: str) -> np.ndarray:
    e = _numeric(rows, exposure, "exposure")
    bad = ~(e > 0) | ~np.isfinite(e)
    if bad.any():
        sub = rows.loc[bad, [cluster, period, exposure]].head(5)
        cells = ", ".join(f"{r[0]!r} in {r[1]!r}" for r in sub.itertuples(index=False))
        raise DataError(
            f"The exposure {exposure!r} must be positive; {int(bad.sum())} rows are zero, negative "
            f"or infinite ({cells}). A zero population has no rate: drop those rows."
        )
    return np.asarray(np.log(e), dtype=float)


def _period_order(rows: pd.DataFrame, period: str) -> tuple[Any, ...]:
    col = rows[period]
    if not (
        pd.api.types.is_numeric_dtype(col)
        or pd.api.types.is_datetime64_any_dtype(col)
        or isinstance(col.dtype, (pd.PeriodDtype, pd.CategoricalDtype))
    ):
        raise DataError(
            f"The period column {period!r} must be numeric (e.g. the year), dates, pandas "
            "periods or an ordered categorical: the lag between periods must be known."
        )
    if isinstance(col.dtype, pd.CategoricalDtype):
        if not col.cat.ordered:
            raise DataError(f"The categorical period column {period!r} must be ordered.")
        return tuple(c for c in col.cat.categories if c in set(col))
    return tuple(sorted(col.unique()))


def prepare_panel(
    panel: Any,
    *,
    outcome: str,
    cluster: str,
    period: str,
    exposure: str | None,
    trials: str | None,
    family: str,
    exclude: str | Sequence[Hashable] | None,
    councils: Sequence[Hashable] | None,
    missing: str,
) -> PanelRows:
    """Select, check and encode the panel rows (see :func:`steppedwedge.estimate_variance`)."""
    if not isinstance(panel, pd.DataFrame):
        raise TypeError(f"`panel` must be a pandas DataFrame; got {type(panel).__name__}.")
    check_option("missing", missing, ("drop", "raise"))
    _check_columns(
        panel,
        {
            "outcome": outcome,
            "cluster": cluster,
            "period": period,
            "exposure": exposure,
            "trials": trials,
        },
    )
    if family == "binomial" and trials is None:
        raise OptionError("family='binomial' needs `trials=` (the column of denominators).")
    if family != "binomial" and trials is not None:
        raise OptionError(f"`trials` is used only with family='binomial'; got family={family!r}.")
    if family == "gaussian" and exposure is not None:
        raise OptionError(
            "`exposure` is used only with count families (poisson, negative_binomial)."
        )
    dropped, reason = _exclusions(panel, cluster, exclude)
    rows = _select_councils(panel, cluster, councils, dropped)
    cols = [c for c in (outcome, exposure, trials) if c is not None]
    rows, n_missing, note = _drop_missing(rows, cols, period, missing)
    if rows.duplicated([cluster, period]).any():
        dup = rows.loc[rows.duplicated([cluster, period], keep=False), [cluster, period]].iloc[0]
        raise DataError(
            f"The panel must have one row per cluster and period; {cluster}={dup[cluster]!r}, "
            f"{period}={dup[period]!r} appears more than once."
        )
    periods = _period_order(rows, period)
    if len(periods) < 2:
        raise DataError(
            f"The panel has {len(periods)} period(s) with data in {outcome!r}: variance components "
            "over time need at least 2 (3 for structure='nested+decay')."
        )
    y = _numeric(rows, outcome, "outcome")
    _check_counts(rows, y, outcome, cluster, period, family)
    n = np.ones_like(y)
    if trials is not None:
        n = _numeric(rows, trials, "trials")
        if np.any(n <= 0) or np.any(y > n):
            raise DataError(f"`{trials}` must be positive and at least `{outcome}` in every row.")
    off = np.zeros_like(y) if exposure is None else _log_exposure(rows, exposure, cluster, period)
    clusters = tuple(pd.unique(rows[cluster]))
    if len(clusters) < 2:
        raise DataError("The panel must hold at least 2 clusters after the selection.")
    code_c = pd.Index(clusters).get_indexer(rows[cluster])
    code_p = pd.Index(periods).get_indexer(rows[period])
    excluded = tuple(sorted(dropped, key=str)) if councils is None else ()
    return PanelRows(
        y=y,
        trials=n,
        offset=off,
        cluster_codes=np.asarray(code_c),
        period_codes=np.asarray(code_p),
        clusters=clusters,
        periods=periods,
        excluded=excluded,
        exclude_reason=reason,
        n_missing=n_missing,
        missing_note=note,
    )
