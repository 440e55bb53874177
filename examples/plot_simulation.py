"""Simulated power and type-I error of the planned council analysis (Poisson GLMM).

Run ``python examples/plot_simulation.py``; figures go to ``docs/_static/`` (or to the folder
named by the environment variable ``STEPPEDWEDGE_FIGURES``).  ``STEPPEDWEDGE_NSIMS`` sets the
replicates per scenario (default 100; the test suite uses fewer).
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
N_SIMS = int(os.environ.get("STEPPEDWEDGE_NSIMS", "100"))

# The planned trial and the assumptions of the planning tutorial.
councils = sw.datasets.load_council_characteristics()
design = sw.Design.from_start_dates(councils.set_index("council")["start_date"], "2022Q1/2026Q4")
population = councils["population_0_17"].to_numpy()
variance = sw.VarianceComponents(tau2=0.33**2, gamma2=0.15**2, decay=0.68 ** (1 / 4))
scenario = dict(variance=variance, family="poisson", baseline=6.6e-4, cluster_size=population)

# The planned analysis: a Poisson GLMM with council and council-quarter random effects.
analysis = dict(random="nested")

result = sw.simulate_power(
    design,
    effect=np.log(0.85),
    analysis=analysis,
    n_sims=N_SIMS,
    rng=20230101,
    progress=False,
    **scenario,
)
print(result.summary())
low, high = result.conf_int()
print(f"simulated power {result.power:.3f} (Monte-Carlo 95% CI {low:.3f} to {high:.3f})")

null = sw.simulate_power(
    design, effect=0.0, analysis=analysis, n_sims=N_SIMS, rng=20230102, progress=False, **scenario
)
low0, high0 = null.conf_int()
print(f"type-I error {null.power:.3f} (Monte-Carlo 95% CI {low0:.3f} to {high0:.3f})")

# The same null scenario analysed with council and quarter fixed effects, CR2 standard
# errors and Satterthwaite df (no model for the within-council correlation).
null_fe = sw.simulate_power(
    design,
    effect=0.0,
    analysis=dict(method="fixed-effects"),
    n_sims=N_SIMS,
    rng=20230102,
    progress=False,
    **scenario,
)
low1, high1 = null_fe.conf_int()
print(
    f"type-I error, fixed effects + CR2: {null_fe.power:.3f} "
    f"(Monte-Carlo 95% CI {low1:.3f} to {high1:.3f})"
)

# Analytic power, as a score-type test (default) and as the Wald test the GLMM reports.
analytic = sw.power(design, effect=np.log(0.85), **scenario)
wald = sw.power(design, effect=np.log(0.85), glmm_variance="alternative", **scenario)
print(f"analytic power {analytic.power:.3f} (Wald version {wald.power:.3f})")

# Power over effect sizes: simulated points with Monte-Carlo CIs, analytic curve.
ratios = np.array([1.0, 0.95, 0.9, 0.85, 0.8])
more = {
    rr: sw.simulate_power(
        design,
        effect=np.log(rr),
        analysis=analysis,
        n_sims=N_SIMS,
        rng=20230103 + k,
        progress=False,
        **scenario,
    )
    for k, rr in enumerate([0.95, 0.9, 0.8])
}
sims = [null, more[0.95], more[0.9], result, more[0.8]]
fine = np.linspace(0.78, 1.0, 45)
curve = sw.power_curve(design, vary="effect", values=np.log(fine), **scenario)
for rr, s in zip(ratios, sims, strict=True):
    print(f"RR {rr:.2f}: simulated {s.power:.3f}")

fig, ax = plt.subplots(figsize=(6.4, 4.2))
ax.plot(fine, curve.power, label="analytic (GLS, linearised GLMM)")
ci = np.array([s.conf_int() for s in sims])
pw = np.array([s.power for s in sims])
ax.errorbar(
    ratios,
    pw,
    yerr=[pw - ci[:, 0], ci[:, 1] - pw],
    fmt="o",
    capsize=3,
    label=f"simulated, {N_SIMS} replicates (95% MC CI)",
)
ax.axhline(0.05, color="grey", lw=0.8, ls=":")
ax.axhline(0.8, color="grey", lw=0.8)
ax.set_xlabel("true rate ratio, entries into care")
ax.set_ylabel("power (two-sided 5%)")
ax.set_title("17 councils x 20 quarters: analytic vs simulated power")
ax.set_ylim(0, 1.02)
ax.invert_xaxis()
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "simulation_power_curve.png", dpi=110)
plt.close(fig)
