"""Power of one design under many variance components (and effects) at once.

:func:`steppedwedge.assurance` averages power over thousands of draws of the variance
components.  Each draw changes only the covariance of the cluster-period means, so the
covariances are built with the very code :func:`steppedwedge.power` uses
(:func:`~steppedwedge.planning.analytic._covariance`) and the GLS information
``sum_i Z_i' Sigma_i^{-1} Z_i`` of a chunk of draws is one batched solve and one
``einsum``: no Python loop over clusters or linear algebra per draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from .._core import power_kernels as pk
from ..variance import VarianceComponents
from .analytic import _covariance, _dof, _fixed_and_contrast, _Spec

__all__ = ["batched_power", "is_link_scale", "iter_information"]

#: draws per batched solve (bounds memory at about CHUNK * I * T * (T + p) doubles)
CHUNK = 256


def is_link_scale(spec: _Spec) -> bool:
    """Return True for link-scale GLMMs (variance depends on the means: null vs alternative)."""
    return spec.family != "gaussian" and spec.link != "identity" and spec.analysis == "mixed"


def _fast(spec: _Spec, components: Sequence[VarianceComponents]) -> bool:
    """Return True when every covariance is ``D(effect) + tau2 J + gamma2 R(decay)``.

    Then the within-cell part ``D`` depends on the effect only (link scale) or is
    ``sigma2 / m`` (Gaussian), and the random-effect part on the draw only, so both are
    built once and added; other structures (random treatment effect, cohorts, GEE, the
    binary identity-link rescaling) build each covariance with ``_covariance``.
    """
    if spec.analysis != "mixed" or not (spec.family == "gaussian" or is_link_scale(spec)):
        return False
    return all(vc.eta2 == 0 and vc.psi2 == 0 for vc in components)


def _shared(spec: _Spec, components: Sequence[VarianceComponents]) -> np.ndarray:
    """Random-effect covariances ``tau2 J + gamma2 R(decay)``, ``(n, T, T)``.

    Element by element the arithmetic of ``mean_covariance`` and ``decay_matrix``.
    """
    n_t = spec.matrix.shape[1]
    times = np.arange(n_t, dtype=float) if spec.times is None else spec.times
    lag = np.abs(times[:, None] - times[None, :])
    tau2 = np.array([vc.tau2 for vc in components], dtype=float)[:, None, None]
    gamma2 = np.array([vc.gamma2 for vc in components], dtype=float)[:, None, None]
    has = np.array([vc.decay is not None for vc in components])[:, None, None]
    r = np.array([0.0 if vc.decay is None else vc.decay for vc in components])[:, None, None]
    with np.errstate(divide="ignore"):
        rmat = np.where(lag == 0, 1.0, np.power(r, lag))
    rmat = np.where(has, rmat, np.eye(n_t))
    return np.where(gamma2 != 0, tau2 + gamma2 * rmat, tau2 + np.zeros_like(rmat))


def _within(spec: _Spec, effects: Sequence[float]) -> dict[float, np.ndarray]:
    """Within-cell variance ``1 / w_ij`` of every cell, per effect (1 if unobserved).

    Taken from the diagonal of ``_covariance`` with all random-effect variances zero, so
    it is exactly the within-cell part :func:`steppedwedge.power` uses.
    """
    none = VarianceComponents(sigma2=0.0)
    idx = np.arange(spec.matrix.shape[1])
    out = {}
    for e in effects:
        out[e] = _covariance(dataclasses.replace(spec, variance=none), e)[1][:, idx, idx]
    return out


def _shape_groups(
    d: np.ndarray, obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Write each cluster's within-cell variances as ``d_i = c_i * C_g`` (``g`` its group).

    Clusters with the same observed cells whose within-cell variances are proportional
    (a sequence's clusters of any sizes; under the null, every cluster) form a group.
    Returns ``(group of each cluster, C_g, c_i)``, or None when the factorisation does not
    reproduce ``d`` to 1e-13 (then the clusters are inverted one by one).
    """
    j0 = np.argmax(obs, axis=1)
    c = d[np.arange(d.shape[0]), j0]
    shape = np.where(obs, d / c[:, None], 1.0)
    key = np.concatenate([np.round(shape, 12), obs], axis=1)
    _, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
    group = group.ravel()
    base = shape[first]
    err = np.abs(c[:, None] * base[group] - d) / d
    if np.any(np.where(obs, err, 0.0) > 1e-13):
        return None
    return group, base, c


def _eigen_information(
    shared: np.ndarray,
    scale: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray, np.ndarray],
    obs: np.ndarray,
    z0: np.ndarray,
) -> np.ndarray:
    """Per-cluster information ``(n, I, p, p)`` from one eigendecomposition per group.

    With ``V_i = S + s c_i C`` on the observed cells (``S`` the random-effect covariance of
    the job, ``s`` its scale), ``C^{-1/2} S C^{-1/2} = U diag(lam) U'`` gives
    ``Z_i' V_i^{-1} Z_i = Y_i' diag(1 / (lam + s c_i)) Y_i`` with ``Y_i = U' C^{-1/2} Z_i``.
    """
    group, base, c = groups
    n, n_i, n_p = shared.shape[0], z0.shape[0], z0.shape[2]
    out = np.zeros((n, n_i, n_p, n_p))
    for g in range(base.shape[0]):
        members = np.flatnonzero(group == g)
        o = obs[members[0]]
        root = np.sqrt(base[g, o])
        k = shared[:, o][:, :, o] / root[:, None] / root[None, :]
        lam, u = np.linalg.eigh(k)
        w = z0[members][:, o] / root[None, :, None]  # (m, T_o, p)
        y = np.swapaxes(u, 1, 2)[:, None] @ w[None]  # (n, m, T_o, p)
        inv = 1.0 / (lam[:, None, :] + scale[:, None, None] * c[members][None, :, None])
        out[:, members] = np.swapaxes(y * inv[..., None], 2, 3) @ y
    return out


def _fast_information(
    spec: _Spec,
    jobs: Sequence[tuple[VarianceComponents, float]],
    z0: np.ndarray,
    within: dict[float, np.ndarray] | None,
    per_cluster: bool,
) -> np.ndarray:
    """GLS information of the jobs on the fast path (see ``_fast``).

    ``(n, p, p)`` summed over clusters, or ``(n, I, p, p)`` per cluster.

    Clusters whose covariance is the same in every job (same observed cells and
    within-cell variances: the clusters of a sequence with equal sizes, or all clusters
    under the null) share one inversion.
    """
    obs = spec.observed
    n_t = obs.shape[1]
    idx = np.arange(n_t)
    if within is None:  # Gaussian: sigma2 / m_ij of each draw
        inv_m = np.where(obs, 1.0 / np.where(obs, spec.size, 1.0), 0.0)
        sigma2 = np.array([vc.sigma2 for vc, _ in jobs])[:, None, None]
        diag = np.where(obs, sigma2 * inv_m, 1.0)  # (n, I, T)
        key = np.concatenate([inv_m, obs], axis=1)
    else:
        diag = np.stack([within[e] for _, e in jobs])
        key = np.concatenate([*within.values(), obs], axis=1)
    _, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
    shared = _shared(spec, [vc for vc, _ in jobs])
    if within is None or len(within) == 1:
        # one within-cell pattern for every job: proportional clusters share an eigh
        d1 = np.where(obs, inv_m, 1.0) if within is None else next(iter(within.values()))
        scale = sigma2.ravel() if within is None else np.ones(len(jobs))
        groups = _shape_groups(d1, obs)
        if groups is not None and 4 * groups[1].shape[0] < first.size:
            per_e = _eigen_information(shared, scale, groups, obs, z0)
            return per_e if per_cluster else per_e.sum(axis=1)
    both = (obs[first, :, None] & obs[first, None, :]).astype(float)
    cov = shared[:, None, :, :] * both[None]
    cov[:, :, idx, idx] += diag[:, first]
    vinv = np.linalg.inv(cov)[:, group.ravel()]  # (n, I, T, T)
    n = len(jobs)
    n_i, _, n_p = z0.shape
    sol = vinv @ z0[None]  # (n, I, T, p)
    if per_cluster:
        per: np.ndarray = np.swapaxes(z0, 1, 2)[None] @ sol
        return per
    zf = z0.reshape(n_i * n_t, n_p)
    out: np.ndarray = zf.T[None] @ sol.reshape(n, n_i * n_t, n_p)  # sum_i Z_i' V_i^-1 Z_i
    return out


def iter_information(
    spec: _Spec,
    jobs: Sequence[tuple[VarianceComponents, float]],
    *,
    per_cluster: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, information)`` for consecutive chunks of :data:`CHUNK` jobs.

    The information is ``sum_i Z_i' V_i^{-1} Z_i`` of each job, ``(n, p, p)``, or per
    cluster, ``(n, I, p, p)``.
    """
    z0, _ = _fixed_and_contrast(spec)
    fast = _fast(spec, [vc for vc, _ in jobs])
    within = None
    if fast and spec.family != "gaussian":
        within = _within(spec, sorted({e for _, e in jobs}))
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        if fast:
            yield start, _fast_information(spec, chunk, z0, within, per_cluster)
            continue
        pairs = [_covariance(dataclasses.replace(spec, variance=vc), e) for vc, e in chunk]
        z = np.stack([zc for zc, _, _ in pairs])  # (n, I, T, p)
        n, n_i, n_t, n_p = z.shape
        sol = np.linalg.solve(np.stack([c for _, c, _ in pairs]), z)
        if per_cluster:
            yield start, np.swapaxes(z, 2, 3) @ sol
        else:
            zr = z.reshape(n, n_i * n_t, n_p)
            yield start, np.swapaxes(zr, 1, 2) @ sol.reshape(n, n_i * n_t, n_p)


def _variances(spec: _Spec, jobs: Sequence[tuple[VarianceComponents, float]]) -> np.ndarray:
    """``c' M^{-1} c`` for every (components, effect) job, in chunks of :data:`CHUNK`."""
    _, contrast = _fixed_and_contrast(spec)
    out = np.empty(len(jobs))
    for start, info in iter_information(spec, jobs):
        rhs = np.broadcast_to(contrast, (info.shape[0], contrast.size))[..., None]
        out[start : start + info.shape[0]] = np.linalg.solve(info, rhs)[..., 0] @ contrast
    return out


def batched_power(
    spec: _Spec,
    components: Sequence[VarianceComponents],
    effects: np.ndarray,
    index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided and one-tail power of job ``j``: ``effects[j]`` with ``components[index[j]]``.

    ``spec`` is a validated power specification (its own effect and components are
    ignored; its design, family, sizes, exposure and options are used).  The estimability
    of the contrast is a property of the design, checked by the caller with
    :func:`~steppedwedge.planning.analytic._compute`.  Mirrors ``_compute``: for link-scale
    GLMMs the variance at the null means sets the critical value (unless
    ``glmm_variance="alternative"``), and ``dof`` rules are evaluated per draw.
    """
    effects = np.asarray(effects, dtype=float)
    index = np.asarray(index, dtype=np.int64)
    if spec.family == "gaussian" and spec.analysis == "mixed":
        # the covariance does not depend on the effect: one variance per draw
        per_vc = _variances(spec, [(vc, 0.0) for vc in components])
        var_alt = per_vc[index]
    else:
        var_alt = _variances(
            spec, [(components[k], float(e)) for e, k in zip(effects, index, strict=True)]
        )
    if is_link_scale(spec) and spec.glmm_variance == "null-alternative":
        var_crit = _variances(spec, [(vc, 0.0) for vc in components])[index]
    else:
        var_crit = var_alt
    n_params = _fixed_and_contrast(spec)[0].shape[2]
    dfs = [_dof(dataclasses.replace(spec, variance=vc), n_params) for vc in components]
    p2 = np.empty(effects.size)
    p1 = np.empty(effects.size)
    for df in set(dfs):
        # one power evaluation per distinct df (a t reference needs a scalar df)
        sel = np.isin(index, [k for k, d in enumerate(dfs) if d == df])
        a, b = pk.wald_power_null_alt(
            effects[sel], np.sqrt(var_crit[sel]), np.sqrt(var_alt[sel]), spec.alpha, df
        )
        p2[sel], p1[sel] = a, b
    return p2, p1
