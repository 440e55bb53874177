"""Regenerate the design diagrams in docs/_static (run from the repository root).

python docs/_static/make_design_figures.py
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from steppedwedge.design import Design  # noqa: E402

# 1. A standard 5-sequence stepped wedge, 2 clusters per sequence, one transition period
#    after each switch (not observed) and one cell missing at random (cluster 3, period 5).
sw = Design.stepped_wedge(5, 2, transition_periods=1, extra_treated_periods=1)
m = sw.matrix.copy()
m[3, 4] = np.nan
ax = Design.from_matrix(m).plot()
ax.set_title(
    "Stepped wedge, 5 steps x 2 clusters, 1 transition period; the missing cell\n"
    "(cluster 3, period 5) makes cluster 3 a sequence of its own",
    loc="left",
    pad=24,
    fontsize=10,
)
ax.figure.savefig("docs/_static/design_standard.png", dpi=110)

# 2. 17 councils on a quarterly grid from their go-live dates (illustrative dates), the
#    switch quarter weighted by the share of its days on or after the go-live date.
rng = np.random.default_rng(7)
days = np.sort(rng.integers(200, 1500, 16))
base = pd.Timestamp("2020-01-01")
starts: dict[str, str | None] = {
    f"Council {chr(65 + i)}": (base + pd.Timedelta(days=int(d))).date().isoformat()
    for i, d in enumerate(days)
}
starts["Council Q"] = None  # never switches within the trial
d = Design.from_start_dates(starts, "2019Q3/2024Q2", transition="partial")
ax = d.plot()
ax.set_title(
    "17 councils, quarterly periods from go-live dates (partial = share of the quarter treated)",
    loc="left",
    pad=24,
    fontsize=10,
)
ax.figure.savefig("docs/_static/design_councils_quarterly.png", dpi=110)

# 3. Family Safeguarding: periods bounded by the real start dates (unequal lengths).
fs = {
    "Walsall": "2020-09-01",
    "Lancashire": "2021-02-01",
    "Telford": "2021-06-28",
    "Wandsworth": "2022-01-24",
    "Swindon": "2022-05-24",
}
ax = Design.from_start_dates(fs, "starts", window=("2020-03-01", "2022-11-24")).plot()
ax.set_title(
    "Family Safeguarding trial: periods bounded by go-live dates", loc="left", pad=24, fontsize=10
)
ax.figure.savefig("docs/_static/design_family_safeguarding.png", dpi=110)

# 4. The bundled council example: the allocation made by its own randomisation.
from steppedwedge.datasets import load_council_characteristics  # noqa: E402
from steppedwedge.report.example import council_randomisation  # noqa: E402

allocation = council_randomisation(load_council_characteristics())
ax = allocation.design.plot()
ax.set_title(
    "The bundled example: 17 councils randomised to 7 waves (stratified by region, balanced)",
    loc="left",
    pad=24,
    fontsize=10,
)
ax.figure.savefig("docs/_static/design_council_example.png", dpi=110)
