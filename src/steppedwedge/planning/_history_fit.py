"""Time-only GLMM fits of a historical panel through the Laplace engine (:mod:`._core.laplace`).

A historical panel has no intervention, so the fit is the stepped-wedge GLMM without a
treatment term: ``eta_ij = beta_0 + beta_j + log(exposure_ij) + a_i + c_ij`` with the random
effects of one of the four structures (cluster, nested, decay, nested+decay), maximised by the
same Laplace likelihood and Newton optimiser as :func:`steppedwedge.fit` (glmmTMB's
approximation, constants included, so log-likelihoods are comparable with glmmTMB's).  Also the
parametric-bootstrap simulator of the fitted model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .._core.families import Family, log_constant, make_family
from .._core.laplace import ALPHA_MAX, CoreFit, UnitData, ar1_factor, fit_glmm_core
from ._panel import PanelRows

__all__ = [
    "STRUCTURES",
    "HistoryFit",
    "fit_structure",
    "fixed_design",
    "simulate_counts",
    "unit_data",
]

STRUCTURES = ("cluster", "nested", "decay", "nested+decay")
#: Variance components of each structure (SDs in the core's order; decay = tanh(phi) last).
COMPONENTS = {
    "cluster": ("tau2",),
    "nested": ("tau2", "gamma2"),
    "decay": ("gamma2",),
    "nested+decay": ("tau2", "gamma2"),
}


@dataclass(frozen=True)
class HistoryFit:
    """One structure fitted to the panel: components on the link scale and the optimum."""

    structure: str
    tau2: float
    gamma2: float
    decay: float | None
    nb_size: float | None
    loglik: float
    n_par: int
    converged: bool
    message: str
    beta: np.ndarray
    core: CoreFit | None  # the Laplace optimum (None for Gaussian fits)
    sigma2: float = 0.0  # residual variance (Gaussian only)
    theta: np.ndarray | None = None  # outer parameters of a Gaussian fit (bootstrap start)

    @property
    def aic(self) -> float:
        """Akaike's criterion ``2 k - 2 loglik`` (k = fixed effects + variance parameters)."""
        return 2.0 * self.n_par - 2.0 * self.loglik


def fixed_design(rows: PanelRows, time: str) -> np.ndarray:
    n_t = len(rows.periods)
    if time == "categorical":
        per = np.eye(n_t)[:, 1:]
    else:  # linear trend in the period index, centred and scaled to unit steps
        per = (np.arange(n_t, dtype=float) - (n_t - 1) / 2.0)[:, None]
    cell = np.concatenate([np.ones((n_t, 1)), per], axis=1)
    return np.asarray(cell[rows.period_codes])


def _random_design(
    rows: PanelRows, structure: str
) -> tuple[np.ndarray, list[int], int, dict[str, object]]:
    n_t = len(rows.periods)
    onehot = np.eye(n_t)[rows.period_codes]
    ones = np.ones((len(rows.y), 1))
    if structure == "cluster":
        return ones, [0], 1, {}
    if structure == "nested":
        return np.concatenate([ones, onehot], axis=1), [0] + [1] * n_t, 2, {"tail_start": 1}
    if structure == "decay":
        return onehot, [0] * n_t, 1, {"ar1": (0, n_t)}
    return np.concatenate([ones, onehot], axis=1), [0] + [1] * n_t, 2, {"ar1": (1, n_t)}


def _pad(values: np.ndarray, order: list[np.ndarray], width: int) -> np.ndarray:
    tail = values.shape[1:]
    out = np.zeros((len(order), width, *tail))
    for i, idx in enumerate(order):
        out[i, : len(idx)] = values[idx]
    return out


def unit_data(rows: PanelRows, structure: str, time: str, family: str, y: np.ndarray) -> UnitData:
    """Lay the panel out as the Laplace engine's padded per-cluster units (a unit per row)."""
    x = fixed_design(rows, time)
    z, comp, n_comp, extra = _random_design(rows, structure)
    n_i = len(rows.clusters)
    order = [np.flatnonzero(rows.cluster_codes == i) for i in range(n_i)]
    width = max(len(o) for o in order)
    const = float(log_constant(family, y, rows.trials, binomial_coefficient=True).sum())
    weight = _pad(np.ones(len(y)), order, width)
    return UnitData(
        y=_pad(y, order, width),
        n=_pad(rows.trials, order, width) + (1.0 - weight),  # padding: 1 trial, weight 0
        offset=_pad(rows.offset, order, width),
        weight=weight,
        x=_pad(x, order, width),
        z=_pad(z, order, width),
        comp=np.asarray(comp),
        n_comp=n_comp,
        const=const,
        tail_start=extra.get("tail_start"),  # type: ignore[arg-type]
        ar1=extra.get("ar1"),  # type: ignore[arg-type]
    )


def _glm_start(fam: Family, rows: PanelRows, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fit the GLM without random effects (IRLS from smoothed link values): its beta."""
    n = rows.trials
    if fam.name == "binomial":
        p = (y + 0.5) / (n + 1.0)
        eta = np.log(p / (1 - p))
    else:
        eta = np.log(y + 0.5)
    beta = np.linalg.solve(x.T @ x, x.T @ (eta - rows.offset))  # x has full column rank
    for _ in range(30):
        e = x @ beta + rows.offset
        _ll, s, w, _w1 = fam.derivs(y, n, e, 10.0)
        step = np.linalg.solve((x * w[:, None]).T @ x, x.T @ s)
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    return np.asarray(beta)


def _sigma_start(rows: PanelRows, resid: np.ndarray, structure: str) -> np.ndarray:
    """SD starts from cluster means and within-cluster spread of the working residuals."""
    n_i = len(rows.clusters)
    cnt = np.bincount(rows.cluster_codes, minlength=n_i)
    mean_i = np.bincount(rows.cluster_codes, weights=resid, minlength=n_i) / np.maximum(cnt, 1)
    tau = math.sqrt(min(max(float(np.var(mean_i)), 0.01), 4.0))
    within = resid - mean_i[rows.cluster_codes]
    gam = math.sqrt(min(max(float(np.var(within)), 0.005), 4.0))
    if structure == "cluster":
        return np.array([tau])
    if structure == "nested":
        return np.array([tau, gam])
    if structure == "decay":
        return np.array([math.sqrt(tau**2 + gam**2), math.atanh(0.7)])
    return np.array([tau, gam, math.atanh(0.5)])


def _summarise(core: CoreFit, structure: str, fam: Family, p: int) -> HistoryFit:
    sig = np.abs(core.sigma)
    names = COMPONENTS[structure]
    var = {nm: float(sig[k] ** 2) for k, nm in enumerate(names)}
    decay = None
    if structure in ("decay", "nested+decay") and var["gamma2"] > 0.0:
        decay = float(np.tanh(core.sigma[-1]))
    size = None
    if fam.has_dispersion:
        size = float(np.exp(core.alpha))
    n_par = p + core.sigma.size + (1 if fam.has_dispersion else 0)
    return HistoryFit(
        structure=structure,
        tau2=var.get("tau2", 0.0),
        gamma2=var.get("gamma2", 0.0),
        decay=decay,
        nb_size=size,
        loglik=core.loglik,
        n_par=n_par,
        converged=core.converged,
        message=core.message,
        beta=core.beta,
        core=core,
    )


def fit_structure(
    rows: PanelRows,
    structure: str,
    time: str,
    family: str,
    y: np.ndarray | None = None,
    start: HistoryFit | None = None,
) -> HistoryFit:
    """Maximum Laplace likelihood fit of one structure (``y`` replaces the outcome: bootstrap).

    Starts from ``start`` when given (a previous fit of the same structure), else from the GLM
    fixed effects and moment SDs; a fit that does not converge is retried from a second start
    (decay 0.9, NB size 20) and the better of the two is kept.
    """
    yy = rows.y if y is None else y
    if family == "gaussian":
        from ._history_gaussian import fit_gaussian

        return fit_gaussian(rows, structure, time, yy, start)
    fam = make_family(family)
    ud = unit_data(rows, structure, time, family, yy)
    x = fixed_design(rows, time)
    if start is not None and start.core is not None:
        beta0, sigma0 = start.core.beta, start.core.sigma
        alpha0 = start.core.alpha
    else:
        beta0 = _glm_start(fam, rows, x, yy)
        mu = fam.mean(x @ beta0 + rows.offset) * (rows.trials if fam.name == "binomial" else 1.0)
        resid = (
            (yy - mu) / np.maximum(mu, 1e-8) if fam.name != "binomial" else yy / rows.trials - mu
        )
        sigma0 = _sigma_start(rows, resid, structure)
        alpha0 = math.log(50.0)
    core = fit_glmm_core(ud, fam, beta0, sigma0, alpha0, max_iter=60)
    if not core.converged:
        for cand in _retries(rows, structure, time, family, ud, fam, beta0, sigma0):
            if cand.loglik > core.loglik + 1e-9 or (cand.converged and not core.converged):
                core = cand
    return _summarise(core, structure, fam, x.shape[1])


def _retries(
    rows: PanelRows,
    structure: str,
    time: str,
    family: str,
    ud: UnitData,
    fam: Family,
    beta0: np.ndarray,
    sigma0: np.ndarray,
) -> list[CoreFit]:
    """Second starts for a fit that did not converge.

    Decay structures restart at decay 0.9; the negative binomial restarts from the Poisson fit
    of the same structure with the size at its cap (1e6) and at 1e4, for likelihoods that are
    flat towards the Poisson limit.
    """
    out: list[CoreFit] = []
    if fam.has_dispersion:
        pois = fit_structure(rows, structure, time, "poisson", y=ud_y(rows, ud)).core
        assert pois is not None  # a Laplace fit
        for a0 in (ALPHA_MAX, math.log(1e4)):
            out.append(fit_glmm_core(ud, fam, pois.beta, pois.sigma, a0, max_iter=60))
            if out[-1].converged:
                return out
    sig2 = sigma0.copy()
    if structure in ("decay", "nested+decay"):
        sig2[-1] = math.atanh(0.9)
    out.append(fit_glmm_core(ud, fam, beta0, sig2, math.log(20.0), max_iter=60))
    return out


def ud_y(rows: PanelRows, ud: UnitData) -> np.ndarray:
    """Read the outcome vector, in row order, back from the padded units."""
    y = np.zeros(len(rows.y))
    for i in range(len(rows.clusters)):
        idx = np.flatnonzero(rows.cluster_codes == i)
        y[idx] = ud.y[i, : len(idx)]
    return y


def simulate_counts(
    rows: PanelRows, fit: HistoryFit, time: str, family: str, rng: np.random.Generator
) -> np.ndarray:
    """One outcome vector drawn from the fitted model (random effects, then the family)."""
    n_i, n_t = len(rows.clusters), len(rows.periods)
    eta = fixed_design(rows, time) @ fit.beta + rows.offset
    a = rng.standard_normal(n_i) * math.sqrt(fit.tau2)
    if fit.structure == "nested":
        c = rng.standard_normal((n_i, n_t)) * math.sqrt(fit.gamma2)
    elif fit.structure in ("decay", "nested+decay") and fit.gamma2 > 0.0:
        lo = ar1_factor(fit.decay, n_t)
        c = (rng.standard_normal((n_i, n_t)) @ lo.T) * math.sqrt(fit.gamma2)
    else:
        c = np.zeros((n_i, n_t))
    eta = eta + a[rows.cluster_codes] + c[rows.cluster_codes, rows.period_codes]
    if family == "gaussian":
        return np.asarray(eta + rng.standard_normal(eta.size) * math.sqrt(fit.sigma2))
    if family == "binomial":
        return np.asarray(rng.binomial(rows.trials.astype(np.int64), special.expit(eta)), float)
    mu = np.exp(eta)
    at_cap = fit.core is not None and fit.core.alpha >= ALPHA_MAX
    if family == "negative_binomial" and fit.nb_size is not None and not at_cap:
        mu = rng.gamma(fit.nb_size, mu / fit.nb_size)
    return np.asarray(rng.poisson(mu), dtype=float)
