"""Benchmark: GLMM fits (Laplace), steppedwedge vs statsmodels in the same run.

Run ``python benchmarks/bench_glmm.py`` (not a test).  Prints:

1. Poisson GLMM, 17 councils x 12 quarters with a population offset (the council data of
   ``tests/reference/glmm``), ``random="cluster"`` and ``"nested"`` (Poisson-lognormal):
   time of ``fit_glmm`` from the DataFrame, of the Laplace fit once the units are formed,
   and of statsmodels ``GLM`` (Poisson with ``exposure``: fixed effects only, no random
   effects, so a lower bound for any mixed model) and ``PoissonBayesMixedGLM.fit_vb``
   (variational Bayes, council random intercept; it has no offset, so the outcome is the
   count itself: a timing reference, not the same model).  Targets: Laplace <= 20 ms.
2. Binary GLMM on one million individual 0/1 rows (12 clusters x 5 periods, nested random
   effects): ``fit_glmm`` end to end (validation, aggregation to events/trials, fit) vs
   statsmodels ``GLM`` (binomial, no random effects) on the same rows.  Target <= 2 s.
3. Logistic GLMM with a council random intercept, period effects and five child-level
   covariates (two continuous) on 30,000 children, 5 councils x 6 periods
   (``tests/reference/glmm/data/children_covariates.csv``): every row is its own likelihood
   unit.  ``fit_glmm`` end to end (wall and CPU time) vs glmer's elapsed time recorded in
   the fixture (``cases.json``, case ``children_cov_glmer``).  Target <= 1 s.
4. Poisson GLMM with decaying council-quarter correlation, 17 councils x 20 quarters with a
   population offset (``tests/reference/glmm_decay/data/council_decay.csv``),
   ``random="nested+decay"`` and ``"decay"``: ``fit_glmm`` end to end (wall and CPU), and
   glmmTMB ``count ~ qf + treatment + offset(log(pop)) + (1 | council) + ar1(qf + 0 |
   council)`` timed in the same run (``Rscript``, best of 3 ``system.time``) when R and
   glmmTMB are installed.  Target <= 50 ms per fit.

Timings are the best of several repeats; the ratio is statsmodels / steppedwedge.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def core_timer():
    """Wrap the Laplace optimiser to capture its inputs, so it can be timed on formed units."""
    import steppedwedge.models.glmm as glmm

    captured: dict[str, object] = {}
    orig = glmm.fit_glmm_core

    def wrap(*args, **kwargs):
        captured["args"] = (args, kwargs)
        return orig(*args, **kwargs)

    glmm.fit_glmm_core = wrap
    return captured, orig


def counts_section() -> None:
    import statsmodels.api as sm
    from statsmodels.genmod.bayes_mixed_glm import PoissonBayesMixedGLM

    from steppedwedge.models.glmm import fit_glmm

    df = pd.read_csv(ROOT / "tests/reference/glmm/data/council_counts.csv")
    kw = dict(
        outcome="count",
        cluster="council",
        period="quarter",
        treatment="treatment",
        family="poisson",
        exposure="pop",
    )
    captured, core = core_timer()
    print("1. Poisson GLMM, 17 councils x 12 quarters, offset log(pop), Laplace")
    x = pd.get_dummies(df["quarter"], prefix="q", drop_first=True).astype(float)
    x.insert(0, "const", 1.0)
    x["treatment"] = df["treatment"].astype(float)
    t_glm = best_of(
        lambda: sm.GLM(df["count"], x, family=sm.families.Poisson(), exposure=df["pop"]).fit(), 10
    )
    vc = pd.get_dummies(df["council"]).astype(float).to_numpy()
    ident = np.zeros(vc.shape[1], dtype=int)

    def vb() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            PoissonBayesMixedGLM(df["count"].to_numpy(), x.to_numpy(), vc, ident).fit_vb()

    t_vb = best_of(vb, 3)
    for random in ("cluster", "nested"):
        res = fit_glmm(df, random=random, **kw)
        t_full = best_of(lambda r=random: fit_glmm(df, random=r, **kw), 15)
        args, kwargs = captured["args"]
        t_core = best_of(lambda a=args, k=kwargs: core(*a, **k), 15)
        print(
            f"   random={random!r:10s} fit_glmm {t_full * 1e3:7.1f} ms | Laplace on formed cells "
            f"{t_core * 1e3:6.1f} ms | RR {res.ratio[0]:.4f} (SE {res.std_error:.4f}), "
            f"logLik {res.loglik:.4f}"
        )
        print(
            f"      ratios: statsmodels GLM (no random effects) {t_glm * 1e3:.1f} ms = "
            f"{t_glm / t_core:.2f}x our Laplace; PoissonBayesMixedGLM.fit_vb {t_vb * 1e3:.1f} ms = "
            f"{t_vb / t_full:.1f}x our fit_glmm"
        )


def binary_section(n_rows: int = 1_000_000) -> None:
    import statsmodels.api as sm

    from steppedwedge.models.glmm import fit_glmm

    rng = np.random.default_rng(3)
    n_i, n_t = 12, 5
    cl = rng.integers(0, n_i, n_rows)
    per = rng.integers(0, n_t, n_rows)
    start = 1 + cl % (n_t - 1)
    x = (per >= start).astype(np.int8)
    a = rng.normal(0, 0.4, n_i)[cl] + rng.normal(0, 0.2, n_i * n_t)[cl * n_t + per]
    p = 1 / (1 + np.exp(-(-1.0 + 0.1 * per - 0.3 * x + a)))
    y = (rng.random(n_rows) < p).astype(np.int8)
    df = pd.DataFrame({"cluster": cl, "period": per, "treatment": x, "y": y})
    print(
        f"2. Binary GLMM (logit, nested), {n_rows:,} individual rows, "
        f"{n_i} clusters x {n_t} periods"
    )
    kw = dict(
        outcome="y", cluster="cluster", period="period", treatment="treatment", family="binomial"
    )
    res = fit_glmm(df, **kw)
    t_ours = best_of(lambda: fit_glmm(df, **kw), 3)
    xm = np.column_stack(
        [np.ones(n_rows)] + [(per == j).astype(float) for j in range(1, n_t)] + [x]
    )
    t_glm = best_of(lambda: sm.GLM(y, xm, family=sm.families.Binomial()).fit(), 1)
    print(
        f"   fit_glmm end to end {t_ours:.3f} s (OR {res.ratio[0]:.4f}, SE {res.std_error:.4f}, "
        f"{res.n_units} cells); statsmodels GLM on the rows (no random effects) {t_glm:.3f} s = "
        f"{t_glm / t_ours:.1f}x"
    )


def covariates_section() -> None:
    import json

    from steppedwedge.models.glmm import fit_glmm

    ref = ROOT / "tests/reference/glmm"
    df = pd.read_csv(ref / "data/children_covariates.csv")
    case = next(
        c for c in json.loads((ref / "cases.json").read_text()) if c["name"] == "children_cov_glmer"
    )
    print(
        f"3. Logistic GLMM, (1 | council) + period + treatment + 5 covariates, {len(df):,} "
        "children, 5 councils x 6 periods"
    )
    res = fit_glmm(df, **case["kwargs"])
    t_wall = best_of(lambda: fit_glmm(df, **case["kwargs"]), 5)

    def cpu() -> None:
        c0 = time.process_time()
        fit_glmm(df, **case["kwargs"])
        cpu.t = min(getattr(cpu, "t", np.inf), time.process_time() - c0)  # type: ignore[attr-defined]

    best_of(cpu, 5)
    print(
        f"   fit_glmm end to end {t_wall:.3f} s wall, {cpu.t:.3f} s CPU "  # type: ignore[attr-defined]
        f"({res.n_units:,} units; OR {res.ratio[0]:.4f}, SE {res.std_error:.4f}); "
        f"glmer (R, default control) {case['elapsed_glmer_default']:.2f} s = "
        f"{case['elapsed_glmer_default'] / t_wall:.1f}x"
    )


_TMB_SCRIPT = """
suppressMessages(library(glmmTMB))
cc <- read.csv("{csv}"); cc$qf <- factor(cc$quarter)
f <- list(
  `nested+decay` = count ~ qf + treatment + offset(log(pop)) + (1 | council) +
    ar1(qf + 0 | council),
  decay = count ~ qf + treatment + offset(log(pop)) + ar1(qf + 0 | council))
for (nm in names(f)) {{
  t <- min(sapply(1:3, function(i)
    system.time(glmmTMB(f[[nm]], family = poisson, data = cc))[["elapsed"]]))
  cat(nm, t, "\\n")
}}
"""


def glmmtmb_times(csv: Path) -> dict[str, float]:
    """glmmTMB elapsed seconds per structure (best of 3), or {} without R/glmmTMB."""
    import shutil
    import subprocess

    if shutil.which("Rscript") is None:
        return {}
    try:
        out = subprocess.run(
            ["Rscript", "-e", _TMB_SCRIPT.format(csv=csv.as_posix())],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.strip()}


def decay_section() -> None:
    from steppedwedge.models.glmm import fit_glmm

    csv = ROOT / "tests/reference/glmm_decay/data/council_decay.csv"
    df = pd.read_csv(csv)
    kw = dict(
        outcome="count",
        cluster="council",
        period="quarter",
        treatment="treatment",
        family="poisson",
        exposure="pop",
    )
    print("4. Poisson GLMM with decaying council-quarter correlation, 17 councils x 20 quarters")
    tmb = glmmtmb_times(csv)
    for random in ("nested+decay", "decay"):
        res = fit_glmm(df, random=random, **kw)
        t_wall = best_of(lambda r=random: fit_glmm(df, random=r, **kw), 15)

        def cpu(r: str = random) -> None:
            c0 = time.process_time()
            fit_glmm(df, random=r, **kw)
            cpu.t = min(getattr(cpu, "t", np.inf), time.process_time() - c0)  # type: ignore[attr-defined]

        best_of(cpu, 15)
        vc = res.variance_components
        line = (
            f"   random={random!r:15s} fit_glmm {t_wall * 1e3:6.1f} ms wall, "
            f"{cpu.t * 1e3:6.1f} ms CPU | RR {res.ratio[0]:.4f} (SE {res.std_error:.4f}), "  # type: ignore[attr-defined]
            f"r {vc['decay']:.4f}, logLik {res.loglik:.4f}"
        )
        if random in tmb:
            line += f" | glmmTMB {tmb[random] * 1e3:.0f} ms = {tmb[random] / t_wall:.0f}x"
        print(line)
    if not tmb:
        print("   (glmmTMB timing skipped: Rscript or glmmTMB not available)")


if __name__ == "__main__":
    counts_section()
    binary_section()
    covariates_section()
    decay_section()
