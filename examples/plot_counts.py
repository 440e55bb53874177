"""Entries into care as counts: Poisson GLMMs, GEE, cluster summaries and a permutation test.

Run ``python examples/plot_counts.py``; figures go to ``docs/_static/`` (or to the folder
named by the environment variable ``STEPPEDWEDGE_FIGURES``).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import steppedwedge as sw  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "_static"
OUT = Path(os.environ.get("STEPPEDWEDGE_FIGURES", DEFAULT_OUT))
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 120)

df = sw.datasets.load_councils()
counts = dict(
    outcome="entries_into_care",
    exposure="population_0_17",
    family="poisson",
    cluster="council",
    period="quarter",
    treatment="treated",
)

# Poisson GLMM (Laplace), the trial report's pre-specified primary analysis: a persistent
# council effect plus council-quarter effects whose correlation decays with the distance
# between quarters, with the CR2 cluster-robust variance and t(I - 2) (the inference that
# held its size and coverage in docs/explanation/calibration.rst).
glmm = sw.fit(df, random="nested+decay", vcov="cr2", **counts)
print(glmm.summary())

# The same model with its model-based variance, and the exchangeable nested model.
glmm_model = sw.fit(df, random="nested+decay", **counts)
glmm_nested = sw.fit(df, random="nested", **counts)

# GEE: a marginal model with small-sample sandwich corrections and t(I - p) reference.
# With 17 councils a categorical quarter effect (20 parameters) is too many for a sandwich
# of rank 17, so time is a linear trend here.
gee_md = sw.fit(df, method="gee", vcov="md", time="linear", **counts)

# Cluster-period summaries (log rates) and council fixed effects with CR2 / Satterthwaite df.
summary = sw.fit(df, method="cluster-summary", **counts)
fixed = sw.fit(df, method="fixed-effects", **counts)

# Randomisation test: re-draw which councils went in which wave.
perm = sw.permutation_test(df, statistic="twfe", n_permutations=4999, rng=2023, **counts)
print(f"permutation test: estimate {perm.estimate:.3f}, p = {perm.pvalue:.4f}")

table = sw.compare(
    {
        "GLMM nested+decay, CR2 (primary)": glmm,
        "GLMM nested+decay, model-based": glmm_model,
        "GLMM nested (exchangeable)": glmm_nested,
        "GEE, MD correction": gee_md,
        "cluster-period summaries": summary,
        "council fixed effects, CR2": fixed,
        "permutation (TWFE)": perm,
    }
)
table["rate_ratio"] = np.exp(table["estimate"])
table["rr_low"] = np.exp(table["conf_low"])
table["rr_high"] = np.exp(table["conf_high"])
print(
    table[["model", "rate_ratio", "rr_low", "rr_high", "p_value", "df"]]
    .round(3)
    .to_string(index=False)
)
for row in table.dropna(subset=["rr_low"]).itertuples():
    print(f"{row.model}: 95% CI covers the true 0.85: {row.rr_low <= 0.85 <= row.rr_high}")

# Forest plot of the rate ratios with the truth.
shown = table.dropna(subset=["rr_low"]).iloc[::-1]
fig, ax = plt.subplots(figsize=(6.4, 3.6))
y = np.arange(len(shown))
ax.errorbar(
    shown["rate_ratio"],
    y,
    xerr=[shown["rate_ratio"] - shown["rr_low"], shown["rr_high"] - shown["rate_ratio"]],
    fmt="o",
    capsize=3,
)
ax.axvline(0.85, color="black", ls="--", lw=1)
ax.text(0.853, len(shown) - 0.6, "truth 0.85", fontsize=8)
ax.axvline(1.0, color="grey", lw=0.8)
ax.set_yticks(y, shown["model"])
ax.set_ylim(-0.6, len(shown) - 0.2)
ax.set_xlabel("rate ratio, entries into care (95% CI)")
ax.set_title(f"Council example (synthetic): one effect, {len(shown)} analyses")
fig.tight_layout()
fig.savefig(OUT / "counts_forest.png", dpi=110)
plt.close(fig)
