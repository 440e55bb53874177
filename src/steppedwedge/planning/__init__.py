"""Planning a trial: analytic and simulated power, sample size, diagnostics, design search.

- :mod:`.analytic`: power of any design from the GLS variance of the treatment effect
  (Hussey & Hughes 2007), for Gaussian outcomes and on the link scale for counts and binary
  outcomes; :mod:`.result` holds its result and the planning-result protocol;
- :mod:`._solve`: sample size or detectable effect by solving the power equation;
- :mod:`.grid` and :mod:`.curves`: power over parameter grids, and power curves;
- :mod:`.diagnostics`: design effects, information content of cells (Kasza & Forbes 2019)
  and GLS cell weights;
- :mod:`.expected`: assurance and expected power over randomisation (``_link_assurance`` and
  ``_batched`` average link-scale power over variance draws);
- :mod:`.search`: search over candidate designs under constraints;
- :mod:`.simulation`: Monte-Carlo power of any analysis, with its fast Gaussian engine
  ``_fast_lmm`` (the LMM fitted on simulated cell statistics);
- :mod:`.history`: variance components for planning estimated from a historical panel of the
  clusters (``_panel``, ``_history_fit`` for GLMMs, ``_history_gaussian`` for LMMs,
  ``_history_boot``; ``_period`` converts them to another period length).

The entry points are re-exported at the top level (:func:`steppedwedge.power`,
:func:`steppedwedge.solve_power`, ...); ``steppedwedge.power`` is that function, not this
package.
"""

from __future__ import annotations

from ._solve import solve_power
from .analytic import power
from .curves import PowerCurve, power_curve
from .diagnostics import CellMap, DesignEffect, cell_weights, design_effect, information_content
from .expected import AssuranceResult, ExpectedPowerResult, assurance, expected_power
from .grid import power_grid
from .result import PowerResult
from .search import DesignSearchResult, search_designs

__all__ = [
    "AssuranceResult",
    "CellMap",
    "DesignEffect",
    "DesignSearchResult",
    "ExpectedPowerResult",
    "PowerCurve",
    "PowerResult",
    "assurance",
    "cell_weights",
    "design_effect",
    "expected_power",
    "information_content",
    "power",
    "power_curve",
    "power_grid",
    "search_designs",
    "solve_power",
]
