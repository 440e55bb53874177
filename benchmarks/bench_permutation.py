"""Speed of the randomisation test on the bundled council example (17 councils x 20 quarters).

Run: ``python benchmarks/bench_permutation.py``.  Times ``sw.permutation_test`` with 10,000
re-randomisations of the ``"cluster-period"`` and ``"twfe"`` statistics (target: <= 2 s for
``"cluster-period"``, issue 12), the 90% link-scale (rate-ratio) interval on top, and, as the
peer measured in the same run, one cluster-summary fit (``sw.fit(method="cluster-summary")``,
the same cell summaries and two-way regression): the test costs ``ratio`` such fits.  The
functions ``time_*`` follow asv's naming so the file can also be collected by asv.
"""

from __future__ import annotations

import time

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


def _test(statistic: str, **kw: object) -> sw.PermutationResult:
    return sw.permutation_test(
        _DATA, **_ROLES, statistic=statistic, n_permutations=10_000, rng=1, **kw
    )  # fmt: skip


def time_cluster_period_10000() -> None:
    _test("cluster-period")


def time_twfe_10000() -> None:
    _test("twfe")


def time_twfe_10000_with_rate_ratio_interval() -> None:
    _test("twfe", confidence_level=0.9)


def time_cluster_period_10000_with_rate_ratio_interval() -> None:
    _test("cluster-period", confidence_level=0.9)


def time_peer_cluster_summary_fit() -> None:
    sw.fit(_DATA, **_ROLES, method="cluster-summary")


def _best(f, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return min(out)


if __name__ == "__main__":
    peer = _best(time_peer_cluster_summary_fit)
    print(f"peer: one cluster-summary fit {peer:.3f} s")
    for name, f in [
        ("cluster-period, 10,000 re-randomisations", time_cluster_period_10000),
        ("twfe, 10,000 re-randomisations", time_twfe_10000),
        ("cluster-period + 90% rate-ratio CI", time_cluster_period_10000_with_rate_ratio_interval),
        ("twfe + 90% rate-ratio CI", time_twfe_10000_with_rate_ratio_interval),
    ]:
        t = _best(f)
        print(f"{name}: {t:.2f} s ({t / peer:.0f} x the peer)")
