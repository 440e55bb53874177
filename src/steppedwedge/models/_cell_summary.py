"""Presentation shared by the estimators on cluster-period summaries.

The design-based (:class:`~steppedwedge.DesignBasedResult`) and staggered-rollout
(:class:`~steppedwedge.StaggeredResult`) results reduce every cluster-period cell to one
summary; their ``summary()`` headers open with the same three lines, built here.

References
----------
Thompson JA, Davey C, Fielding K, Hargreaves JR, Hayes RJ (2018). Stat Med 37:2487-2500
(cluster-period summaries as the unit of analysis).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CellSummaryFit", "cell_summary_header"]


class CellSummaryFit(Protocol):
    """The (read-only) attributes :func:`cell_summary_header` reads."""

    @property
    def outcome(self) -> str: ...
    @property
    def scale(self) -> str: ...
    @property
    def n_clusters(self) -> int: ...
    @property
    def n_periods(self) -> int: ...


def cell_summary_header(method: str, fit: CellSummaryFit) -> list[tuple[str, str]]:
    """Return the method, cell-summary and size lines of a cell-summary result's header.

    Parameters
    ----------
    method : str
        The estimator's description.
    fit : CellSummaryFit
        The result (its ``outcome``, ``scale``, ``n_clusters`` and ``n_periods``).

    Returns
    -------
    list of tuple of str
        ``[("Method", ...), ("Outcome per cluster-period", ...), ("Clusters / periods", ...)]``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> fit = SimpleNamespace(outcome="y", scale="mean", n_clusters=8, n_periods=5)
    >>> cell_summary_header("Vertical", fit)[2]
    ('Clusters / periods', '8 / 5')
    """
    return [
        ("Method", method),
        ("Outcome per cluster-period", f"{fit.outcome}: {fit.scale}"),
        ("Clusters / periods", f"{fit.n_clusters} / {fit.n_periods}"),
    ]
