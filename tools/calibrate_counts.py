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
import functools  # noqa: E402
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


#: Sandwich estimators recorded by the ``--candidates`` run (``kc`` is what a GLMM's
#: ``vcov="cr2"`` computes: without observation-space pieces CR2 falls back to it).
CANDIDATE_KINDS = ("cr0", "kc", "cr3", "fg", "mbn")


class _EveryVcov:
    """Records every sandwich kind from the per-cluster pieces of one GLMM fit.

    The GLMM fit builds its per-cluster pieces once (``leverage="fixed"``, the pieces of
    every leverage-corrected kind) and hands them, with its Hessian, to ``corrected_scores``
    (or ``sandwich_vcov`` for MBN).  :meth:`install` wraps both names inside the GLMM
    module so that the covariance of every kind in :data:`CANDIDATE_KINDS` is computed
    from those same pieces: one fit gives the standard errors of all candidates (identical
    to one fit per ``vcov=``: checked to 1e-12 on an 8-council replicate for every kind).
    """

    def __init__(self) -> None:
        from steppedwedge.inference import sandwich

        self.sandwich = sandwich
        self.last: dict[str, np.ndarray] = {}

    def _record(self, pieces: Any, hessian: Any) -> None:
        vcov = self.sandwich.sandwich_vcov
        self.last = {k: vcov(pieces, k, hessian=hessian) for k in CANDIDATE_KINDS}

    def install(self) -> None:
        """Wrap ``corrected_scores`` and ``sandwich_vcov`` of the GLMM module."""
        from steppedwedge.models import glmm

        def scores(pieces: Any, kind: str, hessian: Any = None, **kw: Any) -> Any:
            self._record(pieces, hessian)
            return self.sandwich.corrected_scores(pieces, kind, hessian, **kw)

        def vcov(pieces: Any, kind: str, **kw: Any) -> Any:
            self._record(pieces, kw.get("hessian"))
            return self.sandwich.sandwich_vcov(pieces, kind, **kw)

        glmm.corrected_scores = scores  # type: ignore[attr-defined]
        glmm.sandwich_vcov = vcov  # type: ignore[attr-defined]


def _candidate_analysis(
    random: str, spy: _EveryVcov, sink: Callable[[dict[str, float]], None]
) -> Callable[[Any], Any]:
    """One GLMM fit per replicate (``vcov="cr3"``); every candidate SE passed to ``sink``."""

    def run(data: Any) -> Any:
        res = sw.fit(
            data,
            outcome="outcome",
            cluster="cluster",
            period="period",
            treatment="treatment",
            exposure="population",
            family="poisson",
            random=random,
            vcov="cr3",
        )
        k = list(res.params.index).index("treatment")
        sink(
            dict(
                estimate=res.estimate,
                model=float(res.std_error_model),
                converged=float(res.converged),
                singular=float(res.singular),
                **{kind: float(np.sqrt(cov[k, k])) for kind, cov in spy.last.items()},
                **{f"vc_{n}": float(v) for n, v in res.variance_components.items()},
            )
        )
        return res

    return run


def run_candidates(args: argparse.Namespace) -> int:
    """Per-replicate SEs of every variance candidate for one GLMM structure (CSV).

    Replicates run in chunks of ``--chunk``, alternating null and alternative, chunk ``c``
    of scenario ``h`` (0 null, 1 alternative) seeded ``SeedSequence([seed, h, c])``; every
    replicate is appended to ``--out`` as it finishes, so a partial run is usable.
    """
    import csv

    import pandas as pd

    scenario = council_scenario(args.councils)
    spy = _EveryVcov()
    spy.install()
    fields = ["councils", "scenario", "true", "chunk", "estimate", "model", "converged"]
    fields += ["singular", *CANDIDATE_KINDS, "vc_tau2", "vc_gamma2", "vc_decay"]
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        seen: set[float] = set()
        for c in range(args.first_chunk, math.ceil(max(args.n_null, args.n_alt) / args.chunk)):
            for h, (label, effect, n) in enumerate(
                (("h0", 0.0, args.n_null), ("h1", math.log(0.85), args.n_alt))
            ):
                m = min(args.chunk, n - c * args.chunk)
                if m <= 0:
                    continue

                def sink(row: dict[str, float], head: dict[str, Any] | None = None) -> None:
                    if row["estimate"] in seen:  # simulate_power's probe call
                        return
                    seen.add(row["estimate"])
                    writer.writerow({**(head or {}), **row})
                    fh.flush()

                head = dict(councils=args.councils, scenario=label, true=effect, chunk=c)
                sink = functools.partial(sink, head=head)

                seed = np.random.SeedSequence([args.seed, h, c])
                res = run_one(
                    scenario, _candidate_analysis(args.candidates, spy, sink), effect, m, seed, None
                )
                assert not isinstance(res, str), res
    out = pd.read_csv(args.out, keep_default_na=False, na_values=[""])
    print(f"wrote {len(out)} replicates to {args.out}\n")
    print(candidate_table(out, scenario.n_clusters - 2))
    return 0


_CANDIDATE_LABELS = {
    "model": "model-based",
    "cr0": "CR0 (Liang-Zeger)",
    "kc": 'KC (``vcov="cr2"``; ``"kc"``)',
    "cr3": 'CR3 / MD (``vcov="cr3"``, ``"md"``)',
    "fg": 'FG (``vcov="fg"``)',
    "mbn": 'MBN (``vcov="mbn"``)',
    "avg": "mean of the KC and MD SEs (not offered)",
}


def candidate_rst(frames: dict[int, Any]) -> str:
    """Return a list-table (reST) of the candidates, t(I - 2), both council counts side by side."""
    from scipy import stats

    rows = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - SE, t(I - 2)",
        *[f"     - {c} councils: {w}" for c in frames for w in ("size", "coverage", "power")],
    ]
    parts = {}
    for c, f in frames.items():
        f = f[f["converged"] == 1]
        f = f.assign(avg=0.5 * (f["kc"] + f["cr3"]))
        parts[c] = (f[f["scenario"] == "h0"], f[f["scenario"] == "h1"], stats.t.ppf(0.975, c - 2))
    for kind, label in _CANDIDATE_LABELS.items():
        rows.append(f"   * - {label}")
        for null, alt, q in parts.values():
            rej = np.abs(null["estimate"] / null[kind]) > q
            cov = np.abs(alt["estimate"] - alt["true"]) <= q * alt[kind]
            pw = np.abs(alt["estimate"] / alt[kind]) > q
            for v, n in ((rej.mean(), rej.size), (cov.mean(), cov.size), (pw.mean(), pw.size)):
                rows.append(f"     - {_cell(float(v), n)}")
    return "\n".join(rows)


def combine_candidates(paths: list[str], chunk: int = 100) -> Any:
    """Combine ``--candidates`` CSVs, each chunk taken from the file with most of it.

    Split runs (``--first-chunk``) may overlap; a chunk is taken whole from one file.  The
    frame's ``attrs["failed"]`` maps ``(councils, scenario)`` to the replicates missing
    from complete chunks (fits that raised an error: the analysis writes no row for them).
    """
    import pandas as pd

    parts = [
        pd.read_csv(p, keep_default_na=False, na_values=[""]).assign(_file=k)
        for k, p in enumerate(paths)
    ]
    frame = pd.concat(parts, ignore_index=True)
    keys = ["councils", "scenario", "chunk"]
    sizes = frame.groupby([*keys, "_file"]).size().rename("n").reset_index()
    best = sizes.sort_values(["n", "_file"], ascending=[False, True]).drop_duplicates(keys)
    out = frame.merge(best[[*keys, "_file"]], on=[*keys, "_file"]).drop(columns="_file")
    failed = {}
    for (c, h), g in best.groupby(["councils", "scenario"]):
        whole = g[g["n"] >= chunk - 5]  # a chunk short by a few rows lost fits to errors
        failed[(int(c), str(h))] = int(chunk * len(whole) - whole["n"].sum())
    out.attrs["failed"] = failed
    return out


def summarise_candidates(paths: list[str]) -> int:
    """Print the candidate tables of one or more ``--candidates`` CSVs (chunks combined)."""
    frame = combine_candidates(paths)
    print(f"fits that raised an error (no row): {frame.attrs['failed']}\n")
    for councils, part in frame.groupby("councils"):
        print(f"## {councils} councils\n")
        print(candidate_table(part, float(councils) - 2) + "\n")
    by = {int(c): part for c, part in frame.groupby("councils")}
    print(candidate_rst({c: by[c] for c in sorted(by, reverse=True)}))
    return 0


def candidate_table(frame: Any, df: float) -> str:
    """Markdown table: type-I error, coverage and power of each SE with t(df) and with z."""
    from scipy import stats

    usable = frame[frame["converged"] == 1]
    null, alt = usable[usable["scenario"] == "h0"], usable[usable["scenario"] == "h1"]
    lines = [
        f"{len(null)} null and {len(alt)} alternative (RR 0.85) replicates, "
        f"{len(frame) - len(usable)} not converged (left out)\n",
        "| SE | reference | type-I error (MC SE) | coverage (MC SE) | power (MC SE) | "
        "mean SE / SD of estimates (null) |",
        "|---|---|---|---|---|---|",
    ]
    # Ford & Westgate (2017): the average of the KC and MD (= CR3) standard errors
    null, alt = (f.assign(avg=0.5 * (f["kc"] + f["cr3"])) for f in (null, alt))
    sd = float(np.std(null["estimate"], ddof=1))
    for kind in ("model", *CANDIDATE_KINDS, "avg"):
        for ref, q in ((f"t({df:g})", stats.t.ppf(0.975, df)), ("z", stats.norm.ppf(0.975))):
            rej = np.abs(null["estimate"] / null[kind]) > q
            cov = np.abs(alt["estimate"] - alt["true"]) <= q * alt[kind]
            pw = np.abs(alt["estimate"] / alt[kind]) > q
            lines.append(
                f"| {kind} | {ref} | {_cell(float(rej.mean()), rej.size)} | "
                f"{_cell(float(cov.mean()), cov.size)} | {_cell(float(pw.mean()), pw.size)} | "
                f"{float(null[kind].mean()) / sd:.3f} |"
            )
    return "\n".join(lines)


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
    ap.add_argument(
        "--candidates",
        default=None,
        metavar="RANDOM",
        help="instead of the table: per-replicate SEs of every variance candidate of the "
        "Poisson GLMM with this random structure, written to --out (CSV)",
    )
    ap.add_argument("--out", default="candidates.csv")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--first-chunk", type=int, default=0, help="resume (or split) a run")
    ap.add_argument(
        "--summarise", nargs="+", default=None, metavar="CSV", help="tables of --candidates CSVs"
    )
    args = ap.parse_args(argv)
    if args.summarise:
        return summarise_candidates(args.summarise)
    if args.candidates:
        return run_candidates(args)

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
