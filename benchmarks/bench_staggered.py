"""Speed of the staggered-rollout estimators on the ``staggered`` README panel size.

Run: ``python benchmarks/bench_staggered.py``.  A balanced panel of 8,000 clusters x 72
periods (576,000 rows, one row per cluster-period, 40 start cohorts) is simulated and
analysed through ``sw.fit``; the time includes validating the rows and forming the
cluster-period cells.  Target: the efficient estimator (``estimand="simple"``) in <= 5 s.
The functions ``time_*`` follow asv's naming so the file can also be collected by asv.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

import steppedwedge as sw

I, T = 8000, 72  # noqa: E741


def make_panel(seed: int = 1) -> pd.DataFrame:
    """One Gaussian outcome per cluster-period; start periods 20..59 at random."""
    rng = np.random.default_rng(seed)
    start = rng.integers(20, 60, I)
    ci, tj = np.meshgrid(np.arange(I), np.arange(T), indexing="ij")
    x = (tj >= start[:, None]).astype(float)
    y = rng.normal(0, 1, (I, 1)) + 0.01 * tj + 0.1 * x + rng.normal(0, 1, (I, T))
    return pd.DataFrame(
        {"cluster": ci.ravel(), "period": tj.ravel(), "x": x.ravel(), "y": y.ravel()}
    )


_PANEL = make_panel()


def _fit(method: str, estimand: str = "simple", **kw):
    return sw.fit(
        _PANEL, outcome="y", cluster="cluster", period="period", treatment="x",
        method=method, estimand=estimand, **kw,
    )  # fmt: skip


def time_efficient_simple() -> None:
    _fit("efficient-staggered")


def time_efficient_event_study() -> None:
    _fit("efficient-staggered", "event-time", event_times=range(24))


def time_callaway_santanna_with_group_time_table() -> None:
    _fit("callaway-santanna")


def time_imputation() -> None:
    _fit("imputation")


def _best(f, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    print(f"panel: {I} clusters x {T} periods = {len(_PANEL):,} rows")
    for name, f in [
        ("efficient, simple", time_efficient_simple),
        ("efficient, event study 0..23", time_efficient_event_study),
        ("Callaway-Sant'Anna + ATT(g,t) table", time_callaway_santanna_with_group_time_table),
        ("imputation, simple", time_imputation),
    ]:
        print(f"{name:40s} {_best(f):6.2f} s")
