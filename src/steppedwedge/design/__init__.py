"""Who is treated when: the :class:`Design` of a stepped-wedge (or comparison) trial.

A design is a cluster x period matrix with 0 for control, 1 for treated, a fraction in
(0, 1) for partial (transition) exposure and NaN for a cell that is not observed.  It holds
no sample sizes and no outcomes; power, simulation and analysis take it as input.  The input
checks and calendar helpers behind its constructors are in ``_checks``.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from .._validation import check_dayfirst, check_option, check_positive_int
from ..exceptions import DesignError
from ..results import Summary
from . import _checks as _dv
from ._summary import TextSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Design"]

#: How a constructor fills transition cells: ``"exclude"`` (NaN, not observed),
#: ``"partial"`` (a ramp or a day fraction, see each constructor) or a fixed fraction.
TransitionRule = Literal["exclude", "partial"] | float
StartDateRule = Literal["first-treated", "partial", "exclude"]

#: Average days per month used by :attr:`Design.period_lengths_months`.
DAYS_PER_MONTH = 365.25 / 12

#: Cell colours shared by :meth:`Design._repr_html_` and the plot (colour-blind safe).
CELL_COLOURS = {
    "control": "#f3e3c3",
    "partial": "#8fbcd4",
    "treated": "#1f5f8b",
    "not observed": "#ffffff",
}


def _sequence_sizes(clusters_per_sequence: Any) -> list[int] | None:
    """Return the clusters of each sequence when a list is given (None for one number)."""
    if isinstance(clusters_per_sequence, (int, np.integer, float)):
        return None
    try:
        sizes = [_int_arg("clusters_per_sequence", c, 1) for c in list(clusters_per_sequence)]
    except TypeError:
        raise DesignError(
            "`clusters_per_sequence` must be a positive integer or a list of them; got "
            f"{clusters_per_sequence!r}."
        ) from None
    if not sizes:
        raise DesignError("`clusters_per_sequence` must not be empty.")
    return sizes


def _n_sequences_from(sizes: list[int] | None, n_periods: Any, b: int, t: int, e: int) -> int:
    """Return the number of sequences implied by the list of sizes or by ``n_periods``."""
    if sizes is not None:
        return len(sizes)
    if n_periods is None:
        raise DesignError("give `n_sequences` (or `n_periods`); got neither.")
    tt = _int_arg("n_periods", n_periods, 1)
    if (tt - b - e) < t or (tt - b - e) % t:
        raise DesignError(
            f"`n_periods`={tt} does not fit a stepped wedge with baseline_periods={b}, "
            f"periods_per_step={t} and extra_treated_periods={e}: T - b - e must be a "
            "positive multiple of `periods_per_step`."
        )
    return (tt - b - e) // t


@dataclass(frozen=True)
class _Grid:
    """The calendar periods of :meth:`Design.from_start_dates`."""

    index: pd.Index  # period labels
    first: pd.DatetimeIndex  # first day of each period
    last: pd.DatetimeIndex  # last day of each period
    lengths: np.ndarray | None  # days per period, for a grid cut at the start dates
    description: str  # for messages: "the window ... to ..." / "the periods ... to ..."


def _period_grid(
    periods: Any, window: Any, dates: Sequence[Any], dayfirst: Any, date_format: Any
) -> _Grid:
    """Return the period grid: cut at the start dates (``"starts"``) or a calendar grid."""
    if isinstance(periods, str) and periods.strip().lower() == "starts":
        w0, w1 = _dv.parse_window(window, dayfirst, date_format)
        inner = sorted({d for d in dates if d is not None and w0 < d <= w1})
        bounds = [w0, *inner, w1 + pd.Timedelta(days=1)]
        first = pd.DatetimeIndex(bounds[:-1])
        last = pd.DatetimeIndex(bounds[1:]) - pd.Timedelta(days=1)
        labels = [f"{a.date()}/{z.date()}" for a, z in zip(first, last, strict=True)]
        return _Grid(
            index=pd.Index(labels, name="period"),
            first=first,
            last=last,
            lengths=np.asarray((last - first).days + 1, dtype=np.float64),
            description=f"the window {w0.date()} to {w1.date()}",
        )
    period_index = _dv.parse_period_grid(periods)
    return _Grid(
        index=period_index,
        first=period_index.start_time.normalize(),
        last=period_index.end_time.normalize(),
        lengths=None,
        description=f"the periods {period_index[0]} to {period_index[-1]}",
    )


def _start_matrix(
    clusters: Sequence[Hashable], dates: Sequence[Any], grid: _Grid, rule: str
) -> tuple[np.ndarray, list[str], list[str]]:
    """Return the treatment matrix of the start dates on ``grid``, and the clusters outside.

    A cluster starting inside a period is treated from the next one; the start period is
    treated (``"first-treated"``), partly treated (``"partial"``: the share of its days
    on or after the start) or unobserved (``"exclude"``).
    """
    first, last = grid.first, grid.last
    n_days = np.asarray((last - first).days + 1, dtype=np.float64)
    matrix = np.zeros((len(clusters), len(first)))
    before: list[str] = []
    after: list[str] = []
    for i, (c, d) in enumerate(zip(clusters, dates, strict=True)):
        if d is None:
            continue
        if d < first[0]:
            before.append(f"{_dv._fmt(c)} ({d.date()})")
            matrix[i, :] = 1.0
            continue
        if d > last[-1]:
            after.append(f"{_dv._fmt(c)} ({d.date()})")
            continue
        j = int(first.searchsorted(d, side="right")) - 1
        matrix[i, j + 1 :] = 1.0
        if d == first[j] or rule == "first-treated":
            matrix[i, j] = 1.0
        elif rule == "partial":
            matrix[i, j] = ((last[j] - d).days + 1) / n_days[j]
        else:
            matrix[i, j] = np.nan
    return matrix, before, after


def _int_arg(name: str, value: Any, minimum: int) -> int:
    try:
        return check_positive_int(name, value, minimum=minimum)
    except ValueError as err:
        raise DesignError(str(err)) from None


def _transition_values(name: str, transition: Any, k: int) -> np.ndarray:
    """Values for ``k`` consecutive transition cells under rule ``transition``."""
    if isinstance(transition, str):
        try:
            check_option(name, transition, ("exclude", "partial"))
        except ValueError as err:
            raise DesignError(f"{err} A number in (0, 1) is also accepted.") from None
        if transition == "exclude":
            return np.full(k, np.nan)
        return np.arange(1, k + 1, dtype=np.float64) / (k + 1)
    try:
        value = float(transition)
    except (TypeError, ValueError):
        raise DesignError(
            f"`{name}` must be 'exclude', 'partial' or a number in (0, 1); got {transition!r}."
        ) from None
    if not 0.0 < value < 1.0:
        raise DesignError(f"`{name}` as a number must lie in (0, 1); got {transition!r}.")
    return np.full(k, value)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Design:
    r"""Which cluster is treated in which period of a cluster randomised trial.

    Build designs with the named constructors (:meth:`stepped_wedge`, :meth:`from_matrix`,
    :meth:`from_start_dates`, :meth:`from_frame`, :meth:`parallel`, :meth:`crossover`);
    calling ``Design(matrix=...)`` directly validates in the same way as
    :meth:`from_matrix`.

    Parameters
    ----------
    matrix : array_like, shape (I, T)
        0 control, 1 treated, a fraction in (0, 1) for partial (transition) exposure, NaN
        for a cell that is not observed.  Stored as a read-only float64 copy.
    clusters : sequence of hashable, optional
        ``I`` unique cluster labels; default ``0 .. I-1``.
    periods : pandas.Index, optional
        ``T`` unique period labels; default ``RangeIndex(1, T + 1)``.  A
        :class:`pandas.PeriodIndex` must be increasing without gaps.
    period_lengths : array_like, shape (T,), optional
        Length of each period in days, for periods bounded by start dates; else None.
    allow_reversal : bool, default False
        Allow a cluster's treatment to decrease over its observed periods (crossover).
    check_identifiable : bool, default True
        Reject designs in which the treatment effect is not identifiable (see Notes).

    Raises
    ------
    DesignError
        If any rule in the Notes is broken.

    See Also
    --------
    steppedwedge.plotting.plot_design : The design diagram.

    Notes
    -----
    Validation rules (each raises :class:`~steppedwedge.DesignError`):

    * the matrix is 2-D with finite values in [0, 1] or NaN;
    * cluster and period labels are unique; a PeriodIndex is increasing without gaps;
    * every cluster has at least one observed (non-NaN) cell (a period may be entirely
      unobserved, e.g. a washout);
    * no cluster goes back towards control over its observed cells (its observed values are
      non-decreasing), unless ``allow_reversal=True``;
    * unless ``check_identifiable=False``: some observed cell is treated (> 0) and some is
      not fully treated (< 1), and treatment is not collinear with period, i.e. there is at
      least one period in which observed clusters differ in their treatment.

    Derived quantities: :attr:`start_period` is the first period with treatment > 0 (cells
    that are not observed do not count), :attr:`exposure_time` counts periods from it
    (``E_ij = j - start_i + 1`` from the start period on, 0 before, for observed and
    unobserved cells alike), and :attr:`sequences` groups clusters with identical rows
    (NaN pattern included), numbered by start period with never-treated clusters last.

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> d = Design.stepped_wedge(3, 2)
    >>> d
    Design(n_clusters=6, n_periods=4, n_sequences=3)
    >>> d.sequence_matrix
    array([[0., 1., 1., 1.],
           [0., 0., 1., 1.],
           [0., 0., 0., 1.]])
    >>> d.sequences.tolist()
    [0, 0, 1, 1, 2, 2]
    """

    matrix: np.ndarray
    clusters: tuple[Hashable, ...] = field(default=())
    periods: pd.Index = field(default=cast("pd.Index", None))
    period_lengths: np.ndarray | None = None
    allow_reversal: bool = False
    check_identifiable: bool = True

    # ---------------------------------------------------------------- normalisation
    def __post_init__(self) -> None:
        matrix = _dv.as_matrix(self.matrix)
        n_clusters, n_periods = matrix.shape
        clusters = self.clusters
        if clusters is None or (isinstance(clusters, tuple) and len(clusters) == 0):
            clusters = tuple(range(n_clusters))
        if isinstance(clusters, (str, bytes)):
            raise DesignError(
                f"`clusters` must be a sequence of labels; got the string {clusters!r}."
            )
        clusters = _dv.check_labels(list(clusters), "clusters")
        if len(clusters) != n_clusters:
            raise DesignError(
                f"`clusters` must have one label per matrix row ({n_clusters}); "
                f"got {len(clusters)}."
            )
        periods = self.periods
        if periods is None:
            periods = pd.RangeIndex(1, n_periods + 1, name="period")
        else:
            if isinstance(periods, str):
                raise DesignError(
                    f"`periods` must be a sequence of labels; got the string {periods!r}."
                )
            periods = pd.Index(periods)
            _dv.check_labels(list(periods), "periods")
            _dv.check_period_index(periods)
        if len(periods) != n_periods:
            raise DesignError(
                f"`periods` must have one label per matrix column ({n_periods}); "
                f"got {len(periods)}."
            )
        lengths = self.period_lengths
        if lengths is not None:
            lengths = np.array(lengths, dtype=np.float64, copy=True)
            if lengths.shape != (n_periods,):
                raise DesignError(
                    f"`period_lengths` must have one value per period ({n_periods}); got shape "
                    f"{lengths.shape}."
                )
            if not (np.isfinite(lengths) & (lengths > 0)).all():
                raise DesignError(
                    f"`period_lengths` must be positive numbers; got {lengths.tolist()}."
                )
            _readonly(lengths)
        _dv.check_cells(
            matrix,
            clusters,
            periods,
            allow_reversal=bool(self.allow_reversal),
            check_identifiable=bool(self.check_identifiable),
        )
        object.__setattr__(self, "matrix", _readonly(matrix))
        object.__setattr__(self, "clusters", clusters)
        object.__setattr__(self, "periods", periods)
        object.__setattr__(self, "period_lengths", lengths)
        object.__setattr__(self, "allow_reversal", bool(self.allow_reversal))
        object.__setattr__(self, "check_identifiable", bool(self.check_identifiable))

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_matrix(
        cls,
        matrix: Any,
        *,
        clusters: Sequence[Hashable] | None = None,
        periods: Sequence[Hashable] | pd.Index | None = None,
        period_lengths: Any = None,
        allow_reversal: bool = False,
        check_identifiable: bool = True,
    ) -> Design:
        """Build a design from a cluster x period matrix.

        Parameters
        ----------
        matrix : array_like or pandas.DataFrame, shape (I, T)
            0 control, 1 treated, a fraction in (0, 1) for partial exposure, NaN for not
            observed.  A DataFrame supplies cluster labels (index) and period labels
            (columns) unless ``clusters``/``periods`` are given.
        clusters : sequence of hashable, optional
            Unique cluster labels; default ``0 .. I-1``.
        periods : sequence of hashable or pandas.Index, optional
            Unique period labels; default ``1 .. T``.
        period_lengths : array_like, optional
            Period lengths in days (shown in the summary and the plot).
        allow_reversal : bool, default False
            Allow clusters to return to control (crossover designs).
        check_identifiable : bool, default True
            Reject designs whose treatment effect is not identifiable.

        Returns
        -------
        Design

        Raises
        ------
        DesignError
            See the validation rules in :class:`Design`.

        Examples
        --------
        >>> import numpy as np
        >>> from steppedwedge.design import Design
        >>> d = Design.from_matrix([[0, 1, 1], [0, np.nan, 1], [0, 0, 0.5]])
        >>> d.start_period.tolist(), d.n_sequences
        ([1, 2, 2], 3)
        """
        if isinstance(matrix, pd.DataFrame):
            if clusters is None:
                clusters = list(matrix.index)
            if periods is None:
                periods = matrix.columns
            matrix = matrix.to_numpy(dtype=np.float64, na_value=np.nan)
        return cls(
            matrix=matrix,
            clusters=() if clusters is None else tuple(clusters),
            periods=cast("pd.Index", None if periods is None else pd.Index(periods)),
            period_lengths=period_lengths,
            allow_reversal=allow_reversal,
            check_identifiable=check_identifiable,
        )

    @classmethod
    def stepped_wedge(
        cls,
        n_sequences: int | None = None,
        clusters_per_sequence: int | Sequence[int] = 1,
        *,
        baseline_periods: int = 1,
        periods_per_step: int = 1,
        transition_periods: int = 0,
        extra_treated_periods: int = 0,
        n_periods: int | None = None,
        transition: TransitionRule = "exclude",
    ) -> Design:
        r"""Build a standard (staircase) stepped-wedge design.

        Parameters
        ----------
        n_sequences : int, optional
            Number of sequences (steps) ``S``.  May be omitted when ``n_periods`` is given or
            ``clusters_per_sequence`` is a list.
        clusters_per_sequence : int or sequence of int, default 1
            Clusters in each sequence; a list gives unequal sequences (its length is ``S``).
        baseline_periods : int, default 1
            Periods ``b`` before the first sequence switches (all clusters control).
        periods_per_step : int, default 1
            Periods ``t`` between consecutive switches.
        transition_periods : int, default 0
            Number ``k`` of periods, starting with the switch period, that are transition
            cells (see ``transition``).
        extra_treated_periods : int, default 0
            Periods ``e`` added after the last switch (+ ``t``), in which all clusters are
            treated.
        n_periods : int, optional
            Total number of periods ``T``; an alternative to ``n_sequences``.  When both are
            given they must agree with the formula below.
        transition : {"exclude", "partial"} or float, default "exclude"
            Transition cells are not observed (NaN) with ``"exclude"``; with ``"partial"``
            the ``m``-th of ``k`` transition cells has exposure ``m / (k + 1)``; a number in
            (0, 1) sets every transition cell to that exposure.

        Returns
        -------
        Design
            Clusters are labelled ``0 .. I-1`` in sequence order; periods ``1 .. T``.

        Raises
        ------
        DesignError
            For non-integer or inconsistent arguments, or a design that is not
            identifiable (e.g. a single sequence with no baseline).

        Notes
        -----
        The number of periods is

        .. math:: T = b + S\,t + e,

        so the default standard design with ``S`` sequences has ``T = S + 1`` periods.
        Sequence ``s = 1..S`` is control in periods ``1 .. b + (s-1)t`` and switches in period
        ``p_s = b + (s-1)t + 1``; periods ``p_s .. p_s + k - 1`` are transition cells and
        periods from ``p_s + k`` on are treated.  Transition periods do not lengthen the
        trial: with ``k >= t`` and ``e = 0`` the last sequence has no fully treated period,
        so add ``extra_treated_periods`` if you need one.

        References
        ----------
        Hussey MA, Hughes JP (2007). Design and analysis of stepped wedge cluster randomized
        trials. *Contemporary Clinical Trials* 28(2):182-191.

        Hemming K, Haines TP, Chilton PJ, Girling AJ, Lilford RJ (2015). The stepped wedge
        cluster randomised trial: rationale, design, analysis, and reporting. *BMJ*
        350:h391.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> d = Design.stepped_wedge(4, [2, 3, 3, 2], periods_per_step=2, transition_periods=1)
        >>> d.n_clusters, d.n_periods, d.n_sequences
        (10, 9, 4)
        >>> print(d.sequence_matrix[0])
        [ 0. nan  1.  1.  1.  1.  1.  1.  1.]
        """
        b = _int_arg("baseline_periods", baseline_periods, 0)
        t = _int_arg("periods_per_step", periods_per_step, 1)
        k = _int_arg("transition_periods", transition_periods, 0)
        e = _int_arg("extra_treated_periods", extra_treated_periods, 0)
        sizes = _sequence_sizes(clusters_per_sequence)
        if n_sequences is None:
            s = _n_sequences_from(sizes, n_periods, b, t, e)
        else:
            s = _int_arg("n_sequences", n_sequences, 1)
        if sizes is None:
            sizes = [_int_arg("clusters_per_sequence", clusters_per_sequence, 1)] * s
        elif len(sizes) != s:
            raise DesignError(
                f"`clusters_per_sequence` has {len(sizes)} entries but `n_sequences` is {s}."
            )
        tt_formula = b + s * t + e
        if n_periods is not None and _int_arg("n_periods", n_periods, 1) != tt_formula:
            raise DesignError(
                f"`n_periods`={n_periods} disagrees with baseline_periods + n_sequences * "
                f"periods_per_step + extra_treated_periods = {b} + {s}*{t} + {e} = {tt_formula}."
            )
        trans = _transition_values("transition", transition, k)
        rows = np.zeros((s, tt_formula))
        for q in range(s):
            p = b + q * t  # 0-based switch period
            rows[q, p:] = 1.0
            stop = min(p + k, tt_formula)
            rows[q, p:stop] = trans[: stop - p]
        matrix = np.repeat(rows, sizes, axis=0)
        return cls(matrix=matrix)

    @classmethod
    def parallel(
        cls,
        n_clusters_treated: int,
        n_clusters_control: int,
        n_periods: int = 1,
        *,
        baseline_periods: int = 0,
    ) -> Design:
        """Build a parallel-group cluster trial (optionally with baseline periods).

        Parameters
        ----------
        n_clusters_treated, n_clusters_control : int
            Clusters in the intervention and control arms.
        n_periods : int, default 1
            Total number of periods.
        baseline_periods : int, default 0
            Initial periods in which every cluster is control (a "parallel with baseline"
            design); must be less than ``n_periods``.

        Returns
        -------
        Design
            Treated clusters first (labels ``0 ..``), then control clusters.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> Design.parallel(2, 2, 3, baseline_periods=1).matrix
        array([[0., 1., 1.],
               [0., 1., 1.],
               [0., 0., 0.],
               [0., 0., 0.]])
        """
        n1 = _int_arg("n_clusters_treated", n_clusters_treated, 1)
        n0 = _int_arg("n_clusters_control", n_clusters_control, 1)
        tt = _int_arg("n_periods", n_periods, 1)
        b = _int_arg("baseline_periods", baseline_periods, 0)
        if b >= tt:
            raise DesignError(f"`baseline_periods` must be less than `n_periods` ({tt}); got {b}.")
        matrix = np.zeros((n1 + n0, tt))
        matrix[:n1, b:] = 1.0
        return cls(matrix=matrix)

    @classmethod
    def crossover(
        cls,
        clusters_per_sequence: int | Sequence[int] = 1,
        *,
        periods_per_arm: int = 1,
        washout_periods: int = 0,
    ) -> Design:
        """Build a two-sequence AB/BA cluster crossover design.

        Sequence 1 is treated for ``periods_per_arm`` periods and then control; sequence 2
        the reverse.  ``washout_periods`` between the arms are not observed (NaN).  Built
        with ``allow_reversal=True``.

        Parameters
        ----------
        clusters_per_sequence : int or pair of int, default 1
            Clusters in each of the two sequences.
        periods_per_arm : int, default 1
            Periods in each arm.
        washout_periods : int, default 0
            Unobserved periods between the two arms.

        Returns
        -------
        Design
            ``T = 2 * periods_per_arm + washout_periods`` periods.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> Design.crossover(1, washout_periods=1).matrix
        array([[ 1., nan,  0.],
               [ 0., nan,  1.]])
        """
        p = _int_arg("periods_per_arm", periods_per_arm, 1)
        w = _int_arg("washout_periods", washout_periods, 0)
        if isinstance(clusters_per_sequence, (int, np.integer, float)):
            n = _int_arg("clusters_per_sequence", clusters_per_sequence, 1)
            sizes = [n, n]
        else:
            sizes = [_int_arg("clusters_per_sequence", c, 1) for c in clusters_per_sequence]
            if len(sizes) != 2:
                raise DesignError(
                    f"`clusters_per_sequence` must be one integer or two; got {len(sizes)}."
                )
        ab = np.concatenate([np.ones(p), np.full(w, np.nan), np.zeros(p)])
        rows = np.vstack([ab, ab[::-1]])
        return cls(matrix=np.repeat(rows, sizes, axis=0), allow_reversal=True)

    @classmethod
    def from_start_dates(
        cls,
        start_dates: Any,
        periods: Any,
        *,
        transition: StartDateRule = "first-treated",
        transition_periods: int = 0,
        window: Any = None,
        allow_outside: bool = False,
        check_identifiable: bool = True,
        dayfirst: bool | None = None,
        date_format: str | None = None,
    ) -> Design:
        """Build a design from each cluster's calendar start date.

        Parameters
        ----------
        start_dates : mapping, pandas.Series or pandas.DataFrame
            Cluster label -> first day of the intervention (a ``str`` such as
            ``"2021-06-28"``, a ``datetime``/``date``, a ``Timestamp``); ``None``/``NaT``
            means never treated.  A Series is indexed by cluster; a DataFrame has exactly
            two columns (cluster, date).  Cluster order is kept.
        periods : pandas.PeriodIndex, str
            The period grid.  A :class:`pandas.PeriodIndex` (any frequency, e.g. monthly
            ``"M"``, quarterly ``"Q"``, yearly ``"Y"``), or a string ``"first/last"`` read by
            :class:`pandas.Period` (``"2023Q1/2027Q4"`` quarterly, ``"2023-01/2024-12"``
            monthly, ``"2020/2025"`` yearly), or ``"starts"``: periods bounded by the
            distinct start dates and the ``window`` ends (see Notes).
        transition : {"first-treated", "partial", "exclude"}, default "first-treated"
            The value of the period containing a start date: 1 (``"first-treated"``); the
            fraction of its days on or after the start date (``"partial"``; 1.0 when the
            start is its first day); NaN, not observed (``"exclude"``, unless the start is
            its first day, then 1).
        transition_periods : int, default 0
            After applying ``transition``, mark this many further periods, starting with the
            first period with treatment > 0, as not observed (see
            :meth:`with_transition_periods`).
        window : pair of dates, optional
            ``(first_day, last_day)`` of the trial, both inclusive.  Required with
            ``periods="starts"``; ignored otherwise.
        allow_outside : bool, default False
            Allow start dates before the first period: such clusters are treated from the
            first period (a warning says which).  By default this raises, because those
            clusters contribute no within-cluster contrast.
        check_identifiable : bool, default True
            See :class:`Design`.
        dayfirst : bool, optional
            How to read dates written as text in any form other than ISO 8601
            (``"2024-07-01"``): ``True`` reads ``"01/07/2024"`` as 1 July (UK), ``False`` as
            7 January (US).  Without it (or ``date_format``) such dates raise, because the
            order of day and month cannot be guessed safely.
        date_format : str, optional
            An exact :func:`datetime.datetime.strptime` format for text dates, e.g.
            ``"%d/%m/%Y"``; cannot be combined with ``dayfirst``.

        Returns
        -------
        Design
            Periods are the given PeriodIndex, or for ``"starts"`` string labels
            ``"YYYY-MM-DD/YYYY-MM-DD"`` (first and last day) with :attr:`period_lengths` in
            days.

        Raises
        ------
        DesignError
            For unparseable dates (naming the cluster and value), non-ISO text dates without
            ``dayfirst``/``date_format`` (``"01/07/2024"``: 1 July or 7 January?), start
            dates before the first period (unless ``allow_outside``), a period grid that is
            not increasing or has gaps, duplicate clusters, or an unidentifiable design.

        Warns
        -----
        SteppedWedgeWarning
            For clusters whose start date is after the last period: they are never treated
            within the grid (their row is all control).

        Notes
        -----
        Rule: the period containing the start date is the first treated period (value 1 by
        default), earlier periods are control (0) and later periods treated (1).

        With ``periods="starts"`` the period boundaries are ``window[0]``, each distinct
        start date inside the window (after ``window[0]``) and the day after ``window[1]``;
        every cluster therefore switches exactly at the start of a period, so
        ``transition`` makes no difference there.  This is how the Family Safeguarding and
        No Wrong Door trials defined their "wedges".

        A start on the first day of the grid (or of the window) is inside it: that cluster is
        treated in every period, without a warning.  Period lengths of a calendar grid are
        not stored (:attr:`period_lengths` is None); the ``"partial"`` fractions use the
        actual number of days in each period (leap years included).

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> starts = {"Walsall": "2020-09-01", "Lancashire": "2021-02-01",
        ...           "Telford": "2021-06-28", "Wandsworth": "2022-01-24",
        ...           "Swindon": "2022-05-24"}
        >>> d = Design.from_start_dates(starts, "starts",
        ...                                window=("2020-03-01", "2022-11-24"))
        >>> d.period_lengths.tolist()
        [184.0, 153.0, 147.0, 210.0, 120.0, 185.0]
        >>> d.periods[0]
        '2020-03-01/2020-08-31'
        >>> q = Design.from_start_dates({"A": "2023-05-15", "B": "2023-07-01"},
        ...                                "2023Q1/2023Q4", transition="partial")
        >>> q.matrix.round(3)
        array([[0.   , 0.516, 1.   , 1.   ],
               [0.   , 0.   , 1.   , 1.   ]])
        """
        rule = check_option("transition", transition, ("first-treated", "partial", "exclude"))
        k = _int_arg("transition_periods", transition_periods, 0)
        check_dayfirst(dayfirst, date_format)
        clusters, dates = _dv.parse_start_dates(start_dates, dayfirst, date_format)
        grid = _period_grid(periods, window, dates, dayfirst, date_format)
        matrix, before, after = _start_matrix(clusters, dates, grid, rule)
        if before and not allow_outside:
            raise DesignError(
                f"start date(s) before {grid.description}: {', '.join(before)}. These clusters "
                "would be treated throughout, giving no before/after contrast. Extend the grid, "
                "or pass `allow_outside=True` to treat them from the first period."
            )
        if before:
            _dv.warn_design(
                f"start date(s) before {grid.description}: {', '.join(before)}; these clusters "
                "are treated from the first period."
            )
        if after:
            _dv.warn_design(
                f"start date(s) after {grid.description}: {', '.join(after)}; these clusters "
                "are never treated within the grid."
            )
        period_index, lengths = grid.index, grid.lengths
        design = cls(
            matrix=matrix,
            clusters=clusters,
            periods=period_index,
            period_lengths=lengths,
            check_identifiable=check_identifiable if k == 0 else False,
        )
        if k:
            design = design.with_transition_periods(k)
            if check_identifiable:
                design = dataclasses.replace(design, check_identifiable=True)
        return design

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        cluster: str = "cluster",
        period: str = "period",
        treatment: str = "treatment",
        allow_reversal: bool = False,
        check_identifiable: bool = True,
    ) -> Design:
        """Build a design from a long table with one row per cluster-period cell.

        The inverse of :meth:`to_frame`.  Cells absent from ``frame``, with a missing
        treatment, or with ``observed == False`` (when an ``observed`` column exists) are
        not observed (NaN).  A ``period_length`` column, if present, gives
        :attr:`period_lengths`.

        Parameters
        ----------
        frame : pandas.DataFrame
            Long table of cells; it is not modified.
        cluster, period, treatment : str
            Column names.
        allow_reversal, check_identifiable : bool
            See :class:`Design`.

        Returns
        -------
        Design
            Clusters in order of first appearance; periods sorted when they are pandas
            Periods or numbers, else in order of first appearance.  Integer periods
            ``1 .. T`` give the default period index.

        Raises
        ------
        DesignError
            For missing columns, missing labels, duplicated cells or inconsistent period
            lengths, and by the validation of :class:`Design`.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> d = Design.stepped_wedge(3)
        >>> Design.from_frame(d.to_frame()) == d
        True
        """
        if not isinstance(frame, pd.DataFrame):
            raise DesignError(f"`frame` must be a pandas DataFrame; got {type(frame).__name__}.")
        missing = [c for c in (cluster, period, treatment) if c not in frame.columns]
        if missing:
            raise DesignError(
                f"`frame` lacks the column(s) {missing}; it has {list(frame.columns)}."
            )
        for col in (cluster, period):
            if frame[col].isna().any():
                raise DesignError(f"column `{col}` of `frame` has missing values.")
        if frame.duplicated([cluster, period]).any():
            row = frame.loc[frame.duplicated([cluster, period]), [cluster, period]].iloc[0]
            raise DesignError(
                f"`frame` has more than one row for cluster {_dv._fmt(row[cluster])} in period "
                f"{row[period]}."
            )
        clusters = list(pd.unique(frame[cluster]))
        pcol = frame[period]
        if isinstance(pcol.dtype, pd.PeriodDtype) or pd.api.types.is_numeric_dtype(pcol):
            period_labels = pd.Index(pd.unique(pcol)).sort_values()
        else:
            period_labels = pd.Index(pd.unique(pcol))
        try:
            values = pd.to_numeric(frame[treatment], errors="raise").astype(np.float64)
        except (TypeError, ValueError):
            raise DesignError(f"column `{treatment}` of `frame` must be numeric.") from None
        values_arr = values.to_numpy(copy=True)
        if "observed" in frame.columns:
            values_arr[~frame["observed"].astype(bool).to_numpy()] = np.nan
        row_pos = pd.Index(clusters).get_indexer(frame[cluster])
        col_pos = period_labels.get_indexer(pcol)
        matrix = np.full((len(clusters), len(period_labels)), np.nan)
        matrix[row_pos, col_pos] = values_arr
        lengths = None
        if "period_length" in frame.columns:
            per = frame.groupby(col_pos)["period_length"].agg(["min", "max"])
            if (per["min"] != per["max"]).any():
                raise DesignError("column `period_length` of `frame` varies within a period.")
            lengths = per["min"].sort_index().to_numpy(dtype=np.float64)
        periods_out: pd.Index | None = period_labels
        if pd.api.types.is_integer_dtype(period_labels.dtype) and period_labels.equals(
            pd.RangeIndex(1, len(period_labels) + 1)
        ):
            periods_out = None
        return cls(
            matrix=matrix,
            clusters=tuple(clusters),
            periods=cast("pd.Index", periods_out),  # None: __post_init__ numbers the periods
            period_lengths=lengths,
            allow_reversal=allow_reversal,
            check_identifiable=check_identifiable,
        )

    # ---------------------------------------------------------------- derived values
    @property
    def n_clusters(self) -> int:
        """Number of clusters ``I``."""
        return int(self.matrix.shape[0])

    @property
    def n_periods(self) -> int:
        """Number of periods ``T``."""
        return int(self.matrix.shape[1])

    @property
    def observed(self) -> np.ndarray:
        """Boolean (I, T) array, True where the cell is observed (not NaN)."""
        out: np.ndarray = ~np.isnan(self.matrix)
        return out

    @cached_property
    def start_period(self) -> np.ndarray:
        """0-based index of each cluster's first period with treatment > 0; -1 if never."""
        treated = np.nan_to_num(self.matrix, nan=0.0) > 0
        out = np.where(treated.any(axis=1), treated.argmax(axis=1), -1).astype(np.int64)
        return _readonly(out)

    @cached_property
    def exposure_time(self) -> np.ndarray:
        """(I, T) int: 0 before the start period, 1 in it, 2 in the next, and so on."""
        j = np.arange(self.n_periods)[None, :]
        s = self.start_period[:, None]
        out = np.where((s >= 0) & (j >= s), j - s + 1, 0).astype(np.int64)
        return _readonly(out)

    @cached_property
    def _sequence_info(self) -> tuple[np.ndarray, np.ndarray]:
        # NaN coded as -0.5 so it is distinct from every valid value; ties in start period
        # are ordered by more exposure first, then control, then not observed.
        coded = np.where(np.isnan(self.matrix), -0.5, self.matrix)
        uniq, inverse = np.unique(coded, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        treated = uniq > 0
        start = np.where(treated.any(axis=1), treated.argmax(axis=1), self.n_periods)
        keys = [(int(start[u]), tuple((-uniq[u]).tolist())) for u in range(uniq.shape[0])]
        order = sorted(range(uniq.shape[0]), key=lambda u: keys[u])
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        seq = _readonly(rank[inverse].astype(np.int64))
        first = np.array([np.flatnonzero(seq == q)[0] for q in range(len(order))])
        return seq, first

    @property
    def sequences(self) -> np.ndarray:
        """0-based sequence of each cluster (identical rows share a sequence).

        Sequences are numbered by start period (never-treated last), ties broken by the
        row values, so the numbering does not depend on the order of the clusters.
        """
        return self._sequence_info[0]

    @property
    def n_sequences(self) -> int:
        """Number of distinct sequences ``S``."""
        return int(self._sequence_info[1].size)

    @property
    def sequence_matrix(self) -> np.ndarray:
        """(S, T) treatment matrix with one row per sequence."""
        return _readonly(self.matrix[self._sequence_info[1]].copy())

    @property
    def sequence_sizes(self) -> np.ndarray:
        """(S,) number of clusters in each sequence."""
        return _readonly(np.bincount(self.sequences, minlength=self.n_sequences).astype(np.int64))

    @property
    def period_lengths_months(self) -> np.ndarray | None:
        """:attr:`period_lengths` in average months (days / 30.4375), or None."""
        if self.period_lengths is None:
            return None
        return _readonly(self.period_lengths / DAYS_PER_MONTH)

    def period_midpoints(self) -> np.ndarray:
        """Mid-point of each period in years since the start of the first period.

        The times that continuous-time decay (``VarianceComponents(decay_scale="time")``)
        measures distances on: ``t_j = (L_1 + ... + L_{j-1} + L_j / 2) / 365.25`` for period
        lengths ``L`` in days, taken from :attr:`period_lengths` (designs built by
        :meth:`from_start_dates` with ``periods="starts"``, or given lengths) or else from a
        calendar :class:`pandas.PeriodIndex` of :attr:`periods` (actual days per period).

        Returns
        -------
        ndarray, shape (T,)
            Read-only, increasing.

        Raises
        ------
        DesignError
            If the design has neither :attr:`period_lengths` nor calendar periods.

        References
        ----------
        .. [1] Grantham KL, Kasza J, Heritier S, Hemming K, Forbes AB (2019). Accounting for a
           decaying correlation structure in cluster randomized trials with continuous
           recruitment. Stat Med 38:1918-1934.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> d = Design.from_matrix([[0, 1, 1], [0, 0, 1]], period_lengths=[365.25, 730.5, 365.25])
        >>> d.period_midpoints().tolist()
        [0.5, 2.0, 3.5]
        """
        lengths = self.period_lengths
        if lengths is None and isinstance(self.periods, pd.PeriodIndex):
            first = self.periods.start_time.normalize()
            last = self.periods.end_time.normalize()
            lengths = np.asarray((last - first).days + 1, dtype=np.float64)
        if lengths is None:
            raise DesignError(
                "this design has no period lengths or dates, so period mid-points in calendar "
                "time are unknown (needed by decay_scale='time'). Build it with "
                "Design.from_start_dates(..., 'starts', window=...) or a calendar PeriodIndex, "
                "or pass `period_lengths` (days) to Design.from_matrix."
            )
        ends = np.cumsum(lengths)
        return _readonly((ends - lengths / 2.0) / (DAYS_PER_MONTH * 12))

    # ---------------------------------------------------------------- variants
    def relabel(self, clusters: Sequence[Hashable]) -> Design:
        """Return the same design with new cluster labels.

        Parameters
        ----------
        clusters : sequence of hashable
            ``I`` unique labels, in row order.

        Returns
        -------
        Design

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> Design.stepped_wedge(2).relabel(["a", "b"]).clusters
        ('a', 'b')
        """
        return dataclasses.replace(self, clusters=tuple(clusters))

    def take(self, order: Sequence[int] | np.ndarray) -> Design:
        """Return a design with rows reordered or selected by integer position.

        Parameters
        ----------
        order : sequence of int
            Row positions (0-based); may select a subset.  Must not repeat a row.

        Returns
        -------
        Design
            Rows ``order`` with their labels; the result is validated again.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> Design.stepped_wedge(3).take([2, 0, 1]).clusters
        (2, 0, 1)
        """
        idx = np.asarray(order)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or idx.size == 0:
            raise DesignError(
                f"`order` must be a non-empty 1-D sequence of integer positions; got {order!r}."
            )
        if (idx < -self.n_clusters).any() or (idx >= self.n_clusters).any():
            raise DesignError(f"`order` has positions outside 0..{self.n_clusters - 1}.")
        return dataclasses.replace(
            self,
            matrix=self.matrix[idx],
            clusters=tuple(self.clusters[i] for i in idx.tolist()),
        )

    def with_transition_periods(self, k: int, *, transition: TransitionRule = "exclude") -> Design:
        """Return a design whose first ``k`` treated periods per cluster are transition cells.

        For each cluster with a start period ``s``, the observed cells ``s .. s+k-1`` become
        not observed (``"exclude"``), or get the ramp ``m / (k + 1)`` (``"partial"``) or a
        fixed exposure (a number in (0, 1)).  Applying it twice marks more periods.

        Parameters
        ----------
        k : int
            Number of transition periods (0 returns an equal design).
        transition : {"exclude", "partial"} or float, default "exclude"
            See :meth:`stepped_wedge`.

        Returns
        -------
        Design

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> Design.stepped_wedge(3, extra_treated_periods=1).with_transition_periods(1).matrix
        array([[ 0., nan,  1.,  1.,  1.],
               [ 0.,  0., nan,  1.,  1.],
               [ 0.,  0.,  0., nan,  1.]])
        """
        k = _int_arg("k", k, 0)
        vals = _transition_values("transition", transition, k)
        matrix = self.matrix.copy()
        for i, s in enumerate(self.start_period.tolist()):
            if s < 0:
                continue
            stop = min(s + k, self.n_periods)
            seg = matrix[i, s:stop]
            matrix[i, s:stop] = np.where(np.isnan(seg), np.nan, vals[: stop - s])
        return dataclasses.replace(self, matrix=matrix)

    # ---------------------------------------------------------------- export
    def to_frame(self) -> pd.DataFrame:
        """Return the design as a long table, one row per cluster-period cell.

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster``, ``period``, ``sequence`` (0-based), ``treatment`` (NaN when
            not observed), ``exposure_time``, ``observed`` and, when the design has
            :attr:`period_lengths`, ``period_length`` (days).  Cluster-major order.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> Design.stepped_wedge(2).to_frame().head(3)
           cluster  period  sequence  treatment  exposure_time  observed
        0        0       1         0        0.0              0      True
        1        0       2         0        1.0              1      True
        2        0       3         0        1.0              2      True
        """
        n_c, n_p = self.matrix.shape
        cols: dict[str, Any] = {
            "cluster": pd.Series(np.repeat(np.array(self.clusters, dtype=object), n_p)),
            "period": pd.Series(self.periods.take(np.tile(np.arange(n_p), n_c)), name="period"),
            "sequence": np.repeat(self.sequences, n_p),
            "treatment": self.matrix.reshape(-1).copy(),
            "exposure_time": self.exposure_time.reshape(-1).copy(),
            "observed": self.observed.reshape(-1),
        }
        if self.period_lengths is not None:
            cols["period_length"] = np.tile(self.period_lengths, n_c)
        out = pd.DataFrame(
            {k: (v.to_numpy() if isinstance(v, pd.Series) else v) for k, v in cols.items()}
        )
        if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in self.clusters):
            out["cluster"] = out["cluster"].astype(np.int64)
        table: pd.DataFrame = out
        return table

    # ---------------------------------------------------------------- diagnostics
    def information_content(self, **kwargs: Any) -> Any:
        """Information content of each cluster-period cell (Kasza & Forbes 2019).

        A shortcut for :func:`steppedwedge.information_content` with this design; keyword
        arguments (``variance``, ``cluster_size``, ...) are passed on.

        Parameters
        ----------
        **kwargs
            Arguments of :func:`steppedwedge.information_content` (``variance`` and
            ``cluster_size`` required).

        Returns
        -------
        steppedwedge.CellMap
            ``values[i, j]``: the factor by which ``Var(theta_hat)`` grows when cell
            ``(i, j)`` is removed; ``plot()`` draws it as a heat map.

        Examples
        --------
        >>> import steppedwedge as sw
        >>> d = sw.Design.stepped_wedge(3)
        >>> vc = sw.VarianceComponents.from_correlations(0.05)
        >>> ic = d.information_content(variance=vc, cluster_size=20)
        >>> bool(ic.values[0, 0] > 1.0)
        True
        """
        from ..planning.diagnostics import information_content

        return information_content(self, **kwargs)

    # ---------------------------------------------------------------- presentation
    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Draw the design diagram (clusters by period, grouped by sequence).

        Delegates to :func:`steppedwedge.plotting.plot_design`; keyword arguments are
        passed on.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; a new figure is created when None.
        **kwargs
            See :func:`steppedwedge.plotting.plot_design`.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ..plotting.design import plot_design

        return plot_design(self, ax=ax, **kwargs)

    def _cell_text(self, v: float) -> str:
        if np.isnan(v):
            return "."
        if v == 0:
            return "0"
        if v == 1:
            return "1"
        return f"{v:.2f}".lstrip("0")

    def _headline(self) -> str:
        sizes = self.sequence_sizes
        size_txt = (
            f"{int(sizes[0])} cluster(s) each"
            if (sizes == sizes[0]).all()
            else "sizes " + ", ".join(str(int(x)) for x in sizes)
        )
        return (
            f"Design: {self.n_clusters} clusters, {self.n_periods} periods, "
            f"{self.n_sequences} sequences ({size_txt})"
        )

    def _cell_counts(self) -> str:
        m = self.matrix
        obs = ~np.isnan(m)
        n_ctrl = int((m == 0).sum())
        n_trt = int((m == 1).sum())
        n_part = int((obs & (m > 0) & (m < 1)).sum())
        n_miss = int((~obs).sum())
        return f"cells: {n_ctrl} control, {n_trt} treated, {n_part} partial, {n_miss} not observed"

    def _period_lines(self) -> list[str]:
        lines = []
        p = self.periods
        if not isinstance(p, pd.RangeIndex):
            if self.period_lengths is not None:
                months = self.period_lengths_months
                assert months is not None
                lines.append("periods (length in days, ~months):")
                for j, lab in enumerate(p):
                    lines.append(
                        f"  {j + 1:>2} = {lab}  ({self.period_lengths[j]:g} d, {months[j]:.1f} mo)"
                    )
            else:
                lines.append(f"periods: 1 = {p[0]} ... {len(p)} = {p[-1]}")
        return lines

    def summary(self) -> Summary:
        """Return the summary: sizes, cell counts and the sequence x period matrix.

        In the matrix ``0`` is control, ``1`` treated, ``.`` not observed and a decimal
        such as ``.50`` partial exposure.  Columns are periods ``1 .. T``.

        Returns
        -------
        steppedwedge.results.Summary
            ``print`` / ``str()`` / ``as_text()`` give the compact text below; ``as_html()``,
            ``as_markdown()`` and ``as_latex()`` render the matrix as a table.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> print(Design.stepped_wedge(3, 2, transition_periods=1,
        ...                               extra_treated_periods=1).summary())
        Design: 6 clusters, 5 periods, 3 sequences (2 cluster(s) each)
        cells: 12 control, 12 treated, 0 partial, 6 not observed
        sequence   n |  1  2  3  4  5
               1   2 |  0  .  1  1  1
               2   2 |  0  0  .  1  1
               3   2 |  0  0  0  .  1
        """
        texts = [[self._cell_text(v) for v in row] for row in self.sequence_matrix]
        width = max(2, len(str(self.n_periods)), *(len(t) for r in texts for t in r))
        head = "sequence   n |" + "".join(f" {j + 1:>{width}}" for j in range(self.n_periods))
        lines = [self._headline(), self._cell_counts(), *self._period_lines(), head]
        for q, (row, n) in enumerate(zip(texts, self.sequence_sizes, strict=True)):
            lines.append(f"{q + 1:>8} {int(n):>3} |" + "".join(f" {t:>{width}}" for t in row))
        table = pd.DataFrame(texts, columns=[str(p) for p in self.periods])
        table.insert(0, "n", [int(n) for n in self.sequence_sizes])
        table.insert(0, "sequence", np.arange(1, self.n_sequences + 1))
        header = [("cells", self._cell_counts().removeprefix("cells: "))]
        return TextSummary(
            title=self._headline(),
            header=tuple(header),
            tables=(("Sequences by period (0 control, 1 treated, . not observed)", table),),
            text="\n".join(lines),
        )

    def __str__(self) -> str:
        return self.summary().as_text()

    def __repr__(self) -> str:
        return (
            f"Design(n_clusters={self.n_clusters}, n_periods={self.n_periods}, "
            f"n_sequences={self.n_sequences})"
        )

    def _repr_html_(self) -> str:
        def cell(v: float) -> str:
            if np.isnan(v):
                kind = "not observed"
            elif v == 0:
                kind = "control"
            elif v == 1:
                kind = "treated"
            else:
                kind = "partial"
            colour = "#ffffff" if kind == "treated" else "#000000"
            return (
                f'<td style="background:{CELL_COLOURS[kind]};color:{colour};'
                f'text-align:center;border:1px solid #ccc" title="{kind}">'
                f"{html.escape(self._cell_text(v))}</td>"
            )

        heads = "".join(f"<th>{html.escape(str(p))}</th>" for p in self.periods)
        rows = []
        for q, (row, n) in enumerate(zip(self.sequence_matrix, self.sequence_sizes, strict=True)):
            rows.append(
                f"<tr><th>{q + 1}</th><td>{int(n)}</td>" + "".join(cell(v) for v in row) + "</tr>"
            )
        extra = ""
        if self.period_lengths is not None:
            months = self.period_lengths_months
            assert months is not None
            extra = (
                "<tr><th colspan=2>length (days)</th>"
                + "".join(
                    f"<td>{v:g} (~{mo:.1f} mo)</td>"
                    for v, mo in zip(self.period_lengths, months, strict=True)
                )
                + "</tr>"
            )
        return (
            f"<div><p><b>{html.escape(self._headline())}</b><br>{html.escape(self._cell_counts())}</p>"
            '<table style="border-collapse:collapse"><thead><tr><th>sequence</th><th>n</th>'
            f"{heads}</tr></thead><tbody>{''.join(rows)}{extra}</tbody></table></div>"
        )

    # ---------------------------------------------------------------- equality
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Design):
            return NotImplemented
        same_lengths = (self.period_lengths is None and other.period_lengths is None) or (
            self.period_lengths is not None
            and other.period_lengths is not None
            and np.array_equal(self.period_lengths, other.period_lengths)
        )
        return (
            self.matrix.shape == other.matrix.shape
            and np.array_equal(self.matrix, other.matrix, equal_nan=True)
            and self.clusters == other.clusters
            and self.periods.equals(other.periods)
            and same_lengths
            and self.allow_reversal == other.allow_reversal
            and self.check_identifiable == other.check_identifiable
        )

    def __hash__(self) -> int:
        return hash((self.matrix.tobytes(), self.matrix.shape, self.clusters, tuple(self.periods)))
