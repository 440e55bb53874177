"""A :class:`~steppedwedge.results.Summary` with a fixed compact text layout.

:meth:`Design.summary <steppedwedge.design.Design.summary>` and
:meth:`Allocation.summary <steppedwedge.randomise.Allocation.summary>` return one: the
structured title, header and tables give the HTML, markdown and LaTeX renderings of the
shared result protocol, and the text form (``as_text()``, ``str()``, ``print``) is the
compact record these objects have always printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..results import Summary

__all__ = ["TextSummary"]


@dataclass(frozen=True)
class TextSummary(Summary):
    r"""A summary whose plain-text rendering is ``text`` (the other renderings are structured).

    Examples
    --------
    >>> from steppedwedge.design._summary import TextSummary
    >>> s = TextSummary(title="Design", header=(("cells", "4 control"),), text="Design\n0 1")
    >>> print(s)
    Design
    0 1
    >>> "<table>" in s.as_html()
    True
    """

    text: str = ""

    def as_text(self) -> str:
        """Plain-text rendering: the compact layout ``text``."""
        return self.text
