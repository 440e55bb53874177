"""The versioned schema of ``trial.toml`` (version 1), validated with pydantic.

Each table of the file is one pydantic model below; every key has a type, a default (or is
required) and a description.  The descriptions are the single source of the documentation:
``docs/reference/config.rst`` is rendered from them by :func:`reference_rst` (a test checks
that the page is up to date) and ``steppedwedge report --init`` writes them as the comments of
its template.  Validation is strict: an unknown key or table, a wrong type or a bad value is a
:class:`ConfigError` naming the key and the line of the file.

The allowed values of the analysis options are taken from the modules that implement them
(``steppedwedge.models``, ``steppedwedge.inference``), so the schema cannot drift from
:func:`steppedwedge.fit`.  The sensitivity analyses the report knows are listed in
:data:`SENSITIVITY_ANALYSES` (defined in :mod:`.config`, whose default runs them all); a new
one is one line there plus its runner in the report.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)

from ..exceptions import OptionError
from ..inference.permutation import _STATISTICS as PERMUTATION_STATISTICS
from ..inference.sandwich import VCOV_CHOICES
from ..models.glmm import GLMM_DOF, GLMM_RANDOM
from ..models.mixed import EFFECT_TYPES, RANDOM_STRUCTURES, TIME_EFFECTS
from ..planning._history_fit import STRUCTURES as PANEL_STRUCTURES
from .config import SENSITIVITY_ANALYSES

__all__ = [
    "SCHEMA_VERSION",
    "SENSITIVITY_ANALYSES",
    "ConfigError",
    "ConfigIssue",
    "TrialFile",
    "key_lines",
    "reference_rst",
    "validate_mapping",
]

#: The version of the layout this module reads (``schema_version`` in the file).
SCHEMA_VERSION = 1
FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")
GAUSSIAN_DOF = ("kenward-roger", "satterthwaite", "between-within", "normal")
VCOVS = (*VCOV_CHOICES, "robust", "lz", "hc2")
FIT_METHODS = ("reml", "ml", "laplace", "agq")


# ------------------------------------------------------------------------ errors
@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what to fix."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(OptionError):
    """A trial configuration is invalid; ``issues`` lists every problem found.

    The message is the first problem on one line (``file:line: [table] key: what to fix``),
    followed by how many more there are; :attr:`issues` holds them all.
    """

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        first = str(self.issues[0]) if self.issues else "invalid configuration"
        more = len(self.issues) - 1
        if more:
            first += f" (and {more} more problem{'s' * (more > 1)}: run `steppedwedge validate`)"
        super().__init__(first)


# ------------------------------------------------------------------------ field helpers
def _choice(values: Iterable[str]) -> AfterValidator:
    allowed = tuple(values)

    def check(value: str) -> str:
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"must be one of {', '.join(map(repr, allowed))}; got {value!r}{hint}")
        return value

    return AfterValidator(check)


def _choices_of(name: str, values: Sequence[str]) -> dict[str, Any]:
    return {"choices": list(values), "choice_name": name}


Family = Annotated[str, _choice(FAMILIES)]
DateLike = _dt.date | str


def _file_or_table(value: Any) -> str:
    return "table" if isinstance(value, dict) else "file"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ------------------------------------------------------------------------ tables
class TrialTable(_Table):
    """``[trial]``: what the trial is called and asks."""

    title: str = Field(
        default="Stepped-wedge trial",
        description="Report title; say 'stepped-wedge cluster randomised trial' in it "
        "(CONSORT-SW item 1a).",
        examples=["Family support model: a stepped-wedge trial in 17 councils"],
    )
    question: str | None = Field(
        default=None,
        description="The question the trial answers, in one sentence (opens the report's summary).",
        examples=["Does the family support model reduce entries into care?"],
    )


class DesignTable(_Table):
    """``[design]``: the planned period grid and the waves (sequences)."""

    periods: str = Field(
        description='Period grid "first/last" read by pandas.Period: "2022Q1/2026Q4" '
        'quarterly, "2023-01/2024-12" monthly, "2020/2025" yearly.',
        examples=["2022Q1/2026Q4"],
    )
    wave_starts: list[DateLike] = Field(
        min_length=1,
        description="Planned first day of each wave, in order: TOML dates (2023-01-01) or "
        'ISO text ("2023-01-01"); other forms need dayfirst or date_format.',
        examples=[["2023-01-01", "2023-07-01", "2024-01-01"]],
    )
    clusters_per_wave: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        description="Number of clusters starting in each wave (as many entries as wave_starts).",
        examples=[[3, 2, 3]],
    )
    transition: Literal["first-treated", "partial", "exclude"] = Field(
        default="first-treated",
        description="Value of the period containing a start date: treated (first-treated), "
        "the fraction of its days from the start (partial), or not analysed (exclude).",
    )
    dayfirst: bool | None = Field(
        default=None,
        description="Only for non-ISO dates such as 01/07/2023: true reads day first (UK, "
        "1 July), false month first (US).",
    )
    date_format: str | None = Field(
        default=None,
        description='Exact strptime format of non-ISO dates, e.g. "%d/%m/%Y" (instead of '
        "dayfirst).",
    )


class RandomisationTable(_Table):
    """``[randomisation]``: the clusters and how they were allocated to waves."""

    clusters: str | None = Field(
        default=None,
        description="CSV with one row per cluster (label, strata and balance covariates), "
        "relative to this file.  Default: the clusters of [data], with the columns that are "
        "constant within each cluster.",
        examples=["clusters.csv"],
    )
    cluster_column: str = Field(
        default="cluster",
        description="Column of the clusters file holding the cluster labels (default: "
        "[data] cluster when the clusters come from the data).",
        examples=["council"],
    )
    strata: str | None = Field(
        default=None, description="Column to stratify by (optional).", examples=["region"]
    )
    balance: list[str] = Field(
        default_factory=list,
        description="Numeric covariates for covariate-constrained randomisation (needs cutoff).",
        examples=[["population_0_17"]],
    )
    cutoff: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        default=None,
        description="Keep this best fraction of allocations by balance, in (0, 1].",
        examples=[0.2],
    )
    seed: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="Randomisation seed (a non-negative integer; recorded).  Required "
        "unless record is given, which then supplies it.",
        examples=[20230101],
    )
    record: str | None = Field(
        default=None,
        description="An allocation record (allocation.json written by an earlier report or "
        "`steppedwedge randomise --config trial.toml`): the report reproduces it from its "
        "seed and refuses to "
        "go on unless its input hash and assignment match, instead of drawing a new one.",
        examples=["allocation.json"],
    )


class RolloutTable(_Table):
    """``[rollout]``: when each cluster actually started (optional)."""

    start_dates: Annotated[
        Annotated[str, Tag("file")] | Annotated[dict[str, DateLike], Tag("table")],
        Discriminator(_file_or_table),
    ] = Field(
        description="Actual start date of each cluster: a CSV with two columns (cluster, "
        'start date; empty = never started) or a table {"Leeds" = 2023-01-01, "Hull" = '
        '"never"}.  Clusters not listed started as allocated.',
        examples=["start_dates.csv"],
    )


class DataTable(_Table):
    """``[data]``: the observed cluster-period (or individual) data."""

    file: str = Field(description="CSV file of the data, relative to this file.")
    cluster: str = Field(description="Column of the cluster labels.", examples=["council"])
    period: str = Field(
        description="Column of the period labels (matching [design] periods, e.g. 2022Q1).",
        examples=["quarter"],
    )
    outcome: str = Field(description="Column of the outcome.", examples=["entries_into_care"])
    treatment: str | None = Field(
        default=None,
        description="Column of the treatment actually received (0/1).  Optional: the "
        "analysis treatment is built from the allocation (itt) or the rollout "
        "(as-treated); when given, cells where it differs from the allocation are "
        "reported as deviations.",
        examples=["treated"],
    )
    exposure: str | None = Field(
        default=None,
        description="Counts: column of the exposure (person-time or population; logged "
        "internally).",
        examples=["population_0_17"],
    )
    offset: str | None = Field(
        default=None, description="Counts: column of a log-scale offset (instead of exposure)."
    )
    trials: str | None = Field(
        default=None, description="Binomial aggregates: column of the number of trials."
    )
    delimiter: str = Field(
        default=",",
        min_length=1,
        max_length=1,
        description='Field separator of the CSV files (";" for files saved by a European '
        "spreadsheet).",
    )


class PowerTable(_Table):
    """``[power]``: the power justification of the planned design."""

    family: Family = Field(
        default="gaussian",
        description="Outcome family: " + ", ".join(FAMILIES) + ".",
        json_schema_extra=_choices_of("family", FAMILIES),
    )
    effect: float = Field(
        description="Planned effect on the link scale (log rate ratio for counts: "
        "-0.1625 is a ratio of 0.85).",
        examples=[-0.1625],
    )
    baseline: float | None = Field(
        default=None,
        description="Control mean, probability, or rate per unit of exposure.",
        examples=[6.6e-4],
    )
    cluster_size: Annotated[float, Field(gt=0.0)] = Field(
        default=1.0, description="Individuals per cluster-period (counts: 1)."
    )
    exposure_column: str | None = Field(
        default=None,
        description="Counts: column of the clusters table giving each cluster's exposure "
        "(its mean is used for every slot).",
        examples=["population_0_17"],
    )
    tau2: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None,
        description="Persistent between-cluster variance (link scale).  Give the variance "
        "here or cite an estimate in [planning], not both.",
        examples=[0.109],
    )
    gamma2: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None, description="Cluster-period variance (link scale).", examples=[0.0225]
    )
    decay: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        default=None,
        description="Correlation of a cluster's period effects one period apart, in (0, 1].",
        examples=[0.908],
    )
    sigma2: Annotated[float, Field(gt=0.0)] = Field(
        default=1.0, description="Residual variance (Gaussian outcomes)."
    )
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        default=0.05, description="Two-sided significance level."
    )
    dispersion: Annotated[float, Field(gt=0.0)] | None = Field(
        default=None, description="Negative binomial: the dispersion (variance mu + mu^2/theta)."
    )


class PanelVariance(_Table):
    """``[planning.variance]`` as a table: estimate from a historical panel."""

    panel: str = Field(
        description='"dfe" for the bundled DfE council panel '
        "(steppedwedge.datasets.load_dfe_panel()), or a CSV file of a panel.",
        examples=["dfe"],
    )
    outcome: str = Field(description="Outcome column.", examples=["cla_started_in_year"])
    cluster: str = Field(default="la_code", description="Cluster column of the panel.")
    period: str = Field(default="year", description="Period column of the panel.")
    exposure: str | None = Field(
        default=None, description="Exposure column (counts).", examples=["population_0_17"]
    )
    family: Family = Field(default="poisson", description="Family of the panel model.")
    structure: Annotated[str, _choice(PANEL_STRUCTURES)] = Field(
        default="nested+decay",
        description="Correlation structure fitted to the panel (as sw.estimate_variance): "
        + ", ".join(PANEL_STRUCTURES)
        + ".",
        json_schema_extra=_choices_of("structure", PANEL_STRUCTURES),
    )
    councils: list[str] | None = Field(
        default=None, description="Restrict the panel to these clusters (optional)."
    )


class PlanningTable(_Table):
    """``[planning]``: cite an estimate_variance result for the power section."""

    variance: Annotated[
        Annotated[str, Tag("file")] | Annotated[PanelVariance, Tag("table")],
        Discriminator(_file_or_table),
    ] = Field(
        description="A saved sw.estimate_variance(...) result (the JSON of its to_dict()), "
        "or a table [planning.variance] saying which panel to estimate from.",
        examples=["estimate.json"],
    )
    period_months: Annotated[float, Field(gt=0.0)] | None = Field(
        default=None,
        description="Convert the estimate to periods of this many months (the trial's "
        "period length, e.g. 3 for quarters) with EstimatedVariance.for_period.",
        examples=[3],
    )
    gamma2: Annotated[str, _choice(("same", "averaged"))] | float | None = Field(
        default=None,
        description="With period_months: the cluster-period variance of the new period, which "
        'the panel cannot identify: "same" (as the panel period\'s), "averaged" (an AR(1) in '
        "calendar time averaged over the period) or a number (EstimatedVariance.for_period).",
        examples=["same"],
    )


class AnalysisTable(_Table):
    """``[analysis]``: the pre-specified primary analysis and the sensitivity analyses."""

    family: Family = Field(
        default="gaussian",
        description="Outcome family: " + ", ".join(FAMILIES) + ".",
        json_schema_extra=_choices_of("family", FAMILIES),
    )
    random: str = Field(
        default="nested",
        description="Random-effect structure of the primary mixed model (GLMMs: "
        + ", ".join(GLMM_RANDOM)
        + "; Gaussian also the random-slope-corr variants).",
        json_schema_extra=_choices_of("random", RANDOM_STRUCTURES),
    )
    time: Annotated[str, _choice(TIME_EFFECTS)] = Field(
        default="categorical",
        description="Secular trend: " + ", ".join(TIME_EFFECTS) + ".",
        json_schema_extra=_choices_of("time", TIME_EFFECTS),
    )
    knots: list[float] | None = Field(
        default=None, description='Interior knots (period units) for time = "spline".'
    )
    effect: Annotated[str, _choice(EFFECT_TYPES)] = Field(
        default="immediate",
        description="Estimand: immediate treatment effect, or exposure-time indicators "
        "(eti/tate: time-averaged; pte: point effect).",
        json_schema_extra=_choices_of("effect", EFFECT_TYPES),
    )
    exposure_window: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2)] | None = (
        Field(
            default=None,
            max_length=2,
            description="[first, last] exposure times averaged by the TATE.",
        )
    )
    exposure_time: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description='Exposure time of the point effect (effect = "pte").'
    )
    covariates: str | None = Field(
        default=None,
        description='Right-hand side of a covariate formula, e.g. "age + C(sex)".',
    )
    method: Annotated[str, _choice(FIT_METHODS)] | None = Field(
        default=None,
        description="Estimation method of the primary model: reml/ml (Gaussian), "
        "laplace/agq (GLMMs).  Default: reml or laplace.",
    )
    dof: str | float | None = Field(
        default=None,
        description="Denominator df: Gaussian " + ", ".join(GAUSSIAN_DOF) + "; GLMMs "
        "" + ", ".join(GLMM_DOF) + "; or a positive number.  Default: kenward-roger / "
        "clusters.",
    )
    vcov: Annotated[str, _choice(VCOV_CHOICES)] | None = Field(
        default=None,
        description="Variance estimator of the primary model: "
        + ", ".join(VCOV_CHOICES)
        + ".  Default: model.",
    )
    missing: Literal["raise", "drop"] = Field(
        default="raise",
        description="Missing outcomes or covariates: stop (raise) or drop the rows with a "
        "warning recorded in the report (drop).",
    )
    decay_scale: Literal["period", "time"] = Field(
        default="period",
        description="Decay structures: per period (period) or per year between period "
        "mid-points (time).",
    )
    analysis_population: Literal["itt", "as-treated"] = Field(
        default="itt",
        description="itt analyses clusters as allocated (a late or never-starting cluster "
        "counts as treated from its wave's start); as-treated uses the actual start dates "
        "of [rollout] (or the treatment column of [data]).",
    )
    sensitivity: list[Annotated[str, _choice(SENSITIVITY_ANALYSES)]] = Field(
        default_factory=lambda: list(SENSITIVITY_ANALYSES),
        description="Sensitivity analyses to run: " + ", ".join(SENSITIVITY_ANALYSES) + ".",
        json_schema_extra=_choices_of("sensitivity", SENSITIVITY_ANALYSES),
    )
    n_permutations: Annotated[int, Field(ge=1)] = Field(
        default=999, description="Re-randomisations of the randomisation test."
    )


class SensitivityTable(_Table):
    """``[sensitivity.NAME]``: options of one sensitivity analysis overriding [analysis]."""

    time: Annotated[str, _choice(TIME_EFFECTS)] | None = Field(
        default=None, description="Secular trend of this analysis."
    )
    knots: list[float] | None = Field(default=None, description="Spline knots of this analysis.")
    covariates: str | None = Field(default=None, description="Covariate formula of this analysis.")
    dof: str | float | None = Field(
        default=None, description="Denominator df rule of this analysis."
    )
    vcov: Annotated[str, _choice(VCOVS)] | None = Field(
        default=None, description="Variance estimator of this analysis (GEE: md, kc, fg, lz...)."
    )
    statistic: Annotated[str, _choice(PERMUTATION_STATISTICS)] | None = Field(
        default=None,
        description="permutation only: test statistic, " + ", ".join(PERMUTATION_STATISTICS),
    )


class TrialFile(_Table):
    """The whole file: ``schema_version`` and the tables."""

    schema_version: Literal[1] = Field(
        description="Version of this layout; 1 is the only version so far."
    )
    trial: TrialTable = Field(default_factory=lambda: TrialTable())
    design: DesignTable
    randomisation: RandomisationTable = Field(default_factory=lambda: RandomisationTable())
    rollout: RolloutTable | None = None
    data: DataTable | None = None
    power: PowerTable | None = None
    planning: PlanningTable | None = None
    analysis: AnalysisTable | None = None
    sensitivity: dict[str, SensitivityTable] = Field(default_factory=dict)


#: Tables in the order the reference and the template show them.
TABLES: tuple[tuple[str, type[BaseModel]], ...] = (
    ("trial", TrialTable),
    ("design", DesignTable),
    ("randomisation", RandomisationTable),
    ("rollout", RolloutTable),
    ("data", DataTable),
    ("power", PowerTable),
    ("planning", PlanningTable),
    ("planning.variance", PanelVariance),
    ("analysis", AnalysisTable),
    ("sensitivity.NAME", SensitivityTable),
)


# ------------------------------------------------------------------------ line map
_KEY = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_KEY_LINE = re.compile(rf"^\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*=")
_TABLE_LINE = re.compile(rf"^\s*\[\[?\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*\]\]?")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(_KEY, text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    r"""Map each table and key path of a TOML text to the (1-based) line defining it.

    A light scan, not a parser (the file has already been parsed by :mod:`tomllib`):
    it follows ``[table]`` headers and ``key =`` lines, which is enough to point an error
    at its line.

    Parameters
    ----------
    text : str
        The TOML source.

    Returns
    -------
    dict
        ``("analysis", "family") -> 12``, ``("analysis",) -> 10``, ...

    Examples
    --------
    >>> key_lines('schema_version = 1\n[analysis]\nfamily = "poisson"\n')
    {('schema_version',): 1, ('analysis',): 2, ('analysis', 'family'): 3}
    """
    out: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    depth = 0  # open brackets of a multi-line array: its lines are not keys
    for n, line in enumerate(text.splitlines(), start=1):
        if depth == 0:
            m = _TABLE_LINE.match(line)
            if m and not _KEY_LINE.match(line):
                table = _split_key(m.group(1))
                out.setdefault(table, n)
                continue
            k = _KEY_LINE.match(line)
            if k:
                out.setdefault(table + _split_key(k.group(1)), n)
                line = line[k.end() :]
        code = re.sub(r'"[^"]*"|\'[^\']*\'', "", line).split("#", 1)[0]
        depth = max(0, depth + code.count("[") - code.count("]"))
    return out


def _line_of(loc: tuple[Any, ...], lines: Mapping[tuple[str, ...], int]) -> int | None:
    path = tuple(str(p) for p in loc if not isinstance(p, int))
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _key_name(loc: tuple[Any, ...], *, table: bool = False) -> str:
    """``("analysis", "family")`` -> ``"[analysis] family"``; list indices as ``[k]``."""
    names = [str(p) for p in loc if not isinstance(p, int)]
    idx = "".join(f"[{p}]" for p in loc if isinstance(p, int))
    if not names:
        return ""
    nested = names[0] in ("sensitivity", "planning") and len(names) > 2
    split = 2 if nested else 1
    if table:  # the path itself is a table
        return f"[{'.'.join(names)}]"
    if len(names) == 1:
        return names[0] + idx
    return f"[{'.'.join(names[:split])}] {'.'.join(names[split:])}{idx}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the table model at a key path (``("analysis",)`` -> AnalysisTable)."""
    path = [str(p) for p in loc if not isinstance(p, int)]
    if not path:
        return TrialFile
    if path[0] == "sensitivity" and len(path) == 2:
        return SensitivityTable
    return dict(TABLES).get(".".join(path))


def _message(err: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        what = "table" if isinstance(err.get("input"), dict) else "key"
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"unknown {what}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "is required but missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind in ("literal_error", "union_tag_invalid"):
        value = err.get("input")
        msg = f"{msg}; got {value!r} ({type(value).__name__})"
    return msg


def _pydantic_issues(
    exc: ValidationError, file: str, lines: Mapping[tuple[str, ...], int]
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        loc = _without_branches(loc)
        if loc in seen:
            continue
        seen.add(loc)
        if err["type"] == "missing":
            table = _model_at(loc) is not None
        else:
            table = isinstance(err.get("input"), dict)
        issues.append(
            ConfigIssue(file, _line_of(loc, lines), _key_name(loc, table=table), _message(err, loc))
        )
    return issues


_BRANCHES = {"str", "float", "int", "date", "dict", "list", "function-after", "file", "table"}


#: Fields that are a file or a table (tagged unions: pydantic names the branch taken).
_TAGGED = {("planning", "variance"), ("rollout", "start_dates")}


def _without_branches(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the union-branch names pydantic puts in a location (``date``, ``table``, ...).

    A union (``str | table``, ``date | str``) reports its error once per branch, under the
    branch's name; a name is a branch (not a key) when what precedes it is not a table.
    """
    out: list[Any] = []
    for i, p in enumerate(loc):
        branch = isinstance(p, str) and ("[" in p or p in _BRANCHES)
        after_field = i > 0 and bool(out) and loc[i - 1] == out[-1]
        tagged = p in ("file", "table") and tuple(out) in _TAGGED and after_field
        if tagged or (branch and _model_at(tuple(out)) is None):
            continue
        out.append(p)
    return tuple(out)


# ------------------------------------------------------------------------ cross-checks
def _cross_issues(cfg: TrialFile) -> list[tuple[tuple[str, ...], str]]:
    """Rules that involve several keys; each is ``(key path, message)``."""
    out: list[tuple[tuple[str, ...], str]] = []
    d, r = cfg.design, cfg.randomisation
    if len(d.wave_starts) != len(d.clusters_per_wave):
        out.append(
            (
                ("design", "clusters_per_wave"),
                f"has {len(d.clusters_per_wave)} entries but wave_starts has "
                f"{len(d.wave_starts)}; give one count per wave",
            )
        )
    if d.dayfirst is not None and d.date_format is not None:
        out.append((("design", "date_format"), "give dayfirst or date_format, not both"))
    if r.seed is None and r.record is None:
        out.append((("randomisation", "seed"), "is required (or give record)"))
    if r.balance and r.cutoff is None:
        out.append((("randomisation", "cutoff"), "is required with balance (e.g. 0.2)"))
    if r.cutoff is not None and not r.balance:
        out.append((("randomisation", "cutoff"), "needs balance (the covariates to balance)"))
    if r.clusters is None and cfg.data is None:
        out.append(
            (("randomisation", "clusters"), "is required without [data] (a CSV of clusters)")
        )
    if cfg.data is not None and cfg.data.exposure and cfg.data.offset:
        out.append((("data", "offset"), "give exposure or offset, not both"))
    out += _power_issues(cfg)
    out += _analysis_issues(cfg)
    return out


def _power_issues(cfg: TrialFile) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    p = cfg.power
    typed = p is not None and any(v is not None for v in (p.tau2, p.gamma2, p.decay))
    if cfg.planning is not None:
        if p is None:
            out.append((("planning",), "needs a [power] table (effect, baseline, ...)"))
        elif typed:
            out.append(
                (
                    ("power", "tau2" if p.tau2 is not None else "gamma2"),
                    "give the variance components here or cite an estimate in [planning], not both",
                )
            )
        pl = cfg.planning
        if pl.period_months is not None and pl.gamma2 is None:
            out.append(
                (
                    ("planning", "gamma2"),
                    'is required with period_months: "same", "averaged" or a number',
                )
            )
    if p is not None and p.family != "gaussian" and p.baseline is None:
        out.append((("power", "baseline"), f"is required for family {p.family!r}"))
    return out


def _analysis_issues(cfg: TrialFile) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    a = cfg.analysis
    if a is None:
        for name in cfg.sensitivity:
            out.append((("sensitivity", name), "needs an [analysis] table"))
        return out
    if cfg.data is None:
        out.append((("analysis",), "needs a [data] table (the data to analyse)"))
    if cfg.power is not None and cfg.power.family != a.family:
        out.append(
            (
                ("analysis", "family"),
                f"is {a.family!r} but [power] family is {cfg.power.family!r}: the power "
                "section must be the power of the analysis the report runs",
            )
        )
    gaussian = a.family == "gaussian"
    structures = RANDOM_STRUCTURES if gaussian else GLMM_RANDOM
    if a.random not in structures:
        close = difflib.get_close_matches(a.random, structures, n=1)
        out.append(
            (
                ("analysis", "random"),
                f"must be one of {', '.join(map(repr, structures))} for family "
                f"{a.family!r}; got {a.random!r}"
                + (f"; did you mean {close[0]!r}?" if close else ""),
            )
        )
    dofs = GAUSSIAN_DOF if gaussian else GLMM_DOF
    if isinstance(a.dof, str) and a.dof not in dofs:
        out.append(
            (
                ("analysis", "dof"),
                f"must be one of {', '.join(map(repr, dofs))} or a positive number for "
                f"family {a.family!r}; got {a.dof!r}",
            )
        )
    if isinstance(a.dof, float) and not a.dof > 0:
        out.append((("analysis", "dof"), f"must be a positive number; got {a.dof!r}"))
    if a.method is not None and (a.method in ("reml", "ml")) != gaussian:
        out.append(
            (
                ("analysis", "method"),
                f"{a.method!r} does not fit family {a.family!r} "
                f"(use {'reml or ml' if gaussian else 'laplace or agq'})",
            )
        )
    if a.analysis_population == "as-treated" and cfg.rollout is None:
        if cfg.data is not None and cfg.data.treatment is None:
            out.append(
                (
                    ("analysis", "analysis_population"),
                    '"as-treated" needs [rollout] start_dates or [data] treatment',
                )
            )
    for name in cfg.sensitivity:
        if name not in SENSITIVITY_ANALYSES:
            out.append(
                (
                    ("sensitivity", name),
                    f"unknown sensitivity analysis; one of {', '.join(SENSITIVITY_ANALYSES)}",
                )
            )
        elif name not in a.sensitivity:
            out.append((("sensitivity", name), "options for an analysis not listed in sensitivity"))
    return out


# ------------------------------------------------------------------------ entry point
def validate_mapping(
    raw: Mapping[str, Any], *, file: str = "trial.toml", text: str = ""
) -> TrialFile:
    r"""Validate a parsed TOML mapping against the schema.

    Parameters
    ----------
    raw : mapping
        The parsed file (:func:`tomllib.loads`).
    file : str
        The file's name, for messages.
    text : str
        The file's text, to point messages at lines.

    Returns
    -------
    TrialFile
        The validated tables.

    Raises
    ------
    ConfigError
        Listing every problem, each naming the key and its line.

    Examples
    --------
    >>> cfg = validate_mapping({"schema_version": 1, "design": {
    ...     "periods": "2023Q1/2024Q4", "wave_starts": ["2023-04-01"],
    ...     "clusters_per_wave": [2]}, "randomisation": {"seed": 1, "clusters": "c.csv"}})
    >>> cfg.design.transition
    'first-treated'
    >>> try:
    ...     validate_mapping({"schema_version": 1, "familly": "poisson"})
    ... except ConfigError as exc:
    ...     print(*(i.key + ": " + i.message[:26] for i in exc.issues), sep="\n")
    [design]: is required but missing
    familly: unknown key (allowed: anal
    """
    lines = key_lines(text)
    if "schema_version" not in raw:
        raise ConfigError(
            [
                ConfigIssue(
                    file,
                    1 if text else None,
                    "schema_version",
                    f"is required: put `schema_version = {SCHEMA_VERSION}` on the first line",
                )
            ]
        )
    try:
        cfg = TrialFile.model_validate(dict(raw))
    except ValidationError as exc:
        issues = _pydantic_issues(exc, file, lines)
        issues.sort(key=lambda i: (i.line is not None, i.line or 0))
        raise ConfigError(issues) from None
    cross = _cross_issues(cfg)
    if cross:
        raise ConfigError(
            [
                ConfigIssue(file, _line_of(loc, lines), _key_name(loc, table=len(loc) == 1), msg)
                for loc, msg in cross
            ]
        )
    return cfg


# ------------------------------------------------------------------------ documentation
def _type_text(annotation: Any) -> str:
    """Name a field's type for readers: ``"list of date"``, ``"text or table"``..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (Union, UnionType):
        names = [_type_text(a) for a in args if a is not type(None)]
        if set(names) == {"date", "text"}:
            return "date"
        return " or ".join(dict.fromkeys(names))
    if origin is Literal:
        return "one of " + ", ".join(f"``{_toml_value(a)}``" for a in args)
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    plain: dict[Any, str] = {
        str: "text",
        int: "integer",
        float: "number",
        bool: "true/false",
        _dt.date: "date",
    }
    return plain.get(annotation, str(getattr(annotation, "__name__", annotation)))


def _default_text(field: Any) -> str:
    if field.is_required():
        return ""
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else _toml_value(value)
    return "" if field.default is None else _toml_value(field.default)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return repr(value)


def table_fields(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, description)`` of each key of one table, in file order."""
    rows = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        kind = _type_text(field.annotation)
        choices = extra.get("choices")
        if isinstance(choices, list):
            kind = "one of " + ", ".join(f'``"{c}"``' for c in choices)
            kind = f"list of {kind}" if get_origin(field.annotation) is list else kind
        rows.append((name, kind, _default_text(field), field.description or ""))
    return rows


def reference_rst() -> str:
    """Render the configuration reference page (``docs/reference/config.rst``).

    Returns
    -------
    str
        reStructuredText: one section per table, one entry per key with its type, default
        and description, all taken from the schema.

    Examples
    --------
    >>> "schema_version" in reference_rst()
    True
    """
    out = [
        ".. This page is generated by tools/make_config_reference.py from",
        "   steppedwedge/report/schema.py; edit the schema, then rerun the tool.",
        "",
        "Trial configuration (trial.toml)",
        "================================",
        "",
        "``steppedwedge report trial.toml`` and :func:`steppedwedge.report` read a TOML file",
        f"whose layout is version {SCHEMA_VERSION} of the schema below.  Paths are relative",
        "to the file's folder.  Unknown keys or tables, wrong types and bad values are errors",
        "naming the key and its line (``trial.toml:12: [analysis] familly: unknown key; did",
        "you mean `family`?``); ``steppedwedge validate trial.toml`` checks a file without",
        "running anything and ``steppedwedge report --init data.csv`` writes a commented",
        "template for your data.",
        "",
        "The file starts with ``schema_version = 1``.",
        "",
    ]
    for name, model in TABLES:
        title = f"[{name}]"
        doc = (model.__doc__ or "").split(":", 1)[-1].strip()
        out += [title, "-" * len(title), "", doc[:1].upper() + doc[1:], ""]
        for key, kind, default, desc in table_fields(model):
            required = model.model_fields[key].is_required()
            detail = kind + ("; required" if required else "")
            detail += f"; default ``{default}``" if default else ""
            out += [f"``{key}``", f"   {detail}.", "", f"   {desc}", ""]
    return "\n".join(out).rstrip() + "\n"
