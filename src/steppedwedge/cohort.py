"""Referral cohorts: from child-level event records to one analysis row per child.

Trials such as Family Safeguarding and No Wrong Door recruit continuously: a child enters
the trial when first referred, and the outcome (becoming looked after) is observed over a
fixed follow-up window after that referral.  :func:`cohort_from_events` turns an event
table (one row per referral, with the child's outcome date and date of birth) into the
analysis frame: first referral per child in the trial window, the design period of entry,
treatment by a chosen exposure rule, a contamination flag, the outcome within follow-up
with censoring, and the time at risk.  Every row or child that does not reach the
analysis frame is counted in :attr:`CohortFrame.exclusions`; nothing is dropped silently.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._validation import check_nonnegative, check_option, check_positive_int, check_unit_interval
from .design import Design
from .design import _checks as _dv
from .exceptions import DataError, DesignError, OptionError
from .results import Summary

__all__ = ["CohortFrame", "cohort_from_events"]

ExposureRule = Literal["referral", "proportion", "min-weeks"]

#: Columns produced by :func:`cohort_from_events`, in order.
COHORT_COLUMNS = (
    "child",
    "cluster",
    "period",
    "referral_date",
    "start_date",
    "treated",
    "exposure_fraction",
    "days_treated",
    "contaminated",
    "outcome",
    "outcome_date",
    "follow_up_end",
    "time_at_risk_days",
    "censored",
    "censored_by",
    "age_at_referral",
    "age_years",
    "n_referrals",
)


def _fmt(label: Any) -> str:
    return _dv._fmt(label)


def _list(items: Any, limit: int = 6) -> str:
    items = [_fmt(x) for x in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# --------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CohortFrame:
    """The analysis frame of a referral cohort and the account of every exclusion.

    Returned by :func:`cohort_from_events`.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per child (columns listed in the Notes of :func:`cohort_from_events`),
        followed by the other columns of the child's first referral row.
    exclusions : pandas.DataFrame
        The flow from input rows to the cohort, one line per step, in the order applied:
        ``step, reason, action, rows, children``.  ``action`` is ``"excluded"``,
        ``"de-duplicated"`` (later referrals removed, the child kept) or ``"kept (flagged)"``
        (counted but not removed); ``rows`` counts the event rows (or, for flagged lines,
        children) affected, ``children`` the children who leave the cohort at that step.
    design : Design
        The design whose periods and start dates were used.
    start_dates : dict
        Cluster -> intervention start date used for the exposure rules.
    options : dict
        The options the cohort was built with (for reports).
    """

    frame: pd.DataFrame
    exclusions: pd.DataFrame
    design: Design = field(repr=False)
    start_dates: Mapping[Hashable, pd.Timestamp | None] = field(repr=False)
    options: Mapping[str, Any] = field(repr=False)

    @property
    def n_children(self) -> int:
        """Number of children in the analysis frame."""
        return len(self.frame)

    def counts(self) -> pd.DataFrame:
        """Children, events and treated children by cluster and period.

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster, period, children, events, treated, contaminated``.
        """
        f = self.frame
        g = f.groupby(["cluster", "period"], sort=False, observed=True)
        out = g.agg(
            children=("child", "size"),
            events=("outcome", "sum"),
            treated=("treated", "sum"),
            contaminated=("contaminated", "sum"),
        ).reset_index()
        order = {c: i for i, c in enumerate(self.design.clusters)}
        porder = {p: i for i, p in enumerate(self.design.periods)}
        out = out.iloc[np.lexsort((out["period"].map(porder), out["cluster"].map(order)))]
        table: pd.DataFrame = out.reset_index(drop=True)
        return table

    def trial_data(self, *, covariates: Any = None) -> Any:
        """Return the cohort as binomial individual-level :class:`~steppedwedge.data.TrialData`.

        Parameters
        ----------
        covariates : sequence of str, optional
            Further columns to check for missing values.

        Returns
        -------
        TrialData
            Outcome ``outcome``, cluster ``cluster``, period ``period``, treatment ``treated``.
        """
        from .data import TrialData

        return TrialData.from_frame(
            self.frame,
            outcome="outcome",
            cluster="cluster",
            period="period",
            treatment="treated",
            family="binomial",
            covariates=covariates,
            kind="individual",
        )

    def summary(self) -> Summary:
        """Text/HTML summary: the options, the exclusion flow and counts by cluster x period.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        o = self.options
        n_in = int(self.exclusions["rows"].iloc[0]) if len(self.exclusions) else 0
        header = (
            ("Input rows", str(n_in)),
            ("Children in cohort", str(self.n_children)),
            ("Events (outcome = 1)", str(int(self.frame["outcome"].sum()))),
            ("Treated children", str(int(self.frame["treated"].sum()))),
            ("Window", f"{o['window'][0].date()} to {o['window'][1].date()}"),
            ("Exposure rule", str(o["exposure_rule_text"])),
            ("Follow-up", str(o["follow_up_text"])),
            ("Contamination window", f"{o['contamination_days']} days before the start date"),
        )
        return Summary(
            title="Referral cohort",
            header=header,
            tables=(
                ("Exclusions and de-duplication", self.exclusions),
                ("Children by cluster and period", self.counts()),
            ),
        )

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def __repr__(self) -> str:
        ex = self.exclusions
        removed = int(ex.loc[ex["action"].isin(["excluded", "de-duplicated"]), "rows"].sum())
        return (
            f"CohortFrame(children={self.n_children}, events={int(self.frame['outcome'].sum())}, "
            f"rows_removed={removed})"
        )


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _period_bounds(design: Design) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    periods = design.periods
    if isinstance(periods, pd.PeriodIndex):
        return (
            pd.DatetimeIndex(periods.start_time.normalize()),
            pd.DatetimeIndex(periods.end_time.normalize()),
        )
    firsts, lasts = [], []
    for p in periods:
        parts = str(p).split("/")
        try:
            if len(parts) != 2:
                raise OptionError
            firsts.append(pd.Timestamp(parts[0]))
            lasts.append(pd.Timestamp(parts[1]))
        except (ValueError, TypeError):
            raise DataError(
                "`design` must have dated periods (a PeriodIndex, or the 'first/last' labels of "
                f"Design.from_start_dates(..., periods='starts')); got the period label {p!r}."
            ) from None
    return pd.DatetimeIndex(firsts), pd.DatetimeIndex(lasts)


def _follow_up(value: Any) -> tuple[pd.DateOffset | pd.Timedelta, str]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        days = check_positive_int("follow_up", value)
        return pd.Timedelta(days=days), f"{days} days"
    if isinstance(value, pd.Timedelta):
        if value <= pd.Timedelta(0):
            raise OptionError(f"`follow_up` must be positive; got {value}.")
        return value, str(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([DWMYdwmy])\s*", value)
        if m and int(m.group(1)) > 0:
            n, unit = int(m.group(1)), m.group(2).upper()
            if unit == "D":
                return pd.Timedelta(days=n), f"{n} days"
            if unit == "W":
                return pd.Timedelta(weeks=n), f"{n} weeks"
            if unit == "M":
                return pd.DateOffset(months=n), f"{n} months"
            return pd.DateOffset(years=n), f"{n} years"
    raise OptionError(
        "`follow_up` must be a positive number of days or a string such as '18M', '2Y', '26W' or "
        f"'540D'; got {value!r}."
    )


def _dates(frame: pd.DataFrame, col: str, arg: str) -> pd.Series:
    s = frame[col]
    if pd.api.types.is_datetime64_any_dtype(s):
        out = pd.Series(s.to_numpy(), index=s.index)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' "could not infer format" notice
            out = pd.to_datetime(s, errors="coerce")
        bad = s.notna() & out.isna()
        if bad.any():
            i = bad.to_numpy().nonzero()[0][0]
            raise DataError(
                f"`{arg}` column {col!r} holds values that are not dates "
                f"(e.g. {s.iloc[i]!r} in row "
                f"{s.index[i]!r})."
            )
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    dates: pd.Series = out.dt.normalize().astype("datetime64[ns]")
    return dates


def _completed_years(ref: pd.Series, dob: pd.Series) -> pd.Series:
    years = ref.dt.year - dob.dt.year
    before_birthday = (ref.dt.month < dob.dt.month) | (
        (ref.dt.month == dob.dt.month) & (ref.dt.day < dob.dt.day)
    )
    completed: pd.Series = years - before_birthday.astype("float64")
    return completed


# --------------------------------------------------------------------------------------
# public function
# --------------------------------------------------------------------------------------
def cohort_from_events(  # noqa: C901 - one linear pipeline with counted steps
    events: pd.DataFrame,
    *,
    design: Design,
    child: str,
    council: str,
    referral: str,
    outcome_date: str,
    birth_date: str | None = None,
    start_dates: Any = None,
    follow_up: int | str | pd.Timedelta = "18M",
    window: Any = None,
    exposure_rule: ExposureRule = "referral",
    min_weeks: float = 4,
    proportion: float = 0.5,
    contamination_days: int = 45,
    data_end: Any = None,
    age_limit: float | None = 18,
    age_range: tuple[float | None, float | None] | None = None,
    on_conflict: Literal["raise", "first"] = "raise",
    missing_birth_date: Literal["exclude", "keep"] = "exclude",
    outcome_before_referral: Literal["exclude", "ignore"] = "exclude",
) -> CohortFrame:
    """Build a referral cohort (one row per child) from child-level event records.

    Parameters
    ----------
    events : pandas.DataFrame
        One row per referral (never modified).  A child may have several rows.
    design : Design
        A design with dated periods: :meth:`Design.from_start_dates` with ``periods="starts"``
        (period labels ``"first/last"``) or a calendar :class:`pandas.PeriodIndex`.  Its
        clusters are the councils.
    child, council, referral, outcome_date : str
        Columns: child id, council (a cluster label of ``design``), referral date, and the
        date the outcome event happened (e.g. the start of a period in care; missing if none).
    birth_date : str, optional
        Column of dates of birth (after the referral for unborn children).  Needed for
        ``age_limit`` censoring and ``age_range``.
    start_dates : mapping, optional
        Council -> intervention start date.  Default: the first day of each council's first
        treated period in ``design`` (exact for ``periods="starts"`` designs).
    follow_up : int, str or pandas.Timedelta, default "18M"
        Follow-up after the referral: days (int) or ``"18M"`` (calendar months), ``"2Y"``,
        ``"26W"``, ``"540D"``.
    window : pair of dates, optional
        ``(first_day, last_day)`` of recruitment, inclusive; default the span of the
        design's periods.  Must lie inside that span.
    exposure_rule : {"referral", "proportion", "min-weeks"}
        How a child is classed as treated (see Notes).
    min_weeks : float, default 4
        Weeks under the new model needed with ``exposure_rule="min-weeks"``.
    proportion : float, default 0.5
        Share of the time in study under the new model needed with
        ``exposure_rule="proportion"``.
    contamination_days : int, default 45
        A control child referred within this many days before the council's start date is
        flagged ``contaminated`` (0 switches the flag off).
    data_end : date, optional
        Last day with complete outcome data: follow-up is censored there, and referrals after
        it are excluded.  Default: complete follow-up for everybody.
    age_limit : float or None, default 18
        Follow-up is censored at this birthday (needs ``birth_date``); None for no limit.
    age_range : (min, max), optional
        Keep children whose completed age in years at referral lies in ``[min, max]``
        (either bound may be None; unborn children have negative ages).  Needs ``birth_date``.
    on_conflict : {"raise", "first"}
        A child referred in two councils within the window: raise :class:`DataError` naming
        the child (default), or keep the council of the child's first referral and count the
        other council's referrals as excluded.
    missing_birth_date : {"exclude", "keep"}
        Children without a date of birth (when ``birth_date`` is given): excluded and
        counted (default), or kept with a missing age and no age censoring (counted too).
    outcome_before_referral : {"exclude", "ignore"}
        A child whose outcome date lies before the first referral in the window: excluded
        and counted (default), or kept with those earlier outcome dates ignored (counted).

    Returns
    -------
    CohortFrame
        ``.frame`` (one row per child), ``.exclusions`` (the counted flow), ``summary()``.

    Raises
    ------
    DataError
        Missing columns, values that are not dates, a council that is not in the design, a
        child in two councils (with ``on_conflict="raise"``), or a design without dated
        periods.
    ValueError
        Invalid options.

    Notes
    -----
    Steps, in order (each counted in ``exclusions``): rows missing the child id, council or
    referral date; referrals outside ``window``; referrals after ``data_end``; children in
    two councils (``on_conflict="first"``); later referrals of the same child
    (de-duplication: the first referral in the window is kept); missing date of birth;
    age at referral outside ``age_range``; aged ``age_limit`` or over at referral; an
    outcome date before the referral.

    Follow-up runs from the referral date ``r`` to ``end = min(r + follow_up, the
    age_limit birthday, data_end + 1 day)`` (half-open).  The event date is the earliest of
    the child's outcome dates (over all its rows) on or after ``r``; ``outcome`` is 1 if it
    falls before ``end``.  ``time_at_risk_days`` is ``event − r`` for events and
    ``end − r`` otherwise; ``censored`` is True for children without the event whose
    follow-up was cut short (``censored_by`` is ``"age"`` or ``"data_end"``).

    Exposure with council start date ``S``: the time in study is ``[r, stop)`` with
    ``stop`` the event date or ``end``; ``days_treated`` is the part of it on or after
    ``S`` and ``exposure_fraction`` its share (1 or 0 when the time in study is empty).
    ``"referral"``: treated if ``r >= S`` (as the FS and NWD primary analyses).
    ``"proportion"``: treated if ``r >= S`` or ``exposure_fraction >= proportion``.
    ``"min-weeks"``: treated if ``r >= S`` or ``days_treated >= 7 * min_weeks``.  (The
    trials' protocols used time in the referral episode; their code, like this function,
    used time in study.)  ``contaminated`` is True for children classed as control who were
    referred in ``[S - contamination_days, S)``.

    Output columns: ``child, cluster, period`` (a label of ``design.periods``),
    ``referral_date, start_date, treated`` (0/1), ``exposure_fraction, days_treated,
    contaminated, outcome`` (0/1), ``outcome_date`` (the event date, NaT without the event),
    ``follow_up_end, time_at_risk_days, censored, censored_by, age_at_referral`` (years,
    days / 365.25), ``age_years`` (completed years), ``n_referrals`` (in the window), then
    the other columns of the first referral row.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.cohort import cohort_from_events
    >>> d = Design.from_start_dates({"A": "2021-01-01", "B": "2021-07-01"}, "starts",
    ...                             window=("2020-07-01", "2021-12-31"))
    >>> ev = pd.DataFrame({
    ...     "id": [1, 1, 2, 3, 4],
    ...     "la": ["A", "A", "A", "B", "B"],
    ...     "ref": ["2020-08-01", "2021-02-01", "2021-03-01", "2021-06-01", "2022-02-01"],
    ...     "cla": [None, None, "2021-05-01", None, None],
    ... })
    >>> co = cohort_from_events(ev, design=d, child="id", council="la", referral="ref",
    ...                         outcome_date="cla", follow_up="18M")
    >>> print(co.frame[["child", "cluster", "treated", "contaminated", "outcome"]]
    ...       .to_string(index=False))
     child cluster  treated  contaminated  outcome
         1       A        0         False        0
         2       A        1         False        1
         3       B        0          True        0
    >>> ex = co.exclusions
    >>> cols = ["reason", "action", "rows", "children"]
    >>> print(ex.loc[ex["rows"] > 0, cols].to_string(index=False))
                         reason        action  rows  children
               input event rows         input     5         0
    referral outside the window      excluded     1         1
    later referral of the child de-duplicated     1         0
    """
    # ---------------------------------------------------------------- options
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"`events` must be a pandas DataFrame; got {type(events).__name__}.")
    if not isinstance(design, Design):
        raise TypeError(f"`design` must be a steppedwedge Design; got {type(design).__name__}.")
    rule = check_option("exposure_rule", exposure_rule, ("referral", "proportion", "min-weeks"))
    check_option("on_conflict", on_conflict, ("raise", "first"))
    check_option("missing_birth_date", missing_birth_date, ("exclude", "keep"))
    check_option("outcome_before_referral", outcome_before_referral, ("exclude", "ignore"))
    min_weeks = check_nonnegative("min_weeks", min_weeks)
    proportion = check_unit_interval("proportion", proportion)
    contamination_days = check_positive_int("contamination_days", contamination_days, minimum=0)
    fu_offset, fu_text = _follow_up(follow_up)
    if age_limit is not None:
        age_limit = check_nonnegative("age_limit", age_limit)
    roles = {"child": child, "council": council, "referral": referral, "outcome_date": outcome_date}
    if birth_date is not None:
        roles["birth_date"] = birth_date
    for arg, col in roles.items():
        if not isinstance(col, str) or col not in events.columns:
            raise DataError(
                f"`{arg}` must name a column of `events`; got {col!r} "
                f"(columns: {list(events.columns)})."
            )
    if age_range is not None:
        if birth_date is None:
            raise DataError("`age_range` needs `birth_date` (a column of dates of birth).")
        try:
            lo_age, hi_age = age_range
        except (TypeError, ValueError):
            raise OptionError(
                f"`age_range` must be a pair (min, max); got {age_range!r}."
            ) from None
    first, last = _period_bounds(design)
    span0, span1 = first[0], last[-1]
    if window is None:
        w0, w1 = span0, span1
    else:
        try:
            w0, w1 = _dv.parse_window(window)
        except DesignError as err:
            raise OptionError(str(err)) from None
        if w0 < span0 or w1 > span1:
            raise OptionError(
                f"`window` ({w0.date()} to {w1.date()}) must lie inside the design's periods "
                f"({span0.date()} to {span1.date()})."
            )
    end_data: pd.Timestamp | None = None
    if data_end is not None:
        try:
            end_data = _dv._to_timestamp(data_end, "`data_end`")
        except DesignError as err:
            raise OptionError(str(err)) from None
    # start dates per cluster
    starts: dict[Hashable, pd.Timestamp | None] = {}
    if start_dates is None:
        sp = design.start_period
        for c, s in zip(design.clusters, sp, strict=True):
            starts[c] = first[int(s)] if s >= 0 else None
    else:
        try:
            labs, ds = _dv.parse_start_dates(start_dates)
        except DesignError as err:
            raise OptionError(str(err)) from None
        given = dict(zip(labs, ds, strict=True))
        missing = [c for c in design.clusters if c not in given]
        if missing:
            raise DesignError(
                f"`start_dates` has no date for council(s) {_list(missing)} of the design."
            )
        starts = {c: given[c] for c in design.clusters}

    # ---------------------------------------------------------------- rows
    df = events.copy(deep=False)
    n_input = len(df)
    flow: list[tuple[str, str, int, int]] = [("input event rows", "input", n_input, 0)]
    ref = _dates(df, referral, "referral")
    out_d = _dates(df, outcome_date, "outcome_date")
    dob = _dates(df, birth_date, "birth_date") if birth_date is not None else None

    keep = np.ones(n_input, dtype=bool)
    ids = df[child]
    id_ok = ids.notna().to_numpy()

    def step(reason: str, mask: np.ndarray, action: str = "excluded") -> None:
        nonlocal keep
        mask = mask & keep
        before = set(ids[keep & id_ok].tolist())
        keep = keep & ~mask
        after = set(ids[keep & id_ok].tolist())
        flow.append((reason, action, int(mask.sum()), len(before - after)))

    step("missing child id", ~id_ok)
    step("missing council", df[council].isna().to_numpy())
    step("missing referral date", ref.isna().to_numpy())
    # councils known to the design
    cl_values = df.loc[keep, council]
    unknown = sorted({v for v in cl_values.unique().tolist() if v not in starts}, key=str)
    if unknown:
        raise DataError(
            f"`council` column {council!r} holds council(s) not in the design: {_list(unknown)} "
            f"(design clusters: {_list(design.clusters)})."
        )

    refv = ref.to_numpy()
    step(
        "referral outside the window", ~((refv >= np.datetime64(w0)) & (refv <= np.datetime64(w1)))
    )
    if end_data is not None:
        step("referral after data_end", refv > np.datetime64(end_data))
    # a child in two councils
    sub = pd.DataFrame({"id": ids[keep], "cl": df.loc[keep, council], "ref": ref[keep]})
    n_cl = sub.groupby("id", sort=False)["cl"].nunique()
    multi = n_cl.index[n_cl > 1].tolist()
    if multi:
        if on_conflict == "raise":
            raise DataError(
                f"child id(s) {_list(multi)} in column {child!r} have referrals in more than one "
                "council within the window. Fix the linkage, or pass `on_conflict='first'` to keep "
                "the council of "
                "each child's first referral."
            )
        firsts = sub.sort_values(["ref"], kind="stable").groupby("id", sort=False)["cl"].first()
        own = ids.map(firsts)
        step(
            "referral in a second council (on_conflict='first')",
            (ids.isin(multi) & (df[council] != own)).to_numpy(),
        )
    # de-duplicate: first referral per child (stable on input order for ties)
    order = np.lexsort((np.arange(n_input), refv.astype("datetime64[ns]").astype(np.int64)))
    order = order[keep[order]]
    first_rows = pd.Series(order, index=ids.to_numpy()[order])
    first_rows = first_rows[~first_rows.index.duplicated(keep="first")]
    is_first = np.zeros(n_input, dtype=bool)
    is_first[first_rows.to_numpy()] = True
    n_refs = ids[keep].value_counts()
    step("later referral of the child", keep & ~is_first, "de-duplicated")
    # child-level outcome dates over all rows of the child (even outside the window)
    cohort_idx = np.flatnonzero(keep)
    c_ids = ids.to_numpy()[cohort_idx]
    c_ref = pd.Series(refv[cohort_idx], index=c_ids)
    od = pd.DataFrame({"id": ids.to_numpy(), "o": out_d.to_numpy()}).dropna()
    od = od[od["id"].isin(set(c_ids.tolist()))]
    od["r"] = od["id"].map(c_ref)
    before_ref = od[od["o"] < od["r"]]
    on_after = od[od["o"] >= od["r"]].groupby("id")["o"].min()
    first_event = dict(
        zip(on_after.index.tolist(), on_after.to_numpy(dtype="datetime64[ns]"), strict=True)
    )
    c_event = np.array(
        [first_event.get(k, np.datetime64("NaT")) for k in c_ids.tolist()], dtype="datetime64[ns]"
    )
    has_before = np.isin(c_ids, before_ref["id"].unique())

    mask_full = np.zeros(n_input, dtype=bool)
    if birth_date is not None and dob is not None:
        c_dob = dob.to_numpy()[cohort_idx]
        miss_dob = np.isnat(c_dob)
        if missing_birth_date == "exclude":
            mask_full[:] = False
            mask_full[cohort_idx[miss_dob]] = True
            step("missing date of birth", mask_full)
        else:
            flow.append(
                (
                    "missing date of birth (no age censoring)",
                    "kept (flagged)",
                    int(miss_dob.sum()),
                    0,
                )
            )
        yrs = _completed_years(pd.Series(refv[cohort_idx]), pd.Series(c_dob)).to_numpy()
        if age_range is not None:
            out_range = np.zeros(len(cohort_idx), dtype=bool)
            if lo_age is not None:
                out_range |= yrs < float(lo_age)
            if hi_age is not None:
                out_range |= yrs > float(hi_age)
            out_range &= ~np.isnan(yrs)
            mask_full[:] = False
            mask_full[cohort_idx[out_range]] = True
            if lo_age is not None and hi_age is not None:
                text = f"age at referral outside {lo_age:g}-{hi_age:g} years"
            elif lo_age is not None:
                text = f"age at referral under {lo_age:g} years"
            else:
                text = f"age at referral over {hi_age:g} years"
            step(text, mask_full)
        if age_limit is not None:
            over = ~np.isnan(yrs) & (yrs >= age_limit)
            mask_full[:] = False
            mask_full[cohort_idx[over]] = True
            step(f"aged {age_limit:g} or over at referral", mask_full)
    mask_full[:] = False
    if outcome_before_referral == "exclude":
        mask_full[cohort_idx[has_before]] = True
        step("outcome date before the referral", mask_full)
    else:
        flow.append(
            (
                "outcome date before the referral (earlier dates ignored)",
                "kept (flagged)",
                int((has_before & keep[cohort_idx]).sum()),
                0,
            )
        )

    # ---------------------------------------------------------------- analysis rows
    sel = keep[cohort_idx]
    idx = cohort_idx[sel]
    n = len(idx)
    kid = ids.to_numpy()[idx]
    r = pd.DatetimeIndex(refv[idx])
    cl = df[council].to_numpy()[idx]
    ev = pd.DatetimeIndex(c_event[sel])
    fu_end = r + fu_offset
    end = fu_end
    censor_by = np.full(n, "", dtype=object)
    age_at = np.full(n, np.nan)
    age_years = np.full(n, np.nan)
    if dob is not None:
        b = pd.DatetimeIndex(dob.to_numpy()[idx])
        age_at = np.asarray((r - b).days, dtype=float) / 365.25
        age_years = _completed_years(pd.Series(r), pd.Series(b)).to_numpy(dtype=float)
        if age_limit is not None:
            whole = float(age_limit).is_integer()
            if whole:
                # calendar birthday (29 February -> 28 February in common years), NaT kept
                bday = pd.DatetimeIndex(b + pd.DateOffset(years=int(age_limit))).as_unit("ns")
            else:
                bday = b + pd.to_timedelta(np.round(age_limit * 365.25), unit="D")
            cut = ~bday.isna() & (bday < end)
            end = pd.DatetimeIndex(np.where(cut, bday, end))
            censor_by[np.asarray(cut)] = "age"
    if end_data is not None:
        de = end_data + pd.Timedelta(days=1)
        cut = np.asarray(end > de)
        end = pd.DatetimeIndex(np.where(cut, de, end))
        censor_by[cut] = "data_end"
    has_ev = np.asarray(~ev.isna() & (ev < end))
    outcome = has_ev.astype(np.int64)
    stop = pd.DatetimeIndex(np.where(has_ev, ev, end))
    tar = np.asarray((stop - r).days, dtype=float)
    censored = ~has_ev & (censor_by != "")
    censor_by[has_ev] = ""
    S = pd.DatetimeIndex([starts[c] if starts[c] is not None else pd.NaT for c in cl])
    s_eff = pd.DatetimeIndex(np.where(S.isna(), pd.Timestamp.max.normalize(), S))
    from_t = pd.DatetimeIndex(np.maximum(r.to_numpy(), s_eff.to_numpy()))
    days_treated = np.clip(np.asarray((stop - from_t).days, dtype=float), 0, None)
    after_start = np.asarray(r >= s_eff)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(
            tar > 0, days_treated / np.where(tar > 0, tar, 1.0), after_start.astype(float)
        )
    if rule == "referral":
        treated = after_start
        rule_text = "treated if referred on or after the council's start date"
    elif rule == "proportion":
        treated = after_start | (frac >= proportion)
        rule_text = (
            f"treated if at least {proportion:g} of the time in study was on or after "
            "the start date"
        )
    else:
        treated = after_start | (days_treated >= 7.0 * min_weeks)
        rule_text = (
            f"treated if at least {min_weeks:g} weeks of the time in study were on or after the "
            "start date"
        )
    contaminated = np.zeros(n, dtype=bool)
    if contamination_days > 0:
        lo = s_eff - pd.Timedelta(days=contamination_days)
        contaminated = ~treated & np.asarray(r >= lo) & ~after_start
    # period of entry
    pos = first.searchsorted(r, side="right") - 1
    periods = np.asarray(design.periods)[pos]
    frame = pd.DataFrame(
        {
            "child": kid,
            "cluster": cl,
            "period": periods,
            "referral_date": r,
            "start_date": S,
            "treated": treated.astype(np.int64),
            "exposure_fraction": frac,
            "days_treated": days_treated,
            "contaminated": contaminated,
            "outcome": outcome,
            "outcome_date": pd.DatetimeIndex(np.where(has_ev, ev, np.datetime64("NaT"))),
            "follow_up_end": end,
            "time_at_risk_days": tar,
            "censored": censored,
            "censored_by": censor_by,
            "age_at_referral": age_at,
            "age_years": age_years,
            "n_referrals": pd.Series(kid).map(n_refs).to_numpy(dtype=np.int64),
        }
    )
    used = set(roles.values())
    for col in events.columns:
        if col in used:
            continue
        name = col if col not in frame.columns else f"{col}_input"
        frame[name] = events[col].to_numpy()[idx]
    order_rows = np.lexsort(
        (
            np.arange(n),
            r.to_numpy().astype(np.int64),
            pd.Series(cl).map({c: i for i, c in enumerate(design.clusters)}).to_numpy(),
        )
    )
    frame = frame.iloc[order_rows].reset_index(drop=True)
    exclusions = pd.DataFrame(
        [(i, reason, action, rows, ch) for i, (reason, action, rows, ch) in enumerate(flow)],
        columns=["step", "reason", "action", "rows", "children"],
    )
    options = {
        "window": (w0, w1),
        "exposure_rule": rule,
        "exposure_rule_text": rule_text,
        "follow_up": follow_up,
        "follow_up_text": fu_text,
        "min_weeks": min_weeks,
        "proportion": proportion,
        "contamination_days": contamination_days,
        "data_end": end_data,
        "age_limit": age_limit,
        "age_range": age_range,
        "on_conflict": on_conflict,
    }
    return CohortFrame(
        frame=frame, exclusions=exclusions, design=design, start_dates=starts, options=options
    )
