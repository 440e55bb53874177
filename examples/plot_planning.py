"""Planning the council trial: analytic power for a 15% fall in entries into care.

Run ``python examples/plot_planning.py``; figures go to ``docs/_static/`` (or to the folder
named by the environment variable ``STEPPEDWEDGE_FIGURES``).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import steppedwedge as sw  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "_static"
OUT = Path(os.environ.get("STEPPEDWEDGE_FIGURES", DEFAULT_OUT))
OUT.mkdir(parents=True, exist_ok=True)

# --- Assumptions (English council data 2021-2025, DfE and ONS; on the log-rate scale) -------
rate_ratio = 0.85  # the effect we want to detect: 15% fewer entries
effect = np.log(rate_ratio)  # log rate ratio (link scale of the Poisson model)
baseline = 6.6 / 10_000  # entries into care per child per quarter (26 a year)
population = 55_000  # children aged 0-17 in a typical council
variance = sw.VarianceComponents(  # on the log-rate (linear predictor) scale
    tau2=0.33**2,  # persistent council effect, SD 0.33
    gamma2=0.15**2,  # council-quarter effect, SD 0.15 ...
    decay=0.68 ** (1 / 4),  # ... whose correlation falls to 0.68 after a year
)
print(
    f"council SD {np.sqrt(variance.tau2):.2f}, council-quarter SD {np.sqrt(variance.gamma2):.2f},"
    f" decay {variance.decay:.3f} per quarter"
)


# --- The planned design: 7 waves of councils, 4 baseline quarters, a wave every 2 quarters ---
def council_design(per_wave: int = 1, quarters_per_step: int = 2) -> sw.Design:
    return sw.Design.stepped_wedge(
        7,
        per_wave,
        baseline_periods=4,
        periods_per_step=quarters_per_step,
        extra_treated_periods=2,
    )


councils = sw.datasets.load_council_characteristics()
planned = sw.Design.from_start_dates(councils.set_index("council")["start_date"], "2022Q1/2026Q4")
print(planned.n_clusters, "councils x", planned.n_periods, "quarters")

poisson = sw.power(
    planned,
    effect=effect,
    variance=variance,
    family="poisson",
    baseline=baseline,
    cluster_size=councils["population_0_17"].to_numpy(),
)
print(
    f"Poisson GLMM power, the 17 councils: {poisson.power:.3f}"
    f" (SE of log RR {poisson.std_error:.4f})"
)

# Negative binomial: extra-Poisson variation of each council-quarter count (theta = 50),
# here on top of the council-quarter random effect, so a deliberately pessimistic check.
negbin = sw.power(
    planned,
    effect=effect,
    variance=variance,
    family="negative_binomial",
    baseline=baseline,
    cluster_size=1,
    exposure=councils["population_0_17"].to_numpy(),
    dispersion=50.0,
)
print(f"negative-binomial power (theta = 50 per council-quarter): {negbin.power:.3f}")

# --- How many councils per wave?  solve_power on the idealised design -----------------------
common = dict(
    effect=effect, variance=variance, family="poisson", baseline=baseline, cluster_size=population
)
for rr in (0.85, 0.90):
    for target in (0.8, 0.9):
        solved = sw.solve_power(council_design(), power=target, **{**common, "effect": np.log(rr)})
        print(
            f"RR {rr:.2f}, {target:.0%} power: {solved.solution:.0f} councils per wave "
            f"({7 * solved.solution:.0f} councils, power {solved.power:.3f})"
        )
mdes = sw.solve_power(
    council_design(),
    power=0.8,
    solve_for="effect",
    effect=-0.1,
    **{k: v for k, v in common.items() if k != "effect"},
)
print(
    f"smallest rate ratio detectable with 80% power, 1 council per wave: "
    f"{np.exp(mdes.solution):.3f}"
)

# --- Power curves: more councils, more quarters ---------------------------------------------
fig, ax = plt.subplots(figsize=(6.4, 4.2))
per_wave = np.arange(1, 7)
for step, style in [(1, ":"), (2, "-"), (4, "--")]:
    curve = sw.power_curve(
        council_design(quarters_per_step=step),
        vary="clusters_per_sequence",
        values=per_wave,
        **common,
    )
    n_q = 4 + 7 * step + 2
    ax.plot(
        7 * per_wave,
        curve.power,
        style,
        marker="o",
        label=f"a wave every {step} quarter{'s' if step > 1 else ''} ({n_q} quarters)",
    )
    print(
        f"step {step}: "
        + ", ".join(f"{7 * k}: {p:.2f}" for k, p in zip(per_wave, curve.power, strict=True))
    )
ax.axhline(0.8, color="grey", lw=0.8)
ax.axvline(17, color="grey", lw=0.8, ls=":")
ax.set_xlabel("councils (7 waves)")
ax.set_ylabel("power (two-sided 5%)")
ax.set_title("Power to detect a rate ratio of 0.85 in entries into care")
ax.set_ylim(0, 1)
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "planning_power_curve.png", dpi=110)
plt.close(fig)

# --- Sensitivity: power over plausible council-quarter SDs and decays -----------------------
# (The persistent council SD hardly matters: each council is compared with itself.)
yearly_r = np.array([0.3, 0.5, 0.6, 0.68, 0.8, 0.9, 0.95])
gamma_sd = np.array([0.05, 0.08, 0.11, 0.14, 0.17, 0.20, 0.23])
grid = np.array(
    [
        [
            sw.power(
                planned,
                effect=effect,
                family="poisson",
                baseline=baseline,
                cluster_size=councils["population_0_17"].to_numpy(),
                variance=sw.VarianceComponents(tau2=0.33**2, gamma2=g**2, decay=r ** (1 / 4)),
            ).power
            for r in yearly_r
        ]
        for g in gamma_sd
    ]
)
print(f"power over the grid: {grid.min():.2f} to {grid.max():.2f}")

print(f"mean power over the grid (equal weights): {grid.mean():.3f}")

fig, ax = plt.subplots(figsize=(6.4, 4.6))
im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0.6, vmax=1.0, aspect="auto")
ax.set_xticks(range(len(yearly_r)), [f"{r:.2f}" for r in yearly_r])
ax.set_yticks(range(len(gamma_sd)), [f"{g:.2f}" for g in gamma_sd])
for i in range(len(gamma_sd)):
    for j in range(len(yearly_r)):
        ax.text(
            j,
            i,
            f"{grid[i, j]:.2f}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if grid[i, j] < 0.85 else "black",
        )
ax.set_xlabel("correlation of the council-quarter effects one year apart")
ax.set_ylabel("council-quarter SD of log rate (decaying)")
ax.set_title("Power, 17 councils x 20 quarters, rate ratio 0.85")
fig.colorbar(im, ax=ax, label="power")
fig.tight_layout()
fig.savefig(OUT / "planning_heatmap.png", dpi=110)
plt.close(fig)

# --- Assurance: power averaged over the uncertainty in the variance components -----------
# The components above are read off ranges seen in real councils, so they are uncertain.
# Write that uncertainty as draws of the components on the log-rate scale and average the
# link-scale Poisson power over them (sw.estimate_variance gives such draws, a parametric
# bootstrap, from a historical panel: see the planning-from-history tutorial).
gen = np.random.default_rng(2024)
n_draws = 2000
persistent_sd = gen.uniform(0.25, 0.41, n_draws)
quarter_sd = np.exp(gen.normal(np.log(0.15), 0.3, n_draws))  # mostly 0.08 to 0.27
yearly_r = gen.beta(6.8, 3.2, n_draws)  # correlation one year apart, mean 0.68
draws = [
    sw.VarianceComponents(tau2=a**2, gamma2=g**2, decay=r ** (1 / 4))
    for a, g, r in zip(persistent_sd, quarter_sd, yearly_r, strict=True)
]
two_per_wave = dict(effect=effect, family="poisson", baseline=baseline, cluster_size=population)
at_guess = sw.power(council_design(2), variance=variance, **two_per_wave)
assured = sw.assurance(council_design(2), variance=draws, **two_per_wave)
print(
    f"assurance, 14 councils (2 per wave): {assured.assurance:.3f} "
    f"(power at the guessed components {at_guess.power:.3f}); power over the draws "
    f"{assured.power.min():.2f} to {assured.power.max():.2f}; "
    f"P(power >= 0.8) = {assured.prob_power_at_least(0.8):.2f}"
)
# ... and over a prior on the effect too: one rate ratio drawn per draw of the components
effect_prior = stats.norm(np.log(0.85), 0.05)  # rate ratio mostly 0.77 to 0.94
both = sw.assurance(
    council_design(2),
    variance=draws,
    **{**two_per_wave, "effect": effect_prior},
    rng=1,
)
print(f"assurance with an effect prior as well: {both.assurance:.3f}")
ax = assured.plot(kind="distribution", bins=40)
ax.set_title("Power over the uncertain components, 14 councils, rate ratio 0.85")
ax.figure.set_size_inches(6.4, 4.2)
ax.figure.tight_layout()
ax.figure.savefig(OUT / "planning_assurance.png", dpi=110)
plt.close(ax.figure)
