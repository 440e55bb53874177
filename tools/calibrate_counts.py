"""Calibrate the count analyses on the audit scenario: type-I error, coverage and power.

Usage (from the repository root)::

    python tools/calibrate_counts.py --n-null 1000 --n-alt 1000 --councils 17
    python tools/calibrate_counts.py --n-null 200 --only "cluster summary" --only "randomisation"

Draws every replicate with :func:`steppedwedge.simulate` from the scenario in
``tests/calibration_counts.py`` (17 or 8 councils x 20 quarters, persistent council effect SD
0.33, council-quarter effect SD 0.15 decaying 0.9 per quarter, Poisson counts of the child
population), re-randomising each replicate's allocation from the trial's admissible space
(``simulate_power(allocation=...)``), and prints a markdown table: type-I error at rate ratio
1, coverage of the 95% interval and power at rate ratio 0.85, each with its Monte-Carlo SE,
plus failures and seconds.  Replicate ``b`` of every analysis sees the same dataset (one root
seed), so differences between analyses are paired.  Runs serially in one process by default
(``--n-jobs`` for a process pool) so that it never takes more than one core unasked.

Analyses that the installed steppedwedge does not support (e.g. ``random="decay"`` GLMMs, or
``vcov=`` on a GLMM, before they land) are reported as "not available" rather than failing.
"""

from __future__ import annotations

import os

# one core: the BLAS must not spawn threads (they also slow small problems on a loaded machine)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from calibration_counts import (  # noqa: E402
    AUDIT_BASELINE,
    AUDIT_VARIANCE,
    CountScenario,
    council_scenario,
    null_and_alternative,
)

import steppedwedge as sw  # noqa: E402
from steppedwedge.inference.permutation import permutation_test  # noqa: E402

PERMUTATION_STATISTICS = (
    ("cluster-period", "clusters"),
    ("cluster-period", "inverse-variance"),
    ("twfe", "none"),
    ("twfe", "size"),
)


def _permutation_analysis(
    scenario: CountScenario, statistic: str, weights: str, n_permutations: int
) -> Callable[[Any], dict[str, float]]:
    alloc = scenario.allocation

    def run(data: Any) -> dict[str, float]:
        res = permutation_test(
            data,
            outcome="outcome",
            cluster="cluster",
            period="period",
            treatment="treatment",
            exposure="population",
            family="poisson",
            allocation=alloc,
            statistic=statistic,
            weights=weights,
            n_permutations=n_permutations,
            rng=int(data["outcome"].sum()),  # a seed that differs between replicates
            alpha=None,
        )
        # the spread of the randomisation distribution stands in for a standard error (the
        # harness needs a finite one; coverage is not computed for randomisation tests)
        null = res.null_distribution[np.isfinite(res.null_distribution)]
        return {"estimate": res.estimate, "std_error": float(np.std(null)), "pvalue": res.pvalue}

    return run


def _lmm_permutation_analysis(
    scenario: CountScenario, n_permutations: int
) -> Callable[[Any], dict[str, float]]:
    """Randomisation test with the Poisson GLMM (nested) estimate as statistic.

    One fit per re-randomisation: only with ``--with-lmm`` and few replicates.
    """
    alloc = scenario.allocation

    def run(data: Any) -> dict[str, float]:
        res = permutation_test(
            data,
            outcome="outcome",
            cluster="cluster",
            period="period",
            treatment="treatment",
            exposure="population",
            family="poisson",
            allocation=alloc,
            statistic="lmm",
            lmm_options={"random": "nested"},
            n_permutations=n_permutations,
            rng=int(data["outcome"].sum()),
            alpha=None,
        )
        null = res.null_distribution[np.isfinite(res.null_distribution)]
        return {"estimate": res.estimate, "std_error": float(np.std(null)), "pvalue": res.pvalue}

    return run


def analyses(scenario: CountScenario, n_permutations: int) -> dict[str, Any]:
    """Every count analysis: a dict of ``sw.fit`` options, or a callable of the data."""
    out: dict[str, Any] = {
        "cluster FE Poisson GLM, CR2 + Satterthwaite": {
            "family": "poisson",
            "method": "fixed-effects",
        },
        "GEE exchangeable, MD, linear time": {
            "family": "poisson",
            "method": "gee",
            "corstr": "exchangeable",
            "vcov": "md",
            "time": "linear",
        },
        "cluster summary, CR2, t(I-2) (default)": {
            "family": "poisson",
            "method": "cluster-summary",
        },
        "cluster summary, CR2, Satterthwaite": {
            "family": "poisson",
            "method": "cluster-summary",
            "dof": "satterthwaite",
        },
        "cluster summary, size weights, CR2, Satterthwaite (default)": {
            "family": "poisson",
            "method": "cluster-summary",
            "weights": "size",
        },
        "cluster summary, cells independent (former default)": {
            "family": "poisson",
            "method": "cluster-summary",
            "vcov": "model",
            "dof": "residual",
        },
    }
    for stat, wts in PERMUTATION_STATISTICS:
        out[f"randomisation test, {stat} ({wts})"] = _permutation_analysis(
            scenario, stat, wts, n_permutations
        )
    glmms: dict[str, Any] = {
        "Poisson GLMM, cluster": {"family": "poisson", "random": "cluster"},
        "Poisson GLMM, nested": {"family": "poisson", "random": "nested"},
        "Poisson GLMM, decay": {"family": "poisson", "random": "decay"},
        "Poisson GLMM, nested+decay": {"family": "poisson", "random": "nested+decay"},
        "Poisson GLMM, nested, CR2": {"family": "poisson", "random": "nested", "vcov": "cr2"},
        "Poisson GLMM, decay, CR2": {"family": "poisson", "random": "decay", "vcov": "cr2"},
        "Poisson GLMM, nested+decay, CR2": {
            "family": "poisson",
            "random": "nested+decay",
            "vcov": "cr2",
        },
        "NB GLMM, nested": {"family": "negative_binomial", "random": "nested"},
    }
    out.update(glmms)  # the GLMMs last: they take most of the time
    return out


def run_one(
    scenario: CountScenario,
    analysis: Any,
    effect: float,
    n_sims: int,
    seed: int,
    n_jobs: int | None,
) -> sw.SimulatedPowerResult | str:
    """One simulate_power run, or the reason it is not available."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sw.simulate_power(
                scenario.design,
                effect=effect,
                variance=AUDIT_VARIANCE,
                cluster_size=scenario.population,
                family="poisson",
                baseline=AUDIT_BASELINE,
                analysis=analysis,
                allocation=scenario.allocation,
                n_sims=n_sims,
                rng=seed,
                n_jobs=n_jobs,
                progress=False,
            )
    except (ValueError, TypeError) as exc:
        return f"not available ({str(exc).splitlines()[0][:70]})"


def _cell(p: float, n: int) -> str:
    if n == 0 or not np.isfinite(p):
        return "—"
    return f"{100 * p:.1f}% ({100 * math.sqrt(p * (1 - p) / n):.1f})"


def main(argv: list[str] | None = None) -> int:
    """Run the calibration and print the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-null", type=int, default=200)
    ap.add_argument("--n-alt", type=int, default=200)
    ap.add_argument("--councils", type=int, default=17, choices=(17, 8))
    ap.add_argument("--n-permutations", type=int, default=999)
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument("--only", action="append", default=[], help="substring of analysis names")
    ap.add_argument("--skip", action="append", default=[], help="exact analysis name to skip")
    ap.add_argument(
        "--with-lmm",
        type=int,
        default=0,
        metavar="B",
        help="also the randomisation test with the GLMM statistic, B re-randomisations",
    )
    args = ap.parse_args(argv)

    scenario = council_scenario(args.councils)
    null, alt = null_and_alternative()
    print(
        f"## {scenario.name}: {args.n_null} null and {args.n_alt} alternative (RR 0.85) "
        f"replicates, seed {args.seed}, steppedwedge {sw.__version__}\n"
    )
    print("| analysis | type-I error (MC SE) | coverage (MC SE) | power (MC SE) | failed | s |")
    print("|---|---|---|---|---|---|")
    todo = analyses(scenario, args.n_permutations)
    if args.with_lmm:
        todo[f"randomisation test, lmm (GLMM nested estimate, B={args.with_lmm})"] = (
            _lmm_permutation_analysis(scenario, args.with_lmm)
        )
    for name, analysis in todo.items():
        if name in args.skip or (
            args.only and not any(o.lower() in name.lower() for o in args.only)
        ):
            continue
        t0 = time.perf_counter()
        res0 = run_one(scenario, analysis, null, args.n_null, args.seed, args.n_jobs)
        if isinstance(res0, str):
            print(f"| {name} | {res0} | | | | |", flush=True)
            continue
        res1 = run_one(scenario, analysis, alt, args.n_alt, args.seed + 1, args.n_jobs)
        assert not isinstance(res1, str)
        cov = res1.coverage if callable(analysis) is False else float("nan")
        print(
            f"| {name} | {_cell(res0.power, res0.n_usable)} | {_cell(cov, res1.n_usable)} | "
            f"{_cell(res1.power, res1.n_usable)} | {res0.n_failed + res1.n_failed} | "
            f"{time.perf_counter() - t0:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
