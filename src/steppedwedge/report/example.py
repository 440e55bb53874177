"""The bundled council example as a :class:`~steppedwedge.report.TrialConfig`.

The constants here are the single source of truth for how the example trial was designed
and randomised: ``tools/make_council_example.py`` calls :func:`council_randomisation` to
allocate the synthetic councils to waves before simulating their outcomes, so re-running the
example's report reproduces exactly the allocation that generated the bundled data.
"""

from __future__ import annotations

import math

import pandas as pd

from ..design import Design
from ..randomise import Allocation, randomise
from .config import AnalysisSpec, DataSpec, PowerSpec, TrialConfig

__all__ = [
    "COUNCIL_BALANCE",
    "COUNCIL_CUTOFF",
    "COUNCIL_PERIODS",
    "COUNCIL_SEED",
    "COUNCIL_STRATA",
    "COUNCIL_WAVE_SIZES",
    "COUNCIL_WAVE_STARTS",
    "council_example",
    "council_randomisation",
]

#: Seed of the example's randomisation (recorded in its report).
COUNCIL_SEED = 20230101
#: Quarterly period grid of the example.
COUNCIL_PERIODS = "2022Q1/2026Q4"
#: First day of each of the seven waves (one every six months from 2023Q1).
COUNCIL_WAVE_STARTS = (
    "2023-01-01",
    "2023-07-01",
    "2024-01-01",
    "2024-07-01",
    "2025-01-01",
    "2025-07-01",
    "2026-01-01",
)
#: Councils starting in each wave.
COUNCIL_WAVE_SIZES = (3, 2, 3, 3, 2, 2, 2)
COUNCIL_STRATA = "region"
COUNCIL_BALANCE = ("population_0_17", "baseline_looked_after_per_10k")
COUNCIL_CUTOFF = 0.2


def _template() -> Design:
    slots = {
        f"wave {w}, slot {k}": start
        for w, (start, n) in enumerate(
            zip(COUNCIL_WAVE_STARTS, COUNCIL_WAVE_SIZES, strict=True), start=1
        )
        for k in range(1, n + 1)
    }
    return Design.from_start_dates(slots, COUNCIL_PERIODS)


def council_randomisation(characteristics: pd.DataFrame) -> Allocation:
    """Randomise the example's councils to waves exactly as the example trial did.

    Parameters
    ----------
    characteristics : pandas.DataFrame
        One row per council with columns ``council``, ``region``, ``population_0_17`` and
        ``baseline_looked_after_per_10k`` (other columns are ignored).

    Returns
    -------
    Allocation
        Stratified by region, covariate-constrained on population and baseline rate (best
        20% of 10,000 sampled allocations kept), seed :data:`COUNCIL_SEED`.
    """
    clusters = characteristics[["council", COUNCIL_STRATA, *COUNCIL_BALANCE]].rename(
        columns={"council": "cluster"}
    )
    return randomise(
        _template(),
        clusters,
        strata=COUNCIL_STRATA,
        balance=list(COUNCIL_BALANCE),
        cutoff=COUNCIL_CUTOFF,
        rng=COUNCIL_SEED,
    )


def council_example() -> TrialConfig:
    """Return the configuration of the synthetic 17-council trial shipped with the package.

    Seven waves start every six months from 2023Q1 on a quarterly grid 2022Q1-2026Q4;
    councils are randomised to waves stratified by region and balanced on child population
    and baseline looked-after rate.  The observed data are
    :func:`steppedwedge.datasets.load_councils` (synthetic), which were simulated after this
    very randomisation.

    Examples
    --------
    >>> from steppedwedge.report import council_example
    >>> cfg = council_example()
    >>> cfg.n_clusters, len(cfg.wave_starts)
    (17, 7)
    """
    from ..datasets import load_council_characteristics, load_councils

    chars = load_council_characteristics()
    data = DataSpec(
        frame=load_councils(),
        cluster="council",
        period="quarter",
        treatment="treated",
        outcome="entries_into_care",
        exposure="population_0_17",
        source="steppedwedge.datasets.load_councils()",
    )
    return TrialConfig(
        title="Synthetic council trial: a family-support model rolled out to 17 councils",
        question="Does the family-support model reduce the rate of entries into care?",
        periods=COUNCIL_PERIODS,
        wave_starts=COUNCIL_WAVE_STARTS,
        clusters_per_wave=COUNCIL_WAVE_SIZES,
        clusters=chars.drop(columns=["wave", "start_date"]),
        cluster_column="council",
        strata=COUNCIL_STRATA,
        balance=COUNCIL_BALANCE,
        cutoff=COUNCIL_CUTOFF,
        seed=COUNCIL_SEED,
        data=data,
        power=PowerSpec(
            family="poisson",
            effect=math.log(0.85),
            # about 26 entries into care per 10,000 children a year (DfE, England)
            baseline=6.6e-4,
            cluster_size=1.0,
            exposure_column="population_0_17",
            # between-council SD of log rates ~0.33, council-quarter SD ~0.15 decaying
            # 0.68 a year (real-trials.md section 4.3)
            tau2=0.33**2,
            gamma2=0.15**2,
            decay=0.68**0.25,
            variance_source="Variance components assumed from the between-council SD of log "
            "rates (about 0.33) and a council-quarter SD of about 0.15 decaying 0.68 a year, "
            "read from 13 years of DfE council data (real-trials.md section 4.3).",
        ),
        analysis=AnalysisSpec(family="poisson", random="nested+decay"),
        source="example:councils",
    )
