"""Speed of the GLMM score randomisation test (``statistic="glmm-score"``), issue 12.

Run: ``nice -n 10 python benchmarks/bench_permutation_score.py``.  On the bundled council
example (17 councils x 20 quarters, Poisson counts with population exposure) it times
``sw.permutation_test(statistic="glmm-score")`` with 10,000 re-randomisations and the 95%
rate-ratio interval (target: <= 120 s on 2 cores), for the nested and nested+decay GLMMs.
The peer, measured in the same run, is the refitted GLMM statistic (``statistic="lmm"``,
one fit per re-randomisation and per hypothesised effect) on 19 re-randomisations with a
90% interval (the smallest level 19 draws can bound; the search costs about as many rounds
of refits at any level); its cost per re-randomisation is extrapolated linearly to 10,000
(its refits are independent, so the extrapolation is the serial cost) and the ratio
printed.  Wall and CPU (process) time are both shown: the machine may be shared.
The functions ``time_*`` follow asv's naming.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import steppedwedge as sw

_DATA = sw.datasets.load_councils()
_ROLES = dict(
    outcome="entries_into_care",
    cluster="council",
    period="quarter",
    treatment="treated",
    exposure="population_0_17",
    family="poisson",
)
_PEER_DRAWS = 19  # with a 90% interval: the smallest p (1/20) lets the search run


def _score(random: str, draws: int = 10_000) -> sw.PermutationResult:
    return sw.permutation_test(
        _DATA, **_ROLES, statistic="glmm-score", lmm_options={"random": random},
        n_permutations=draws, rng=1, confidence_level=0.95,
    )  # fmt: skip


def _refit(random: str, draws: int = _PEER_DRAWS) -> sw.PermutationResult:
    return sw.permutation_test(
        _DATA, **_ROLES, statistic="lmm", lmm_options={"random": random},
        n_permutations=draws, rng=1, confidence_level=0.9, alpha=None,
    )  # fmt: skip


def time_glmm_score_nested_10000_with_interval() -> None:
    _score("nested")


def time_glmm_score_nested_decay_10000_with_interval() -> None:
    _score("nested+decay")


def time_peer_lmm_refit_nested_few_draws_with_interval() -> None:
    _refit("nested")


def _clock(f: Callable[[], object]) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return time.perf_counter() - w0, time.process_time() - c0, out


if __name__ == "__main__":
    for random in ("nested", "nested+decay"):
        wall, cpu, res = _clock(lambda r=random: _score(r))  # type: ignore[misc]
        lo, hi = np.exp(res.interval)  # type: ignore[attr-defined]
        print(
            f"glmm-score {random}: 10,000 re-randomisations + 95% CI: {wall:.1f} s wall, "
            f"{cpu:.1f} s CPU (p = {res.pvalue:.4f}, RR CI {lo:.3f} to {hi:.3f})"  # type: ignore[attr-defined]
        )
        pw, pc, peer = _clock(lambda r=random: _refit(r))  # type: ignore[misc]
        per_draw = pw / (_PEER_DRAWS + 1)  # the observed allocation is refitted too
        projected = per_draw * 10_001
        cpu_projected = pc / (_PEER_DRAWS + 1) * 10_001
        print(
            f"  peer lmm refit {random}: {_PEER_DRAWS} re-randomisations + 90% CI: {pw:.1f} s "
            f"wall, {pc:.1f} s CPU -> {per_draw:.2f} s per re-randomisation, ~{projected:.0f} s "
            f"for 10,000 ({projected / wall:.0f} x glmm-score in wall time, "
            f"{cpu_projected / cpu:.0f} x in CPU time)"
        )
