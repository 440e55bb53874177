"""Simulate the GLMM reference datasets (fixed seeds; numpy ``default_rng`` streams are stable).

Writes ``data/*.csv``:

* ``council_counts.csv``: 17 councils x 12 quarters, one row per council-quarter; ``pop``
  (population), ``count`` = Poisson with a council effect (SD 0.15) and a council-quarter
  effect (SD 0.10: overdispersion), a linear-ish secular trend and a rate ratio of 0.85 under
  treatment; sequences: council c starts treatment in quarter ``2 + c % 11``.
* ``council_nb.csv``: same layout, ``count`` negative binomial (NB2, size 40) with a council
  effect (SD 0.2), rate ratio 0.9.
* ``binary_trial.csv``: 12 clusters x 5 periods, 15-40 individuals per cell, 0/1 ``y`` from
  a logistic model with a cluster effect (SD 0.4), a cluster-period effect (SD 0.2), odds ratio
  0.6; 4 sequences of 3 clusters.
  Column ``age``: an individual covariate (seed 99), unrelated to ``y``.
  ``council_counts.csv`` also has ``deprivation``, a council-level covariate (seed 98).
* ``children_covariates.csv``: 5 councils x 6 periods, 1,000 children per council-period
  (30,000 rows), stepped wedge (council c starts in period c + 1, c = 1..5), 0/1 ``y``
  (e.g. a referral) from a logistic model with a council effect (SD 0.3), period effects, an
  odds ratio of 0.75 and five child-level covariates: ``age`` (years, continuous, 0-18),
  ``sex`` (0/1), ``disability`` (0/1), ``imd`` (deprivation score, continuous) and
  ``prior_referral`` (0/1, more likely with deprivation).  Continuous covariates make every
  row its own likelihood unit (no aggregation to cells).
* ``binary_small.csv``: 10 clusters x 4 periods, 8-20 individuals per cell, cluster effect SD
  0.5 only (for AGQ, where the quadrature rule matters).

Run from this directory: ``python make_data.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "data"


def council_counts() -> pd.DataFrame:
    rng = np.random.default_rng(20261126)
    rows = []
    for c in range(17):
        u = rng.normal(0.0, 0.15)
        pop = int(rng.integers(60_000, 400_000))
        start = 2 + c % 11
        for q in range(1, 13):
            x = int(q >= start)
            e = rng.normal(0.0, 0.10)
            mu = pop * 4e-4 * np.exp(u + e + 0.02 * q - 0.163 * x)
            rows.append((f"LA{c + 1:02d}", q, x, pop + 50 * q, int(rng.poisson(mu))))
    return pd.DataFrame(rows, columns=["council", "quarter", "treatment", "pop", "count"])


def council_nb() -> pd.DataFrame:
    rng = np.random.default_rng(20261127)
    rows = []
    size = 40.0
    for c in range(17):
        u = rng.normal(0.0, 0.2)
        pop = int(rng.integers(60_000, 400_000))
        start = 2 + c % 11
        for q in range(1, 13):
            x = int(q >= start)
            mu = pop * 3e-4 * np.exp(u + 0.01 * q - 0.105 * x)
            lam = rng.gamma(size, mu / size)
            rows.append((f"LA{c + 1:02d}", q, x, pop, int(rng.poisson(lam))))
    return pd.DataFrame(rows, columns=["council", "quarter", "treatment", "pop", "count"])


def binary(
    seed: int,
    n_clusters: int,
    n_periods: int,
    m: tuple[int, int],
    sd_c: float,
    sd_cp: float,
    log_or: float,
    base: float,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_seq = n_periods - 1
    per_seq = n_clusters // n_seq
    rows = []
    for c in range(n_clusters):
        u = rng.normal(0.0, sd_c)
        start = 2 + (c // per_seq) % n_seq
        for t in range(1, n_periods + 1):
            x = int(t >= start)
            e = rng.normal(0.0, sd_cp) if sd_cp > 0 else 0.0
            eta = base + 0.1 * t + log_or * x + u + e
            p = 1.0 / (1.0 + np.exp(-eta))
            for _ in range(int(rng.integers(m[0], m[1] + 1))):
                rows.append((c + 1, t, x, int(rng.random() < p)))
    return pd.DataFrame(rows, columns=["cluster", "period", "treatment", "y"])


def children_covariates() -> pd.DataFrame:
    rng = np.random.default_rng(20261130)
    n_per = 1000
    frames = []
    for c in range(5):
        u = rng.normal(0.0, 0.3)
        for t in range(1, 7):
            x = int(t >= c + 2)
            age = np.round(rng.uniform(0.0, 18.0, n_per), 3)
            sex = rng.integers(0, 2, n_per)
            disability = (rng.random(n_per) < 0.12).astype(int)
            imd = np.round(rng.normal(0.0, 1.0, n_per), 3)
            prior = (rng.random(n_per) < 1.0 / (1.0 + np.exp(1.5 - 0.5 * imd))).astype(int)
            eta = (
                -1.6
                + 0.08 * t
                + np.log(0.75) * x
                + u
                - 0.04 * (age - 9.0)
                + 0.15 * sex
                + 0.5 * disability
                + 0.25 * imd
                + 0.6 * prior
            )
            y = (rng.random(n_per) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
            frames.append(
                pd.DataFrame(
                    {
                        "council": f"C{c + 1}",
                        "period": t,
                        "treatment": x,
                        "y": y,
                        "age": age,
                        "sex": sex,
                        "disability": disability,
                        "imd": imd,
                        "prior_referral": prior,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    council_nb().to_csv(OUT / "council_nb.csv", index=False)
    bt = binary(7, 12, 5, (15, 40), 0.4, 0.2, np.log(0.6), -0.8)
    # an individual-level covariate (no effect on y; drawn after y from its own stream)
    bt["age"] = np.round(np.random.default_rng(99).normal(50.0, 12.0, len(bt)), 0)
    bt.to_csv(OUT / "binary_trial.csv", index=False)
    cc = council_counts()
    # a council-level covariate (constant within council: the cell-aggregated path)
    dep = np.random.default_rng(98).normal(0.0, 1.0, cc["council"].nunique())
    cc["deprivation"] = np.round(dep[cc["council"].str[2:].astype(int) - 1], 3)
    cc.to_csv(OUT / "council_counts.csv", index=False)
    binary(11, 10, 4, (8, 20), 0.5, 0.0, -0.5, -0.5).to_csv(OUT / "binary_small.csv", index=False)
    children_covariates().to_csv(OUT / "children_covariates.csv", index=False)


if __name__ == "__main__":
    main()
