"""The trial configuration read from ``trial.toml`` (or built for the bundled example).

A :class:`TrialConfig` says everything the report needs: the period grid and wave start
dates, the clusters and how to randomise them, and (optionally) the observed data.  Paths
in a TOML file are relative to the file's folder.

A minimal ``trial.toml``::

    [trial]
    title = "Family support model: stepped-wedge trial in 17 councils"

    [design]
    periods = "2022Q1/2026Q4"          # a pandas Period range "first/last"
    wave_starts = ["2023-01-01", "2023-07-01", "2024-01-01"]   # ISO 8601 (or TOML dates)
    # dayfirst = true                  # only for non-ISO dates: 01/07/2023 is 1 July
    # date_format = "%d/%m/%Y"         # or an exact strptime format instead of dayfirst
    clusters_per_wave = [3, 2, 3]
    transition = "first-treated"       # or "partial" / "exclude"

    [randomisation]
    clusters = "clusters.csv"          # one row per cluster
    cluster_column = "council"
    strata = "region"                  # optional
    balance = ["population_0_17"]      # optional, with cutoff
    cutoff = 0.2
    seed = 20230101

    [data]                             # optional: observed cluster-period data
    file = "councils.csv"
    cluster = "council"
    period = "quarter"
    treatment = "treated"
    outcome = "entries_into_care"
    exposure = "population_0_17"

    [power]                            # optional: the power justification
    family = "poisson"                 # gaussian | binomial | poisson | negative_binomial
    effect = -0.1625                   # on the link scale (here log rate ratio 0.85)
    baseline = 6.6e-4                  # control mean / probability / rate per unit exposure
    cluster_size = 1.0                 # individuals per cluster-period (counts: 1)
    exposure_column = "population_0_17"  # counts: exposure column of the clusters table
    tau2 = 0.109                       # variance components (link scale for GLMMs)
    gamma2 = 0.0225
    decay = 0.908

    [analysis]                         # optional: primary and sensitivity analyses of [data]
    family = "poisson"
    random = "nested"
    sensitivity = ["fixed-effects", "gee", "cluster-summary", "permutation"]
    n_permutations = 999
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._validation import parse_date_text
from ..exceptions import DesignError, OptionError

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["AnalysisSpec", "DataSpec", "PowerSpec", "TrialConfig"]


@dataclass(frozen=True)
class DataSpec:
    """Where the observed data are and which column plays which role."""

    frame: pd.DataFrame = field(repr=False)
    cluster: str
    period: str
    treatment: str
    outcome: str
    exposure: str | None = None
    source: str = ""


@dataclass(frozen=True)
class PowerSpec:
    """Inputs of the power justification (see the ``[power]`` table)."""

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


@dataclass(frozen=True)
class AnalysisSpec:
    """The primary analysis and the sensitivity analyses (see the ``[analysis]`` table)."""

    family: str = "gaussian"
    random: str = "nested"
    sensitivity: tuple[str, ...] = ("fixed-effects", "gee", "cluster-summary", "permutation")
    n_permutations: int = 999


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
        First day of each wave (sequence), in order.
    clusters_per_wave : sequence of int
        Number of clusters starting in each wave.
    clusters : pandas.DataFrame
        One row per cluster with the label column and any strata/balance covariates.
    cluster_column : str
        Column of ``clusters`` holding the labels.
    strata, balance, cutoff : optional
        Randomisation options passed to :func:`steppedwedge.randomise`.
    seed : int
        Randomisation seed (recorded in the report).
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

    @classmethod
    def from_toml(cls, path: str | Path) -> TrialConfig:
        """Read a configuration file (see the module docstring for its layout).

        Raises
        ------
        DesignError
            If a required key is missing or a referenced file does not exist; the message
            names the table and key.
        """
        path = Path(path)
        if path.is_dir():
            raise DesignError(
                f"trial configuration {str(path)!r} is a folder; give the path of its "
                "trial.toml file."
            )
        if not path.is_file():
            raise DesignError(f"trial configuration file {str(path)!r} does not exist.")
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
        return cls.from_mapping(raw, base=path.parent, source=str(path))

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], *, base: Path = Path("."), source: str = ""
    ) -> TrialConfig:
        """Build from an already-parsed mapping with the TOML layout."""

        def need(table: str, key: str) -> Any:
            try:
                return raw[table][key]
            except KeyError:
                raise DesignError(
                    f"trial configuration: missing `{key}` in the [{table}] table."
                ) from None

        def read_csv(table: str, key: str) -> tuple[pd.DataFrame, str]:
            rel = need(table, key)
            file = base / str(rel)
            if file.is_dir():
                raise DesignError(
                    f"trial configuration: [{table}] {key} = {rel!r} is a folder ({file}); "
                    "give the path of a CSV file."
                )
            if not file.is_file():
                raise DesignError(
                    f"trial configuration: [{table}] {key} = {rel!r}: no such file ({file})."
                )
            return pd.read_csv(file), str(rel)

        clusters, _ = read_csv("randomisation", "clusters")
        rand = raw["randomisation"]
        data = None
        if "data" in raw:
            frame, rel = read_csv("data", "file")
            d = raw["data"]
            data = DataSpec(
                frame=frame,
                cluster=need("data", "cluster"),
                period=need("data", "period"),
                treatment=need("data", "treatment"),
                outcome=need("data", "outcome"),
                exposure=d.get("exposure"),
                source=rel,
            )
        power = None
        if "power" in raw:
            pw = raw["power"]
            power = PowerSpec(
                family=str(pw.get("family", "gaussian")),
                effect=float(need("power", "effect")),
                baseline=None if pw.get("baseline") is None else float(pw["baseline"]),
                cluster_size=float(pw.get("cluster_size", 1.0)),
                exposure_column=pw.get("exposure_column"),
                tau2=float(pw.get("tau2", 0.0)),
                gamma2=float(pw.get("gamma2", 0.0)),
                decay=None if pw.get("decay") is None else float(pw["decay"]),
                sigma2=float(pw.get("sigma2", 1.0)),
                alpha=float(pw.get("alpha", 0.05)),
                dispersion=None if pw.get("dispersion") is None else float(pw["dispersion"]),
            )
        analysis = None
        if "analysis" in raw:
            an = raw["analysis"]
            analysis = AnalysisSpec(
                family=str(an.get("family", "gaussian")),
                random=str(an.get("random", "nested")),
                sensitivity=tuple(an.get("sensitivity", AnalysisSpec.sensitivity)),
                n_permutations=int(an.get("n_permutations", 999)),
            )
        balance = rand.get("balance", ())
        if isinstance(balance, str):
            balance = (balance,)
        return cls(
            title=str(raw.get("trial", {}).get("title", "Stepped-wedge trial")),
            periods=str(need("design", "periods")),
            wave_starts=_wave_starts(need("design", "wave_starts"), raw["design"]),
            clusters_per_wave=tuple(int(n) for n in need("design", "clusters_per_wave")),
            transition=str(raw["design"].get("transition", "first-treated")),
            clusters=clusters,
            cluster_column=str(rand.get("cluster_column", "cluster")),
            strata=rand.get("strata"),
            balance=tuple(balance),
            cutoff=rand.get("cutoff"),
            seed=int(need("randomisation", "seed")),
            data=data,
            power=power,
            analysis=analysis,
            source=source,
        )

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


def _wave_starts(values: Any, design: Mapping[str, Any]) -> tuple[str, ...]:
    """Read ``[design] wave_starts`` as ISO dates, honouring ``dayfirst``/``date_format``."""
    dayfirst = design.get("dayfirst")
    date_format = design.get("date_format")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise DesignError(
            f"trial configuration: [design] wave_starts must be a list of dates; got {values!r}."
        )
    out = []
    for k, value in enumerate(values):
        what = f"trial configuration: [design] wave_starts[{k}]"
        if isinstance(value, str):
            try:
                value = parse_date_text(value, what, dayfirst=dayfirst, date_format=date_format)
            except OptionError as exc:
                raise DesignError(
                    str(exc)
                    .replace("pass dayfirst=", "set dayfirst = ")
                    .replace("date_format=", "date_format = ")
                    + " (keys of the [design] table)"
                ) from None
        if not hasattr(value, "isoformat"):
            raise DesignError(f"{what} must be a date; got {value!r}.")
        ts = pd.Timestamp(value)
        if ts != ts.normalize():
            raise DesignError(f"{what} must be a calendar day without a time of day; got {ts}.")
        out.append(ts.date().isoformat())
    return tuple(out)
