r"""Confidence intervals by inverting a randomisation test, on the identity or link scale.

Used by :func:`steppedwedge.inference.permutation.permutation_test`.  For a hypothesised
effect ``theta`` the observed outcomes are turned into the control outcomes they imply,
and the test of no effect is re-run on them over the *same* re-randomisations; the
interval is ``{theta : p(theta) > 1 - level}``.  Because the re-randomisations are fixed,
``p(theta)`` is a step function and its jumps (the interval ends) are found by bracketing
and bisection.

Cell statistics (``"twfe"``, ``"cluster-period"``)
    Identity scale: ``Y - theta X`` (exact under a constant additive effect).  Log link
    (counts): the treated cells' counts are scaled back, ``y exp(-theta x)``, and the log
    rate ``log((y exp(-theta x) + 0.5) / exposure)`` recomputed; logit link (binomial): the
    treated cells' odds are scaled back, ``y0 / (n - y0) = exp(-theta x) y / (n - y)``.
    Under a constant rate (odds) ratio these have the control cells' *expected* counts,
    but they are not draws from the control distribution (a Poisson count divided by a
    rate ratio is not Poisson), so the inversion is approximate on these scales.
Model statistics (``"lmm"``: the mixed model / GLMM of :func:`steppedwedge.fit`)
    Exact offset form: the model is refitted with ``theta X_obs`` added to the offset
    (Gaussian: subtracted from the outcome), i.e. ``log mu - theta X_obs``, and the
    re-randomised treatment ``X*`` as the tested term.  Under ``X* = X_obs`` this returns
    the estimate minus ``theta`` exactly.
The GLMM score statistic (``"glmm-score"``)
    The same offset form, but the model refitted at ``theta`` is the GLMM *without* a
    treatment term, once per ``theta``; every re-randomisation is then scored at that fit
    (one product), so the ends are found by bracketing and bisection as for the cell
    statistics, at one GLMM fit per step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._core.permutation import (
    invert_test,
    permutation_pvalue,
    treatment_batch,
    twfe_weights,
    vertical_weights,
)
from .._parallel import make_executor, run_batches

__all__ = [
    "RefitJob",
    "cell_inverter",
    "cell_shift",
    "fit_observed",
    "model_inverter",
    "refit_many",
    "score_inverter",
    "secant_ends",
]

#: Largest |theta - estimate| searched on a log or logit scale (a ratio of e^30).
LINK_MAX_DISTANCE = 30.0
#: Relative precision (of the null distribution's spread) of the interval ends.
CELL_RTOL = 1e-7
MODEL_RTOL = 1e-4
_MAX_WEIGHT_ELEMENTS = 50_000_000  # store (B, I, T) coefficients up to ~400 MB


Inverter = Callable[[float], tuple[float, float]]


# --------------------------------------------------------------------------------------
# cell statistics
# --------------------------------------------------------------------------------------
def cell_shift(td: Any, link: str, y: np.ndarray) -> tuple[Callable[[float], np.ndarray], bool]:
    """Cell summaries implied for the control condition under ``theta``; additive flag.

    Parameters
    ----------
    td : TrialData
    link : str
        Scale of the cell summaries.
    y : (I, T) array
        The observed cell summaries (NaN unobserved).

    Returns
    -------
    (callable, bool)
        ``shift(theta) -> (I, T)`` and whether the shift is ``y - theta x``.
    """
    cells = td.cells()
    x = np.nan_to_num(np.where(cells.observed, cells.treatment, 0.0))
    if link == "identity":
        y0 = np.asarray(y, dtype=np.float64)

        def additive(theta: float) -> np.ndarray:
            out: np.ndarray = y0 - theta * x
            return out

        return additive, True
    tot = np.asarray(cells.total, dtype=np.float64)
    n = np.asarray(cells.n, dtype=np.float64)
    unobs = ~cells.observed
    if link == "log":
        expo = n if cells.exposure is None else np.asarray(cells.exposure, dtype=np.float64)

        def rate(theta: float) -> np.ndarray:
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                s = np.log((tot * np.exp(-theta * x) + 0.5) / expo)
            s[unobs] = np.nan
            return s

        return rate, False

    def odds(theta: float) -> np.ndarray:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            r = np.exp(-theta * x)
            y0 = np.where(tot > 0, n * tot * r / (n - tot + tot * r), 0.0)
            y0 = np.where(np.isfinite(y0), y0, np.where(r > 1, n, 0.0))
            s = np.log((y0 + 0.5) / (n - y0 + 0.5))
        s[unobs] = np.nan
        return s

    return odds, False


@dataclass(frozen=True)
class CellProblem:
    """What a cell-statistic inversion needs (the statistic and the re-randomisations)."""

    name: str
    weights: str
    mask: np.ndarray
    cell_weights: np.ndarray
    stat: Callable[[np.ndarray, np.ndarray], np.ndarray]
    batches: Callable[[], list[np.ndarray]]  # treatment batches of the re-randomisations
    observed_x: np.ndarray
    alternative: str
    exact: bool
    cache: dict[bytes, np.ndarray] = field(default_factory=dict)  # twfe annihilators


def _coefficients(prob: CellProblem, x: np.ndarray, cache: dict[bytes, np.ndarray]) -> np.ndarray:
    if prob.name == "twfe":
        w = prob.cell_weights if prob.weights == "size" else None
        return twfe_weights(x, prob.mask, w, cache=cache)
    return vertical_weights(x, prob.mask)


def cell_inverter(
    prob: CellProblem,
    shift: Callable[[float], np.ndarray],
    additive: bool,
    obs: float,
    null: np.ndarray,
) -> Inverter:
    """Test inversion for the ``"twfe"`` / ``"cluster-period"`` statistics.

    Linear statistics (``"twfe"``, cluster-weighted ``"cluster-period"``) store their
    coefficients once, so every ``theta`` costs one product over the re-randomisations;
    inverse-variance weights recompute the statistic.
    """
    linear = prob.name == "twfe" or prob.weights == "clusters"
    cache: dict[str, Any] = {}
    kcache = prob.cache

    def coefficients() -> tuple[np.ndarray, np.ndarray] | None:
        if "coef" not in cache:
            batches = prob.batches()
            size = sum(b.size for b in batches)
            if size > _MAX_WEIGHT_ELEMENTS:
                cache["coef"] = None
            else:  # (B, I T) rows: every theta then costs one matrix-vector product
                rows = [_coefficients(prob, b, kcache) for b in batches]
                cache["coef"] = (
                    _coefficients(prob, prob.observed_x, kcache)[0].ravel(),
                    np.concatenate([r.reshape(r.shape[0], -1) for r in rows]),
                )
        out: tuple[np.ndarray, np.ndarray] | None = cache["coef"]
        return out

    def pfun(theta: float) -> float:
        y = np.nan_to_num(shift(theta))
        coef = coefficients() if linear else None
        if coef is not None:
            a_obs, a_null = coef
            t_obs = float(a_obs @ y.ravel())
            t_null = a_null @ y.ravel()
        else:
            t_obs = float(prob.stat(y, prob.observed_x)[0])
            t_null = np.concatenate([prob.stat(y, b) for b in prob.batches()])
        return permutation_pvalue(t_obs, t_null, prob.alternative, exact=prob.exact)  # type: ignore[arg-type]

    fin = null[np.isfinite(null)]
    scale = float(np.std(fin)) if fin.size > 1 else 1.0
    reach = np.inf if additive else LINK_MAX_DISTANCE

    def invert(level: float) -> tuple[float, float]:
        return invert_test(pfun, obs, scale, 1.0 - level, rtol=CELL_RTOL, max_distance=reach)

    return invert


# --------------------------------------------------------------------------------------
# model statistics: refits, on any executor
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefitJob:
    """Everything one refit of the model statistic needs (picklable for an executor)."""

    data: pd.DataFrame
    cluster_codes: np.ndarray
    period_codes: np.ndarray
    treatment: str
    fit_args: dict[str, Any]
    options: dict[str, Any]
    use: str


def fit_observed(job: RefitJob, x: np.ndarray) -> tuple[float, float]:
    """(statistic, estimate) under the observed treatment; fitting errors propagate."""
    from ..models.fit import fit

    frame = job.data.copy()
    frame[job.treatment] = np.nan_to_num(x)[job.cluster_codes, job.period_codes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(frame, **job.fit_args, **job.options)
    est = float(res.estimate)
    return (est if job.use == "estimate" else float(res.statistic)), est


def _refit_task(job: RefitJob, x: np.ndarray) -> tuple[float, float, bool]:
    """(statistic, estimate, converged) for treatment matrix ``x``; NaN when the fit fails."""
    from ..models.fit import fit

    frame = job.data.copy()
    frame[job.treatment] = np.nan_to_num(x)[job.cluster_codes, job.period_codes]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(frame, **job.fit_args, **job.options)
    except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError):
        return math.nan, math.nan, False
    est = float(res.estimate)
    value = est if job.use == "estimate" else float(res.statistic)
    return value, est, bool(getattr(res, "converged", True))


def refit_many(
    job: RefitJob, xs: np.ndarray, executor: Executor | None, n_jobs: int | None
) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Statistic and estimate for each treatment matrix in ``xs``; non-converged count.

    Returns
    -------
    (values, estimates, n_not_converged, executor_errors)
        Refits lost to a failing executor are NaN and reported in the errors.
    """
    tasks = [xs[k] for k in range(xs.shape[0])]
    with make_executor(executor, n_jobs) as ex:
        out = run_batches(_refit_task, job, tasks, executor=ex)
    vals = np.full(len(tasks), np.nan)
    ests = np.full(len(tasks), np.nan)
    not_conv = 0
    for k, r in enumerate(out.results):
        if r is None:
            continue
        vals[k], ests[k] = r[0], r[1]
        not_conv += int(not r[2] and math.isfinite(r[0]))
    errors = [f"tasks {s}-{s + n - 1}: {msg}" for s, n, msg in out.errors]
    return vals, ests, not_conv, errors


def shifted_job(job: RefitJob, family: str, outcome: str, theta: float) -> RefitJob:
    """Return the refit job for hypothesis ``theta`` in the exact offset form."""
    x_obs = job.data[job.treatment].to_numpy(dtype=float)
    frame = job.data.copy()
    args = dict(job.fit_args)
    if family == "gaussian":
        frame[outcome] = frame[outcome].to_numpy(dtype=float) - theta * x_obs
        return RefitJob(
            frame, job.cluster_codes, job.period_codes, job.treatment, args, job.options, job.use
        )
    name = "_sw_offset"
    while name in frame.columns:
        name += "_"
    base = np.zeros(len(frame))
    if args.get("exposure") is not None:
        base = np.log(frame[args.pop("exposure")].to_numpy(dtype=float))
    opts = dict(job.options)
    if opts.get("offset") is not None:
        base = base + frame[opts.pop("offset")].to_numpy(dtype=float)
    frame[name] = base + theta * x_obs
    args["offset"] = name
    return RefitJob(frame, job.cluster_codes, job.period_codes, job.treatment, args, opts, job.use)


def _extremeness(t_obs: np.ndarray, t_null: np.ndarray, alternative: str) -> np.ndarray:
    """``D_k >= 0`` exactly when re-randomisation ``k`` is at least as extreme as observed."""
    if alternative == "two-sided":
        out: np.ndarray = np.abs(t_null) - np.abs(t_obs)[..., None]
    elif alternative == "greater":
        out = t_null - t_obs[..., None]
    else:
        out = t_obs[..., None] - t_null
    return out


class _Secant:
    """Per-allocation piecewise-linear model of ``D_k(theta)`` through the refitted points."""

    def __init__(self, alternative: str, exact: bool) -> None:
        self.thetas: list[float] = []
        self.values: list[np.ndarray] = []  # D at each theta, (B,)
        self.alternative = alternative
        self.exact = exact

    def add(self, theta: float, t_obs: float, t_null: np.ndarray) -> None:
        d = _extremeness(np.asarray(t_obs), np.asarray(t_null, dtype=float), self.alternative)
        self.thetas.append(float(theta))
        self.values.append(np.where(np.isfinite(d), d, np.nan))

    def d_at(self, theta: float) -> np.ndarray:
        order = np.argsort(self.thetas)
        th = np.asarray(self.thetas)[order]
        vals = np.stack(self.values)[order]
        k = int(np.clip(np.searchsorted(th, theta), 1, th.size - 1))
        lo, hi = th[k - 1], th[k]
        frac = (theta - lo) / (hi - lo)
        out: np.ndarray = vals[k - 1] + frac * (vals[k] - vals[k - 1])
        return out

    def pvalue(self, theta: float, alpha: float) -> float:
        d = self.d_at(theta)
        fin = d[np.isfinite(d)]
        hits = int(np.count_nonzero(fin >= 0.0))
        n_fin = int(fin.size)
        return hits / max(n_fin, 1) if self.exact else (1 + hits) / (1 + n_fin)


def secant_ends(
    evaluate: Callable[[float], tuple[float, np.ndarray]],
    estimate: float,
    obs0: float,
    null0: np.ndarray,
    scale: float,
    level: float,
    alternative: str,
    exact: bool,
    max_distance: float,
    rtol: float = MODEL_RTOL,
    max_rounds: int = 12,
) -> tuple[float, float]:
    """Interval ends of a refitted statistic with few rounds of refits.

    Each allocation's extremeness ``D_k(theta)`` is smooth in ``theta``; it is modelled as
    piecewise linear through the ``theta`` values refitted so far (``theta = 0`` is the
    null distribution itself).  The end of ``{theta : p(theta) > alpha}`` under that model
    is found by bisection (cheap), the statistic is refitted there for every allocation,
    and the model updated, until the end moves less than ``rtol * scale``: a secant
    iteration on the allocation whose crossing is the end.
    """
    alpha = 1.0 - level + 1e-12
    if not np.isfinite(scale) or scale <= 0:
        scale = max(abs(estimate), 1.0)
    ends = []
    for sign in (-1.0, 1.0):
        model = _Secant(alternative, exact)
        model.add(0.0, obs0, null0)
        theta = estimate + sign * 2.0 * scale
        if theta == 0.0:
            theta = sign * scale
        end = math.nan
        for _ in range(max_rounds):
            t_obs, t_null = evaluate(theta)
            model.add(theta, t_obs, t_null)
            new = _model_end(model, estimate, sign, scale, alpha, max_distance, rtol)
            if not math.isfinite(new):
                end = new
                break
            if abs(new - theta) <= rtol * scale:
                end = new
                break
            theta, end = new, new
        ends.append(end)
    return float(ends[0]), float(ends[1])


def _model_end(
    model: _Secant,
    estimate: float,
    sign: float,
    scale: float,
    alpha: float,
    max_distance: float,
    rtol: float,
) -> float:
    """Outermost accepted ``theta`` of the current piecewise-linear model (bisection)."""
    inside, step, outside = estimate, scale, None
    for _ in range(60):
        cand = estimate + sign * min(step, max_distance)
        if model.pvalue(cand, alpha) <= alpha:
            outside = cand
            break
        inside = cand
        if step >= max_distance:
            break
        step *= 2.0
    if outside is None:
        return sign * math.inf
    while abs(outside - inside) > 1e-3 * rtol * scale:
        mid = 0.5 * (inside + outside)
        if model.pvalue(mid, alpha) > alpha:
            inside = mid
        else:
            outside = mid
    return float(inside)


def model_inverter(
    job: RefitJob,
    family: str,
    outcome: str,
    xs: np.ndarray,
    observed_x: np.ndarray,
    alternative: str,
    exact: bool,
    obs: float,
    estimate: float,
    null: np.ndarray,
    executor: Executor | None,
    n_jobs: int | None,
    failures: list[int],
) -> Inverter:
    """Test inversion for a model statistic: refits of every re-randomisation at few ``theta``.

    ``failures`` collects, per evaluated ``theta``, the refits that gave no statistic.
    """
    reach = np.inf if family == "gaussian" else LINK_MAX_DISTANCE
    both = np.concatenate([observed_x, xs], axis=0)
    memo: dict[float, tuple[float, np.ndarray]] = {}

    def evaluate(theta: float) -> tuple[float, np.ndarray]:
        if theta not in memo:
            job_t = shifted_job(job, family, outcome, theta)
            vals, _, _, errs = refit_many(job_t, both, executor, n_jobs)
            failures.append(int(np.count_nonzero(~np.isfinite(vals[1:]))) + len(errs))
            memo[theta] = (float(vals[0]), vals[1:])
        return memo[theta]

    fin = null[np.isfinite(null)]
    scale = float(np.std(fin)) if fin.size > 1 else 1.0

    def invert(level: float) -> tuple[float, float]:
        return secant_ends(evaluate, estimate, obs, null, scale, level, alternative, exact, reach)

    return invert


def treatment_matrices(space: Any, assignments: np.ndarray) -> np.ndarray:
    """Treatment matrices ``(B, I, T)`` of the re-randomisations."""
    out: np.ndarray = treatment_batch(space.seq_matrix, assignments, space.columns)
    return out


# --------------------------------------------------------------------------------------
# the GLMM score statistic: one null fit per theta
# --------------------------------------------------------------------------------------
def score_inverter(
    model: Any,
    pieces: Any,
    seq_matrix: np.ndarray,
    seq_of: np.ndarray,
    observed_x: np.ndarray,
    use: str,
    alternative: str,
    exact: bool,
    estimate: float,
    failures: list[float],
) -> Inverter:
    """Test inversion for ``"glmm-score"``: the null GLMM refitted with ``theta X_obs``.

    ``p(theta)`` refits the GLMM without a treatment term (offset ``theta X_obs``, started
    from the fit at the nearest ``theta`` already evaluated) and scores the observed and
    every re-randomised treatment at it.  A ``theta`` whose fit fails is not rejected (the
    interval can only grow) and recorded in ``failures``.
    """
    from . import _permutation_score as sc

    fits: dict[float, Any] = {0.0: pieces}

    def pfun(theta: float) -> float:
        if theta not in fits:
            near = min(fits, key=lambda t: abs(t - theta))
            try:
                fits[theta] = sc.fit_null(model, theta, start=fits[near].core)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                failures.append(theta)
                return 1.0
        pc = fits[theta]
        t_obs = float(sc.score_statistics(pc, observed_x, use)[0])
        t_null = sc.score_by_sequence(pc, seq_matrix, seq_of, use)
        if not math.isfinite(t_obs):
            failures.append(theta)
            return 1.0
        return permutation_pvalue(t_obs, t_null, alternative, exact=exact)  # type: ignore[arg-type]

    info = float(sc.information(pieces, observed_x)[0])
    scale = 1.0 / math.sqrt(info) if info > 0 else 1.0  # the model standard error

    def invert(level: float) -> tuple[float, float]:
        return invert_test(
            pfun, estimate, scale, 1.0 - level, rtol=MODEL_RTOL, max_distance=LINK_MAX_DISTANCE
        )

    return invert
