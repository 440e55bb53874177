"""Simulate ``poisson_counts.csv``: the data of the glmmTMB ``ou`` reference fits.

Run from the repository root: ``python tests/reference/decay_time/make_data.py``.  Ten
councils on the Family Safeguarding start dates (two per date), Poisson counts of a
population of 2000 per period, continuous-time decay (0.4 per year) of the council-period
effect; ``time`` is the period mid-point in years (``Design.period_midpoints``).
"""

from __future__ import annotations

from pathlib import Path

import steppedwedge as sw

DAYS = ["2020-09-01", "2021-02-01", "2021-06-28", "2022-01-24", "2022-05-24"]
starts = {f"c{i}": day for i, day in enumerate(DAYS * 2)}
d = sw.Design.from_start_dates(starts, "starts", window=("2020-03-01", "2022-11-24"))
vc = sw.VarianceComponents(sigma2=0.0, tau2=0.05, gamma2=0.1, decay=0.4, decay_scale="time")
df = sw.simulate(
    d, effect=-0.2, variance=vc, cluster_size=2000, family="poisson", baseline=0.02, rng=11
)
df["time"] = df["period"].map(dict(zip(d.periods, d.period_midpoints(), strict=True)))
df.to_csv(Path(__file__).with_name("poisson_counts.csv"), index=False, float_format="%.17g")
