"""The report's document model: sections made of paragraphs, tables and figures.

The report is built as structured data, not as Markdown text: a renderer
(:mod:`.html`, :mod:`.markdown`) turns the same :class:`Document` into a self-contained
HTML page or a Markdown file, escaping every string for its own format, and
:meth:`Document.results` collects every number (table cells keep their raw values beside
the formatted text) into the machine-readable ``results.json``.

Inline text is a tuple of parts: a plain ``str`` (always shown as text, never parsed as
markup), :class:`Strong`, :class:`Emph` or :class:`Code`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Block",
    "BulletList",
    "Callout",
    "Code",
    "Document",
    "Emph",
    "Figure",
    "Inline",
    "Paragraph",
    "Section",
    "Strong",
    "SummaryItem",
    "Table",
    "inline",
]


@dataclass(frozen=True)
class Strong:
    """Bold text."""

    text: str


@dataclass(frozen=True)
class Emph:
    """Italic text."""

    text: str


@dataclass(frozen=True)
class Code:
    """A name from the data or the library (column, option, function), set in monospace."""

    text: str


InlinePart = str | Strong | Emph | Code
Inline = tuple[InlinePart, ...]


def inline(*parts: InlinePart) -> Inline:
    """Return the parts as an :data:`Inline` tuple (a convenience for builders)."""
    return tuple(parts)


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of inline text."""

    parts: Inline


@dataclass(frozen=True)
class BulletList:
    """An unordered list; each item is inline text."""

    items: tuple[Inline, ...]


@dataclass(frozen=True)
class Callout:
    """A highlighted note (a warning about the analysis or a comment on the planning)."""

    parts: Inline
    kind: str = "note"  # "note" or "warning"


@dataclass(frozen=True)
class Table:
    """A table whose cells keep their raw values for ``results.json``.

    Parameters
    ----------
    key : str
        Identifier of the table in ``results.json`` (unique within its section).
    columns : tuple of str
        Column headings (shown to readers).
    rows : tuple of tuple
        Raw cell values (numbers, strings, ``None``).
    formatters : tuple of callable or None
        One per column: turns a raw value into the displayed text (``None``: ``str``).
    caption : str
        Shown above the table.
    numeric : tuple of bool
        Which columns are right-aligned numbers (derived from the rows if empty).
    hidden : tuple of str
        Columns kept for ``results.json`` but not shown (e.g. the raw limits of a CI that
        the table shows as formatted text).
    """

    key: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    formatters: tuple[Callable[[Any], str] | None, ...] = ()
    caption: str = ""
    numeric: tuple[bool, ...] = ()
    hidden: tuple[str, ...] = ()

    @property
    def shown(self) -> tuple[int, ...]:
        """Indices of the columns shown to readers."""
        return tuple(j for j, c in enumerate(self.columns) if c not in self.hidden)

    def cell_text(self, i: int, j: int) -> str:
        """Return the displayed text of cell ``(i, j)``."""
        value = self.rows[i][j]
        fmt = self.formatters[j] if j < len(self.formatters) else None
        if fmt is not None:
            return fmt(value)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            from .formatting import fmt_num

            return fmt_num(value)
        return str(value)

    def is_numeric(self, j: int) -> bool:
        """Whether column ``j`` holds numbers (right-aligned)."""
        if self.numeric:
            return self.numeric[j]
        return any(isinstance(r[j], (int, float)) and not isinstance(r[j], bool) for r in self.rows)


@dataclass(frozen=True)
class Figure:
    """A PNG figure with a caption (and alternative text for screen readers)."""

    name: str
    png: bytes = field(repr=False)
    caption: str
    alt: str = ""


Block = Paragraph | BulletList | Callout | Table | Figure


@dataclass(frozen=True)
class Section:
    """One report section.

    Parameters
    ----------
    key : str
        Identifier (HTML anchor and ``results.json`` key).
    title : str
        Heading.
    blocks : tuple of Block
        Content in reading order.
    values : mapping
        Numbers (and short facts) the section's text states, for ``results.json``.
    consort : tuple of str
        CONSORT-SW items the section fills (shown in the contents list and the docs).
    """

    key: str
    title: str
    blocks: tuple[Block, ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    consort: tuple[str, ...] = ()

    @property
    def figures(self) -> tuple[Figure, ...]:
        """The section's figures."""
        return tuple(b for b in self.blocks if isinstance(b, Figure))

    @property
    def tables(self) -> tuple[Table, ...]:
        """The section's tables."""
        return tuple(b for b in self.blocks if isinstance(b, Table))

    @property
    def markdown(self) -> str:
        """The section rendered as Markdown (see :func:`.markdown.render_section`)."""
        from .markdown import render_section

        return render_section(self)

    def table(self, key: str) -> Table:
        """Return the table with identifier ``key``."""
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(f"section {self.key!r} has no table {key!r}")


@dataclass(frozen=True)
class SummaryItem:
    """One line of the summary box: a label and inline text."""

    label: str
    parts: Inline


@dataclass(frozen=True)
class Document:
    """A titled report: a summary box and its sections."""

    title: str
    subtitle: str
    summary: tuple[SummaryItem, ...]
    sections: tuple[Section, ...]
    values: Mapping[str, Any] = field(default_factory=dict)

    def results(self) -> dict[str, Any]:
        """Every number of the report as plain JSON-ready data (NaN becomes ``None``)."""
        out: dict[str, Any] = {
            "title": self.title,
            "summary": _clean(dict(self.values)),
            "sections": {},
        }
        for sec in self.sections:
            out["sections"][sec.key] = {
                "title": sec.title,
                "values": _clean(dict(sec.values)),
                "tables": {
                    t.key: {
                        "columns": list(t.columns),
                        "rows": [[_clean(v) for v in row] for row in t.rows],
                    }
                    for t in sec.tables
                },
                "figures": [f"{f.name}.png" for f in sec.figures],
            }
        return out


def _clean(value: Any) -> Any:
    """Convert numpy scalars and containers to JSON-ready Python values."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def table_from_records(
    key: str,
    records: Sequence[Mapping[str, Any]],
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
    caption: str = "",
    hidden: Sequence[str] = (),
) -> Table:
    """Build a :class:`Table` from a list of row dictionaries (the keys are the headings)."""
    columns = tuple(records[0].keys()) if records else ()
    fm = formatters or {}
    return Table(
        key,
        columns,
        tuple(tuple(r[c] for c in columns) for r in records),
        tuple(fm.get(c) for c in columns),
        caption,
        hidden=tuple(hidden),
    )
