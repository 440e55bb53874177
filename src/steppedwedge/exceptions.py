"""Exceptions and warnings raised by steppedwedge.

Every error the library raises on purpose derives from :class:`SteppedWedgeError`; the
input errors also derive from :class:`ValueError` so that generic ``except ValueError``
handlers keep working.  Every warning derives from :class:`SteppedWedgeWarning`, so a
caller can silence or escalate all of them at once::

    import warnings
    import steppedwedge as sw
    warnings.simplefilter("error", sw.SteppedWedgeWarning)
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DesignError",
    "MissingDataWarning",
    "OptionError",
    "SmallSampleWarning",
    "SolveError",
    "SteppedWedgeError",
    "SteppedWedgeWarning",
]


class SteppedWedgeError(Exception):
    """Root of every error raised deliberately by steppedwedge."""


class DesignError(SteppedWedgeError, ValueError):
    """A design is invalid or the requested estimand is not identifiable in it.

    Raised for duplicate cluster labels, a cluster that returns to control, treatment
    values outside [0, 1], all-treated or never-treated designs, treatment collinear
    with period, unusable start dates or period grids, and impossible randomisation
    constraints.
    """


class DataError(SteppedWedgeError, ValueError):
    """Trial data are inconsistent with their declared roles or with the design.

    Raised for missing cluster/period values, duplicated aggregate cells, negative
    counts, non-positive exposure, events greater than trials, rows in unobserved
    cells and treatment columns that disagree with the design.  The message names
    the column, cluster or period at fault.
    """


class OptionError(SteppedWedgeError, ValueError):
    """An option (keyword argument, config key or CLI flag) has an invalid or conflicting value.

    Raised for an unknown choice (``random="decay2"``), options that cannot be combined
    (``exposure=`` with ``offset=``) and values out of range.  The message names the option
    and lists the accepted values.
    """


class SolveError(SteppedWedgeError, RuntimeError):
    """A sample-size or power equation has no solution in the searched range.

    :func:`steppedwedge.solve_power` raises this instead of returning NaN; the
    message says what power is reachable and how to widen the search.
    """


class SteppedWedgeWarning(UserWarning):
    """Root of every warning issued by steppedwedge."""


class ConvergenceWarning(SteppedWedgeWarning):
    """An optimiser stopped before convergence, or a fit lies on a boundary."""


class SmallSampleWarning(SteppedWedgeWarning):
    """Too few clusters (or allocations) for the requested inference to be reliable."""


class MissingDataWarning(SteppedWedgeWarning):
    """Rows or cells were dropped or are missing; the message says which and how many."""
