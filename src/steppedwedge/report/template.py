"""``steppedwedge report --init data.csv``: a commented ``trial.toml`` for the user's CSV.

The template has every key of the schema (:mod:`steppedwedge.report.schema`) with its
description as a comment.  Keys it can guess from the data are filled in (the column roles,
the period grid, and the waves from the treatment column when the trial has already run);
the others are commented out at their defaults.  The seed is never guessed: it must be the
one the allocation was drawn with.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["guess_roles", "init_template"]

_PATTERNS = {
    "cluster": r"council|cluster|^la(_|$)|local.?authority|site|hospital|school|practice|ward",
    "period": r"quarter|period|month|year|date|time",
    "treatment": r"treat|intervention|exposed|arm",
    "exposure": r"population|person.?time|exposure|pop_",
    "outcome": r"count|entries|events|cases|outcome|admission|referral",
}


def _match(columns: list[str], kind: str) -> list[str]:
    return [c for c in columns if re.search(_PATTERNS[kind], c, flags=re.IGNORECASE)]


def _is_binary(col: pd.Series) -> bool:
    values = pd.unique(col.dropna())
    return len(values) > 0 and set(np.asarray(values, dtype=object).tolist()) <= {0, 1}


def guess_roles(frame: pd.DataFrame) -> dict[str, str | None]:
    """Guess which column is the cluster, period, treatment, exposure and outcome.

    Parameters
    ----------
    frame : pandas.DataFrame
        The trial data, one row per cluster-period (or individual).

    Returns
    -------
    dict
        ``{"cluster": ..., "period": ..., "treatment": ..., "exposure": ..., "outcome": ...}``
        (None where nothing fits).

    Examples
    --------
    >>> import steppedwedge as sw
    >>> guess_roles(sw.datasets.load_councils())["outcome"]
    'entries_into_care'
    """
    cols = [str(c) for c in frame.columns]
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(frame[c])]
    text = [c for c in cols if c not in numeric]
    used: set[str] = set()

    def pick(cands: list[str]) -> str | None:
        for c in cands:
            if c not in used:
                used.add(c)
                return c
        return None

    roles: dict[str, str | None] = {}
    roles["cluster"] = pick(_match(text, "cluster") + text)
    roles["period"] = pick(
        [c for c in _match(cols, "period") if c in text] + _match(cols, "period")
    )
    roles["treatment"] = pick([c for c in _match(numeric, "treatment") if _is_binary(frame[c])])
    roles["exposure"] = pick(_match(numeric, "exposure"))
    roles["outcome"] = pick(_match(numeric, "outcome") + numeric)
    return roles


def _family(frame: pd.DataFrame, roles: dict[str, str | None]) -> str:
    outcome = roles["outcome"]
    if outcome is None:
        return "gaussian"
    y = frame[outcome].dropna()
    if _is_binary(y):
        return "binomial"
    integer = pd.api.types.is_integer_dtype(y) or bool(np.all(np.mod(y, 1) == 0))
    return "poisson" if integer and bool((y >= 0).all()) else "gaussian"


def _grid_and_waves(frame: pd.DataFrame, roles: dict[str, str | None]) -> dict[str, Any]:
    """``periods``, and ``wave_starts``/``clusters_per_wave`` from the treatment column."""
    out: dict[str, Any] = {}
    period, cluster, treat = roles["period"], roles["cluster"], roles["treatment"]
    if period is None:
        return out
    try:
        labels = pd.Series([pd.Period(str(v)) for v in frame[period]], index=frame.index)
    except (ValueError, TypeError):
        return out
    out["periods"] = f"{labels.min()}/{labels.max()}"
    if treat is None or cluster is None:
        return out
    treated = frame[treat] > 0
    first = labels[treated].groupby(frame.loc[treated, cluster]).min()
    if first.empty:
        return out
    counts = first.value_counts().sort_index()
    out["wave_starts"] = [p.start_time.date() for p in counts.index]
    out["clusters_per_wave"] = [int(n) for n in counts.to_numpy()]
    n_never = frame[cluster].nunique() - len(first)
    if n_never:
        out["never"] = n_never
    return out


def _value(value: Any) -> str:
    from .schema import _toml_value

    text: str
    if hasattr(value, "isoformat") and not isinstance(value, str):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "[" + ", ".join(_value(v) for v in value) + "]"
    else:
        text = _toml_value(value)
    return text


def _comment(text: str) -> list[str]:
    wrapped = textwrap.wrap(text, width=88, break_on_hyphens=False, break_long_words=False)
    return ["# " + line for line in wrapped]


def init_template(data: str | Path, *, relative_to: str | Path | None = None) -> str:
    """Return a commented ``trial.toml`` for the data in ``data``.

    Parameters
    ----------
    data : str or pathlib.Path
        The trial's CSV (one row per cluster-period or per individual).
    relative_to : str or pathlib.Path, optional
        Folder the template will be saved in (paths are written relative to it).

    Returns
    -------
    str
        TOML text; every key of the schema is present, active when guessed or required,
        commented out otherwise.

    Examples
    --------
    >>> import tempfile, pathlib, tomllib, steppedwedge as sw
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> sw.datasets.load_councils().to_csv(folder / "councils.csv", index=False)
    >>> raw = tomllib.loads(init_template(folder / "councils.csv", relative_to=folder))
    >>> raw["data"]["exposure"], raw["design"]["clusters_per_wave"]
    ('population_0_17', [3, 2, 3, 3, 2, 2, 2])
    """
    from ._loader import read_csv_file
    from .schema import SCHEMA_VERSION, TABLES, table_fields

    path = Path(data)
    frame = read_csv_file(path, str(path))
    roles = guess_roles(frame)
    rel = path.name if relative_to is None else _relative(path, Path(relative_to))
    family = _family(frame, roles)
    grid = _grid_and_waves(frame, roles)
    filled: dict[str, dict[str, Any]] = {
        "trial": {"title": f"Stepped-wedge cluster randomised trial: {path.stem}"},
        "design": {k: v for k, v in grid.items() if k != "never"},
        "randomisation": {"cluster_column": roles["cluster"]},
        "data": {"file": rel, **{k: v for k, v in roles.items() if v is not None}},
        "analysis": {"family": family},
    }
    lines = [
        f"# trial.toml for {path.name}, written by `steppedwedge report --init`.",
        "# Check every active line, fill in the seed (or an allocation record), then run",
        "#     steppedwedge validate trial.toml && steppedwedge report trial.toml -o report",
        "# Keys commented out are at their defaults.  Reference: docs/reference/config.rst.",
        "",
        f"schema_version = {SCHEMA_VERSION}",
    ]
    if grid.get("never"):
        lines += _comment(
            f"note: {grid['never']} clusters are never treated in the data; the waves below "
            "count only the treated ones"
        )
    optional = {"rollout", "power", "planning", "planning.variance", "sensitivity.NAME"}
    for name, model in TABLES:
        doc = (model.__doc__ or "").split(":", 1)[-1].strip()
        doc = doc[:1].upper() + doc[1:]
        prefix = "# " if name in optional else ""
        lines += ["", *_comment(doc), f"{prefix}[{name}]"]
        for key, _kind, default, desc in table_fields(model):
            lines += _comment(desc)
            value = filled.get(name, {}).get(key)
            if value is not None and not prefix:
                lines.append(f"{key} = {_value(value)}")
            elif key == "seed":
                lines.append("# seed = 12345   # REQUIRED: the seed your allocation was drawn with")
            else:
                example = model.model_fields[key].examples
                shown = default if default and default != "required" else None
                if shown is None and example:
                    shown = _value(example[0])
                lines.append(f"# {key} = {shown if shown is not None else '...'}")
    return "\n".join(lines) + "\n"


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())
