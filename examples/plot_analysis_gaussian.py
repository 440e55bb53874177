"""A Gaussian linear mixed model of the council example: the log rate of entries into care.

Run ``python examples/plot_analysis_gaussian.py``; figures go to ``docs/_static/`` (or to the
folder named by the environment variable ``STEPPEDWEDGE_FIGURES``).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import steppedwedge as sw  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "_static"
OUT = Path(os.environ.get("STEPPEDWEDGE_FIGURES", DEFAULT_OUT))
OUT.mkdir(parents=True, exist_ok=True)

# One row per council-quarter.  The outcome is the log of the quarterly rate of entries
# into care per 10,000 children: a council-level summary, not a child-level measurement.
df = sw.datasets.load_councils()
df["log_rate"] = np.log(1e4 * df["entries_into_care"] / df["population_0_17"])
print(
    df[["council", "quarter", "treated", "entries_into_care", "population_0_17", "log_rate"]]
    .head(3)
    .round(3)
    .to_string(index=False)
)

args = dict(outcome="log_rate", cluster="council", period="quarter", treatment="treated")

# 1. The nested-exchangeable model: with one row per cell, the council-quarter effect and the
#    residual cannot be told apart, so gamma2 lands on the boundary (a singular fit).
nested = sw.fit(df, random="nested", **args)
print("nested: singular =", nested.singular, nested.variance_components)

# 2. Persistent + decaying council effects (the structure of real council data): REML with
#    Kenward-Roger degrees of freedom (the default).
fit = sw.fit(df, random="nested+decay", **args)
print(fit.summary())
low, high = fit.conf_int()
print(
    f"rate ratio {np.exp(fit.estimate):.3f} (95% CI {np.exp(low):.3f} to {np.exp(high):.3f}), "
    f"KR df {fit.df:.1f}"
)

# 3. Variance components and correlations, to feed the next power calculation.
vc = fit.variance_components
print({k: round(v, 4) for k, v in vc.items()})
print(
    "mean Poisson variance of a log count, 1/count:",
    round(float(np.mean(1 / df["entries_into_care"])), 4),
)
for name, (est, lo, hi) in fit.correlations.items():
    print(f"{name}: {est:.3f} (95% CI {lo:.3f} to {hi:.3f})")

# The council and council-quarter components are on the log-rate scale, the scale of the
# Poisson GLMM's linear predictor, so they go straight into the next trial's power:
councils = sw.datasets.load_council_characteristics()
design = sw.Design.from_start_dates(councils.set_index("council")["start_date"], "2022Q1/2026Q4")
planning = sw.VarianceComponents(tau2=vc["tau2"], gamma2=vc["gamma2"], decay=vc["decay"])
again = sw.power(
    design,
    effect=np.log(0.85),
    variance=planning,
    family="poisson",
    baseline=6.6e-4,
    cluster_size=councils["population_0_17"].to_numpy(),
)
print(f"power for RR 0.85 with the estimated components: {again.power:.3f}")

# 4. Exposure-time indicators (ETI): one effect per quarter since the start.
eti = sw.fit(df, random="cluster", effect="eti", **args)
lo, hi = eti.conf_int()
print(f"ETI: time-averaged effect {eti.estimate:.3f} (95% CI {lo:.3f} to {hi:.3f})")
ax = eti.plot()
ax.axhline(np.log(0.85), color="black", ls="--", lw=1, label="true effect, log(0.85)")
ax.set_ylabel("effect on log rate of entries")
ax.set_title("Exposure-time effects, council example (synthetic)")
ax.legend(loc="upper left", fontsize=8)
ax.figure.set_size_inches(6.4, 4.2)
ax.figure.tight_layout()
ax.figure.savefig(OUT / "analysis_gaussian_eti.png", dpi=110)
plt.close(ax.figure)
