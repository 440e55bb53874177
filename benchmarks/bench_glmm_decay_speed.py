"""Benchmark: the decay GLMM of the count audit and its robust variance, vs glmmTMB in the same run.

Run ``python benchmarks/bench_glmm_decay_speed.py [n_fits] [n_sims]`` (not a test; defaults 20
and 1000).  The data are the audit scenario of ``tests/calibration_counts.py``: 17 councils x
20 quarters, Poisson counts with the councils' child populations as exposure, a persistent
council effect (SD 0.33) and a council-quarter effect (SD 0.15) decaying by 0.9 a quarter,
drawn by the library's own generator (``sw.simulate``), null effect.  Prints:

1. Time per ``sw.fit(..., family="poisson", random=...)`` for ``"nested"`` and
   ``"nested+decay"``: CPU time (``time.process_time``) of one fit per data set, median
   and mean over ``n_fits`` data sets (the mean carries the boundary fits, ``tau2 = 0`` with
   ``r`` near 1, whose share and mean time are printed), then wall time (best of 3 per data
   set), and the time each ``vcov=`` adds to the same fits (the ratio to ``vcov="model"``
   measured on the same data sets in the same loop; and, less sensitive to the machine's
   load, the CPU time spent in the sandwich step over the rest of the same fits).  Targets:
   nested+decay <= 50 ms per fit, a robust variance <= +20%.
2. glmmTMB on the same data sets (``Rscript``, best of 3 ``system.time`` per data set):
   ``y ~ factor(quarter) + treated + offset(log(pop)) + (1 | council) + ar1(qf + 0 |
   council)`` and the nested ``(1 | council) + (1 | council:qf)``; the ratio glmmTMB / ours
   and the largest differences of the treatment estimate, its SE and the log-likelihood.
   Skipped when R or glmmTMB is missing.
3. ``n_sims`` simulated trials of the nested+decay GLMM through ``sw.simulate_power(...,
   analysis=..., n_jobs=2)`` (data generation included): wall time and the CPU time of all
   processes (half of it is the wall time on 2 idle cores), target <= 60 s on 2 cores.

Timings depend on the machine's load (printed with them): compare the ratios, which are
measured in the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from calibration_counts import (  # noqa: E402
    AUDIT_BASELINE,
    AUDIT_VARIANCE,
    ROLES,
    council_scenario,
)

import steppedwedge as sw  # noqa: E402

ROBUST = ("cr0", "cr2", "cr3", "kc", "md", "fg", "mbn")


def _fit(d: pd.DataFrame, random: str, vcov: str = "model") -> sw.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sw.fit(d, **ROLES, family="poisson", random=random, vcov=vcov)


def _best(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _robust_share(data: list[pd.DataFrame], random: str, vcov: str) -> float:
    """Time inside the robust-variance step over the rest of the same fits (CPU seconds).

    Measured within each fit (the sandwich step is timed around its call), so the share does
    not depend on the machine's load the way a difference of two fits' times does.
    """
    import steppedwedge.models.glmm as glmm_mod

    real = glmm_mod._laplace_robust
    spent = [0.0]

    def timed(*args, **kwargs):
        t0 = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - t0

    glmm_mod._laplace_robust = timed
    try:
        t0 = time.process_time()
        for d in data:
            _fit(d, random, vcov)
        total = time.process_time() - t0
    finally:
        glmm_mod._laplace_robust = real
    return spent[0] / (total - spent[0])


def cpu_section(data: list[pd.DataFrame], random: str) -> None:
    """CPU seconds of one fit per data set: median, mean, and the boundary fits' share."""
    cpu, boundary = [], []
    for d in data:
        t0 = time.process_time()
        res = _fit(d, random)
        cpu.append(time.process_time() - t0)
        boundary.append(res.singular)
    t, b = 1e3 * np.array(cpu), np.array(boundary, dtype=bool)
    line = f"   random={random!r:15s} CPU {np.median(t):6.1f} ms median, {t.mean():6.1f} ms mean"
    if b.any():
        line += f"; {100 * b.mean():.0f}% boundary fits (mean {t[b].mean():.1f} ms)"
    print(line)


def fit_section(data: list[pd.DataFrame]) -> dict[str, dict[str, list[float]]]:
    """Seconds per fit (best of 3) for each structure and vcov, interleaved per data set."""
    times: dict[str, dict[str, list[float]]] = {}
    print(f"1. sw.fit on {len(data)} audit data sets (17 councils x 20 quarters, Poisson)")
    for random in ("nested", "nested+decay"):
        _fit(data[0], random)
        cpu_section(data, random)
    for random in ("nested", "nested+decay"):
        times[random] = {v: [] for v in ("model", *ROBUST)}
        _fit(data[0], random)
        for d in data:
            for vcov in ("model", *ROBUST):
                run = lambda v=vcov, dd=d, r=random: _fit(dd, r, v)  # noqa: E731
                times[random][vcov].append(_best(run))
        model = np.array(times[random]["model"])
        line = f"   random={random!r:15s} wall {1e3 * model.mean():6.1f} ms mean, "
        line += f"{1e3 * np.median(model):6.1f} ms median (best of 3); robust variance adds:"
        print(line)
        extra = [
            f"{v} {100 * (np.mean(times[random][v]) / model.mean() - 1):+.0f}%" for v in ROBUST
        ]
        print("      fit-time differences: " + ", ".join(extra))
        share = [f"{v} +{100 * _robust_share(data, random, v):.1f}%" for v in ROBUST]
        print("      timed inside the fits: " + ", ".join(share))
    return times


_TMB = r"""
suppressMessages(library(glmmTMB))
d <- read.csv("{csv}")
out <- list()
for (s in unique(d$set)) {{
  x <- d[d$set == s, ]
  x$qf <- factor(x$quarter); x$council <- factor(x$council)
  f <- list(
    `nested+decay` = entries_into_care ~ qf + treated + offset(log(population_0_17)) +
      (1 | council) + ar1(qf + 0 | council),
    nested = entries_into_care ~ qf + treated + offset(log(population_0_17)) +
      (1 | council) + (1 | council:qf))
  for (nm in names(f)) {{
    el <- c()
    for (i in 1:3) {{
      t0 <- proc.time()[["elapsed"]]
      m <- glmmTMB(f[[nm]], family = poisson, data = x)
      el <- c(el, proc.time()[["elapsed"]] - t0)
    }}
    cf <- summary(m)$coefficients$cond
    out[[length(out) + 1]] <- list(set = s, random = nm, seconds = min(el),
      estimate = cf["treated", "Estimate"], std_error = cf["treated", "Std. Error"],
      loglik = as.numeric(logLik(m)))
  }}
}}
cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def glmmtmb_section(data: list[pd.DataFrame], times: dict[str, dict[str, list[float]]]) -> None:
    """glmmTMB on the same data sets: time ratio and agreement of the treatment estimate."""
    print("2. glmmTMB (R) on the same data sets, in the same run")
    if shutil.which("Rscript") is None:
        print("   skipped: Rscript not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "sets.csv"
        pd.concat([d.assign(set=k) for k, d in enumerate(data)]).to_csv(csv, index=False)
        try:
            run = subprocess.run(
                ["Rscript", "-e", _TMB.format(csv=csv.as_posix())],
                capture_output=True,
                text=True,
                timeout=3600,
                check=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"   skipped: glmmTMB run failed ({type(exc).__name__})")
            return
    rows = pd.DataFrame(json.loads(run.stdout))
    for random in ("nested+decay", "nested"):
        tmb = rows[rows["random"] == random].sort_values("set")
        ours = [_fit(data[int(s)], random) for s in tmb["set"]]
        d_est = np.max(np.abs(tmb["estimate"].to_numpy() - [r.estimate for r in ours]))
        d_se = np.max(np.abs(tmb["std_error"].to_numpy() / [r.std_error for r in ours] - 1))
        d_ll = np.max(np.abs(tmb["loglik"].to_numpy() - [r.loglik for r in ours]))
        t_tmb = tmb["seconds"].to_numpy()
        t_ours = np.array(times[random]["model"])[tmb["set"].to_numpy(dtype=int)]
        print(
            f"   random={random!r:15s} glmmTMB {1e3 * t_tmb.mean():6.1f} ms mean per fit = "
            f"{t_tmb.mean() / t_ours.mean():.1f}x ours (median of per-set ratios "
            f"{np.median(t_tmb / t_ours):.1f}x)"
        )
        print(
            f"      agreement over {len(tmb)} sets: |d estimate| <= {d_est:.1e}, "
            f"|SE ratio - 1| <= {d_se:.1e}, |d logLik| <= {d_ll:.1e}"
        )


def simulation_section(n_sims: int) -> None:
    """``n_sims`` trials of the nested+decay GLMM on 2 processes, generation included."""
    sc = council_scenario(17)
    import resource

    print(f"3. sw.simulate_power: {n_sims} trials of the nested+decay Poisson GLMM, n_jobs=2")

    def cpu() -> float:  # this process and its finished workers
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    c0 = cpu()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sw.simulate_power(
            sc.design,
            effect=0.0,
            variance=AUDIT_VARIANCE,
            cluster_size=sc.population,
            family="poisson",
            baseline=AUDIT_BASELINE,
            analysis={"family": "poisson", "random": "nested+decay"},
            allocation=sc.allocation,
            n_sims=n_sims,
            rng=2026,
            n_jobs=2,
            progress=False,
        )
    wall = time.perf_counter() - t0
    used = cpu() - c0
    print(
        f"   {wall:.1f} s wall ({1e3 * wall / n_sims:.1f} ms per trial on 2 processes); "
        f"{used:.1f} s CPU in all processes ({1e3 * used / n_sims:.1f} ms per trial), i.e. "
        f"{used / 2:.1f} s on 2 idle cores; rejection rate at the null {res.power:.3f}"
    )


if __name__ == "__main__":
    n_fits = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    n_sims = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs at the start)")
    scenario = council_scenario(17)
    sets = [scenario.draw(0.0, seed) for seed in range(100, 100 + n_fits)]
    fit_times = fit_section(sets)
    glmmtmb_section(sets, fit_times)
    if n_sims:
        simulation_section(n_sims)
