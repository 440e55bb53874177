"""Size, power and interval coverage of the ``"glmm-score"`` randomisation test vs ``"twfe"``.

Run: ``nice -n 10 python benchmarks/bench_permutation_calibration.py --null 200 --alt 200``
(about 15 minutes on one core).  The audit scenario of ``tests/calibration_counts.py``
(17 councils x 20 quarters, Poisson counts with a persistent council effect and decaying
council-quarter effects; rate ratio 1 and 0.85), each trial re-randomised ``--draws`` times
from the example's own (covariate-constrained) allocation space; the same trials and
re-randomisations for every statistic, so power differences are paired.  With
``--coverage N`` the 95% interval of ``glmm-score`` (nested+decay) is computed on the first N
alternative trials and its coverage of log 0.85 reported.  Writes one CSV row per trial with
``--csv``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from calibration_counts import ROLES, council_scenario, null_and_alternative  # noqa: E402

import steppedwedge as sw  # noqa: E402

STATISTICS = {
    "twfe": dict(statistic="twfe"),
    "glmm-score nested": dict(statistic="glmm-score", lmm_options={"random": "nested"}),
    "glmm-score nested+decay": dict(statistic="glmm-score", lmm_options={"random": "nested+decay"}),
}


def one_trial(effect: float, seed: int, draws: int, coverage: bool) -> dict[str, float]:
    scen = council_scenario(17)
    data = scen.draw(effect, np.random.default_rng(seed))
    row: dict[str, float] = {"effect": effect, "seed": seed}
    for name, opts in STATISTICS.items():
        t0 = time.process_time()
        want = coverage and name == "glmm-score nested+decay"
        res = sw.permutation_test(
            data, **ROLES, family="poisson", allocation=scen.allocation, n_permutations=draws,
            rng=seed + 1, alpha=None, confidence_level=0.95 if want else None, **opts,
        )  # fmt: skip
        row[f"p {name}"] = res.pvalue
        row[f"est {name}"] = res.estimate
        if want:
            lo, hi = res.interval or (math.nan, math.nan)
            row["ci low"], row["ci high"] = lo, hi
        row[f"cpu {name}"] = time.process_time() - t0
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--null", type=int, default=200)
    ap.add_argument("--alt", type=int, default=200)
    ap.add_argument("--draws", type=int, default=999)
    ap.add_argument("--coverage", type=int, default=0)
    ap.add_argument("--null-start", type=int, default=0, help="first null trial index")
    ap.add_argument("--alt-start", type=int, default=0, help="first alternative trial index")
    ap.add_argument("--csv", type=str, default=None)
    args = ap.parse_args(argv)
    null, alt = null_and_alternative()
    rows = []
    for k in range(args.null_start, args.null_start + args.null):
        rows.append(one_trial(null, 10_000 + k, args.draws, False))
    for k in range(args.alt_start, args.alt_start + args.alt):
        rows.append(one_trial(alt, 20_000 + k, args.draws, k < args.coverage))
        if args.csv:
            pd.DataFrame(rows).to_csv(args.csv, index=False)
    frame = pd.DataFrame(rows)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    for name in STATISTICS:
        for label, eff in (("size", null), ("power", alt)):
            p = frame.loc[frame["effect"] == eff, f"p {name}"]
            r = float(np.mean(p <= 0.05)) if len(p) else math.nan
            se = math.sqrt(r * (1 - r) / max(len(p), 1))
            print(f"{name:26s} {label}: {100 * r:.1f}% (MC SE {100 * se:.1f}, {len(p)} trials)")
        print(f"{name:26s} CPU per trial {frame[f'cpu {name}'].mean():.2f} s")
    if "ci low" in frame:
        ok = frame.dropna(subset=["ci low"])
        cov = float(np.mean((ok["ci low"] < alt) & (alt < ok["ci high"])))
        print(f"95% interval (nested+decay) coverage of log 0.85: {100 * cov:.1f}% of {len(ok)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
