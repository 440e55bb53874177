"""Render a :class:`~.document.Document` as one self-contained HTML page.

Everything is embedded (the stylesheet ``report.css`` beside this module, figures as
base64 PNG data URIs), so the page opens offline and prints cleanly (a print stylesheet
sets page breaks and hides the screen-only contents sidebar styling).  Every string from the
document is escaped with :func:`html.escape`: a cluster named ``<script>`` is shown as
text, never run.
"""

from __future__ import annotations

import base64
import html
from importlib import resources

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

__all__ = ["render_html"]

_NUM = ' class="num"'
#: What an empty cell shows (an en dash, marked as not applicable for screen readers).
_EMPTY = '<span aria-label="not applicable">\u2013</span>'


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _inline(parts: Inline) -> str:
    out = []
    for p in parts:
        if isinstance(p, Strong):
            out.append(f"<strong>{_esc(p.text)}</strong>")
        elif isinstance(p, Emph):
            out.append(f"<em>{_esc(p.text)}</em>")
        elif isinstance(p, Code):
            out.append(f"<code>{_esc(p.text)}</code>")
        else:
            out.append(_esc(p))
    return "".join(out)


def _head(text: str) -> str:
    """Escaped heading text with break opportunities after underscores (long column names)."""
    return _esc(text).replace("_", "_<wbr>")


def _table(t: Table, section: str) -> str:
    cols = t.shown
    num = {j: t.is_numeric(j) for j in cols}
    head = "".join(
        f'<th scope="col"{_NUM if num[j] else ""}>{_head(t.columns[j])}</th>' for j in cols
    )
    body = []
    for i in range(len(t.rows)):
        cells = []
        for j in cols:
            text = t.cell_text(i, j)
            cls = _NUM if num[j] else (' class="nowrap"' if len(text) <= 24 else "")
            cells.append(f"<td{cls}>{_esc(text) if text else _EMPTY}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"<caption>{_esc(t.caption)}</caption>" if t.caption else ""
    return (
        f'<div class="table-wrap"><table id="{_esc(section)}-{_esc(t.key)}">{caption}'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (bytes 16-19 of the IHDR chunk)."""
    return int.from_bytes(png[16:20], "big")


def _figure(f: Figure, number: int) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    alt = f.alt or f.caption
    # figures are rendered at 150 dpi; shown at 100 CSS px per inch (narrower if needed)
    width = round(_png_width(f.png) / 1.5)
    return (
        f'<figure id="fig-{_esc(f.name)}"><img alt="{_esc(alt)}" width="{width}" '
        f'src="data:image/png;base64,{data}">'
        f'<figcaption><span class="fignum">Figure {number}.</span> {_esc(f.caption)}'
        "</figcaption></figure>"
    )


def _section(sec: Section, number: int, fig_counter: list[int]) -> str:
    parts = [f'<section id="{_esc(sec.key)}"><h2><span class="secnum">{number}</span>']
    parts.append(f"{_esc(sec.title)}</h2>")
    for b in sec.blocks:
        if isinstance(b, Paragraph):
            parts.append(f"<p>{_inline(b.parts)}</p>")
        elif isinstance(b, BulletList):
            items = "".join(f"<li>{_inline(i)}</li>" for i in b.items)
            parts.append(f"<ul>{items}</ul>")
        elif isinstance(b, Callout):
            parts.append(f'<aside class="callout {_esc(b.kind)}">{_inline(b.parts)}</aside>')
        elif isinstance(b, Table):
            parts.append(_table(b, sec.key))
        elif isinstance(b, Figure):
            fig_counter[0] += 1
            parts.append(_figure(b, fig_counter[0]))
    parts.append("</section>")
    return "\n".join(parts)


def _contents(doc: Document) -> str:
    items = "".join(f'<li><a href="#{_esc(s.key)}">{_esc(s.title)}</a></li>' for s in doc.sections)
    return f'<nav class="contents" aria-label="Contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def _summary(doc: Document) -> str:
    rows = "".join(
        f'<div class="row"><dt>{_esc(item.label)}</dt><dd>{_inline(item.parts)}</dd></div>'
        for item in doc.summary
    )
    return (
        f'<section class="summary" aria-label="Summary"><h2>Summary</h2><dl>{rows}</dl></section>'
    )


def render_html(doc: Document) -> str:
    """Return the document as a self-contained HTML5 page.

    Examples
    --------
    >>> from steppedwedge.report.document import Document, Paragraph, Section
    >>> doc = Document("T <1>", "", (), (Section("s", "S & co", (Paragraph(("a*b*",)),)),))
    >>> page = render_html(doc)
    >>> "<title>T &lt;1&gt;</title>" in page, "<p>a*b*</p>" in page
    (True, True)
    """
    css = resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")
    counter = [0]
    body = "\n".join(_section(s, k, counter) for k, s in enumerate(doc.sections, start=1))
    subtitle = f'<p class="subtitle">{_esc(doc.subtitle)}</p>' if doc.subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(doc.title)}</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
        f"<header><h1>{_esc(doc.title)}</h1>{subtitle}</header>\n"
        f'<div class="front">{_summary(doc)}{_contents(doc)}</div>\n<main>\n{body}\n</main>\n'
        "</body>\n</html>\n"
    )
