"""Speed of ``sw.compare_analyses`` with the full panel on the bundled council example.

Run: ``python benchmarks/bench_compare.py``.  Target (issue 12): the primary Poisson GLMM and
every alternative (CR2, ETI, nested+decay, GEE, cluster fixed effects, cluster summaries,
999 re-randomisations, Callaway-Sant'Anna, imputation, vertical when available) plus the
implied weights in <= 30 s.  The peer measured in the same run is the same fits called one
by one with ``sw.fit`` / ``sw.permutation_test``: the ratio shows what the panel adds
(the implied weights, the table and the explanations).  Functions ``time_*`` follow asv's
naming.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import steppedwedge as sw

_DF = sw.datasets.load_councils()
_ROLES = dict(
    outcome="entries_into_care",
    cluster="council",
    period="period",
    treatment="treated",
    exposure="population_0_17",
)


def time_compare_analyses_full_panel() -> None:
    sw.compare_analyses(_DF, **_ROLES, family="poisson", rng=1, n_permutations=999)


def time_the_same_fits_one_by_one() -> None:
    fam = dict(family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for options in (
            {},
            {"vcov": "cr2"},
            {"effect": "eti"},
            {"random": "nested+decay"},
            {"method": "gee", "time": "linear"},
            {"method": "fixed-effects"},
            {"method": "cluster-summary"},
            {"method": "callaway-santanna"},
            {"method": "imputation"},
        ):
            sw.fit(_DF, **_ROLES, **fam, **options)
        sw.permutation_test(_DF, **_ROLES, **fam, statistic="twfe", n_permutations=999, rng=1)
        try:  # the vertical analysis, when this version of sw.fit has it
            sw.fit(_DF, **_ROLES, **fam, method="vertical")
        except sw.OptionError:
            pass


def _best(f, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    panel = _best(time_compare_analyses_full_panel)
    peer = _best(time_the_same_fits_one_by_one)
    print(f"compare_analyses, full panel, 17 councils x 20 quarters: {panel:6.2f} s (target 30 s)")
    print(f"the same fits one by one (peer):                         {peer:6.2f} s")
    print(f"ratio panel / peer:                                      {panel / peer:6.2f}")
