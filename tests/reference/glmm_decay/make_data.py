"""Simulate / extract the reference datasets for the decaying-correlation GLMMs (fixed seeds).

Writes ``data/*.csv``:

* ``council_decay.csv``: 17 councils x 20 quarters, one row per council-quarter, stepped
  wedge (council ``c`` starts treatment in quarter ``2 + floor(16 c / 17)``, c = 0..16, so
  quarters 2..17).  ``pop``: child population (20,000-120,000).  Log rate = council effect
  (persistent, SD 0.33) + council-quarter effect (SD 0.15, stationary AR(1) over quarters with
  lag-1 correlation 0.9) + a small secular trend + log rate ratio -0.15 under treatment.
  ``count``: Poisson with mean ``pop * 7.5e-4 * exp(log rate)``; ``count_nb``: NB2 with the
  same mean structure (independent draws of the random effects, seed + 1) and size 30.
* ``binary_decay.csv``: 12 clusters x 8 periods, 20-35 individuals per cell, 0/1 ``y`` from a
  logistic model with a cluster effect (SD 0.4) and an AR(1) cluster-period effect (SD 0.35,
  lag-1 correlation 0.7), odds ratio 0.7; cluster ``c`` starts in period ``1 + c % 7``.
* ``dfe_north_east.csv``: the REAL DfE panel (``steppedwedge.datasets.load_dfe_panel``, Open
  Government Licence v3.0): the 12 North East councils (none had a boundary change), years
  2013-2025, outcome ``cpp`` = children on child protection plans at 31 March, ``pop`` = the
  0-17 population.  ``treatment`` is a PSEUDO stepped-wedge schedule (no intervention took
  place): the k-th council in alphabetical order (k = 0..11) is "treated" from year
  ``2014 + k``.  Its estimate is a placebo effect; the case tests the engine on a real
  correlation structure.

Run from this directory: ``python make_data.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
OUT = HERE / "data"
DFE = HERE.parents[2] / "src/steppedwedge/datasets/data/dfe_la_children_social_care_panel.csv"


def ar1(rng: np.random.Generator, n_t: int, sd: float, r: float) -> np.ndarray:
    """One stationary AR(1) path of length ``n_t`` with marginal SD ``sd``."""
    e = np.empty(n_t)
    e[0] = rng.normal(0.0, sd)
    for j in range(1, n_t):
        e[j] = r * e[j - 1] + rng.normal(0.0, sd * np.sqrt(1.0 - r * r))
    return e


def council_decay() -> pd.DataFrame:
    n_i, n_t = 17, 20
    rng = np.random.default_rng(20261201)
    rng_nb = np.random.default_rng(20261202)
    rows = []
    for c in range(n_i):
        pop = int(rng.integers(20_000, 120_000))
        start = 2 + (16 * c) // 17
        u, e = rng.normal(0.0, 0.33), ar1(rng, n_t, 0.15, 0.9)
        u2, e2 = rng_nb.normal(0.0, 0.33), ar1(rng_nb, n_t, 0.15, 0.9)
        for q in range(n_t):
            x = int(q >= start)
            lin = np.log(pop * 7.5e-4) + 0.01 * q - 0.15 * x
            y = int(rng.poisson(np.exp(lin + u + e[q])))
            mu2 = np.exp(lin + u2 + e2[q])
            y2 = int(rng_nb.negative_binomial(30.0, 30.0 / (30.0 + mu2)))
            rows.append((f"LA{c + 1:02d}", q + 1, x, pop + 40 * q, y, y2))
    return pd.DataFrame(
        rows, columns=["council", "quarter", "treatment", "pop", "count", "count_nb"]
    )


def binary_decay() -> pd.DataFrame:
    n_i, n_t = 12, 8
    rng = np.random.default_rng(20261203)
    rows = []
    for c in range(n_i):
        u, e = rng.normal(0.0, 0.4), ar1(rng, n_t, 0.35, 0.7)
        start = 1 + c % 7
        for j in range(n_t):
            x = int(j >= start)
            p = 1.0 / (1.0 + np.exp(-(-0.8 + 0.05 * j + np.log(0.7) * x + u + e[j])))
            for _ in range(int(rng.integers(20, 36))):
                rows.append((c + 1, j + 1, x, int(rng.random() < p)))
    return pd.DataFrame(rows, columns=["cluster", "period", "treatment", "y"])


def dfe_north_east() -> pd.DataFrame:
    d = pd.read_csv(DFE)
    d = d[d["region_name"] == "North East"].sort_values(["la_name", "year"])
    assert not d["boundary_change"].any()
    names = sorted(d["la_name"].unique())
    start = {nm: 2014 + k for k, nm in enumerate(names)}
    out = pd.DataFrame(
        {
            "council": d["la_name"].to_numpy(),
            "year": d["year"].to_numpy(),
            "treatment": (d["year"].to_numpy() >= d["la_name"].map(start).to_numpy()).astype(int),
            "pop": d["population_0_17"].to_numpy(),
            "cpp": d["cpp_31_march"].to_numpy(),
        }
    )
    assert out.notna().all().all() and len(out) == 12 * 13
    return out.astype({"pop": int, "cpp": int})


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    council_decay().to_csv(OUT / "council_decay.csv", index=False)
    binary_decay().to_csv(OUT / "binary_decay.csv", index=False)
    dfe_north_east().to_csv(OUT / "dfe_north_east.csv", index=False)
