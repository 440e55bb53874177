"""Simulate the small stepped-wedge datasets used as Gaussian LMM reference fixtures.

Run from this directory: ``python make_data.py && Rscript generate.R``.
Writes ``data/<dataset>.csv``; every dataset has a fixed seed, so the files are
reproducible bit for bit with the same numpy version (numpy's ``default_rng``
streams are stable across versions for the methods used here).

Columns: ``cluster`` (int, 1..I), ``period`` (int, 1..T), ``treatment`` (0/1),
``y`` (float), and, where relevant, ``individual`` (int, unique across clusters),
``exposure_time`` (int, 0 = not yet treated), ``x1`` (individual-level continuous),
``x2`` (cluster-level binary).

This module is a script (guarded by ``__main__``) so that ``pytest --doctest-modules``
can import it without side effects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def _sequences(n_clusters: int, n_periods: int) -> np.ndarray:
    """Start period of treatment for each cluster of a standard stepped wedge.

    ``n_periods - 1`` sequences; clusters are spread as evenly as possible (earlier
    sequences get the extra clusters); sequence ``s`` (1-based) starts in period ``s + 1``.
    """
    n_seq = n_periods - 1
    sizes = np.full(n_seq, n_clusters // n_seq)
    sizes[: n_clusters % n_seq] += 1
    return np.repeat(np.arange(2, n_periods + 1), sizes)


def _frame(
    cluster: np.ndarray, period: np.ndarray, start: np.ndarray, y: np.ndarray, **extra: np.ndarray
) -> pd.DataFrame:
    treat = (period >= start[cluster - 1]).astype(int)
    out = pd.DataFrame({"cluster": cluster, "period": period, "treatment": treat, "y": y})
    for k, v in extra.items():
        out[k] = v
    return out


def _cross_sectional(
    rng: np.random.Generator,
    *,
    n_clusters: int,
    n_periods: int,
    sizes: np.ndarray,
    tau2: float,
    gamma2: float,
    sigma2: float,
    effect: float,
    trend: float,
    beta_x1: float = 0.0,
    beta_x2: float = 0.0,
    with_covariates: bool = False,
) -> pd.DataFrame:
    """Nested-exchangeable cross-sectional SW data; ``sizes`` is an (I, T) int array (0 = empty)."""
    start = _sequences(n_clusters, n_periods)
    u = rng.normal(0.0, np.sqrt(tau2), n_clusters)
    v = rng.normal(0.0, np.sqrt(gamma2), (n_clusters, n_periods))
    x2_cluster = rng.permutation(np.arange(n_clusters) % 2)
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            m = int(sizes[i, j])
            if m == 0:
                continue
            treat = int(j + 1 >= start[i])
            x1 = rng.normal(0.0, 1.0, m)
            e = rng.normal(0.0, np.sqrt(sigma2), m)
            y = (
                trend * j
                + effect * treat
                + u[i]
                + v[i, j]
                + beta_x1 * x1
                + beta_x2 * x2_cluster[i]
                + e
            )
            for k in range(m):
                row = {"cluster": i + 1, "period": j + 1, "treatment": treat, "y": y[k]}
                if with_covariates:
                    row["x1"] = x1[k]
                    row["x2"] = int(x2_cluster[i])
                rows.append(row)
    return pd.DataFrame(rows)


def balanced() -> pd.DataFrame:
    """12 clusters, 5 periods (4 sequences x 3), m = 20, nested, effect 0.3, trend 0.1/period."""
    rng = np.random.default_rng(20261101)
    sizes = np.full((12, 5), 20)
    return _cross_sectional(
        rng,
        n_clusters=12,
        n_periods=5,
        sizes=sizes,
        tau2=0.05,
        gamma2=0.02,
        sigma2=1.0,
        effect=0.3,
        trend=0.1,
        beta_x1=0.4,
        beta_x2=0.25,
        with_covariates=True,
    )


def unbalanced(seed: int = 20261802) -> pd.DataFrame:
    """12 clusters, 5 periods, cell sizes Poisson(12) clipped to 3..30, 4 empty cells.

    Seed chosen so that REML and ML estimates of gamma2 are interior (the first seed tried,
    20261102, gave gamma2 = 0).
    """
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.poisson(12, (12, 5)), 3, 30)
    # remove four whole cluster-periods (0-based cluster, period)
    for i, j in [(0, 4), (4, 0), (7, 2), (11, 3)]:
        sizes[i, j] = 0
    return _cross_sectional(
        rng,
        n_clusters=12,
        n_periods=5,
        sizes=sizes,
        tau2=0.05,
        gamma2=0.02,
        sigma2=1.0,
        effect=0.3,
        trend=0.1,
        beta_x1=0.4,
        beta_x2=0.25,
        with_covariates=True,
    )


#: seed for boundary.csv, chosen so that lme4's REML estimate of gamma2 is exactly 0
#: (singular fit); see README.
BOUNDARY_SEED = 20261103


def boundary(seed: int = BOUNDARY_SEED) -> pd.DataFrame:
    """8 clusters, 5 periods (4 x 2), m = 10, true gamma2 = 0 (REML estimate on the boundary)."""
    rng = np.random.default_rng(seed)
    sizes = np.full((8, 5), 10)
    return _cross_sectional(
        rng,
        n_clusters=8,
        n_periods=5,
        sizes=sizes,
        tau2=0.05,
        gamma2=0.0,
        sigma2=1.0,
        effect=0.3,
        trend=0.1,
    )


def cohort(seed: int = 20261804) -> pd.DataFrame:
    """Closed cohort: 10 clusters, 6 periods (5 x 2), the same 10 individuals per cluster.

    Seed chosen so that the ML estimate of gamma2 is interior (20261104 gave 0 under ML).
    """
    rng = np.random.default_rng(seed)
    n_clusters, n_periods, m = 10, 6, 10
    tau2, gamma2, psi2, sigma2, effect, trend = 0.05, 0.02, 0.3, 0.7, 0.3, 0.1
    start = _sequences(n_clusters, n_periods)
    u = rng.normal(0.0, np.sqrt(tau2), n_clusters)
    v = rng.normal(0.0, np.sqrt(gamma2), (n_clusters, n_periods))
    w = rng.normal(0.0, np.sqrt(psi2), (n_clusters, m))
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            treat = int(j + 1 >= start[i])
            e = rng.normal(0.0, np.sqrt(sigma2), m)
            for k in range(m):
                y = trend * j + effect * treat + u[i] + v[i, j] + w[i, k] + e[k]
                rows.append(
                    {
                        "cluster": i + 1,
                        "period": j + 1,
                        "treatment": treat,
                        "y": y,
                        "individual": i * m + k + 1,
                    }
                )
    return pd.DataFrame(rows)


def eti() -> pd.DataFrame:
    """10 clusters, 6 periods (5 x 2), m = 15; effect 0.1 * exposure time (0.1 .. 0.5)."""
    rng = np.random.default_rng(20261105)
    n_clusters, n_periods, m = 10, 6, 15
    tau2, gamma2, sigma2, trend = 0.05, 0.02, 1.0, 0.1
    effects = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # index = exposure time
    start = _sequences(n_clusters, n_periods)
    u = rng.normal(0.0, np.sqrt(tau2), n_clusters)
    v = rng.normal(0.0, np.sqrt(gamma2), (n_clusters, n_periods))
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            et = max(0, j + 1 - start[i] + 1)
            e = rng.normal(0.0, np.sqrt(sigma2), m)
            y = trend * j + effects[et] + u[i] + v[i, j] + e
            for k in range(m):
                rows.append(
                    {
                        "cluster": i + 1,
                        "period": j + 1,
                        "treatment": int(et > 0),
                        "y": y[k],
                        "exposure_time": int(et),
                    }
                )
    return pd.DataFrame(rows)


def decay() -> pd.DataFrame:
    """14 clusters, 7 periods (6 sequences), m = 10; stationary AR(1) cluster-period
    effects with variance 0.15 and lag-1 correlation 0.7; no separate persistent effect."""
    rng = np.random.default_rng(20261106)
    n_clusters, n_periods, m = 14, 7, 10
    var_ar, r, sigma2, effect, trend = 0.15, 0.7, 1.0, 0.3, 0.1
    start = _sequences(n_clusters, n_periods)
    lags = np.abs(np.subtract.outer(np.arange(n_periods), np.arange(n_periods)))
    chol = np.linalg.cholesky(var_ar * r**lags)
    v = rng.standard_normal((n_clusters, n_periods)) @ chol.T
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            treat = int(j + 1 >= start[i])
            e = rng.normal(0.0, np.sqrt(sigma2), m)
            y = trend * j + effect * treat + v[i, j] + e
            for k in range(m):
                rows.append({"cluster": i + 1, "period": j + 1, "treatment": treat, "y": y[k]})
    return pd.DataFrame(rows)


def random_slope(seed: int = 20261607) -> pd.DataFrame:
    """12 clusters, 5 periods, m = 15; cluster intercept (var 0.1) and treatment slope
    (var 0.08) with correlation 0.5; no cluster-period effect.

    Seed chosen so that the correlated fit is interior (20261107 gave correlation 1).
    """
    rng = np.random.default_rng(seed)
    n_clusters, n_periods, m = 12, 5, 15
    tau2, eta2, rho, sigma2, effect, trend = 0.1, 0.08, 0.5, 1.0, 0.3, 0.1
    start = _sequences(n_clusters, n_periods)
    cov = np.array([[tau2, rho * np.sqrt(tau2 * eta2)], [rho * np.sqrt(tau2 * eta2), eta2]])
    b = rng.standard_normal((n_clusters, 2)) @ np.linalg.cholesky(cov).T
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            treat = int(j + 1 >= start[i])
            e = rng.normal(0.0, np.sqrt(sigma2), m)
            y = trend * j + (effect + b[i, 1]) * treat + b[i, 0] + e
            for k in range(m):
                rows.append({"cluster": i + 1, "period": j + 1, "treatment": treat, "y": y[k]})
    return pd.DataFrame(rows)


DATASETS = {
    "balanced": balanced,
    "unbalanced": unbalanced,
    "boundary": boundary,
    "cohort": cohort,
    "eti": eti,
    "decay": decay,
    "random_slope": random_slope,
}


def main() -> None:
    DATA.mkdir(exist_ok=True)
    for name, make in DATASETS.items():
        df = make()
        # float_format=None: pandas writes repr() of each float (round-trips exactly)
        df.to_csv(DATA / f"{name}.csv", index=False, lineterminator="\n")
        print(f"{name}.csv: {len(df)} rows, columns {list(df.columns)}")


if __name__ == "__main__":
    main()
