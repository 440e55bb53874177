"""The trial configuration read from ``trial.toml`` (or built for the bundled example).

A :class:`TrialConfig` says everything the report needs: the period grid and the waves, the
clusters and how they were randomised (or the allocation record to reproduce), when each
cluster actually started, the observed data and the role of each column, the inputs of the
power justification and every option of the primary and sensitivity analyses.  The rest of
the report only consumes it, through the methods that do the work:
:meth:`TrialConfig.allocation` (imported or randomised), :meth:`TrialConfig.analysis_frame`
(the data with the intention-to-treat or as-treated treatment),
:meth:`TrialConfig.fit_options` (keyword arguments of :func:`steppedwedge.fit` for the
primary and each sensitivity analysis) and :meth:`TrialConfig.rollout` (planned against
actual start of each cluster).

The file layout is version 1 of the schema in :mod:`steppedwedge.report.schema`
(``docs/reference/config.rst`` is rendered from it).  A minimal ``trial.toml``::

    schema_version = 1

    [trial]
    title = "Family support model: a stepped-wedge cluster randomised trial in 17 councils"

    [design]
    periods = "2022Q1/2026Q4"
    wave_starts = [2023-01-01, 2023-07-01, 2024-01-01]
    clusters_per_wave = [3, 2, 3]

    [randomisation]
    clusters = "clusters.csv"
    cluster_column = "council"
    strata = "region"
    seed = 20230101

The primary-analysis defaults (family, random structure, variance estimator) are the fields
of :class:`AnalysisSpec`; the bundled example sets its own in
:func:`steppedwedge.report.council_example`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._validation import parse_date_text
from ..exceptions import DataError, DesignError, OptionError
from ..inference._permutation_score import SCORE_RANDOM
from ..models.spec import IGNORED_OPTIONS

if TYPE_CHECKING:  # pragma: no cover
    from ..design import Design
    from ..randomise import Allocation

__all__ = ["AnalysisSpec", "DataSpec", "PowerSpec", "TrialConfig"]

#: Sensitivity analyses the report can run, in the order they are shown (all by default).
SENSITIVITY_ANALYSES = (
    "fixed-effects",
    "gee",
    "cluster-summary",
    "permutation",
    "vertical",
    "callaway-santanna",
)
#: Options of [analysis] that every sensitivity analysis shares with the primary one.
_SHARED = ("time", "knots", "effect", "exposure_window", "exposure_time", "covariates", "missing")
#: sw.fit method of each sensitivity analysis run by sw.fit.
_METHOD = {
    "fixed-effects": "fixed-effects",
    "gee": "gee",
    "cluster-summary": "cluster-summary",
    "vertical": "vertical",
    "callaway-santanna": "callaway-santanna",
}


@dataclass(frozen=True)
class DataSpec:
    """Where the observed data are and which column plays which role (``[data]``)."""

    frame: pd.DataFrame = field(repr=False)
    cluster: str
    period: str
    treatment: str | None
    outcome: str
    exposure: str | None = None
    offset: str | None = None
    trials: str | None = None
    source: str = ""

    @property
    def treatment_column(self) -> str:
        """Column of :meth:`TrialConfig.analysis_frame` holding the analysis treatment."""
        return self.treatment if self.treatment is not None else "treatment"

    def roles(self) -> dict[str, str]:
        """Column roles as keyword arguments of :func:`steppedwedge.fit`."""
        out = {
            "outcome": self.outcome,
            "cluster": self.cluster,
            "period": self.period,
            "treatment": self.treatment_column,
        }
        for key in ("exposure", "offset", "trials"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class PowerSpec:
    """Inputs of the power justification (``[power]``, and ``[planning]`` when cited).

    ``variance_source`` says where the variance components come from in a sentence the
    report prints (a cited :func:`steppedwedge.estimate_variance` result describes itself;
    hand-typed numbers say so); ``estimate`` is that result (None for typed numbers).
    """

    family: str
    effect: float
    baseline: float | None
    cluster_size: float
    exposure_column: str | None
    tau2: float
    gamma2: float
    decay: float | None
    sigma2: float = 1.0
    alpha: float = 0.05
    dispersion: float | None = None
    variance_source: str = "Variance components as given in the trial configuration."
    estimate: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class AnalysisSpec:
    """The pre-specified primary analysis and the sensitivity analyses (``[analysis]``).

    The defaults below are the primary analysis of a configuration that does not say
    otherwise.
    """

    family: str = "gaussian"
    random: str = "nested"
    sensitivity: tuple[str, ...] = SENSITIVITY_ANALYSES
    n_permutations: int = 999
    time: str = "categorical"
    knots: tuple[float, ...] | None = None
    effect: str = "immediate"
    exposure_window: tuple[int, int] | None = None
    exposure_time: int | None = None
    covariates: str | None = None
    method: str | None = None
    dof: str | float | None = None
    vcov: str | None = None
    missing: str = "raise"
    decay_scale: str = "period"
    analysis_population: str = "itt"
    #: ``{"gee": {"time": "linear"}, ...}``: options of one sensitivity analysis.
    sensitivity_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialConfig:
    """Everything the report needs to know about one trial.

    Parameters
    ----------
    title : str
        Report title.
    periods : str
        Period grid as ``"first/last"`` (e.g. ``"2022Q1/2026Q4"``).
    wave_starts : sequence of str
        Planned first day of each wave (sequence), ISO dates in order.
    clusters_per_wave : sequence of int
        Number of clusters starting in each wave.
    clusters : pandas.DataFrame
        One row per cluster with the label column and any strata/balance covariates.
    cluster_column : str
        Column of ``clusters`` holding the labels.
    seed : int
        Randomisation seed (recorded in the report).
    strata, balance, cutoff : optional
        Randomisation options passed to :func:`steppedwedge.randomise`.
    transition : str
        Rule for the period containing a start date (see
        :meth:`steppedwedge.Design.from_start_dates`).
    data : DataSpec, optional
        Observed data for the descriptive and analysis sections.
    power : PowerSpec, optional
        Inputs of the power justification.
    analysis : AnalysisSpec, optional
        Primary and sensitivity analyses of ``data``.
    source : str
        Where the configuration came from (file path or ``"example:councils"``).
    question : str, optional
        The question the trial answers, in one sentence.
    start_dates : mapping, optional
        Actual start date of clusters that did not start as allocated: label -> ISO date,
        or None for a cluster that never started.
    record : mapping, optional
        An imported allocation record (:meth:`steppedwedge.Allocation.to_dict`) that
        :meth:`allocation` reproduces and verifies instead of drawing a new allocation.
    record_source : str
        Where the record came from.

    Examples
    --------
    >>> from steppedwedge.report import council_example
    >>> cfg = council_example()
    >>> cfg.allocation().assignment["Council A"] + 1     # the wave of Council A
    2
    >>> sorted(cfg.fit_options("primary"))[:4]
    ['cluster', 'exposure', 'family', 'outcome']
    """

    title: str
    periods: str
    wave_starts: tuple[str, ...]
    clusters_per_wave: tuple[int, ...]
    clusters: pd.DataFrame = field(repr=False)
    cluster_column: str
    seed: int
    strata: str | None = None
    balance: tuple[str, ...] = ()
    cutoff: float | None = None
    transition: str = "first-treated"
    data: DataSpec | None = None
    power: PowerSpec | None = None
    analysis: AnalysisSpec | None = None
    source: str = ""
    question: str | None = None
    start_dates: Mapping[str, str | None] | None = None
    record: Mapping[str, Any] | None = field(default=None, repr=False)
    record_source: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_toml(cls, path: str | Path) -> TrialConfig:
        """Read and validate a configuration file (schema: :mod:`steppedwedge.report.schema`).

        Parameters
        ----------
        path : str or pathlib.Path
            The ``trial.toml`` file; paths inside it are relative to its folder.

        Returns
        -------
        TrialConfig

        Raises
        ------
        ConfigError
            (an :class:`~steppedwedge.OptionError`) for an unreadable file, a TOML syntax
            error, an unknown key or table, a wrong type or value, a missing file or column,
            or an allocation record that its inputs do not reproduce; the message names the
            key and its line.
        """
        from ._loader import load_toml

        return load_toml(Path(path))

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], *, base: Path = Path("."), source: str = ""
    ) -> TrialConfig:
        """Build from an already-parsed mapping with the TOML layout (validated the same way).

        Parameters
        ----------
        raw : mapping
            The parsed tables.
        base : pathlib.Path
            Folder that relative paths refer to.
        source : str
            Name of the configuration, for messages and the report.

        Returns
        -------
        TrialConfig
        """
        from ._loader import load_mapping

        return load_mapping(raw, base=base, source=source or "trial configuration")

    # ------------------------------------------------------------------ design
    @property
    def n_clusters(self) -> int:
        """Number of clusters in the trial."""
        return int(sum(self.clusters_per_wave))

    def slot_start_dates(self) -> dict[str, str]:
        """Start date of every design slot, labelled ``"wave w, slot k"``."""
        if len(self.wave_starts) != len(self.clusters_per_wave):
            raise DesignError(
                "`wave_starts` and `clusters_per_wave` must have the same length; got "
                f"{len(self.wave_starts)} and {len(self.clusters_per_wave)}."
            )
        slots: dict[str, str] = {}
        for w, (start, n) in enumerate(
            zip(self.wave_starts, self.clusters_per_wave, strict=True), start=1
        ):
            for k in range(1, n + 1):
                slots[f"wave {w}, slot {k}"] = start
        return slots

    def planned_design(self) -> Design:
        """Return the design template: one row per slot, from the planned wave start dates."""
        from ..design import Design

        return Design.from_start_dates(
            self.slot_start_dates(),
            self.periods,
            transition=self.transition,  # type: ignore[arg-type]  # validated by the schema
        )

    # ------------------------------------------------------------------ allocation
    def allocation(self) -> Allocation:
        """Return the allocation: the imported record reproduced and verified, else randomised.

        Without a record, clusters are randomised to the waves of :meth:`planned_design`
        with :attr:`seed` (the same inputs and seed always give the same allocation).  With
        one, the allocation is rebuilt from the configured inputs and the record's seed and
        options, and must reproduce the record's input hash (the same design, clusters,
        covariates and constraints) and its assignment.

        Returns
        -------
        Allocation

        Raises
        ------
        DesignError
            If the record's input hash or assignment is not reproduced (the message says
            which inputs differ).
        """
        cached = self._cache.get("allocation")
        if cached is None:
            from ._allocation import reproduce_allocation

            cached = reproduce_allocation(self)
            self._cache["allocation"] = cached
        out: Allocation = cached
        return out

    def rollout(self) -> pd.DataFrame:
        """Planned and actual start of each cluster, for the cluster flow (CONSORT-SW 13a).

        Returns
        -------
        pandas.DataFrame
            One row per cluster in allocation order: ``cluster``, ``wave`` (1-based),
            ``planned_start`` and ``actual_start`` (ISO dates; None = never), ``status``:
            ``"as allocated"``, ``"late"``, ``"early"`` or ``"never"``.
        """
        alloc = self.allocation()
        rows = []
        for label in alloc.design.clusters:
            wave = int(alloc.assignment[label]) + 1
            planned = self.wave_starts[wave - 1]
            actual = planned
            if self.start_dates is not None and str(label) in self.start_dates:
                actual = self.start_dates[str(label)]  # type: ignore[assignment]
            if actual is None:
                status = "never"
            elif actual == planned:
                status = "as allocated"
            else:
                status = "late" if actual > planned else "early"
            rows.append((label, wave, planned, actual, status))
        out: pd.DataFrame = pd.DataFrame(
            rows, columns=["cluster", "wave", "planned_start", "actual_start", "status"]
        )
        return out

    def actual_design(self) -> Design:
        """Return the design the clusters actually followed (actual start dates; None = never).

        Equal to the allocated design when no ``start_dates`` are configured.
        """
        from ..design import Design

        flow = self.rollout()
        starts = dict(zip(flow["cluster"], flow["actual_start"], strict=True))
        return Design.from_start_dates(
            starts,
            self.periods,
            transition=self.transition,  # type: ignore[arg-type]
            check_identifiable=False,
        )

    # ------------------------------------------------------------------ analysis
    def analysis_frame(self, population: str | None = None) -> pd.DataFrame:
        """Return the data with the analysis treatment in :attr:`DataSpec.treatment_column`.

        Parameters
        ----------
        population : {"itt", "as-treated"}, optional
            ``"itt"``: each cluster is treated from the start of the wave it was allocated
            to (a cluster that started late or never is analysed as allocated).
            ``"as-treated"``: from its actual start date (``[rollout] start_dates``), or as
            the data's treatment column says when no start dates are given.  Default: the
            configured ``analysis_population``.  The randomisation test always uses
            ``"itt"``: it re-draws the allocation.

        Returns
        -------
        pandas.DataFrame
            A copy of the data (never the caller's frame).  Rows of cells the design does
            not observe (``transition = "exclude"``) are left out with a
            :class:`~steppedwedge.MissingDataWarning` saying how many.

        Raises
        ------
        DataError
            If a data row's cluster or period is not in the design.
        """
        data = self._need_data()
        if population is None:
            population = self.analysis.analysis_population if self.analysis else "itt"
        if population not in ("itt", "as-treated"):
            raise OptionError(f"`population` must be 'itt' or 'as-treated'; got {population!r}.")
        frame = data.frame.copy()
        if population == "as-treated" and self.start_dates is None:
            if data.treatment is None:
                raise OptionError(
                    'analysis_population = "as-treated" needs [rollout] start_dates or a '
                    "[data] treatment column."
                )
            out: pd.DataFrame = frame
            return out
        design = self.allocation().design if population == "itt" else self.actual_design()
        return _with_design_treatment(frame, data, design, population)

    def treatment_deviations(self) -> pd.DataFrame:
        """Cells where the data's treatment column differs from the allocated design.

        Returns
        -------
        pandas.DataFrame
            ``cluster``, ``period``, ``allocated``, ``observed`` (empty when the data have
            no treatment column or agree with the allocation).
        """
        data = self._need_data()
        cols = ["cluster", "period", "allocated", "observed"]
        if data.treatment is None:
            empty: pd.DataFrame = pd.DataFrame(columns=cols)
            return empty
        itt = self.analysis_frame("itt")
        observed = data.frame.loc[itt.index, data.treatment].to_numpy(dtype=float)
        allocated = itt[data.treatment_column].to_numpy(dtype=float)
        diff = ~np.isclose(observed, allocated)
        out: pd.DataFrame = pd.DataFrame(
            {
                "cluster": itt[data.cluster].to_numpy()[diff],
                "period": itt[data.period].to_numpy()[diff],
                "allocated": allocated[diff],
                "observed": observed[diff],
            }
        )
        return out

    def fit_options(self, name: str = "primary") -> dict[str, Any]:
        """Keyword arguments of the primary or of one sensitivity analysis.

        Parameters
        ----------
        name : str
            ``"primary"``, or a sensitivity analysis of ``[analysis] sensitivity``
            (``"fixed-effects"``, ``"gee"``, ``"cluster-summary"``: arguments of
            :func:`steppedwedge.fit`; ``"permutation"``: of
            :func:`steppedwedge.permutation_test`, without ``data`` and ``allocation``).

        Returns
        -------
        dict
            Column roles, the family and every configured option (options left at their
            defaults are omitted, so the fitting function's own defaults apply), with the
            period order of the design when the period labels are text.  Pass
            :meth:`analysis_frame` as the data.

        Raises
        ------
        OptionError
            For a name that is not configured.
        """
        spec = self.analysis
        data = self._need_data()
        if spec is None:
            raise OptionError("the configuration has no [analysis] table.")
        if name != "primary" and name not in spec.sensitivity:
            raise OptionError(
                f"{name!r} is not an analysis of this configuration; choose 'primary' or one "
                f"of {', '.join(map(repr, spec.sensitivity))}."
            )
        out: dict[str, Any] = {"family": spec.family, **data.roles()}
        defaults = AnalysisSpec()
        for key in _SHARED:
            value = getattr(spec, key)
            if value != getattr(defaults, key):
                out[key] = list(value) if isinstance(value, tuple) else value
        order = self._period_order()
        if order is not None:
            out["period_order"] = order
        if name == "primary":
            return self._primary_options(out, spec, defaults)
        extra = dict(spec.sensitivity_options.get(name, {}))
        if name == "permutation":
            keep = {"outcome", "cluster", "period", "treatment", "exposure", "offset", "trials"}
            perm = {k: v for k, v in out.items() if k in keep or k == "family"}
            perm.update(
                statistic=extra.pop("statistic", "twfe"),
                n_permutations=spec.n_permutations,
                rng=self.seed,
            )
            if perm["statistic"] == "glmm-score" and spec.random in SCORE_RANDOM:
                perm["lmm_options"] = {"random": spec.random}  # the primary's structure
            return perm
        out["method"] = _METHOD[name]
        # the primary's model options a method has no use for are not passed (sw.fit refuses them)
        ignored = IGNORED_OPTIONS.get(out["method"], {})
        out = {k: v for k, v in out.items() if k not in ignored or k not in _SHARED}
        out.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in extra.items()})
        return out

    # ------------------------------------------------------------------ helpers
    def _primary_options(
        self, out: dict[str, Any], spec: AnalysisSpec, defaults: AnalysisSpec
    ) -> dict[str, Any]:
        out["random"] = spec.random
        for key in ("method", "dof", "vcov"):
            value = getattr(spec, key)
            if value is not None:
                out[key] = value
        if spec.decay_scale != defaults.decay_scale:
            out["decay_scale"] = spec.decay_scale
            pop = spec.analysis_population
            out["design"] = self.allocation().design if pop == "itt" else self.actual_design()
            out.pop("period_order", None)  # the design fixes the order
        return out

    def _need_data(self) -> DataSpec:
        if self.data is None:
            raise OptionError("the configuration has no [data] table.")
        return self.data

    def _period_order(self) -> list[str] | None:
        """Return the design's order of text period labels (decay and linear time need it)."""
        data = self._need_data()
        col = data.frame[data.period]
        if pd.api.types.is_numeric_dtype(col) or isinstance(col.dtype, pd.PeriodDtype):
            return None
        labels = [str(p) for p in self.planned_design().periods]
        present = set(col.astype(str))
        if not present <= set(labels):
            return None
        return [p for p in labels if p in present]


def _with_design_treatment(
    frame: pd.DataFrame, data: DataSpec, design: Design, population: str
) -> pd.DataFrame:
    """Put the design's treatment of each row's cell into the analysis treatment column."""
    from .._warnings import warn
    from ..exceptions import MissingDataWarning

    long = design.to_frame()
    cell = dict(
        zip(
            zip(long["cluster"].astype(str), long["period"].astype(str), strict=True),
            long["treatment"].where(long["observed"]),
            strict=True,
        )
    )
    keys = list(zip(frame[data.cluster].astype(str), frame[data.period].astype(str), strict=True))
    unknown = [k for k in keys if k not in cell]
    if unknown:
        clusters = {str(c) for c in design.clusters}
        c, p = unknown[0]
        what = (
            f"cluster {c!r} is not one of the trial's clusters"
            if c not in clusters
            else f"period {p!r} is not a period of the design ({design.periods[0]} to "
            f"{design.periods[-1]})"
        )
        raise DataError(
            f"[data] row of cluster {c!r}, period {p!r}: {what} "
            f"({len(unknown)} such row{'s' * (len(unknown) > 1)})."
        )
    values = np.array([cell[k] for k in keys], dtype=float)
    frame[data.treatment_column] = values
    excluded = np.isnan(values)
    if excluded.any():
        warn(
            f"{int(excluded.sum())} data rows fall in cells the design does not observe "
            f'(transition = "exclude"; {population}) and are left out of the analysis.',
            MissingDataWarning,
        )
        frame = frame.loc[~excluded]
    return frame


def read_record(path: Path) -> dict[str, Any]:
    """Read an allocation record (``allocation.json``) written by :meth:`Allocation.to_json`."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OptionError(f"{path} is not an allocation record (JSON): {exc}") from None
    need = ("seed", "input_hash", "assignment")
    if not isinstance(record, dict) or any(k not in record for k in need):
        raise OptionError(
            f"{path} is not an allocation record: it needs the keys {', '.join(need)} "
            "(write one with `steppedwedge randomise -o allocation.json` or a report)."
        )
    return record


def parse_start_date(value: Any, what: str, design: Mapping[str, Any]) -> str | None:
    """Read one actual start date (None for ``"never"`` or an empty cell) as an ISO date."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("", "never", "none", "na"):
            return None
        value = parse_date_text(
            value, what, dayfirst=design.get("dayfirst"), date_format=design.get("date_format")
        )
    if not hasattr(value, "isoformat"):
        raise OptionError(f"{what} must be a date or 'never'; got {value!r}.")
    iso: str = pd.Timestamp(value).date().isoformat()
    return iso
