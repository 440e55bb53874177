"""The count-outcome audit scenario shared by the calibration tests and tools/calibrate_counts.py.

The scenario is the bundled council example (``steppedwedge.datasets.load_councils``): 17
councils on a quarterly grid of 20 periods, seven waves, quarterly entries into care counted in
each council's child population.  Outcomes are drawn by the library's own generator
(:func:`steppedwedge.simulate`) with

* a persistent council effect on the log rate, SD 0.33 (``tau2 = 0.33**2``),
* a council-quarter effect, SD 0.15, whose correlation decays by 0.9 per quarter
  (``gamma2 = 0.15**2``, ``decay = 0.9``: correlation ``0.9**|j - k|`` between quarters),
* Poisson counts with the council's real-scale child population as exposure and a control
  rate of 6.6 per 10,000 children a quarter (the example's planning rate),

as in the independent audit of the count analyses.  The eight-council variant keeps the first
eight councils (by label) with one council per wave and two in the first.

Nothing here needs R or the network; every draw takes a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

import steppedwedge as sw
from steppedwedge.randomise import Allocation

#: Link-scale variance components of the audit.
AUDIT_VARIANCE = sw.VarianceComponents(sigma2=1.0, tau2=0.33**2, gamma2=0.15**2, decay=0.9)
#: Control rate per child per quarter.
AUDIT_BASELINE = 6.6e-4
#: The alternative of the audit (rate ratio 0.85).
AUDIT_RATE_RATIO = 0.85


@dataclass(frozen=True)
class CountScenario:
    """One audit scenario: the allocated design, populations and the randomisation space."""

    name: str
    allocation: Allocation
    population: np.ndarray  # (I, T) child population, rows in allocation.design order

    @property
    def design(self) -> sw.Design:
        """The allocated design (rows are the councils)."""
        return self.allocation.design

    @property
    def n_clusters(self) -> int:
        """Number of councils."""
        return int(self.design.matrix.shape[0])

    def draw(self, log_rate_ratio: float, rng: np.random.Generator | int) -> pd.DataFrame:
        """One trial's council-quarter counts (columns of the council example)."""
        cells = sw.simulate(
            self.design,
            effect=log_rate_ratio,
            variance=AUDIT_VARIANCE,
            cluster_size=self.population,
            family="poisson",
            baseline=AUDIT_BASELINE,
            rng=rng,
        )
        return cells.rename(
            columns={
                "cluster": "council",
                "period": "quarter",
                "treatment": "treated",
                "outcome": "entries_into_care",
                "population": "population_0_17",
            }
        )


#: Column roles of a drawn trial, as keyword arguments of ``sw.fit``.
ROLES = {
    "outcome": "entries_into_care",
    "cluster": "council",
    "period": "quarter",
    "treatment": "treated",
    "exposure": "population_0_17",
}


def _populations(councils: list[str], periods: pd.Index) -> np.ndarray:
    data = sw.datasets.load_councils()
    wide = data.pivot(index="council", columns="quarter", values="population_0_17")
    wide = wide.loc[councils]
    return wide.to_numpy(dtype=float).reshape(len(councils), len(periods))


@cache
def council_scenario(n_councils: int = 17) -> CountScenario:
    """The audit scenario with 17 councils (the bundled example) or 8 councils.

    Parameters
    ----------
    n_councils : {17, 8}

    Returns
    -------
    CountScenario
        17 councils: the example's own allocation (``council_randomisation``).  8 councils:
        the first eight councils by label on the same seven wave starts (two councils in the
        first wave), simple randomisation with the example's seed.
    """
    from steppedwedge.report.example import (
        COUNCIL_PERIODS,
        COUNCIL_SEED,
        COUNCIL_WAVE_STARTS,
        council_randomisation,
    )

    chars = sw.datasets.load_council_characteristics()
    if n_councils == 17:
        alloc = council_randomisation(chars)
    elif n_councils == 8:
        sizes = (2, 1, 1, 1, 1, 1, 1)
        slots = {
            f"wave {w}, slot {k}": start
            for w, (start, n) in enumerate(zip(COUNCIL_WAVE_STARTS, sizes, strict=True), 1)
            for k in range(1, n + 1)
        }
        template = sw.Design.from_start_dates(slots, COUNCIL_PERIODS)
        councils = sorted(chars["council"])[:8]
        alloc = sw.randomise(template, councils, rng=COUNCIL_SEED, alpha=None)
    else:
        raise ValueError(f"`n_councils` must be 17 or 8; got {n_councils!r}.")
    design = alloc.design
    population = _populations([str(c) for c in design.clusters], design.periods)
    return CountScenario(
        name=f"{n_councils} councils x 20 quarters", allocation=alloc, population=population
    )


def null_and_alternative() -> tuple[float, float]:
    """Log rate ratios of the null (0) and of the audit's alternative (log 0.85)."""
    return 0.0, math.log(AUDIT_RATE_RATIO)
