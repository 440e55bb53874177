"""Generate the synthetic council example bundled as ``steppedwedge.datasets.load_councils``.

Run once from the repository root::

    python tools/make_council_example.py

It writes ``src/steppedwedge/datasets/data/councils.csv`` and
``src/steppedwedge/datasets/data/council_characteristics.csv``.  numpy (with a fixed
seed) draws the data; the allocation of councils to waves is made by the example's own
``steppedwedge.randomise`` call (``steppedwedge.report.example.council_randomisation``) after
the baseline year has been simulated, exactly as a real trial would randomise on baseline
data; every number is written as an integer or as a
fixed-format decimal, so the output is byte-for-byte reproducible; ``tests/test_datasets.py``
checks that regenerating gives the committed files.

The data are SYNTHETIC: 17 fictitious councils ("Council A" ... "Council Q"), 20 quarters
2022Q1-2026Q4, a stepped-wedge rollout in 7 randomised waves.  The data-generating process and
its true parameters are in ``TRUTH`` below and in the docstring of
``steppedwedge.datasets.load_councils``; they are calibrated to English local-authority
children's social care statistics (DfE, 2013-2025: about 70 children looked after and about 26
new entries into care per 10,000 children aged 0-17 a year; between-council SD of log rates
0.26-0.41; a persistent council effect plus a decaying council-period effect,
corr(k years) ~ A + B r^k with r ~ 0.5-0.8 per year).
"""

from __future__ import annotations

import io
import math
import pathlib
import sys

import numpy as np

SEED = 20261133  # fixed; its sample of councils has baseline rates near the national ones

N_COUNCILS = 17
N_WAVES = 7
FIRST_YEAR = 2022
N_QUARTERS = 20
BASELINE_QUARTERS = 4  # 2022Q1-2022Q4 before wave 1
QUARTERS_PER_STEP = 2  # waves start every 6 months: 2023Q1, 2023Q3, ..., 2026Q1

REGIONS = (
    "North East",
    "North West",
    "Yorkshire and The Humber",
    "East Midlands",
    "West Midlands",
)

#: True parameters of the data-generating process (log scale unless stated).
TRUTH = {
    # new entries into care per quarter (Poisson, log link, offset log(population / 10,000))
    "entries_rate_per_10k_per_quarter": 6.6,  # at period 1 for a council with a = u = 0
    "entries_tau": 0.33,  # SD of the persistent council effect a_i
    "entries_gamma": 0.15,  # marginal SD of the council-quarter effect u_it
    "entries_r": 0.68 ** (1 / 4),  # AR(1) coefficient of u_it per quarter (0.68 per year)
    "entries_trend": 0.004,  # log-rate change per quarter (about +1.6% a year)
    "entries_rate_ratio": 0.85,  # true treatment effect (immediate, constant)
    # looked-after stock at quarter end: L_t = L_{t-1} - Binomial(L_{t-1}, q_i) + entries_t
    "exit_probability": 0.094,  # median quarterly probability of leaving care
    "exit_sd": 0.20,  # SD of log q_i across councils
    # children on child protection plans at quarter end (Poisson), no treatment effect
    "cpp_rate_per_10k": 42.0,
    "cpp_tau": 0.31,
    "cpp_gamma": 0.20,
    "cpp_r": 0.53 ** (1 / 4),
    "cpp_trend": -0.003,
    "cpp_corr_with_entries": 0.6,  # correlation of the council effects
    # children in need at quarter end (Poisson), no treatment effect
    "cin_rate_per_10k": 335.0,
    "cin_tau": 0.26,
    "cin_gamma": 0.10,
    "cin_r": 0.60 ** (1 / 4),
    "cin_trend": 0.0,
    "cin_corr_with_entries": 0.5,
    # population aged 0-17
    "population_median": 55_000,
    "population_sd_log": 0.6,
    "population_range": (15_000, 150_000),
    "population_growth_mean": 0.003,  # per year
    "population_growth_sd": 0.004,
}


def _ar1(rng: np.random.Generator, n_rows: int, n_cols: int, sd: float, r: float) -> np.ndarray:
    """Stationary AR(1) paths (rows) with marginal SD ``sd`` and coefficient ``r``."""
    out = np.empty((n_rows, n_cols))
    out[:, 0] = rng.normal(0.0, sd, n_rows)
    innov = sd * math.sqrt(1.0 - r * r)
    for t in range(1, n_cols):
        out[:, t] = r * out[:, t - 1] + rng.normal(0.0, innov, n_rows)
    return out


def _randomise_waves(
    names: list[str], regions: np.ndarray, pop0: np.ndarray, baseline_rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Allocate councils to waves with the example's own ``steppedwedge.randomise`` call.

    Returns the 1-based wave and the 1-based first treated period of each council.
    """
    import pandas as pd

    from steppedwedge.report.example import (
        COUNCIL_WAVE_SIZES,
        COUNCIL_WAVE_STARTS,
        council_randomisation,
    )

    if len(COUNCIL_WAVE_STARTS) != N_WAVES or sum(COUNCIL_WAVE_SIZES) != N_COUNCILS:
        raise RuntimeError("the example's wave schedule does not match this generator")
    chars = pd.DataFrame(
        {
            "council": names,
            "region": regions,
            "population_0_17": pop0.astype(np.int64),
            "baseline_looked_after_per_10k": baseline_rate,
        }
    )
    allocation = council_randomisation(chars)
    wave = np.array([allocation.assignment[n] + 1 for n in names], dtype=np.int64)
    start_period = BASELINE_QUARTERS + 1 + QUARTERS_PER_STEP * (wave - 1)
    return wave, start_period


def _quarter_label(t: int) -> str:
    """Quarter label of 1-based period ``t`` ("2022Q1" for t = 1)."""
    year = FIRST_YEAR + (t - 1) // 4
    return f"{year}Q{(t - 1) % 4 + 1}"


def _quarter_start(t: int) -> str:
    """ISO date of the first day of 1-based period ``t``."""
    year = FIRST_YEAR + (t - 1) // 4
    month = 3 * ((t - 1) % 4) + 1
    return f"{year:04d}-{month:02d}-01"


def _populations(
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the councils' regions and child populations (2022, then every quarter)."""
    tr = TRUTH
    n_i, n_t = N_COUNCILS, N_QUARTERS
    region_pool = np.array(
        [REGIONS[0]] * 3 + [REGIONS[1]] * 4 + [REGIONS[2]] * 4 + [REGIONS[3]] * 3 + [REGIONS[4]] * 3
    )
    regions = region_pool[rng.permutation(n_i)]
    lo, hi = tr["population_range"]
    pop0 = np.empty(n_i)
    for i in range(n_i):  # rejection sampling keeps the lognormal shape inside the range
        while True:
            p = tr["population_median"] * math.exp(rng.normal(0.0, tr["population_sd_log"]))
            if lo <= p <= hi:
                pop0[i] = round(p)
                break
    growth = rng.normal(tr["population_growth_mean"], tr["population_growth_sd"], n_i)
    year_of = np.array([(t - 1) // 4 for t in range(1, n_t + 1)])  # 0 for 2022, ...
    pop = np.rint(pop0[:, None] * (1.0 + growth[:, None]) ** year_of[None, :]).astype(np.int64)
    return regions, pop0, pop


def _write_csv(
    names: list[str],
    regions: np.ndarray,
    panel: dict[str, np.ndarray],
    table: dict[str, np.ndarray],
) -> tuple[str, str]:
    """Write the council-quarter panel and the council table as CSV text.

    ``panel`` holds the (council, quarter) columns after council, quarter, period and region,
    in file order; ``table`` the council table's ``population_0_17`` (2022),
    ``baseline_rate``, ``wave`` and ``start_period``.
    """
    out = io.StringIO()
    out.write("council,quarter,period,region," + ",".join(panel) + "\n")
    for i in range(N_COUNCILS):
        for t in range(N_QUARTERS):
            values = ",".join(f"{col[i, t]}" for col in panel.values())
            out.write(f"{names[i]},{_quarter_label(t + 1)},{t + 1},{regions[i]},{values}\n")
    councils_csv = out.getvalue()

    out = io.StringIO()
    out.write("council,region,population_0_17,baseline_looked_after_per_10k,wave,start_date\n")
    for i in range(N_COUNCILS):
        out.write(
            f"{names[i]},{regions[i]},{int(table['population_0_17'][i])},"
            f"{table['baseline_rate'][i]:.1f},{table['wave'][i]},"
            f"{_quarter_start(int(table['start_period'][i]))}\n"
        )
    return councils_csv, out.getvalue()


def make_councils(seed: int = SEED) -> tuple[str, str]:
    r"""Simulate the example and return the two CSV files as text.

    Returns
    -------
    councils_csv, characteristics_csv : str
        The council-quarter panel and the council table, with ``\n`` line endings.
    """
    rng = np.random.default_rng(seed)
    tr = TRUTH
    n_i, n_t = N_COUNCILS, N_QUARTERS
    names = [f"Council {chr(ord('A') + i)}" for i in range(n_i)]
    regions, pop0, pop = _populations(rng)

    # --- council effects -----------------------------------------------------------------
    z = rng.normal(size=(3, n_i))
    a = tr["entries_tau"] * z[0]
    rho_c, rho_d = tr["cpp_corr_with_entries"], tr["cin_corr_with_entries"]
    c = tr["cpp_tau"] * (rho_c * z[0] + math.sqrt(1 - rho_c**2) * z[1])
    d = tr["cin_tau"] * (rho_d * z[0] + math.sqrt(1 - rho_d**2) * z[2])
    log_q = math.log(tr["exit_probability"]) + rng.normal(0.0, tr["exit_sd"], n_i)
    q = np.exp(log_q)

    u = _ar1(rng, n_i, n_t, tr["entries_gamma"], tr["entries_r"])
    v = _ar1(rng, n_i, n_t, tr["cpp_gamma"], tr["cpp_r"])
    w = _ar1(rng, n_i, n_t, tr["cin_gamma"], tr["cin_r"])
    period = np.arange(1, n_t + 1)
    tt = (period - 1)[None, :]

    base = np.log(pop / 1e4)
    log_mu0 = (
        base
        + math.log(tr["entries_rate_per_10k_per_quarter"])
        + a[:, None]
        + tr["entries_trend"] * tt
        + u
    )

    # looked-after stock, starting at each council's equilibrium at the end of 2021Q4
    mu0 = pop0 / 1e4 * tr["entries_rate_per_10k_per_quarter"] * np.exp(a - tr["entries_trend"])
    stock = rng.poisson(mu0 / q)
    looked_after = np.empty((n_i, n_t), dtype=np.int64)
    entries = np.empty((n_i, n_t), dtype=np.int64)

    def advance(t: int, treated_t: np.ndarray) -> None:
        nonlocal stock
        mean = np.exp(log_mu0[:, t] + math.log(tr["entries_rate_ratio"]) * treated_t)
        entries[:, t] = rng.poisson(mean)
        stock = stock - rng.binomial(stock, q) + entries[:, t]
        looked_after[:, t] = stock

    # --- baseline year (all control), then the randomisation -------------------------------
    for t in range(BASELINE_QUARTERS):
        advance(t, np.zeros(n_i))
    baseline_rate = 1e4 * (looked_after[:, :BASELINE_QUARTERS] / pop[:, :BASELINE_QUARTERS]).mean(1)
    baseline_rate = np.array([float(f"{b:.1f}") for b in baseline_rate])  # as written below
    wave, start_period = _randomise_waves(names, regions, pop0, baseline_rate)
    treated = (period[None, :] >= start_period[:, None]).astype(np.int64)
    for t in range(BASELINE_QUARTERS, n_t):
        advance(t, treated[:, t])

    cpp = rng.poisson(
        np.exp(base + math.log(tr["cpp_rate_per_10k"]) + c[:, None] + tr["cpp_trend"] * tt + v)
    )
    cin = rng.poisson(
        np.exp(base + math.log(tr["cin_rate_per_10k"]) + d[:, None] + tr["cin_trend"] * tt + w)
    )

    panel = {
        "population_0_17": pop,
        "treated": treated,
        "looked_after": looked_after,
        "entries_into_care": entries,
        "cpp": cpp,
        "cin": cin,
    }
    table = {
        "population_0_17": pop0,
        "baseline_rate": baseline_rate,
        "wave": wave,
        "start_period": start_period,
    }
    return _write_csv(names, regions, panel, table)


def main(argv: list[str] | None = None) -> int:
    """Write the two CSV files into the package's ``datasets/data`` folder."""
    root = pathlib.Path(__file__).resolve().parents[1]
    target = root / "src" / "steppedwedge" / "datasets" / "data"
    target.mkdir(parents=True, exist_ok=True)
    councils_csv, chars_csv = make_councils()
    (target / "councils.csv").write_bytes(councils_csv.encode("utf-8"))
    (target / "council_characteristics.csv").write_bytes(chars_csv.encode("utf-8"))
    print(f"wrote {target / 'councils.csv'} and {target / 'council_characteristics.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
