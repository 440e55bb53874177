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
        One row per child: ``child, cluster, period`` (a label of ``design.periods``),
        ``referral_date, start_date, treated`` (0/1), ``exposure_fraction, days_treated,
        contaminated, outcome`` (0/1), ``outcome_date`` (the event date, NaT without the
        event), ``follow_up_end, time_at_risk_days, censored, censored_by,
        age_at_referral`` (years, days / 365.25), ``age_years`` (completed years),
        ``n_referrals`` (in the window), then the other columns of the child's first
        referral row.  The Notes of :func:`cohort_from_events` define them.
    exclusions : pandas.DataFrame
        The flow from input rows to the cohort, one line per step, in the order applied:
        ``step, reason, action, rows, children``.  ``action`` is ``"excluded"``,
        ``"de-duplicated"`` (later referrals removed, the child kept) or ``"kept (flagged)"``
        (counted but not removed); ``rows`` counts the event rows (or, for flagged lines,
        children) affected, ``children`` the children who leave the cohort at that step.
        The steps: rows missing the child id, council or referral date; referrals outside
        the window; referrals after ``data_end``; children in two councils
        (``on_conflict="first"``); later referrals of the same child (de-duplication: the
        first referral in the window is kept); missing date of birth; age at referral
        outside ``age_range``; aged ``age_limit`` or over at referral; an outcome date
        before the referral.
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
def cohort_from_events(
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
        Days after the referral, or ``"18M"`` (calendar months), ``"2Y"``, ``"26W"``, ``"540D"``.
    window : pair of dates, optional
        ``(first_day, last_day)`` of recruitment, inclusive, within the design's span (default).
    exposure_rule : {"referral", "proportion", "min-weeks"}
        How a child is classed as treated (see Notes).
    min_weeks : float, default 4
        Weeks under the new model needed with ``exposure_rule="min-weeks"``.
    proportion : float, default 0.5
        Share of the time in study under the new model needed with ``"proportion"``.
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
        A child referred in two councils within the window: raise :class:`DataError` (default),
        or keep the council of its first referral (the other council's rows excluded).
    missing_birth_date : {"exclude", "keep"}
        Children without a date of birth (when ``birth_date`` is given): excluded and
        counted (default), or kept with a missing age and no age censoring (counted too).
    outcome_before_referral : {"exclude", "ignore"}
        A child whose outcome date lies before the first referral in the window: excluded
        and counted (default), or kept with those earlier outcome dates ignored (counted).

    Returns
    -------
    CohortFrame
        ``.frame`` (one row per child, columns listed there), ``.exclusions`` (the counted
        flow, its steps listed there), ``summary()``.

    Raises
    ------
    DataError
        Missing columns, values that are not dates, a council not in the design, a child in
        two councils (``on_conflict="raise"``), or a design without dated periods.
    OptionError
        Invalid options.
    DesignError
        ``start_dates`` without a date for some council of the design.

    Notes
    -----
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

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.cohort import cohort_from_events
    >>> d = Design.from_start_dates({"A": "2021-01-01", "B": "2021-07-01"}, "starts",
    ...                             window=("2020-07-01", "2021-12-31"))
    >>> ev = pd.DataFrame({
    ...     "id": [1, 1, 2, 3, 4], "la": ["A", "A", "A", "B", "B"],
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
    opts = _check_options(
        events, design, child=child, council=council, referral=referral,
        outcome_date=outcome_date, birth_date=birth_date, start_dates=start_dates,
        follow_up=follow_up, window=window, exposure_rule=exposure_rule, min_weeks=min_weeks,
        proportion=proportion, contamination_days=contamination_days, data_end=data_end,
        age_limit=age_limit, age_range=age_range, on_conflict=on_conflict,
        missing_birth_date=missing_birth_date, outcome_before_referral=outcome_before_referral,
    )  # fmt: skip
    chosen = _select_children(events, opts)
    frame = _analysis_frame(events, chosen, opts)
    return CohortFrame(
        frame=frame, exclusions=chosen.flow.table(), design=design, start_dates=opts.starts,
        options=opts.report(),
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    """The checked options of :func:`cohort_from_events`, defaults resolved."""

    roles: dict[str, str]  # argument -> column (birth_date only when given)
    design: Design
    period_starts: pd.DatetimeIndex  # first day of each design period
    starts: dict[Hashable, pd.Timestamp | None]  # council -> start date
    window: tuple[pd.Timestamp, pd.Timestamp]
    data_end: pd.Timestamp | None
    follow_up: Any  # as given
    fu_offset: pd.DateOffset | pd.Timedelta
    fu_text: str
    rule: str
    rule_text: str
    min_weeks: float
    proportion: float
    contamination_days: int
    age_limit: float | None
    age_range: tuple[float | None, float | None] | None
    on_conflict: str
    missing_birth_date: str
    outcome_before_referral: str

    def report(self) -> dict[str, Any]:
        """Return the options the cohort was built with (:attr:`CohortFrame.options`)."""
        return {
            "window": self.window,
            "exposure_rule": self.rule,
            "exposure_rule_text": self.rule_text,
            "follow_up": self.follow_up,
            "follow_up_text": self.fu_text,
            "min_weeks": self.min_weeks,
            "proportion": self.proportion,
            "contamination_days": self.contamination_days,
            "data_end": self.data_end,
            "age_limit": self.age_limit,
            "age_range": self.age_range,
            "on_conflict": self.on_conflict,
        }


def _check_options(events: Any, design: Any, **kw: Any) -> _Options:
    """Validate the arguments of :func:`cohort_from_events`, in the documented order."""
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"`events` must be a pandas DataFrame; got {type(events).__name__}.")
    if not isinstance(design, Design):
        raise TypeError(f"`design` must be a steppedwedge Design; got {type(design).__name__}.")
    rule = check_option(
        "exposure_rule", kw["exposure_rule"], ("referral", "proportion", "min-weeks")
    )
    check_option("on_conflict", kw["on_conflict"], ("raise", "first"))
    check_option("missing_birth_date", kw["missing_birth_date"], ("exclude", "keep"))
    check_option("outcome_before_referral", kw["outcome_before_referral"], ("exclude", "ignore"))
    min_weeks = check_nonnegative("min_weeks", kw["min_weeks"])
    proportion = check_unit_interval("proportion", kw["proportion"])
    contamination_days = check_positive_int(
        "contamination_days", kw["contamination_days"], minimum=0
    )
    fu_offset, fu_text = _follow_up(kw["follow_up"])
    age_limit = kw["age_limit"]
    if age_limit is not None:
        age_limit = check_nonnegative("age_limit", age_limit)
    roles = _check_columns(events, kw)
    age_range = _check_age_range(kw["age_range"], kw["birth_date"])
    first, last = _period_bounds(design)
    window = _window(kw["window"], first[0], last[-1])
    data_end = _data_end(kw["data_end"])
    return _Options(
        roles=roles, design=design, period_starts=first,
        starts=_start_dates(design, kw["start_dates"], first), window=window, data_end=data_end,
        follow_up=kw["follow_up"], fu_offset=fu_offset, fu_text=fu_text, rule=rule,
        rule_text=_rule_text(rule, proportion, min_weeks), min_weeks=min_weeks,
        proportion=proportion, contamination_days=contamination_days, age_limit=age_limit,
        age_range=age_range, on_conflict=kw["on_conflict"],
        missing_birth_date=kw["missing_birth_date"],
        outcome_before_referral=kw["outcome_before_referral"],
    )  # fmt: skip


def _check_columns(events: pd.DataFrame, kw: Mapping[str, Any]) -> dict[str, str]:
    """Return the role columns (birth_date when given), each checked to be in ``events``."""
    roles = {a: kw[a] for a in ("child", "council", "referral", "outcome_date")}
    if kw["birth_date"] is not None:
        roles["birth_date"] = kw["birth_date"]
    for arg, col in roles.items():
        if not isinstance(col, str) or col not in events.columns:
            raise DataError(
                f"`{arg}` must name a column of `events`; got {col!r} "
                f"(columns: {list(events.columns)})."
            )
    return roles


def _check_age_range(
    age_range: Any, birth_date: str | None
) -> tuple[float | None, float | None] | None:
    if age_range is None:
        return None
    if birth_date is None:
        raise DataError("`age_range` needs `birth_date` (a column of dates of birth).")
    try:
        lo_age, hi_age = age_range
    except (TypeError, ValueError):
        raise OptionError(f"`age_range` must be a pair (min, max); got {age_range!r}.") from None
    checked: tuple[float | None, float | None] = age_range
    return checked


def _window(
    window: Any, span0: pd.Timestamp, span1: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the recruitment window: the design's span by default, else inside it."""
    if window is None:
        return span0, span1
    try:
        w0, w1 = _dv.parse_window(window)
    except DesignError as err:
        raise OptionError(str(err)) from None
    if w0 < span0 or w1 > span1:
        raise OptionError(
            f"`window` ({w0.date()} to {w1.date()}) must lie inside the design's periods "
            f"({span0.date()} to {span1.date()})."
        )
    return w0, w1


def _data_end(data_end: Any) -> pd.Timestamp | None:
    if data_end is None:
        return None
    try:
        end: pd.Timestamp | None = _dv._to_timestamp(data_end, "`data_end`")
    except DesignError as err:
        raise OptionError(str(err)) from None
    return end


def _start_dates(
    design: Design, start_dates: Any, first: pd.DatetimeIndex
) -> dict[Hashable, pd.Timestamp | None]:
    """Council -> start date: the first day of its first treated period, or as given."""
    if start_dates is None:
        sp = design.start_period
        return {
            c: first[int(s)] if s >= 0 else None for c, s in zip(design.clusters, sp, strict=True)
        }
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
    return {c: given[c] for c in design.clusters}


def _rule_text(rule: str, proportion: float, min_weeks: float) -> str:
    if rule == "referral":
        return "treated if referred on or after the council's start date"
    if rule == "proportion":
        return (
            f"treated if at least {proportion:g} of the time in study was on or after "
            "the start date"
        )
    return (
        f"treated if at least {min_weeks:g} weeks of the time in study were on or after the "
        "start date"
    )


# --------------------------------------------------------------------------------------
# the counted flow from event rows to children
# --------------------------------------------------------------------------------------
class _Flow:
    """The rows still in the cohort and the counted account of every step."""

    def __init__(self, ids: pd.Series) -> None:
        self.ids = ids
        self.id_ok = ids.notna().to_numpy()
        self.keep = np.ones(len(ids), dtype=bool)
        self.lines: list[tuple[str, str, int, int]] = [("input event rows", "input", len(ids), 0)]

    def step(self, reason: str, mask: np.ndarray, action: str = "excluded") -> None:
        """Remove the kept rows in ``mask``; count them and the children who leave."""
        mask = mask & self.keep
        before = set(self.ids[self.keep & self.id_ok].tolist())
        self.keep = self.keep & ~mask
        after = set(self.ids[self.keep & self.id_ok].tolist())
        self.lines.append((reason, action, int(mask.sum()), len(before - after)))

    def step_rows(self, reason: str, rows: np.ndarray) -> None:
        """:meth:`step` with the event rows given by position."""
        mask = np.zeros(len(self.keep), dtype=bool)
        mask[rows] = True
        self.step(reason, mask)

    def flag(self, reason: str, count: int) -> None:
        """Count ``count`` children who are kept but flagged."""
        self.lines.append((reason, "kept (flagged)", count, 0))

    def table(self) -> pd.DataFrame:
        """Return the flow as :attr:`CohortFrame.exclusions`."""
        table: pd.DataFrame = pd.DataFrame(
            [(i, r, a, rows, ch) for i, (r, a, rows, ch) in enumerate(self.lines)],
            columns=["step", "reason", "action", "rows", "children"],
        )
        return table


@dataclass(frozen=True)
class _Children:
    """The cohort's event rows (one per child) with what the analysis frame needs."""

    flow: _Flow
    rows: np.ndarray  # positions of the first referral rows in ``events``
    referral: np.ndarray  # referral dates of all event rows
    event: np.ndarray  # each child's first outcome date on or after the referral (or NaT)
    dob: pd.Series | None  # dates of birth of all event rows
    n_refs: pd.Series  # referrals in the window, by child id


def _select_children(events: pd.DataFrame, opts: _Options) -> _Children:
    """Apply the counted steps of the Notes of :func:`cohort_from_events`, in order."""
    roles = opts.roles
    df = events.copy(deep=False)
    ref = _dates(df, roles["referral"], "referral")
    out_d = _dates(df, roles["outcome_date"], "outcome_date")
    dob = _dates(df, roles["birth_date"], "birth_date") if "birth_date" in roles else None
    flow = _Flow(df[roles["child"]])
    refv = ref.to_numpy()
    n_refs = _first_referrals(df, refv, ref, flow, opts)
    cohort_idx = np.flatnonzero(flow.keep)
    c_event, has_before = _child_events(flow.ids, refv, out_d, cohort_idx)
    if dob is not None:
        _age_steps(flow, dob, refv, cohort_idx, opts)
    if opts.outcome_before_referral == "exclude":
        flow.step_rows("outcome date before the referral", cohort_idx[has_before])
    else:
        flow.flag(
            "outcome date before the referral (earlier dates ignored)",
            int((has_before & flow.keep[cohort_idx]).sum()),
        )
    sel = flow.keep[cohort_idx]
    return _Children(flow, cohort_idx[sel], refv, c_event[sel], dob, n_refs)


def _first_referrals(
    df: pd.DataFrame, refv: np.ndarray, ref: pd.Series, flow: _Flow, opts: _Options
) -> pd.Series:
    """Missing ids and dates, the window, data_end, two councils, then one row per child.

    Returns the number of referrals in the window of each child.
    """
    council, ids = opts.roles["council"], flow.ids
    flow.step("missing child id", ~flow.id_ok)
    flow.step("missing council", df[council].isna().to_numpy())
    flow.step("missing referral date", ref.isna().to_numpy())
    cl_values = df.loc[flow.keep, council]
    unknown = sorted({v for v in cl_values.unique().tolist() if v not in opts.starts}, key=str)
    if unknown:
        raise DataError(
            f"`council` column {council!r} holds council(s) not in the design: {_list(unknown)} "
            f"(design clusters: {_list(opts.design.clusters)})."
        )
    w0, w1 = opts.window
    in_window = (refv >= np.datetime64(w0)) & (refv <= np.datetime64(w1))
    flow.step("referral outside the window", ~in_window)
    if opts.data_end is not None:
        flow.step("referral after data_end", refv > np.datetime64(opts.data_end))
    _second_councils(df, ref, flow, opts)
    # de-duplicate: first referral per child (stable on input order for ties)
    n_input = len(df)
    order = np.lexsort((np.arange(n_input), refv.astype("datetime64[ns]").astype(np.int64)))
    order = order[flow.keep[order]]
    first_rows = pd.Series(order, index=ids.to_numpy()[order])
    first_rows = first_rows[~first_rows.index.duplicated(keep="first")]
    is_first = np.zeros(n_input, dtype=bool)
    is_first[first_rows.to_numpy()] = True
    n_refs: pd.Series = ids[flow.keep].value_counts()
    flow.step("later referral of the child", flow.keep & ~is_first, "de-duplicated")
    return n_refs


def _second_councils(df: pd.DataFrame, ref: pd.Series, flow: _Flow, opts: _Options) -> None:
    """Refuse a child referred in two councils, or keep only its first council's rows."""
    council, ids, keep = opts.roles["council"], flow.ids, flow.keep
    sub = pd.DataFrame({"id": ids[keep], "cl": df.loc[keep, council], "ref": ref[keep]})
    n_cl = sub.groupby("id", sort=False)["cl"].nunique()
    multi = n_cl.index[n_cl > 1].tolist()
    if not multi:
        return
    if opts.on_conflict == "raise":
        raise DataError(
            f"child id(s) {_list(multi)} in column {opts.roles['child']!r} have referrals in "
            "more than one council within the window. Fix the linkage, or pass "
            "`on_conflict='first'` to keep the council of each child's first referral."
        )
    firsts = sub.sort_values(["ref"], kind="stable").groupby("id", sort=False)["cl"].first()
    own = ids.map(firsts)
    flow.step(
        "referral in a second council (on_conflict='first')",
        (ids.isin(multi) & (df[council] != own)).to_numpy(),
    )


def _child_events(
    ids: pd.Series, refv: np.ndarray, out_d: pd.Series, cohort_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return each child's first outcome date on or after the referral, and any before it.

    The outcome dates of all the child's rows count, even rows outside the window.
    """
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
    return c_event, np.isin(c_ids, before_ref["id"].unique())


def _age_steps(
    flow: _Flow, dob: pd.Series, refv: np.ndarray, cohort_idx: np.ndarray, opts: _Options
) -> None:
    """Missing date of birth, age at referral outside ``age_range``, at ``age_limit`` or over."""
    c_dob = dob.to_numpy()[cohort_idx]
    miss_dob = np.isnat(c_dob)
    if opts.missing_birth_date == "exclude":
        flow.step_rows("missing date of birth", cohort_idx[miss_dob])
    else:
        flow.flag("missing date of birth (no age censoring)", int(miss_dob.sum()))
    yrs = _completed_years(pd.Series(refv[cohort_idx]), pd.Series(c_dob)).to_numpy()
    if opts.age_range is not None:
        lo_age, hi_age = opts.age_range
        out_range = np.zeros(len(cohort_idx), dtype=bool)
        if lo_age is not None:
            out_range |= yrs < float(lo_age)
        if hi_age is not None:
            out_range |= yrs > float(hi_age)
        out_range &= ~np.isnan(yrs)
        if lo_age is not None and hi_age is not None:
            text = f"age at referral outside {lo_age:g}-{hi_age:g} years"
        elif lo_age is not None:
            text = f"age at referral under {lo_age:g} years"
        else:
            text = f"age at referral over {hi_age:g} years"
        flow.step_rows(text, cohort_idx[out_range])
    if opts.age_limit is not None:
        over = ~np.isnan(yrs) & (yrs >= opts.age_limit)
        flow.step_rows(f"aged {opts.age_limit:g} or over at referral", cohort_idx[over])


# --------------------------------------------------------------------------------------
# analysis rows
# --------------------------------------------------------------------------------------
def _analysis_frame(events: pd.DataFrame, chosen: _Children, opts: _Options) -> pd.DataFrame:
    """One row per child: follow-up, outcome, exposure, ages; then the other input columns."""
    idx, design = chosen.rows, opts.design
    n = len(idx)
    kid = events[opts.roles["child"]].to_numpy()[idx]
    r = pd.DatetimeIndex(chosen.referral[idx])
    cl = events[opts.roles["council"]].to_numpy()[idx]
    ev = pd.DatetimeIndex(chosen.event)
    b = None if chosen.dob is None else pd.DatetimeIndex(chosen.dob.to_numpy()[idx])
    fu = _follow_up_ends(r, ev, b, opts)
    expo = _exposure(r, cl, fu["stop"], fu["time_at_risk_days"], opts)
    pos = opts.period_starts.searchsorted(r, side="right") - 1  # period of entry
    frame = pd.DataFrame(
        {
            "child": kid,
            "cluster": cl,
            "period": np.asarray(design.periods)[pos],
            "referral_date": r,
            **expo,
            "outcome": fu["outcome"],
            "outcome_date": fu["outcome_date"],
            "follow_up_end": fu["follow_up_end"],
            "time_at_risk_days": fu["time_at_risk_days"],
            "censored": fu["censored"],
            "censored_by": fu["censored_by"],
            "age_at_referral": fu["age_at_referral"],
            "age_years": fu["age_years"],
            "n_referrals": pd.Series(kid).map(chosen.n_refs).to_numpy(dtype=np.int64),
        }
    )
    used = set(opts.roles.values())
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
    out: pd.DataFrame = frame.iloc[order_rows].reset_index(drop=True)
    return out


def _follow_up_ends(
    r: pd.DatetimeIndex, ev: pd.DatetimeIndex, b: pd.DatetimeIndex | None, opts: _Options
) -> dict[str, Any]:
    """Follow-up end (censored at the age limit and data_end), outcome, time at risk, ages."""
    n = len(r)
    end = r + opts.fu_offset
    censor_by = np.full(n, "", dtype=object)
    age_at = np.full(n, np.nan)
    age_years = np.full(n, np.nan)
    if b is not None:
        age_at = np.asarray((r - b).days, dtype=float) / 365.25
        age_years = _completed_years(pd.Series(r), pd.Series(b)).to_numpy(dtype=float)
        if opts.age_limit is not None:
            age_limit = opts.age_limit
            if float(age_limit).is_integer():
                # calendar birthday (29 February -> 28 February in common years), NaT kept
                bday = pd.DatetimeIndex(b + pd.DateOffset(years=int(age_limit))).as_unit("ns")
            else:
                bday = b + pd.to_timedelta(np.round(age_limit * 365.25), unit="D")
            cut = ~bday.isna() & (bday < end)
            end = pd.DatetimeIndex(np.where(cut, bday, end))
            censor_by[np.asarray(cut)] = "age"
    if opts.data_end is not None:
        de = opts.data_end + pd.Timedelta(days=1)
        cut = np.asarray(end > de)
        end = pd.DatetimeIndex(np.where(cut, de, end))
        censor_by[cut] = "data_end"
    has_ev = np.asarray(~np.asarray(ev.isna()) & (ev < end))
    stop = pd.DatetimeIndex(np.where(has_ev, ev, end))
    censored = ~has_ev & (censor_by != "")
    censor_by[has_ev] = ""
    return {
        "outcome": has_ev.astype(np.int64),
        "outcome_date": pd.DatetimeIndex(np.where(has_ev, ev, np.datetime64("NaT"))),
        "follow_up_end": end,
        "stop": stop,
        "time_at_risk_days": np.asarray((stop - r).days, dtype=float),
        "censored": censored,
        "censored_by": censor_by,
        "age_at_referral": age_at,
        "age_years": age_years,
    }


def _exposure(
    r: pd.DatetimeIndex, cl: np.ndarray, stop: pd.DatetimeIndex, tar: np.ndarray, opts: _Options
) -> dict[str, Any]:
    """Return start dates, treated (by the rule), exposure fraction, days treated, contamination."""
    starts = opts.starts
    S = pd.DatetimeIndex([starts[c] if starts[c] is not None else pd.NaT for c in cl])
    s_eff = pd.DatetimeIndex(np.where(S.isna(), pd.Timestamp.max.normalize(), S))
    from_t = pd.DatetimeIndex(np.maximum(r.to_numpy(), s_eff.to_numpy()))
    days_treated = np.clip(np.asarray((stop - from_t).days, dtype=float), 0, None)
    after_start = np.asarray(r >= s_eff)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(
            tar > 0, days_treated / np.where(tar > 0, tar, 1.0), after_start.astype(float)
        )
    if opts.rule == "referral":
        treated = after_start
    elif opts.rule == "proportion":
        treated = after_start | (frac >= opts.proportion)
    else:
        treated = after_start | (days_treated >= 7.0 * opts.min_weeks)
    contaminated = np.zeros(len(r), dtype=bool)
    if opts.contamination_days > 0:
        lo = s_eff - pd.Timedelta(days=opts.contamination_days)
        contaminated = ~treated & np.asarray(r >= lo) & ~after_start
    return {
        "start_date": S,
        "treated": treated.astype(np.int64),
        "exposure_fraction": frac,
        "days_treated": days_treated,
        "contaminated": contaminated,
    }
