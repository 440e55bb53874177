"""Read ``trial.toml`` into a :class:`~steppedwedge.report.TrialConfig`.

The schema (:mod:`steppedwedge.report.schema`) checks the file's keys, types and values;
this module then reads the files it names (CSV data and clusters, start dates, an allocation
record, a saved variance estimate), checks the columns each key names, and builds the frozen
configuration.  Every problem is a :class:`~steppedwedge.report.schema.ConfigError` naming
the key and its line.
"""

from __future__ import annotations

import difflib
import io
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._validation import parse_date_text
from ..exceptions import DesignError, OptionError, SteppedWedgeError
from .config import AnalysisSpec, DataSpec, PowerSpec, TrialConfig, parse_start_date, read_record

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_mapping", "load_toml", "read_csv_file"]


def _schema() -> Any:
    try:
        from . import schema
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        if exc.name != "pydantic":
            raise
        raise OptionError(
            "reading a trial configuration needs pydantic: pip install 'steppedwedge[report]'."
        ) from None
    return schema


def _fail(file: str, message: str, line: int | None = None, key: str = "") -> Exception:
    schema = _schema()
    err: Exception = schema.ConfigError([schema.ConfigIssue(file, line, key, message)])
    return err


def load_toml(path: Path) -> TrialConfig:
    """Read, validate and load one configuration file."""
    file = str(path)
    if path.is_dir():
        raise _fail(file, "is a folder; give the path of its trial.toml file")
    if not path.is_file():
        raise _fail(file, "no such file")
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise _fail(file, f"cannot be read ({exc.strerror})") from None
    try:
        text = raw_bytes.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _fail(
            file,
            f"is not UTF-8 text (byte 0x{raw_bytes[exc.start]:02x} at position {exc.start}); "
            "save it as UTF-8",
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = int(m.group(1)) if m else None
        detail = msg[: m.start()].strip() if m else msg
        col = f" at column {m.group(2)}" if m else ""
        raise _fail(file, f"TOML syntax error{col}: {detail}", where) from None
    return load_mapping(raw, base=path.parent, source=file, text=text)


def load_mapping(raw: Mapping[str, Any], *, base: Path, source: str, text: str = "") -> TrialConfig:
    """Validate a parsed mapping, read the files it names and build the configuration."""
    schema = _schema()
    model = schema.validate_mapping(raw, file=source, text=text)
    ctx = _Context(source, schema.key_lines(text), base, model)
    return ctx.build()


@dataclass
class _Context:
    """The validated tables and what is needed to point at a key's line."""

    file: str
    lines: Mapping[tuple[str, ...], int]
    base: Path
    model: Any
    issues: list[Any] = field(default_factory=list)

    # -------------------------------------------------------------- errors
    def issue(self, loc: tuple[Any, ...], message: str) -> None:
        schema = _schema()
        line = schema._line_of(loc, self.lines)
        self.issues.append(schema.ConfigIssue(self.file, line, schema._key_name(loc), message))

    def check(self) -> None:
        if self.issues:
            raise _schema().ConfigError(self.issues)

    def fail(self, loc: tuple[Any, ...], message: str) -> Exception:
        self.issue(loc, message)
        err = _schema().ConfigError(self.issues)
        self.issues = []
        return err  # type: ignore[no-any-return]

    # -------------------------------------------------------------- files
    def read_csv(self, loc: tuple[Any, ...], rel: str, delimiter: str) -> pd.DataFrame:
        try:
            return read_csv_file(self.base / rel, rel, delimiter)
        except OptionError as exc:
            raise self.fail(loc, str(exc)) from None

    def column(self, loc: tuple[Any, ...], name: str | None, frame: pd.DataFrame, rel: str) -> None:
        if name is None or name in frame.columns:
            return
        cols = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(name, cols, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
        self.issue(loc, f"no column {name!r} in {rel}{hint} (columns: {shown})")

    # -------------------------------------------------------------- build
    def build(self) -> TrialConfig:
        m = self.model
        wave_starts = self.wave_starts()
        data = self.data_spec()
        clusters, cluster_column = self.clusters(data)
        self.check_design(clusters, cluster_column, wave_starts)
        start_dates = self.start_dates(clusters, cluster_column)
        record, record_source, seed = self.record()
        self.check()
        cfg = TrialConfig(
            title=m.trial.title,
            question=m.trial.question,
            periods=m.design.periods,
            wave_starts=wave_starts,
            clusters_per_wave=tuple(m.design.clusters_per_wave),
            transition=m.design.transition,
            clusters=clusters,
            cluster_column=cluster_column,
            strata=m.randomisation.strata,
            balance=tuple(m.randomisation.balance),
            cutoff=m.randomisation.cutoff,
            seed=seed,
            data=data,
            power=self.power_spec(clusters),
            analysis=self.analysis_spec(),
            source=self.file,
            start_dates=start_dates,
            record=record,
            record_source=record_source,
        )
        self.check()
        if record is not None:
            try:
                cfg.allocation()
            except SteppedWedgeError as exc:
                raise self.fail(("randomisation", "record"), str(exc)) from None
        return cfg

    def wave_starts(self) -> tuple[str, ...]:
        d = self.model.design
        out = []
        for k, value in enumerate(d.wave_starts):
            loc = ("design", "wave_starts", k)
            if isinstance(value, str):
                try:
                    value = parse_date_text(
                        value, "the date", dayfirst=d.dayfirst, date_format=d.date_format
                    )
                except OptionError as exc:
                    msg = str(exc).replace("pass dayfirst=", "set dayfirst = ")
                    self.issue(loc, msg.replace("date_format=", "date_format = "))
                    continue
            ts = pd.Timestamp(value)
            if ts != ts.normalize():
                self.issue(loc, f"must be a calendar day without a time of day; got {ts}")
                continue
            out.append(ts.date().isoformat())
        if out != sorted(out):
            self.issue(("design", "wave_starts"), "must be in calendar order")
        try:
            first, last = d.periods.split("/", 1)
            pd.period_range(start=pd.Period(first), end=pd.Period(last))
        except (ValueError, TypeError) as exc:
            self.issue(
                ("design", "periods"),
                f'must be "first/last" pandas periods such as "2022Q1/2026Q4"; got '
                f"{d.periods!r} ({str(exc).splitlines()[0]})",
            )
        return tuple(out)

    def data_spec(self) -> DataSpec | None:
        d = self.model.data
        if d is None:
            return None
        frame = self.read_csv(("data", "file"), d.file, d.delimiter)
        for key in ("cluster", "period", "outcome", "treatment", "exposure", "offset", "trials"):
            self.column(("data", key), getattr(d, key), frame, d.file)
        if d.treatment is None and "treatment" in frame.columns:
            self.issue(
                ("data", "treatment"),
                f"{d.file} has a column 'treatment': name it here (treatment = \"treatment\")",
            )
        self.check()
        return DataSpec(
            frame=frame,
            cluster=d.cluster,
            period=d.period,
            treatment=d.treatment,
            outcome=d.outcome,
            exposure=d.exposure,
            offset=d.offset,
            trials=d.trials,
            source=d.file,
        )

    def clusters(self, data: DataSpec | None) -> tuple[pd.DataFrame, str]:
        r = self.model.randomisation
        delimiter = self.model.data.delimiter if self.model.data is not None else ","
        if r.clusters is not None:
            frame = self.read_csv(("randomisation", "clusters"), r.clusters, delimiter)
            rel, column = r.clusters, r.cluster_column
            self.column(("randomisation", "cluster_column"), column, frame, rel)
        else:
            assert data is not None  # the schema requires clusters without [data]
            frame, rel, column = _clusters_from_data(data), data.source, data.cluster
        for name in [r.strata, *r.balance]:
            key = "strata" if name == r.strata else "balance"
            self.column(("randomisation", key), name, frame, rel)
        p = self.model.power
        if p is not None:
            self.column(("power", "exposure_column"), p.exposure_column, frame, rel)
        self.check()
        labels = frame[column].astype(str)
        dup = labels[labels.duplicated()].tolist()
        if dup:
            self.issue(("randomisation", "clusters"), f"cluster {dup[0]!r} appears twice in {rel}")
        for name in r.balance:
            if not pd.api.types.is_numeric_dtype(frame[name]):
                self.issue(("randomisation", "balance"), f"column {name!r} of {rel} is not numeric")
        if data is not None:
            missing = sorted(set(data.frame[data.cluster].astype(str)) - set(labels))
            if missing:
                self.issue(
                    ("data", "cluster"),
                    f"cluster {missing[0]!r} of {data.source} is not in {rel}"
                    + (f" ({len(missing)} such clusters)" if len(missing) > 1 else ""),
                )
        return frame, column

    def check_design(self, clusters: pd.DataFrame, column: str, wave_starts: Sequence[str]) -> None:
        d = self.model.design
        total = sum(d.clusters_per_wave)
        if total != len(clusters):
            self.issue(
                ("design", "clusters_per_wave"),
                f"adds up to {total} clusters but the clusters table has {len(clusters)}",
            )
        if self.issues or len(wave_starts) != len(d.clusters_per_wave):
            return
        from ..design import Design

        slots = {
            f"wave {w}, slot {k}": start
            for w, (start, n) in enumerate(zip(wave_starts, d.clusters_per_wave, strict=True), 1)
            for k in range(1, n + 1)
        }
        try:
            Design.from_start_dates(slots, d.periods, transition=d.transition)
        except DesignError as exc:
            self.issue(("design", "wave_starts"), str(exc))

    def start_dates(self, clusters: pd.DataFrame, column: str) -> dict[str, str | None] | None:
        ro = self.model.rollout
        if ro is None:
            return None
        loc: tuple[str, ...] = ("rollout", "start_dates")
        if isinstance(ro.start_dates, str):
            delimiter = self.model.data.delimiter if self.model.data is not None else ","
            frame = self.read_csv(loc, ro.start_dates, delimiter)
            if frame.shape[1] != 2:
                raise self.fail(
                    loc,
                    f"{ro.start_dates} must have two columns (cluster, start date); got "
                    f"{[str(c) for c in frame.columns]}",
                )
            raw = dict(
                zip(frame.iloc[:, 0].astype(str), frame.iloc[:, 1].astype(object), strict=True)
            )
        else:
            raw = dict(ro.start_dates)
        known = set(clusters[column].astype(str))
        design = self.model.design.model_dump()
        out: dict[str, str | None] = {}
        for label, value in raw.items():
            if label not in known:
                close = difflib.get_close_matches(label, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.issue((*loc, label), f"{label!r} is not one of the trial's clusters{hint}")
                continue
            try:
                out[label] = parse_start_date(value, f"start date of {label!r}", design)
            except OptionError as exc:
                self.issue((*loc, label), str(exc))
        return out

    def record(self) -> tuple[dict[str, Any] | None, str, int]:
        r = self.model.randomisation
        if r.record is None:
            return None, "", int(r.seed)
        loc = ("randomisation", "record")
        path = self.base / r.record
        if not path.is_file():
            raise self.fail(loc, f"no such file ({path})")
        try:
            record = read_record(path)
        except OptionError as exc:
            raise self.fail(loc, str(exc)) from None
        if not isinstance(record["seed"], int):
            raise self.fail(loc, "the record's seed is a generator state, not an integer seed")
        if r.seed is not None and r.seed != record["seed"]:
            self.issue(
                ("randomisation", "seed"),
                f"is {r.seed} but the record {r.record} was drawn with seed {record['seed']}",
            )
        return record, r.record, int(record["seed"])

    def power_spec(self, clusters: pd.DataFrame) -> PowerSpec | None:
        p = self.model.power
        if p is None:
            return None
        values: dict[str, Any] = {
            "tau2": p.tau2 or 0.0,
            "gamma2": p.gamma2 or 0.0,
            "decay": p.decay,
            "sigma2": p.sigma2,
        }
        if self.model.planning is not None:
            values.update(self.planning())
        return PowerSpec(
            family=p.family,
            effect=p.effect,
            baseline=p.baseline,
            cluster_size=p.cluster_size,
            exposure_column=p.exposure_column,
            alpha=p.alpha,
            dispersion=p.dispersion,
            **values,
        )

    def planning(self) -> dict[str, Any]:
        from ._planning import cited_variance

        pl = self.model.planning
        try:
            return cited_variance(pl, self.base)
        except (SteppedWedgeError, OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise self.fail(("planning", "variance"), first) from None

    def analysis_spec(self) -> AnalysisSpec | None:
        a = self.model.analysis
        if a is None:
            return None
        options = {
            name: {k: v for k, v in table.model_dump().items() if v is not None}
            for name, table in self.model.sensitivity.items()
        }
        return AnalysisSpec(
            family=a.family,
            random=a.random,
            sensitivity=tuple(a.sensitivity),
            n_permutations=a.n_permutations,
            time=a.time,
            knots=None if a.knots is None else tuple(a.knots),
            effect=a.effect,
            exposure_window=None if a.exposure_window is None else tuple(a.exposure_window),
            exposure_time=a.exposure_time,
            covariates=a.covariates,
            method=a.method,
            dof=a.dof,
            vcov=a.vcov,
            missing=a.missing,
            decay_scale=a.decay_scale,
            analysis_population=a.analysis_population,
            sensitivity_options=options,
        )


def _clusters_from_data(data: DataSpec) -> pd.DataFrame:
    """One row per cluster of the data, with the columns constant within every cluster."""
    frame = data.frame
    grouped = frame.groupby(data.cluster, sort=False, dropna=False)
    constant = [c for c in frame.columns if c == data.cluster or (grouped[c].nunique() <= 1).all()]
    out: pd.DataFrame = (
        grouped[constant[1:]].first().reset_index()
        if constant[1:]
        else (pd.DataFrame({data.cluster: frame[data.cluster].drop_duplicates().to_numpy()}))
    )
    return out


def read_csv_file(path: Path, rel: str, delimiter: str = ",") -> pd.DataFrame:
    """Read a CSV named in a configuration or on the command line, with one-line errors.

    Raises
    ------
    OptionError
        For a missing file or a folder, a file that is not UTF-8, empty or unreadable, or
        one that looks separated by semicolons while commas were expected.
    """
    if path.is_dir():
        raise OptionError(f"{rel} is a folder; give the path of a CSV file")
    if not path.is_file():
        raise OptionError(f"no such file ({path})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OptionError(f"{rel} cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OptionError(
            f"{rel} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start}); "
            "save it as UTF-8 (in Excel: CSV UTF-8)"
        ) from None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter)
    except pd.errors.EmptyDataError:
        raise OptionError(f"{rel} is empty") from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[-1]
        raise OptionError(f"{rel} is not a readable CSV ({first})") from None
    header = str(frame.columns[0]) if frame.shape[1] else ""
    if frame.shape[1] == 1 and delimiter != ";" and ";" in header:
        raise OptionError(
            f'{rel} looks separated by semicolons: set delimiter = ";" in the [data] table'
        )
    if frame.empty:
        raise OptionError(f"{rel} has a header but no rows")
    return frame


def load_json(path: Path) -> Any:
    """Read a JSON file with a one-line error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OptionError(f"{path} is not readable JSON ({exc})") from None
