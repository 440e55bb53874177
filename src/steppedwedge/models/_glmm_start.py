"""Starting values and the guarded optimiser run of the GLMM fitter (:mod:`.glmm`).

A GLM fit by IRLS (or least squares on the link scale of the smoothed outcome) starts the
fixed effects; moments of the GLM working residuals start the random-effect SDs (and, for
the decay structures, ``atanh r`` from the lag covariances); :func:`_robust_core` runs
:func:`steppedwedge._core.laplace.fit_glmm_core` from them, retrying smaller starts when the
log-likelihood cannot be evaluated and turning numerical failures into a
:class:`~steppedwedge.exceptions.DataError`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from .._core.laplace import CoreFit, UnitData, _NonFinite, fit_glmm_core
from ..exceptions import DataError

__all__: list[str] = []

#: The grid of decay values r the lag covariances are matched over (_decay_moments).
_DECAY_GRID = np.linspace(0.05, 0.97, 47)
_DECAY_GRID.flags.writeable = False


def _robust_core(
    ud: UnitData,
    fam: Any,
    betas: list[np.ndarray],
    sigma0: np.ndarray,
    alpha0: float,
    nq: int,
) -> CoreFit:
    """Run the optimiser; numerical failures become a retry or a :class:`DataError`.

    A log-likelihood that cannot be evaluated at the start (extreme counts or exposures
    overflow, e.g. a GLM start driven far out by all-zero periods) is retried from
    random-effect SDs a tenth as large, then from the other fixed-effect starts in ``betas``
    (the log-linear least-squares start); arithmetic or linear-algebra failures inside the
    optimiser (overflow, a singular system) are reported as a
    :class:`~steppedwedge.exceptions.DataError` that says what to try, never as a bare numpy
    or math exception.
    """
    small = sigma0.copy()
    small[: ud.n_comp] *= 0.1
    starts = [(b, s) for b in betas for s in (sigma0, small)]
    for attempt, (beta0, start) in enumerate(starts):
        try:
            core = fit_glmm_core(ud, fam, beta0, start, alpha0, n_quadrature=nq)
            at_bound = bool(np.any(core.sigma[: ud.n_comp] == 0.0)) or not np.all(core.free)
            if ud.ar1 is not None and (not core.converged or (at_bound and not core.ridge_end)):
                # moment starts can be far off on extreme data, and boundary optima of the
                # decay structures (gamma2 = 0, |r| at its bound) are often local: one
                # conservative restart (SDs 0.3, r = 0.5, NB size 10), kept if its
                # log-likelihood is higher.  Not after a checked end of the decay ridge
                # (tau2 = 0 with r near 1, a maximum of the full problem there:
                # CoreFit.ridge_end), where in 400 audit trials it never found a higher one
                safe = np.append(np.full(ud.n_comp, 0.3), math.atanh(0.5))
                try:
                    alt = fit_glmm_core(ud, fam, beta0, safe, math.log(10.0), n_quadrature=nq)
                except _NonFinite:
                    alt = None
                if alt is not None and alt.loglik > core.loglik:
                    core = alt
            return core
        except _NonFinite:
            if attempt < len(starts) - 1:
                continue
            raise DataError(
                "The GLMM log-likelihood is not finite at the starting values (the counts, "
                "trials or exposures are too extreme for the model: e.g. rates that overflow "
                "on the log scale). Check the outcome and exposure columns."
            ) from None
        except (np.linalg.LinAlgError, FloatingPointError, OverflowError, ZeroDivisionError) as e:
            raise DataError(
                f"The GLMM fit failed numerically ({type(e).__name__}: {e}). The model is "
                "probably too rich for these data (e.g. variance components that are not "
                "identified); try a simpler `random=` structure or family='poisson'."
            ) from e
    raise AssertionError("unreachable")  # pragma: no cover


def _ls_start(
    fam: Any, y: np.ndarray, n: np.ndarray, off: np.ndarray, x: np.ndarray, with_eta: bool = False
) -> Any:
    """Least-squares fixed-effect start on the link scale of the smoothed outcome."""
    if fam.name == "binomial":
        pbar = (y + 0.5) / (n + 1.0)
        if fam.link == "logit":
            eta = np.log(pbar / (1 - pbar))
        elif fam.link == "probit":
            eta = stats.norm.ppf(pbar)
        elif fam.link == "cloglog":
            eta = np.log(-np.log1p(-pbar))
        elif fam.link == "log":
            eta = np.log(pbar)
        else:
            eta = pbar
    else:
        eta = np.log(y + 0.5) - 0.0
    try:  # normal equations: x has full column rank here (checked by the caller)
        beta = np.linalg.solve(x.T @ x, x.T @ (eta - off))
    except np.linalg.LinAlgError:  # pragma: no cover - defensive
        beta = np.linalg.lstsq(x, eta - off, rcond=None)[0]
    return (beta, eta) if with_eta else beta


def _irls(
    fam: Any,
    y: np.ndarray,
    n: np.ndarray,
    off: np.ndarray,
    x: np.ndarray,
    beta: np.ndarray,
    w0: np.ndarray,
) -> np.ndarray:
    """GLM IRLS from ``beta``; a step whose log-likelihood overflows is halved (up to 30x).

    Stops where a coefficient has moved more than 30 (link scale) from the start: the GLM
    MLE is then off at infinity (a period or arm with no events), useless as a start.
    """
    alpha = 0.0 if fam.name != "negative_binomial" else 5.0
    beta_ls = beta
    e = x @ beta + off
    derivs = None  # of the accepted step (its check computed them), else computed here
    w_floor = 1e-10 * (1 + w0.max())
    for _ in range(25):
        if derivs is None and not fam.valid(e):  # an accepted step's e was checked
            break
        _ll, s, w, _w1 = fam.derivs(y, n, e, alpha) if derivs is None else derivs
        w = np.maximum(w, w_floor)
        try:
            step = np.linalg.solve((x * w[:, None]).T @ x, x.T @ s)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        for _half in range(30):
            new = beta + step
            e_new = x @ new + off
            if fam.valid(e_new):
                derivs = fam.derivs(y, n, e_new, alpha)
                if np.isfinite(derivs[0].sum()):
                    break
            step = step / 2.0
        else:
            break
        if np.abs(new - beta_ls).max() > 30.0:
            break
        beta, e = new, e_new
        if np.abs(step).max() < 1e-10:
            break
    return beta


def _glm_start(
    fam: Any,
    y: np.ndarray,
    n: np.ndarray,
    off: np.ndarray,
    x: np.ndarray,
    ls_start: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """Fixed-effect start from a GLM fit by IRLS (no random effects); NB log-size by moments.

    IRLS starts from :func:`_ls_start` (``ls_start``: its ``(beta, eta)`` if the caller has
    them).
    """
    if ls_start is None:
        ls_start = _ls_start(fam, y, n, off, x, with_eta=True)
    beta, eta = ls_start
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        beta = _irls(fam, y, n, off, x, beta, n if fam.name == "binomial" else np.exp(eta))
    alpha = 0.0
    if fam.has_dispersion:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mu = np.exp(np.minimum(x @ beta + off, 700.0))
            excess = np.sum((y - mu) ** 2 - mu) / max(np.sum(mu * mu), 1e-300)
        alpha = float(np.log(1.0 / excess)) if 1e-3 < excess < np.inf else float(np.log(1e3))
    if fam.name == "binomial" and fam.link in ("log", "identity") and not fam.valid(x @ beta + off):
        raise DataError(
            f"No valid starting values for link={fam.link!r}: fitted probabilities fall outside "
            "(0, 1). "
            "Use link='logit'."
        )
    return beta, alpha


def _sigma_start(
    fam: Any,
    beta: np.ndarray,
    alpha: float,
    y: np.ndarray,
    n: np.ndarray,
    off: np.ndarray,
    x: np.ndarray,
    c: np.ndarray,
    per: np.ndarray,
    comp_names: list[str],
    n_i: int,
    n_t: int,
    decay: bool = False,
) -> np.ndarray:
    """Moment starting values for the random-effect SDs from GLM working residuals.

    With ``decay`` the SDs and ``phi = atanh(r)`` of the AR(1) structures from the lag
    covariances of the cell residuals (:func:`_decay_moments`), then for the negative
    binomial a new log-size start (residuals on the Poisson scale; ``1/k`` = the lag-0
    excess over the random effects' variance).
    """
    eta = x @ beta + off
    nb_decay = decay and fam.has_dispersion
    with np.errstate(over="ignore", invalid="ignore"):
        _ll, s, w, _w1 = fam.derivs(y, n, eta, math.log(1e6) if nb_decay else alpha)
    w = np.nan_to_num(np.maximum(w, 1e-8), nan=1e-8)
    r = s / w  # working residual, sampling variance 1 / w
    r = np.where(np.isfinite(r), r, 0.0)  # overflowed start (extreme data): no information
    cell = c * n_t + per
    wc = np.bincount(cell, weights=w, minlength=n_i * n_t)
    rc = np.bincount(cell, weights=w * r, minlength=n_i * n_t)
    obs = wc > 0
    rbar_c = np.where(obs, rc / np.where(obs, wc, 1.0), 0.0)
    samp_c = np.where(obs, 1.0 / np.where(obs, wc, 1.0), 0.0)
    if decay:
        return _decay_moments(
            rbar_c.reshape(n_i, n_t),
            samp_c.reshape(n_i, n_t),
            obs.reshape(n_i, n_t),
            comp_names,
            nb_decay,
        )
    cl = np.repeat(np.arange(n_i), n_t)
    k_i = np.bincount(cl, weights=obs.astype(float), minlength=n_i)
    m_i = np.bincount(cl, weights=rbar_c, minlength=n_i) / np.maximum(k_i, 1)
    tot = float(np.mean(rbar_c[obs] ** 2 - samp_c[obs]))
    tau2 = float(np.mean(m_i[k_i > 0] ** 2) - np.mean(samp_c[obs]) / max(np.mean(k_i), 1.0))
    tau2 = min(max(tau2, 0.01), 4.0)
    gam2 = min(max(tot - tau2, 0.01), 4.0)
    start = {"tau2": tau2, "gamma2": gam2, "eta2": 0.01}
    return np.asarray(np.sqrt(np.array([start[nm] for nm in comp_names])))


def _decay_moments(
    res: np.ndarray, samp: np.ndarray, obs: np.ndarray, comp_names: list[str], nb: bool = False
) -> np.ndarray:
    """Start ``(tau, gamma, phi)`` (or ``(gamma, phi)``) from lag covariances of cell residuals.

    ``C_k`` = mean product of a cluster's residuals ``k`` periods apart (``C_0`` less the
    sampling variance) is matched to ``tau2 + gamma2 r^k`` (``gamma2 r^k`` without ``tau2``)
    by least squares over a grid of ``r`` (weights: number of pairs).  With ``nb`` the lag 0
    (which also holds the NB overdispersion ``1/k``) is left out of the match and
    ``alpha = log k`` from ``C_0 - tau2 - gamma2`` is appended.
    """
    n_t = res.shape[1]
    cov = np.zeros(n_t)
    cnt = np.zeros(n_t)
    complete = bool(obs.all())  # every cell observed: no pair masks (the same sums)
    for k in range(n_t):
        prod = res[:, : n_t - k] * res[:, k:]
        if complete:
            cnt[k] = prod.size
        else:
            both = obs[:, : n_t - k] & obs[:, k:]
            cnt[k] = both.sum()
            prod = prod[both]
        if cnt[k]:
            cov[k] = prod.sum() / cnt[k]
    cov[0] -= samp[obs].mean() if obs.any() else 0.0
    lags = np.flatnonzero((cnt > 0) & ((np.arange(n_t) > 0) | (not nb)))
    sw = np.sqrt(cnt[lags])
    persistent = "tau2" in comp_names
    grid = _DECAY_GRID
    yw = cov[lags] * sw
    cols = [grid[:, None] ** lags.astype(float)[None, :] * sw]  # (G, L) per r
    if persistent:
        cols.append(np.broadcast_to(sw, cols[0].shape))
    design = np.stack(cols, axis=2)  # (G, L, m): all grid points in one batched solve
    gram = design.transpose(0, 2, 1) @ design
    rhs = design.transpose(0, 2, 1) @ yw
    gram = gram + 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None] * np.eye(len(cols))
    coef = np.clip(np.linalg.solve(gram, rhs[:, :, None])[:, :, 0], 0.005, 4.0)
    sse = (((design @ coef[:, :, None])[:, :, 0] - yw) ** 2).sum(axis=1)
    g = int(np.argmin(sse))
    gam2, tau2, r = float(coef[g, 0]), float(coef[g, 1]) if persistent else 0.0, float(grid[g])
    sds = [math.sqrt(tau2)] if persistent else []
    out = sds + [math.sqrt(gam2), math.atanh(r)]
    if nb:
        inv_k = min(max(cov[0] - tau2 - gam2, 1e-3), 10.0)
        out.append(-math.log(inv_k))
    return np.array(out)
