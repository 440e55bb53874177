"""The bundled council example as a :class:`~steppedwedge.report.TrialConfig`.

The constants here are the single source of truth for how the example trial was designed
and randomised: ``tools/make_council_example.py`` calls :func:`council_randomisation` to
allocate the synthetic councils to waves before simulating their outcomes, so re-running the
example's report reproduces exactly the allocation that generated the bundled data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    "COUNCIL_VARIANCE",
    "COUNCIL_WAVE_SIZES",
    "COUNCIL_WAVE_STARTS",
    "council_example",
    "council_power",
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


#: The example's planning variance: sw.estimate_variance on the bundled DfE panel, saved by
#: tools/make_council_variance.py (read back here instead of refitting the panel).
COUNCIL_VARIANCE = Path(__file__).with_name("council_variance.json")


def council_power() -> PowerSpec:
    """Return the power inputs of the example, citing the DfE panel's variance estimate.

    The variance components are :func:`steppedwedge.estimate_variance` of entries into care
    in the bundled DfE panel (2021-2025, persistent + decaying council effects), converted
    from years to quarters with the council-quarter variance of a stationary AR(1) averaged
    over the quarter (``for_period(3, gamma2="averaged")``).

    Returns
    -------
    PowerSpec
        A 15% fall in entries into care (rate ratio 0.85) from about 26 per 10,000 children a
        year, with the cited components and the estimate's own description as
        ``variance_source``.

    Examples
    --------
    >>> spec = council_power()
    >>> round(spec.tau2, 3), round(spec.decay, 3)
    (0.11, 0.866)
    """
    from ..planning.history import EstimatedVariance

    record = json.loads(COUNCIL_VARIANCE.read_text(encoding="utf-8"))
    quarterly = EstimatedVariance.from_dict(record).for_period(3, gamma2="averaged")
    vc = quarterly.variance
    return PowerSpec(
        family="poisson",
        effect=math.log(0.85),
        # about 26 entries into care per 10,000 children a year (DfE, England)
        baseline=6.6e-4,
        cluster_size=1.0,
        exposure_column="population_0_17",
        tau2=float(vc.tau2),
        gamma2=float(vc.gamma2),
        decay=None if vc.decay is None else float(vc.decay),
        variance_source=quarterly.describe(),
        estimate=quarterly,
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
        power=council_power(),
        # pre-specified primary analysis: CR2 (for a GLMM the Kauermann-Carroll sandwich) with
        # t(I - 2), the only variance meeting the calibration windows with 17 and 8 councils
        # (docs/explanation/calibration.rst); the model-based SE is shown beside it
        analysis=AnalysisSpec(family="poisson", random="nested+decay", vcov="cr2"),
        source="example:councils",
    )
