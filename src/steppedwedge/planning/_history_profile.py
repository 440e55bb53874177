"""Profile-likelihood intervals of the components estimated by ``estimate_variance``.

One job: for each component of a fitted structure, the set of values whose likelihood-ratio
statistic ``D(v) = 2 (loglik_max - loglik_profile(v))`` is at most the ``chi2_1`` quantile of
the confidence level, found by root finding on the signed root ``sqrt(D)`` along the working
scale of the component (log SD, ``atanh`` of the decay, log NB size), where it is nearly
linear.  The profile holds the component at a value and maximises the likelihood over every
other parameter, the fixed effects included (:func:`steppedwedge._core.laplace.fit_glmm_core`
with ``fixed=``; the Gaussian fit by the same optimiser with one coordinate held).

Boundaries: a standard deviation's interval reaches 0 when the profile at 0 is within the
cutoff (the interval is then ``[0, upper]``); a decay's reaches the engine's bound
``|r| = 1 - 1e-6`` likewise, and an NB size its cap 1e6 (reported as ``inf``: no upper
limit to the size, i.e. the data do not exclude the Poisson limit).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from .._core.families import make_family
from .._core.laplace import ALPHA_MAX, PHI_MAX, fit_glmm_core
from ._history_fit import COMPONENTS, HistoryFit, unit_data
from ._panel import PanelRows

__all__ = ["ProfileResult", "profile_intervals"]

#: Convergence tolerance on the signed root ``sqrt(D)``: 1e-4 at the 95% cutoff 1.96 puts
#: the end within ~1e-4 standard errors of the root (the level within 1e-5); the root
#: finder converges superlinearly, so this costs about one refit more per end than 1e-2.
ROOT_TOL = 1e-4
#: Profile fits per interval end before giving up (the end is then NaN).
MAX_EVAL = 20
#: Working-scale distance searched beyond the estimate before declaring no end: log SD 12
#: (a variance e^24 times the estimate), log NB size 20 (the cap 1e6 down to size 2e-3).
MAX_DISTANCE = {"sd": 12.0, "phi": 12.0, "alpha": 20.0}
#: Log SD standing for SD 0 in the Gaussian fit (variance e^-40: no variance).
GAUSS_ZERO = -20.0

#: One profile evaluation: working-scale value -> (profile log-likelihood, converged).
Evaluate = Callable[[float], tuple[float, bool]]


@dataclass(frozen=True)
class ProfileResult:
    """Profile-likelihood intervals of one fit at one confidence level."""

    confidence_level: float
    intervals: dict[str, tuple[float, float]]
    n_fits: int
    n_unconverged: int


@dataclass(frozen=True)
class _Term:
    """Where a reported component lives: engine index, working scale and its bounds."""

    name: str
    index: int  # index into the engine's variance-parameter vector (sigma, then alpha)
    kind: str  # "sd" (work on log SD), "phi" (atanh of the decay), "alpha" (log NB size)
    estimate: float  # on the working scale (-inf for an SD at 0)


def _terms(fit: HistoryFit, family: str) -> list[_Term]:
    """List the components of ``fit``: engine index, working scale, estimate."""
    names = COMPONENTS[fit.structure]
    out = []
    for k, nm in enumerate(names):
        var = getattr(fit, nm)
        out.append(_Term(nm, k, "sd", 0.5 * math.log(var) if var > 0 else -math.inf))
    if fit.structure in ("decay", "nested+decay"):
        r = 0.0 if fit.decay is None else fit.decay
        out.append(_Term("decay", len(names), "phi", math.atanh(max(min(r, 1 - 1e-12), -1))))
    if family == "negative_binomial" and fit.nb_size is not None:
        out.append(_Term("nb_size", len(out), "alpha", math.log(fit.nb_size)))
    return out


def _report(term: _Term, u: float) -> float:
    """Working-scale value -> the reported component (variance, decay, NB size)."""
    if term.kind == "sd":
        return 0.0 if u == -math.inf else math.exp(2.0 * u)
    if term.kind == "phi":
        return max(math.tanh(u), 0.0)  # the components clip a negative decay at 0
    return math.inf if u >= ALPHA_MAX - 1e-9 else math.exp(u)


def _bounds(term: _Term) -> tuple[float, float]:
    if term.kind == "sd":
        return -math.inf, math.inf
    if term.kind == "phi":
        return -PHI_MAX, PHI_MAX
    return -math.inf, ALPHA_MAX


def _laplace_evaluator(
    rows: PanelRows, fit: HistoryFit, time: str, family: str, term: _Term
) -> tuple[Evaluate, list[int]]:
    """Profile fits of one component through the Laplace engine, warm-started along the path."""
    assert fit.core is not None  # a Laplace fit
    fam = make_family(family)
    ud = unit_data(rows, fit.structure, time, family, rows.y)
    starts = [(term.estimate, fit.core)]
    count = [0]

    def evaluate(u: float) -> tuple[float, bool]:
        near = min(starts, key=lambda s: abs(s[0] - u) if math.isfinite(s[0]) else math.inf)[1]
        value = 0.0 if u == -math.inf else (math.exp(u) if term.kind == "sd" else u)
        count[0] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                core = fit_glmm_core(
                    ud,
                    fam,
                    near.beta,
                    np.abs(near.sigma) if term.kind != "phi" else near.sigma,
                    near.alpha,
                    max_iter=60,
                    fixed={term.index: value},
                )
        except (ArithmeticError, np.linalg.LinAlgError):
            return -math.inf, False  # no finite likelihood there: beyond any cutoff
        if core.converged and math.isfinite(u):
            starts.append((u, core))
        return core.loglik, core.converged

    return evaluate, count


def _gaussian_evaluator(
    rows: PanelRows, fit: HistoryFit, time: str, term: _Term
) -> tuple[Evaluate, list[int]]:
    """Profile fits of one component of a Gaussian panel (BFGS, one coordinate held).

    Warm-started from the profile fit nearest in the held coordinate; BFGS to a gradient
    of 1e-7 (the profile log-likelihood to ~1e-10 nats near its maximum, far finer than
    :data:`ROOT_TOL` needs).
    """
    from ._history_gaussian import gaussian_objective

    assert fit.theta is not None  # a Gaussian fit
    negll = gaussian_objective(rows, fit.structure, time)
    j = term.index
    starts = [(term.estimate, np.delete(fit.theta, j))]
    count = [0]

    def evaluate(u: float) -> tuple[float, bool]:
        held = GAUSS_ZERO if u == -math.inf else u
        near = min(starts, key=lambda st: abs(st[0] - held))[1]

        def sub(free: np.ndarray) -> float:
            return negll(np.insert(free, j, held))

        res = optimize.minimize(sub, near, method="BFGS", options={"gtol": 1e-7})
        count[0] += 1
        starts.append((held, np.asarray(res.x, dtype=float)))
        # status 2: precision loss at the optimum of a smooth objective (converged to the
        # accuracy of the floating-point profile)
        return -float(res.fun), bool(res.success or res.status == 2)

    return evaluate, count


def _signed_root(ll_max: float, ll: float) -> float:
    return math.sqrt(max(2.0 * (ll_max - ll), 0.0))


def _illinois(
    f: Callable[[float], float], lo: tuple[float, float], hi: tuple[float, float], q: float
) -> float:
    """Root of ``f(x) = q`` between ``lo = (x, f(x) < q)`` and ``hi = (x, f(x) > q)``.

    Regula falsi with the Illinois modification (an end kept twice has its weight halved);
    NaN after :data:`MAX_EVAL` evaluations without ``|f - q| < ROOT_TOL``.
    """
    (x_lo, r_lo), (x_hi, r_hi) = lo, hi
    side = 0
    for _ in range(MAX_EVAL):
        if math.isfinite(r_hi):
            x = x_lo + (q - r_lo) * (x_hi - x_lo) / (r_hi - r_lo)
        else:  # a refit without a finite likelihood: bisect
            x = 0.5 * (x_lo + x_hi)
        r = f(x)
        if abs(r - q) < ROOT_TOL:
            return x
        if r < q:
            x_lo, r_lo, side = x, r, min(side, 0) - 1
            if side <= -2:
                r_hi = q + 0.5 * (r_hi - q)
        else:
            x_hi, r_hi, side = x, r, max(side, 0) + 1
            if side >= 2:
                r_lo = q - 0.5 * (q - r_lo)
    return math.nan


def _end(
    root: Callable[[float], float],
    u_hat: float,
    step: float,
    direction: int,
    bound: float,
    q: float,
    far: float,
) -> float:
    """Find the working-scale end of the interval on one side (``bound`` if not met).

    ``root(u)`` is the signed root ``sqrt(D)`` at ``u``.  Trial distances from the estimate:
    ``step`` (the Wald half-width when known), then the secant through the last two points
    (1.2-3 times further) until the cutoff ``q`` is bracketed, a trial point beyond ``bound``
    moved onto it; then :func:`_illinois`.  Returns ``+-inf`` when the likelihood ratio is
    still below the cutoff at distance ``far`` (:data:`MAX_DISTANCE`).
    """
    reach = min(abs(bound - u_hat), far)
    prev, lo = (0.0, 0.0), (0.0, 0.0)
    d = min(step, reach)
    for _ in range(MAX_EVAL):
        r = root(u_hat + direction * d)
        if abs(r - q) < ROOT_TOL:
            return u_hat + direction * d
        if r > q:
            x = _illinois(lambda t: root(u_hat + direction * t), lo, (d, r), q)
            return u_hat + direction * x
        if d >= reach:  # the bound, or nothing within `far`
            return bound if reach < far else direction * math.inf
        prev, lo = lo, (d, r)
        slope = (lo[1] - prev[1]) / (lo[0] - prev[0])
        guess = lo[0] + (q - lo[1]) / slope if slope > 0 else 3.0 * lo[0]
        d = min(max(guess, 1.2 * lo[0]), 3.0 * lo[0], reach)
    return math.nan


def _term_interval(
    evaluate: Evaluate, term: _Term, ll_max: float, se: float, q: float, flags: list[bool]
) -> tuple[float, float]:
    """``(low, high)`` of one component, reported scale."""

    def root(u: float) -> float:
        ll, ok = evaluate(u)
        flags.append(ok)
        return _signed_root(ll_max, ll)

    lower, upper = _bounds(term)
    step = q * se if math.isfinite(se) and se > 0 else 0.5
    if term.kind == "sd":
        r0 = root(-math.inf)  # the profile at SD 0
        if term.estimate == -math.inf:
            return 0.0, _report(term, _sd_upper_from_zero(root, q))
        if r0 <= q:
            lo = -math.inf
        else:  # bracketed between SD 0 and the estimate: solve on the SD scale
            sd_hat = math.exp(term.estimate)
            sd = _illinois(lambda t: root(math.log(t)), (sd_hat, 0.0), (0.0, r0), q)
            lo = math.log(sd) if sd > 0 else (-math.inf if sd == 0 else math.nan)
    else:
        lo = _end(root, term.estimate, step, -1, lower, q, MAX_DISTANCE[term.kind])
    hi = _end(root, term.estimate, step, 1, upper, q, MAX_DISTANCE[term.kind])
    return _report(term, lo), _report(term, hi)


def _sd_upper_from_zero(root: Callable[[float], float], q: float) -> float:
    """Upper end (log SD) of an SD estimated at 0: bracket upwards from SD 0.05, then solve."""
    lo = (0.0, 0.0)  # on the SD scale: the estimate, D = 0
    sd = 0.05
    for _ in range(10):
        r = root(math.log(sd))
        if r > q:
            t = _illinois(lambda v: root(math.log(v)) if v > 0 else 0.0, lo, (sd, r), q)
            return math.log(t) if t > 0 else math.nan
        lo, sd = (sd, r), 3.0 * sd
    return math.inf


def _wald_se(fit: HistoryFit, term: _Term) -> float:
    """Working-scale Wald SE from the fit's Hessian (NaN when not available)."""
    core = fit.core
    if core is None or not fit.converged or not np.all(np.isfinite(core.hessian)):
        return math.nan
    p = core.beta.size
    j = p + term.index
    free = core.free
    if not free[j]:
        return math.nan
    try:
        cov = np.linalg.inv(core.hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return math.nan
    k = int(np.cumsum(free)[j]) - 1
    s = math.sqrt(max(float(cov[k, k]), 0.0))
    if term.kind == "sd":
        return s / abs(float(core.sigma[term.index]))
    return s


def profile_intervals(
    rows: PanelRows, fit: HistoryFit, time: str, family: str, confidence_level: float
) -> ProfileResult:
    """Profile-likelihood intervals of every component of ``fit`` (see the module)."""
    q = math.sqrt(float(stats.chi2.ppf(confidence_level, 1)))
    out: dict[str, tuple[float, float]] = {}
    flags: list[bool] = []
    n_fits = 0
    for term in _terms(fit, family):
        if family == "gaussian":
            evaluate, count = _gaussian_evaluator(rows, fit, time, term)
        else:
            evaluate, count = _laplace_evaluator(rows, fit, time, family, term)
        if term.kind == "phi" and fit.gamma2 == 0.0:
            out[term.name] = (0.0, 1.0)  # no decaying variance: the decay is not identified
            continue
        out[term.name] = _term_interval(evaluate, term, fit.loglik, _wald_se(fit, term), q, flags)
        n_fits += count[0]
    return ProfileResult(
        confidence_level=confidence_level,
        intervals=out,
        n_fits=n_fits,
        n_unconverged=sum(1 for f in flags if not f),
    )
