"""Validation of :func:`comparison_councils` inputs: the trial, the panel and the donor pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_option, check_positive_int
from ..exceptions import DataError, OptionError

__all__ = ["Columns", "Prepared", "prepare"]


@dataclass(frozen=True)
class Columns:
    """Column names of the panel."""

    council: str = "la_code"
    year: str = "year"
    exposure: str = "population_0_17"
    region: str = "region_name"
    name: str = "la_name"


@dataclass(frozen=True)
class Prepared:
    """The validated inputs: wide outcome and exposure tables and the roles of councils.

    ``counts`` and ``exposure`` are councils x years (every council of the panel with a
    complete series over ``years``); ``starts`` maps each trial council to its first
    treated year; ``pool`` lists the candidate comparison councils; ``excluded`` says which
    panel councils could not be candidates and why.
    """

    counts: pd.DataFrame
    exposure: pd.DataFrame
    regions: pd.Series
    names: pd.Series
    starts: dict[str, int]
    pool: list[str]
    pre_years: list[int]
    years: list[int]
    excluded: pd.DataFrame
    outcome: str


def _trial_starts(trial: Any) -> dict[str, int]:
    """``council -> first treated year`` from a mapping, Series or an annual Design."""
    from ..design import Design

    if isinstance(trial, Design):
        out = {}
        for c, s in zip(trial.clusters, trial.start_period, strict=True):
            if s < 0:
                raise DataError(f"trial council {c!r} is never treated in the design.")
            label = trial.periods[int(s)]
            out[str(c)] = int(label.year if hasattr(label, "year") else label)
        return out
    if isinstance(trial, pd.Series):
        trial = trial.to_dict()
    if not isinstance(trial, Mapping) or not trial:
        raise OptionError(
            "`trial` must be a non-empty mapping council code -> first treated year (or a "
            f"Design whose clusters are council codes and periods years); got {type(trial)}."
        )
    out = {}
    for c, y in trial.items():
        if isinstance(y, bool) or not isinstance(y, (int, np.integer)):
            raise OptionError(f"the start year of trial council {c!r} must be an int; got {y!r}.")
        out[str(c)] = int(y)
    return out


def _check_panel(panel: Any, outcome: str, cols: Columns) -> pd.DataFrame:
    if not isinstance(panel, pd.DataFrame):
        raise OptionError(f"`panel` must be a pandas DataFrame; got {type(panel).__name__}.")
    need = [cols.council, cols.year, cols.exposure, outcome]
    missing = [c for c in need if c not in panel.columns]
    if missing:
        raise DataError(
            f"the panel has no column(s) {missing} (outcome {outcome!r}); its columns are "
            f"{list(panel.columns)}."
        )
    if panel.duplicated([cols.council, cols.year]).any():
        dup = panel.loc[panel.duplicated([cols.council, cols.year]), cols.council].iloc[0]
        raise DataError(f"the panel has several rows for council {dup!r} in one year.")
    return panel


def _wide(panel: pd.DataFrame, column: str, cols: Columns) -> pd.DataFrame:
    values = pd.to_numeric(panel[column], errors="coerce").astype(float)
    frame = pd.DataFrame(
        {"c": panel[cols.council].astype(str), "y": panel[cols.year].astype(int), "v": values}
    )
    wide: pd.DataFrame = frame.pivot(index="c", columns="y", values="v")
    return wide


def _window(
    counts: pd.DataFrame, first_start: int, pre_periods: int | None, end: int | None
) -> tuple[list[int], list[int]]:
    years = [int(y) for y in counts.columns]
    pre = [y for y in years if y < first_start]
    if pre_periods is not None:
        pre = pre[-check_positive_int("pre_periods", pre_periods, minimum=2) :]
    if len(pre) < 2:
        raise DataError(
            f"the panel has {len(pre)} year(s) before the first trial start ({first_start}); "
            "matching on pre-trial trajectories needs at least 2."
        )
    last = max(years) if end is None else int(end)
    return pre, [y for y in years if pre[0] <= y <= last]


def prepare(
    trial: Any,
    panel: Any,
    outcome: str,
    cols: Columns,
    *,
    candidates: Sequence[Any] | None,
    pre_periods: int | None,
    end: int | None,
    exclude_boundary_changes: bool,
) -> Prepared:
    """Check the inputs and build the wide tables (see :class:`Prepared`)."""
    starts = _trial_starts(trial)
    panel = _check_panel(panel, outcome, cols)
    counts, exposure = _wide(panel, outcome, cols), _wide(panel, cols.exposure, cols)
    absent = [c for c in starts if c not in counts.index]
    if absent:
        raise DataError(f"trial council(s) {absent} are not in the panel's `{cols.council}`.")
    pre, years = _window(counts, min(starts.values()), pre_periods, end)
    late = {c: y for c, y in starts.items() if y > years[-1]}
    if late:
        raise DataError(f"trial council(s) start after the panel's last year {years[-1]}: {late}.")
    ok = counts[years].notna().all(axis=1) & (exposure[years] > 0).all(axis=1)
    bad_trial = [c for c in starts if not ok[c]]
    if bad_trial:
        holes = counts.loc[bad_trial, years].isna() | ~(exposure.loc[bad_trial, years] > 0)
        gaps = {c: [y for y in years if bool(holes.loc[c, y])] for c in bad_trial}
        raise DataError(
            f"trial council(s) have missing {outcome!r} or exposure in {years[0]}-{years[-1]}: "
            f"{gaps}."
        )
    pool, excluded = _pool(panel, starts, candidates, ok, cols, exclude_boundary_changes)
    first = panel.drop_duplicates(cols.council)
    first.index = pd.Index(first[cols.council].astype(str).tolist())
    regions = first[cols.region].astype(str) if cols.region in first else pd.Series(dtype=str)
    names = first[cols.name].astype(str) if cols.name in first else pd.Series(dtype=str)
    keep = list(starts) + pool
    return Prepared(
        counts.loc[keep, years],
        exposure.loc[keep, years],
        regions,
        names,
        starts,
        pool,
        pre,
        years,
        excluded,
        outcome,
    )


def _pool(
    panel: pd.DataFrame,
    starts: dict[str, int],
    candidates: Sequence[Any] | None,
    ok: pd.Series,
    cols: Columns,
    exclude_boundary_changes: bool,
) -> tuple[list[str], pd.DataFrame]:
    """Candidate comparison councils and the panel councils left out (with the reason)."""
    codes = [str(c) for c in ok.index]
    if candidates is not None:
        given = [str(c) for c in candidates]
        both = [c for c in given if c in starts]
        if both:
            raise DataError(f"candidate comparison council(s) {both} are also in the trial.")
        unknown = [c for c in given if c not in ok.index]
        if unknown:
            raise DataError(f"candidate council(s) {unknown} are not in the panel.")
        codes = given
    reasons = {c: "missing outcome or exposure" for c in codes if not ok[c]}
    if exclude_boundary_changes and "boundary_change" in panel:
        changed = set(panel.loc[panel["boundary_change"].astype(bool), cols.council].astype(str))
        reasons.update({c: "boundary change" for c in codes if c in changed})
    pool = [c for c in codes if c not in starts and c not in reasons]
    excluded = pd.DataFrame(sorted(reasons.items()), columns=["council", "reason"])
    return pool, excluded


def check_method(method: str, region: str | None, n: Any, match_on: Sequence[str]) -> int:
    """Validate the matching options; return ``n``."""
    check_option("method", method, ("nearest", "synthetic"))
    if region is not None:
        check_option("region", region, ("exact",))
    for item in match_on:
        check_option("match_on", item, ("rates", "trend", "population"))
    if not match_on:
        raise OptionError("`match_on` must name at least one of 'rates', 'trend', 'population'.")
    return check_positive_int("n", n)
