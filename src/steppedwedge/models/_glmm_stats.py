"""Inference helpers of the GLMM fitter (:mod:`.glmm`): df rules, intervals, boundaries.

The denominator-df rules of the Wald tests (``dof=``), the Wald intervals of the variance
components and latent-scale correlations from the Hessian of the Laplace log-likelihood,
and the messages for a decay estimate on a boundary of its parameter space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from .._core.laplace import PHI_MAX, CoreFit
from .._warnings import warn
from ..exceptions import ConvergenceWarning
from ..results import _fmt

__all__: list[str] = []

_LATENT_RESIDUAL = {"logit": math.pi**2 / 3.0, "probit": 1.0}
#: The 97.5% normal quantile of the 95% Wald intervals (scipy's ppf costs ~70 us a call).
_Z95 = stats.norm.ppf(0.975)


def _constant_within(g_x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``X`` constant within every group, and each group's first unit."""
    first, inverse = _first_and_inverse(groups)
    scale = 1.0 + np.abs(g_x).max(axis=0)
    dev = g_x - g_x[first[inverse]]  # each unit less its group's first unit
    level = np.all(np.abs(dev, out=dev) <= 1e-12 * scale, axis=0)
    return level, first


def _first_and_inverse(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(groups, return_index=True, return_inverse=True)[1:]``.

    Codes ``0 .. k`` (clusters, cells) by table look-up instead of a sort: each present
    code's first position (in code order) and each unit's rank among the present codes.
    """
    g = np.asarray(groups).ravel()
    if g.dtype.kind not in "iu" or not len(g) or g.min() < 0 or g.max() > 4 * len(g) + 1024:
        _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        return first, np.ravel(inverse)
    first_of = np.full(int(g.max()) + 1, len(g), dtype=np.intp)
    np.minimum.at(first_of, g, np.arange(len(g), dtype=np.intp))
    present = first_of < len(g)
    rank = np.cumsum(present) - 1
    return first_of[present], rank[g]


def _cluster_level_rank(g_x: np.ndarray, g_c: np.ndarray) -> tuple[np.ndarray, int]:
    """Columns of ``X`` constant within every cluster, and the rank of those columns."""
    level, first = _constant_within(g_x, g_c)
    xb = g_x[first][:, level]
    r_b = int(np.linalg.matrix_rank(xb)) if xb.size else 0
    return level, r_b


@dataclass(frozen=True)
class _DfRule:
    """``contrast -> df``: ``between`` for contrasts of ``level`` columns only, else ``within``.

    ``level=None``: ``between`` for every contrast.  :meth:`units` gives the df of every
    single-coefficient contrast (the rows of the term table) in one step.
    """

    between: float
    within: float = math.nan
    level: np.ndarray | None = None

    def __call__(self, c: np.ndarray) -> float:
        if self.level is None or np.all(self.level[np.abs(c) > 0]):
            return self.between
        return self.within

    def units(self, p: int) -> np.ndarray:
        """Return the df of the unit contrasts ``e_0, ..., e_{p-1}``."""
        if self.level is None:
            return np.full(p, self.between)
        return np.where(self.level, self.between, self.within)


def _df_rule(
    dof: str | float,
    g_x: np.ndarray,
    g_c: np.ndarray,
    g_p: np.ndarray,
    n_i: int,
    n_t: int,
    n_obs: int,
) -> _DfRule:
    """Return ``contrast -> df`` for a GLMM df rule (see :func:`fit_glmm`, ``dof``)."""
    p = g_x.shape[1]
    if not isinstance(dof, str):
        return _DfRule(float(dof))
    if dof == "normal":
        return _DfRule(math.inf)
    if dof == "residual":
        return _DfRule(float(max(n_obs - p, 1)))
    level, r_b = _cluster_level_rank(g_x, g_c)
    within = float(max(n_obs - n_i - (p - r_b), 1))
    if dof == "clusters":
        cell_level, _ = _constant_within(g_x, g_c * n_t + g_p)
        return _DfRule(float(max(n_i - r_b - 1, 1)), within, cell_level)
    return _DfRule(float(max(n_i - r_b, 1)), within, level)


def _df_label(dof: str | float, df: float) -> str:
    if not isinstance(dof, str):
        return f"t({_fmt(float(dof))}) (user-supplied df)"
    if dof == "normal":
        return "normal (Wald z)"
    rule = {
        "clusters": "I - r_b - 1 (within df for individual-level covariates)",
        "between-within": "between-within",
        "residual": "N - p",
    }[dof]
    return f"{dof}: t({_fmt(df)}), {rule}"


def _free_inverse(core: CoreFit) -> np.ndarray | None:
    """Inverse of the Hessian over the free outer parameters; None if it is singular."""
    free = core.free
    try:
        inv: np.ndarray = np.linalg.inv(core.hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return None
    return inv


def _full_cov(core: CoreFit, inverse: np.ndarray | None) -> np.ndarray:
    """Return the free parameters' ``inverse`` in a full-size matrix (nan: fixed ones)."""
    cov = np.full_like(core.hessian, np.nan)
    if inverse is not None:
        cov[np.ix_(core.free, core.free)] = inverse
    return cov


def _latent_correlations(
    link: str | None,
    core: CoreFit,
    comp_names: list[str],
    p: int,
    inverse: np.ndarray | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Latent-scale ICC (logit: residual pi^2/3; probit: 1) and CAC, delta-method logit CIs.

    ``inverse``: :func:`_free_inverse` of ``core`` when the caller has it.
    """
    names = comp_names
    if "eta2" in names:
        return {}
    sig = dict(zip(names, core.sigma[: len(names)], strict=True))
    tau, gam = float(sig.get("tau2", 0.0)), float(sig.get("gamma2", 0.0))
    idx = {nm: p + k for k, nm in enumerate(names)}
    free = core.free
    cov = _full_cov(core, _free_inverse(core) if inverse is None else inverse)
    z = _Z95

    def wald(value: float, grad: dict[str, float]) -> tuple[float, float, float]:
        if not (0 < value < 1):
            return (value, float("nan"), float("nan"))
        g = np.zeros(core.hessian.shape[0])
        for nm, d in grad.items():
            if nm in idx:
                g[idx[nm]] = d
        if np.any(~free & (g != 0)):
            return (value, float("nan"), float("nan"))
        var = float(g @ np.nan_to_num(cov) @ g)
        if not var > 0:
            return (value, float("nan"), float("nan"))
        se = np.sqrt(var) / (value * (1 - value))
        eta = math.log(value / (1 - value))
        # expit, not 1 / (1 + math.exp(.)): a huge SE (weakly identified fit) must give limits
        # 0 and 1, not an OverflowError
        return (value, float(special.expit(eta - z * se)), float(special.expit(eta + z * se)))

    out: dict[str, tuple[float, float, float]] = {}
    if link in _LATENT_RESIDUAL:
        r = _LATENT_RESIDUAL[link]
        b = tau**2 + gam**2
        tot = b + r
        icc = b / tot
        grad = {"tau2": 2 * tau * r / tot**2}
        if "gamma2" in names:
            grad["gamma2"] = 2 * gam * r / tot**2
        out["icc"] = wald(icc, grad)
    if "gamma2" in names and "tau2" in names:
        b = tau**2 + gam**2
        if b > 0:
            cac = tau**2 / b
            out["cac"] = wald(
                cac, {"tau2": 2 * tau * gam**2 / b**2, "gamma2": -2 * gam * tau**2 / b**2}
            )
    return out


def _decay_boundary(core: CoreFit, comp_names: list[str], random: str, messages: list[str]) -> bool:
    """Warn about a decay estimate on (or beyond) a boundary; return whether the fit is singular.

    The decay model's natural range is ``0 <= r <= 1`` (methods.md 3.2); like glmmTMB's
    ``ar1`` the fit allows ``-1 < r < 1``, so ``r <= 0`` lies at or outside the ``r = 0``
    boundary.
    """
    k_g = comp_names.index("gamma2")
    r = float(np.tanh(core.sigma[len(comp_names)]))
    if core.sigma[k_g] == 0.0:
        text = (
            "The decaying cluster-period variance gamma2 is estimated as 0, so its correlation "
            "r is not identified (reported as nan)"
            + (
                "; the fit is the random='cluster' model."
                if random == "nested+decay"
                else "; the fit has no random effects (a GLM)."
            )
        )
    elif r <= -(math.tanh(PHI_MAX) - 1e-12):
        text = (
            f"The decay r is at its bound ({r:.7f}): the cluster-period effects alternate in sign "
            "from one period to the next, which is not a decaying correlation; the decaying "
            "variance gamma2 is not interpretable. Use random='nested' or random='cluster'."
        )
    elif r >= math.tanh(PHI_MAX) - 1e-12:
        text = (
            f"The decay r is at its bound ({r:.7f}): the cluster-period effect does not decay, "
            + (
                "so it is a second persistent cluster effect, not separable from tau2; use "
                "random='nested' or random='cluster'."
                if random == "nested+decay"
                else "i.e. it is a persistent cluster effect; random='cluster' is the same model."
            )
        )
    elif r <= 1e-4:
        text = (
            f"The decay r is estimated as {r:.3g} <= 0 (at or beyond the boundary r = 0 of the "
            "decay model; negative r is allowed as in glmmTMB): the cluster-period effects of "
            "neighbouring periods are not positively correlated, so random='nested' (r = 0) "
            "describes them as well."
        )
    else:
        return False
    warn(text, ConvergenceWarning)
    messages.append(text)
    return True


def _variance_intervals(
    core: CoreFit,
    comp_names: list[str],
    p: int,
    decay: bool,
    inverse: np.ndarray | None = None,
) -> dict[str, tuple[float, float, float]]:
    """95% Wald intervals of the variance components (see ``GLMMResult.variance_intervals``).

    The covariance of the outer parameters is the inverse Hessian over the free ones; the
    SD ``s`` maps to ``log s^2`` (SE ``2 se(s) / s``), ``phi = atanh(r)`` and ``alpha = log k``
    are already on the working scale.  ``inverse``: :func:`_free_inverse` of ``core`` when
    the caller has it.
    """
    z = float(_Z95)
    cov = _full_cov(core, _free_inverse(core) if inverse is None else inverse)
    var = np.diag(cov)
    out: dict[str, tuple[float, float, float]] = {}
    nan = math.nan
    for k, nm in enumerate(comp_names):
        sd = float(core.sigma[k])
        v = float(var[p + k])
        if sd > 0 and v > 0:
            se = 2.0 * math.sqrt(v) / sd
            out[nm] = (sd * sd, sd * sd * _exp(-z * se), sd * sd * _exp(z * se))
        else:
            out[nm] = (sd * sd, nan, nan)
    n_var = len(comp_names) + (1 if decay else 0)
    if decay:
        phi = float(core.sigma[len(comp_names)])
        v = float(var[p + len(comp_names)])
        se = math.sqrt(v) if v > 0 else nan
        out["decay"] = (math.tanh(phi), math.tanh(phi - z * se), math.tanh(phi + z * se))
        if core.sigma[comp_names.index("gamma2")] == 0.0:  # no decaying variance: r unidentified
            out["decay"] = (nan, nan, nan)
    if core.hessian.shape[0] > p + n_var:  # NB log-size
        v = float(var[p + n_var])
        se = math.sqrt(v) if v > 0 else nan
        size = _exp(core.alpha)
        out["nb_size"] = (size, size * _exp(-z * se), size * _exp(z * se))
    return out


def _exp(x: float) -> float:
    """``exp`` that saturates at ``inf`` (0) instead of raising ``OverflowError``."""
    with np.errstate(over="ignore"):
        return float(np.exp(x))
