"""Render a :class:`~.document.Document` as CommonMark/GFM Markdown.

Every string from the document is escaped (:func:`escape`): Markdown punctuation gets a
backslash and ``|`` in table cells is escaped too, so that a cluster named
``<script>alert(1)</script> | & *x*`` reads as those characters in any Markdown viewer and
cannot shift a table's columns.  Figures are referenced as PNG files beside the Markdown.
"""

from __future__ import annotations

import re

from .document import (
    BulletList,
    Callout,
    Code,
    Document,
    Emph,
    Figure,
    Inline,
    Paragraph,
    Section,
    Strong,
    Table,
)

__all__ = ["escape", "render_markdown", "render_section"]

_ALWAYS = re.compile(r"([\\`*|\[\]~])")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # only `<` that could open raw HTML
_ENTITY = re.compile(r"&(?=#|\w+;)")  # only `&` that could start an entity
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # intraword `_` is inert
_LINE_START = re.compile(r"^([#>]|[-+](?=\s)|\d+(?=[.)](\s|$)))")


def escape(text: str) -> str:
    r"""Backslash-escape what Markdown would read as markup; fold line breaks into spaces.

    Only characters that could start markup are escaped, so the text stays readable:
    ``*``, ``|``, backticks, brackets, ``~`` and backslashes always; ``<`` before a letter,
    ``/``, ``!`` or ``?``; ``&`` before an entity; ``_`` at a word boundary; and a ``#``,
    ``>``, list marker or number that starts the text.

    Examples
    --------
    >>> print(escape("<b> | *x* p < 0.05 & population_0_17"))
    \<b> \| \*x\* p < 0.05 & population_0_17
    """
    text = " ".join(text.splitlines())
    text = _ALWAYS.sub(r"\\\1", text)
    text = _TAG.sub(r"\\<", text)
    text = _ENTITY.sub(r"\\&", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    m = _LINE_START.match(text)
    if m:
        head = m.group(1)
        text = (head + "\\" + text[len(head) :]) if head[0].isdigit() else "\\" + text
    return text


def _code(text: str) -> str:
    """Return an inline code span that survives backticks in ``text`` (paragraphs only)."""
    text = " ".join(text.splitlines())
    ticks = max((len(m) for m in re.findall(r"`+", text)), default=0) + 1
    fence = "`" * ticks
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _wrap(text: str, marker: str) -> str:
    """Emphasis markers hug the text (``**a** `` not ``**a **``, which CommonMark ignores)."""
    core = text.strip()
    if not core:
        return escape(text)
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    return f"{escape(lead)}{marker}{escape(core)}{marker}{escape(trail)}"


def _inline(parts: Inline) -> str:
    out = []
    for p in parts:
        if isinstance(p, Strong):
            out.append(_wrap(p.text, "**"))
        elif isinstance(p, Emph):
            out.append(_wrap(p.text, "*"))
        elif isinstance(p, Code):
            out.append(_code(p.text))
        else:
            out.append(escape(p))
    return "".join(out)


def _table(t: Table) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    cols = t.shown
    align = ["---:" if t.is_numeric(j) else ":---" for j in cols]
    lines = [row([escape(t.columns[j]) for j in cols]), row(align)]
    for i in range(len(t.rows)):
        lines.append(row([escape(t.cell_text(i, j)) or "\u2013" for j in cols]))
    head = [f"*{escape(t.caption)}*", ""] if t.caption else []
    return "\n".join(head + lines)


def render_section(sec: Section, level: int = 2) -> str:
    """Return one section as Markdown."""
    out = [f"{'#' * level} {escape(sec.title)}", ""]
    for b in sec.blocks:
        if isinstance(b, Paragraph):
            out.append(_inline(b.parts))
        elif isinstance(b, BulletList):
            out.append("\n".join(f"- {_inline(i)}" for i in b.items))
        elif isinstance(b, Callout):
            out.append(f"> {_inline(b.parts)}")
        elif isinstance(b, Table):
            out.append(_table(b))
        elif isinstance(b, Figure):
            out.append(f"![{escape(b.alt or b.caption)}]({b.name}.png)\n\n*{escape(b.caption)}*")
        out.append("")
    return "\n".join(out)


def render_markdown(doc: Document) -> str:
    r"""Return the document as Markdown (figures referenced as ``<name>.png`` files).

    Examples
    --------
    >>> from steppedwedge.report.document import Document, Section, Table
    >>> t = Table("t", ("council",), (("A | B",),))
    >>> md = render_markdown(Document("T", "", (), (Section("s", "S", (t,)),)))
    >>> "| A \\| B |" in md
    True
    """
    out = [f"# {escape(doc.title)}", ""]
    if doc.subtitle:
        out += [escape(doc.subtitle), ""]
    if doc.summary:
        out += ["## Summary", ""]
        out += [f"- **{escape(item.label)}:** {_inline(item.parts)}" for item in doc.summary]
        out.append("")
    for sec in doc.sections:
        out.append(render_section(sec))
    return "\n".join(out).rstrip() + "\n"
