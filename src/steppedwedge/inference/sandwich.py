r"""Cluster-robust (sandwich) covariance for every model, written once on per-cluster pieces.

Every estimator ``theta-hat`` of the library solves ``sum_i u_i(theta) = 0`` over clusters
``i = 1..I``: the GLS score of a linear mixed model, the Laplace score of a GLMM, a GEE.  The
sandwich needs only two per-cluster pieces, collected in :class:`ClusterPieces`:

* the **scores** ``u_i`` (``I x P``) at the estimate, and
* the cluster's own **Hessian contributions** ``H_i`` (``I x P x P``) of the objective,
  ``H = sum_i H_i`` (the inverse of the bread).

With ``B = H^{-1}``, the estimators are ``V = B [sum_i (A_i u_i)(A_i u_i)'] B`` with

=========  =======================================================  ============================
``kind``   correction ``A_i`` (``Q_i = H_i H^{-1}``)                 source
=========  =======================================================  ============================
``cr0``    ``I`` (Liang-Zeger)                                       Liang & Zeger 1986
``cr2``    clubSandwich's adjustment (below)                         Bell & McCaffrey 2002
``kc``     ``(I - Q_i)^{-1/2}`` (principal square root)              Kauermann & Carroll 2001
``cr3``    ``(I - Q_i)^{-1}``                                        Bell & McCaffrey 2002
``md``     the same as ``cr3``                                       Mancl & DeRouen 2001
``fg``     ``diag{(1 - min(b, [Q_i]_jj))^{-1/2}}``, ``b = 0.75``     Fay & Graubard 2001
``mbn``    ``c B M B + delta_m phi B`` (below)                       Morel, Bokossa & Neerchal 2003
=========  =======================================================  ============================

**Why parameter space.**  In the observation space these corrections act on the residuals,
``e_i -> (I - H_ii)^{-a} e_i`` with the cluster's leverage block ``H_ii = X_i B X_i' W_i``.  The
push-through identity ``X_i' W_i f(H_ii) = f(Q_i) X_i' W_i`` (for any power series ``f``,
since ``Q_i = X_i' W_i X_i B``) moves them to the ``P x P`` matrix ``Q_i``, so the same code
serves cell means, individual rows and likelihood scores.  ``Q_i`` is similar to the
symmetric ``S_i = L^{-1} H_i L^{-T}`` (``H = L L'``), whose eigen-decomposition gives the
roots: ``(I - Q_i)^{-a} = L (I - S_i)^{-a} L^{-1}``.  Hence CR3 and Mancl-DeRouen are one
estimator, and ``kc`` is Kauermann-Carroll's ``(I - H_ii)^{-1/2}`` with the principal root.

**CR2** of a GLS fit with the working model as the weights (``W_i = Phi_i^{-1}``) is
clubSandwich's ``vcovCR`` for ``lmer`` (Pustejovsky & Tipton 2018), computed in the
observation space when :class:`ClusterPieces` carries it: ``A_i = Phi_i^{1/2} G_i^{-1/2}
Phi_i^{1/2}`` with ``G_i = Phi_i^{1/2} (Phi_i - X_i B X_i') Phi_i^{1/2}``, scores ``X_i'
Phi_i^{-1} A_i e_i`` (clubSandwich writes the Cholesky factor of ``Phi_i`` for the symmetric
root; the scores are the same).  It is not the principal root ``kc`` (about 1% apart on the
reference data).  Without observation-space pieces (GLMMs) ``cr2`` falls back to ``kc``.
geeCRT's one-sided Kauermann-Carroll ``B [1/2 sum (u_i^MD u_i' + u_i u_i^MD')] B`` is
``kind="kc-geecrt"`` (for the GEE code; ~1e-4 relative from ``kc`` on geeCRT's data).

**MBN** (Morel, Bokossa & Neerchal 2003, as SAS PROC GLIMMIX ``EMPIRICAL=MBN`` with its
defaults ``d = 2``, ``r = 1``): ``V = c B M B + delta_m phi B`` with ``M = sum_i u_i u_i'``,
``c = (N - 1)/(N - k) * I/(I - 1)``, ``k = P``, ``phi = max(r, tr(B M)/k*)`` (``k* = k`` if
``I >= k``, else the rank of ``B M``) and ``delta_m = k/(I - k)`` if ``I > (d + 1) k``, else
``1/d`` (that is ``min(1/2, k/(I - k))`` for ``I > k``).

The corrections ``cr2``, ``kc``, ``cr3``, ``md`` and ``kc-geecrt`` need every ``I - Q_i`` to be
invertible (eigenvalues of ``S_i`` below 1): a cluster that alone determines a combination of
the parameters has leverage 1 and raises :class:`~steppedwedge.exceptions.DataError` naming it.

References
----------
Liang KY, Zeger SL (1986). Biometrika 73:13-22.
Bell RM, McCaffrey DF (2002). Survey Methodology 28:169-181.
Kauermann G, Carroll RJ (2001). JASA 96:1387-1396.
Mancl LA, DeRouen TA (2001). Biometrics 57:126-134.
Fay MP, Graubard BI (2001). Biometrics 57:1198-1206.
Morel JG, Bokossa MC, Neerchal NK (2003). Biometrical Journal 45:395-409.
Pustejovsky JE, Tipton E (2018). J Bus Econ Stat 36:672-683.
Ouyang Y, Taljaard M, Forbes AB, Li F (2024). Stat Methods Med Res, doi:10.1177/09622802241248382.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from ..exceptions import DataError, OptionError
from ._cluster_pieces import (
    ClusterPieces,
    dense_cluster_pieces,
    gls_cluster_pieces,
    laplace_cluster_pieces,
)
from ._cluster_pieces import _laplace_cluster_grads as _laplace_cluster_grads

__all__ = [
    "ClusterPieces",
    "GLMRobust",
    "ROBUST_VCOV",
    "VCOV_CHOICES",
    "check_vcov",
    "corrected_scores",
    "dense_cluster_pieces",
    "glm_cluster_robust",
    "glm_satterthwaite_df",
    "gls_cluster_pieces",
    "laplace_cluster_pieces",
    "pinv_sqrt_psd",
    "robust_df",
    "sandwich_vcov",
    "wls_cr2",
    "wls_hc2",
    "wls_satterthwaite_df",
]

#: ``vcov=`` choices of the mixed-model fits (``"robust"`` is accepted as ``"cr2"``).
VCOV_CHOICES = ("model", "cr0", "cr2", "cr3", "kc", "md", "fg", "mbn")
#: The cluster-robust choices.
ROBUST_VCOV = VCOV_CHOICES[1:]
_ALIASES = {"robust": "cr2"}
#: Corrections that invert ``I - Q_i`` (need ``I - Q_i`` non-singular).
_LEVERAGE_KINDS = ("cr2", "kc", "cr3", "md", "kc-geecrt")
#: ``1 - eigenvalue`` of ``S_i`` below this counts as leverage 1 (singular ``I - Q_i``).
_SINGULAR_TOL = 1e-10
#: The estimators named in the leverage-1 error (``fallback=`` of :func:`sandwich_vcov`).
_FALLBACK = "vcov='cr0' or 'mbn'"


def check_vcov(vcov: Any) -> str:
    """Validate a mixed model's ``vcov=`` option and resolve the ``"robust"`` alias.

    Parameters
    ----------
    vcov : str
        ``"model"`` or one of :data:`ROBUST_VCOV` (``"robust"`` means ``"cr2"``).

    Returns
    -------
    str
        The canonical name.

    Raises
    ------
    OptionError
        If ``vcov`` is not one of the choices; the message lists them.

    Examples
    --------
    >>> from steppedwedge.inference.sandwich import check_vcov
    >>> check_vcov("robust")
    'cr2'
    """
    if isinstance(vcov, str) and vcov.lower() in _ALIASES:
        return _ALIASES[vcov.lower()]
    if not isinstance(vcov, str) or vcov.lower() not in VCOV_CHOICES:
        listed = ", ".join(repr(v) for v in VCOV_CHOICES)
        raise OptionError(
            f"`vcov` must be one of {listed} (or 'robust' = 'cr2') for mixed models; got {vcov!r}."
        )
    return vcov.lower()


def _whitened(pieces: ClusterPieces, hessian: np.ndarray) -> tuple[np.ndarray, ...]:
    """``L`` (``H = L L'``), ``L^{-1}``, scores ``L^{-1} u_i`` and ``S_i = L^{-1} H_i L^{-T}``.

    One triangular inverse shared by every cluster, then batched products (a broadcast
    ``solve`` would factorise ``L`` again for each cluster: 6x the time at 17 x 24 x 24).
    """
    chol = np.linalg.cholesky(0.5 * (hessian + hessian.T))
    linv = solve_triangular(chol, np.eye(chol.shape[0]), lower=True, check_finite=False)
    uw = pieces.scores @ linv.T
    s = linv @ pieces.hessians @ linv.T
    return chol, linv, uw, 0.5 * (s + s.transpose(0, 2, 1))


def _leverage_apply(
    pieces: ClusterPieces, s: np.ndarray, uw: np.ndarray, power: float, fallback: str = _FALLBACK
) -> np.ndarray:
    """``(I - S_i)^{-power} uw_i`` for every cluster; DataError for a cluster with leverage 1.

    ``power = 1`` (CR3, MD) by a batched solve after an eigenvalue-only check; other powers
    (the CR2/KC root) from the eigen-decomposition.
    """
    w, q = (np.linalg.eigvalsh(s), None) if power == 1.0 else np.linalg.eigh(s)
    gap = 1.0 - w
    bad = np.flatnonzero(gap.min(axis=1) <= _SINGULAR_TOL)
    if bad.size:
        raise DataError(
            f"Cluster {pieces.label(int(bad[0]))!r} has leverage 1 (I - H_ii is singular): it "
            "alone determines a combination of the fixed effects, so the bias-corrected "
            f"sandwich cannot be formed. Use {fallback}, or a model with fewer "
            "cluster-specific terms."
        )
    if q is None:
        return np.asarray(np.linalg.solve(np.eye(s.shape[1]) - s, uw[:, :, None])[:, :, 0])
    a = (q * gap[:, None, :] ** (-power)) @ q.transpose(0, 2, 1)
    return np.asarray((a @ uw[:, :, None])[:, :, 0])


def _sym_eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the symmetric part of ``a`` (one block or a stack)."""
    w, q = np.linalg.eigh(0.5 * (a + np.swapaxes(a, -1, -2)))
    return w, q


def _from_eig(q: np.ndarray, power: np.ndarray) -> np.ndarray:
    """``Q diag(power) Q'`` (one block or a stack)."""
    return np.asarray((q * power[..., None, :]) @ np.swapaxes(q, -1, -2))


def _inv_sqrt_psd(a: np.ndarray, pieces: ClusterPieces, first: int = 0) -> np.ndarray:
    """Symmetric ``a_i^{-1/2}`` of ``(I, d, d)`` PSD blocks; DataError if one is singular.

    ``first`` is the index of the first block's cluster (for the message).  The
    pseudo-inverse root of a block singular by construction is :func:`pinv_sqrt_psd`.
    """
    w, q = _sym_eigh(a)
    scale = np.maximum(w.max(axis=1, keepdims=True), 1e-300)
    bad = np.flatnonzero((w / scale).min(axis=1) <= _SINGULAR_TOL)
    if bad.size:
        raise DataError(
            f"Cluster {pieces.label(first + int(bad[0]))!r} has leverage 1 (I - H_ii is "
            "singular): it alone determines a combination of the fixed effects, so the CR2 "
            "adjustment "
            "cannot be formed. Use vcov='cr0' or 'mbn', or a model with fewer "
            "cluster-specific terms."
        )
    return _from_eig(q, 1.0 / np.sqrt(w))


def _cr2_observation_space(pieces: ClusterPieces, bread: np.ndarray) -> np.ndarray:
    """CR2 as clubSandwich's ``vcovCR`` for ``lmer`` (Pustejovsky & Tipton 2018, W = Phi^-1).

    ``A_i = Phi_i^{1/2} G_i^{-1/2} Phi_i^{1/2}`` with ``G_i = Phi_i^{1/2} (Phi_i - X_i B X_i')
    Phi_i^{1/2}`` and scores ``X_i' Phi_i^{-1} A_i e_i``: clubSandwich uses the Cholesky factor
    of ``Phi_i`` where the symmetric root is used here, which gives the same scores.  The
    observation-space arrays may be ragged (sequences of per-cluster arrays).
    """
    xs, es, phis = pieces.obs_x, pieces.obs_e, pieces.obs_cov
    assert xs is not None and es is not None and phis is not None
    u = np.zeros((len(phis), bread.shape[0]))
    for i, (x, e, phi) in enumerate(zip(xs, es, phis, strict=True)):
        w, q = np.linalg.eigh(0.5 * (phi + phi.T))
        root = (q * np.sqrt(w)) @ q.T
        g = root @ (phi - x @ bread @ x.T) @ root
        g_inv_root = _inv_sqrt_psd(g[None], pieces, first=i)[0]
        # X' Phi^-1 A e = X' Phi^{-1/2} G^{-1/2} Phi^{1/2} e
        u[i] = ((q / np.sqrt(w)) @ q.T @ x).T @ (g_inv_root @ (root @ e))
    out = bread @ (u.T @ u) @ bread
    return np.asarray(0.5 * (out + out.T))


def _mbn(pieces: ClusterPieces, bread: np.ndarray, d: float, r: float) -> np.ndarray:
    """Morel-Bokossa-Neerchal: ``c B M B + delta_m phi B`` (module notes)."""
    m_i, k = pieces.scores.shape
    meat = pieces.scores.T @ pieces.scores
    bm = bread @ meat
    k_star = k if m_i >= k else int(np.linalg.matrix_rank(bm))
    phi = max(r, float(np.trace(bm)) / k_star)
    delta = k / (m_i - k) if m_i > (d + 1) * k else 1.0 / d
    n = pieces.n_obs
    c = (n - 1) / (n - k) * m_i / (m_i - 1) if n > k and m_i > 1 else 1.0
    out = c * bread @ meat @ bread + delta * phi * bread
    return np.asarray(out)


def sandwich_vcov(
    pieces: ClusterPieces,
    kind: str,
    *,
    hessian: np.ndarray | None = None,
    fg_bound: float = 0.75,
    mbn_d: float = 2.0,
    mbn_r: float = 1.0,
    fallback: str = _FALLBACK,
) -> np.ndarray:
    """Cluster-robust covariance ``B [sum_i (A_i u_i)(A_i u_i)'] B`` of all ``P`` parameters.

    Parameters
    ----------
    pieces : ClusterPieces
        Per-cluster scores and Hessian contributions.
    kind : {"cr0", "cr2", "cr3", "kc", "md", "fg", "mbn", "kc-geecrt"}
        The estimator (module notes).
    hessian : ndarray, shape (P, P), optional
        The full Hessian ``H`` (inverse bread); default ``sum_i H_i``.  Pass the model's own
        Hessian so that the bread equals the model-based covariance exactly.
    fg_bound : float
        Fay-Graubard bound ``b`` on the diagonal leverages (default 0.75).
    mbn_d, mbn_r : float
        MBN constants ``d >= 1`` and ``0 <= r <= 1`` (SAS defaults 2 and 1).
    fallback : str
        The estimators without a leverage correction that the leverage-1 error suggests
        (in the caller's option names, e.g. ``"vcov='fg' or 'robust'"`` for GEE).

    Returns
    -------
    ndarray, shape (P, P)
        Symmetric covariance matrix.

    Raises
    ------
    DataError
        A cluster with leverage 1 (``I - H_ii`` singular) for the leverage corrections.
    OptionError
        An unknown ``kind``.

    References
    ----------
    Mancl LA, DeRouen TA (2001). Biometrics 57:126-134.
    Pustejovsky JE, Tipton E (2018). J Bus Econ Stat 36:672-683.

    Examples
    --------
    Ordinary least squares with two clusters of two observations (``H_i = X_i'X_i``,
    ``u_i = X_i'e_i``): CR0 is the textbook cluster sandwich.

    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import ClusterPieces, sandwich_vcov
    >>> x = np.array([[[1.0], [1.0]], [[1.0], [1.0]]])
    >>> e = np.array([[0.5, 1.0], [-1.0, -0.5]])
    >>> pieces = ClusterPieces(scores=np.einsum("itp,it->ip", x, e),
    ...                        hessians=np.einsum("itp,itq->ipq", x, x), n_obs=4)
    >>> float(sandwich_vcov(pieces, "cr0")[0, 0])
    0.28125
    >>> float(sandwich_vcov(pieces, "cr3")[0, 0])  # jackknife-like: (1 - 1/2)^-2 = 4 times
    1.125
    """
    h = pieces.hessians.sum(axis=0) if hessian is None else np.asarray(hessian, dtype=float)
    bread = np.linalg.inv(0.5 * (h + h.T))
    bread = 0.5 * (bread + bread.T)
    u = pieces.scores
    if kind == "cr0":
        meat = u.T @ u
    elif kind == "mbn":
        out = _mbn(pieces, bread, mbn_d, mbn_r)
        sym: np.ndarray = 0.5 * (out + out.T)
        return sym
    elif kind == "fg":
        q_diag = np.einsum("ijk,kj->ij", pieces.hessians, bread)  # diag(H_i H^{-1})
        uc = u / np.sqrt(1.0 - np.minimum(fg_bound, q_diag))
        meat = uc.T @ uc
    elif kind == "cr2" and pieces.obs_cov is not None:
        return _cr2_observation_space(pieces, bread)
    elif kind in _LEVERAGE_KINDS:
        _, linv, uw, s = _whitened(pieces, h)
        power = 0.5 if kind in ("cr2", "kc") else 1.0
        adj = _leverage_apply(pieces, s, uw, power, fallback)
        if kind == "kc-geecrt":
            cross = adj.T @ uw
            meat_w = 0.5 * (cross + cross.T)
        else:
            meat_w = adj.T @ adj
        out = linv.T @ meat_w @ linv
        return np.asarray(0.5 * (out + out.T))
    else:
        raise OptionError(
            f"`kind` must be one of {', '.join(map(repr, ROBUST_VCOV + ('kc-geecrt',)))}; "
            f"got {kind!r}."
        )
    out = bread @ meat @ bread
    return np.asarray(0.5 * (out + out.T))


def corrected_scores(
    pieces: ClusterPieces, kind: str, hessian: np.ndarray, *, fg_bound: float = 0.75
) -> np.ndarray:
    """Per-cluster scores after the parameter-space correction of ``kind``: ``A_i u_i``.

    ``(I - Q_i)^{-1} u_i`` for ``cr3``/``md``, the principal root ``(I - Q_i)^{-1/2} u_i`` for
    ``cr2``/``kc``, the Fay-Graubard diagonal for ``fg``, and ``u_i`` itself for ``cr0`` and
    ``mbn`` (whose correction is not per cluster).  For functionals of the parameters whose
    own influence adds to ``B A_i u_i`` (e.g. the marginal ratio of
    :mod:`steppedwedge.inference.marginal`).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import ClusterPieces, corrected_scores
    >>> pieces = ClusterPieces(scores=np.array([[1.5], [-1.5]]),
    ...                        hessians=np.array([[[2.0]], [[2.0]]]), n_obs=4)
    >>> corrected_scores(pieces, "md", np.array([[4.0]]))[:, 0].tolist()
    [3.0, -3.0]
    """
    h = np.asarray(hessian, dtype=float)
    if kind in ("cr0", "mbn"):
        return np.asarray(pieces.scores, dtype=float)
    if kind == "fg":
        bread = np.linalg.inv(0.5 * (h + h.T))
        q_diag = np.einsum("ijk,kj->ij", pieces.hessians, bread)
        return np.asarray(pieces.scores / np.sqrt(1.0 - np.minimum(fg_bound, q_diag)))
    chol, _, uw, s = _whitened(pieces, h)
    adj = _leverage_apply(pieces, s, uw, 0.5 if kind in ("cr2", "kc") else 1.0)
    return np.asarray(adj @ chol.T)


def robust_df(n_clusters: int, n_cluster_level: int, kind: str) -> float:
    """Default df of a robust Wald t test: ``I - p_c`` (clusters minus cluster-level terms).

    ``p_c`` counts the cluster-level fixed-effect parameters: the rank ``r_b`` of the columns
    constant within every cluster (the intercept and cluster-level covariates) plus one for
    the treatment, so ``I - 2`` without cluster-level covariates, the df Ouyang et al. (2024)
    recommend with CR3 for linear mixed models of stepped-wedge trials.

    Raises
    ------
    DataError
        If ``I <= p_c``: too few clusters for a cluster-robust variance (the bias corrections
        then cannot be formed either).

    Examples
    --------
    >>> from steppedwedge.inference.sandwich import robust_df
    >>> robust_df(12, 2, "cr3")
    10.0
    """
    if n_clusters <= n_cluster_level:
        raise DataError(
            f"vcov={kind!r} needs more clusters than cluster-level fixed-effect parameters "
            f"(p_c = {n_cluster_level}: intercept, cluster-level covariates and the treatment); "
            f"got {n_clusters} clusters."
        )
    return float(n_clusters - n_cluster_level)


# ------------------------------------------------- observation-space CR2 of GLMs and WLS


def pinv_sqrt_psd(g: np.ndarray) -> np.ndarray:
    """Symmetric ``G^{+1/2}`` as clubSandwich's ``matrix_power(G, -1/2)`` (null eigenvalues -> 0).

    The pseudo-inverse square root of the CR2 adjustment when ``G`` is singular by
    construction (cluster fixed effects); :func:`sandwich_vcov` uses the strict inverse root.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import pinv_sqrt_psd
    >>> pinv_sqrt_psd(np.diag([4.0, 0.0])).tolist()
    [[0.5, 0.0], [0.0, 0.0]]
    """
    vals, vecs = _sym_eigh(g)
    pw = np.zeros_like(vals)
    # clubSandwich zeroes eigenvalues <= 1e-12; the relative floor also catches the rounding
    # of a null eigenvalue when G is large (e.g. Poisson counts in the thousands)
    ok = vals > max(1e-12, 1e-10 * float(np.max(np.abs(vals))))
    pw[ok] = vals[ok] ** -0.5
    return _from_eig(vecs, pw)


def _cr2_y_dense(z: np.ndarray, theta: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Y = G^{+1/2} Z with G = diag(theta) (I - Z M Z') diag(theta), by eigendecomposition."""
    g = theta[:, None] * (np.eye(len(theta)) - z @ m @ z.T) * theta[None, :]
    out: np.ndarray = pinv_sqrt_psd(g) @ z
    return out


def _quadrature_operator(
    z: np.ndarray, theta: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Build the lifted operator ``G' = D - bt diag(s) bt'`` of :func:`_cr2_y_quadrature`.

    Returns ``D``, ``bt``, ``s^{-1}``, the right-hand side ``Z`` projected off the null space
    of ``G`` (which ``G'`` lifts to a positive eigenvalue) and spectrum bounds of ``G'``.
    """
    p = z.shape[1]
    lm = np.linalg.cholesky(m)
    zl = z @ lm
    k = zl.T @ zl
    kv, kw = np.linalg.eigh((k + k.T) / 2.0)
    unit = kv > 1.0 - 1e-9
    b = theta[:, None] * zl
    dvec = theta * theta
    rhs = z.copy()
    cols = [b]
    signs = [np.ones(p)]
    if unit.any():
        g_null = (zl @ kw[:, unit]) / theta[:, None]
        q, _ = np.linalg.qr(g_null)
        rhs = rhs - q @ (q.T @ rhs)
        alpha = float(np.median(dvec))
        cols.append(q * np.sqrt(alpha))
        signs.append(-np.ones(q.shape[1]))
    bt = np.hstack(cols)  # G' = D - bt diag(s) bt'
    s_inv = np.concatenate(signs)  # S^{-1} = S for +-1 entries
    # spectrum bounds of G' (Gershgorin-free: D is diagonal and the update is bounded)
    lo = float(dvec.min()) * max(1e-16, 1.0 - float(kv[~unit].max()) if (~unit).any() else 1.0)
    lo = min(lo, float(np.median(dvec)))
    hi = float(dvec.max()) + float(np.median(dvec))
    return dvec, bt, s_inv, rhs, lo, hi


def _cr2_y_quadrature(z: np.ndarray, theta: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Y = G^{+1/2} Z for G = D - B B' (D = theta^2, B = theta Z L, L L' = M).

    The null space of G (eigenvalue-1 directions of the cluster's hat block) is found exactly
    from a p x p eigenproblem and lifted to a positive eigenvalue; then
    ``G^{-1/2} = (2/pi) int_R e^x (G + e^{2x} I)^{-1} dx`` is evaluated with the
    trapezoidal rule in x (exponentially convergent for this integrand), each resolvent by
    Woodbury.  Agreement with the dense eigendecomposition is ~1e-12 relative.
    """
    n = z.shape[0]
    dvec, bt, s_inv, rhs, lo, hi = _quadrature_operator(z, theta, m)
    r = bt.shape[1]
    h = 0.25  # trapezoid error ~ exp(-pi^2 / h) ~ 1e-17; tails cut at e^-37
    xs = np.arange(0.5 * np.log(lo) - 37.0, 0.5 * np.log(hi) + 37.0 + h, h)
    ws = (2.0 / np.pi) * h * np.exp(xs)
    svals = np.exp(2.0 * xs)
    # first term: sum_k w_k (D + s_k)^-1 rhs
    inv = 1.0 / (dvec[None, :] + svals[:, None])  # (K, n)
    y = (ws @ inv)[:, None] * rhs
    pair = (bt[:, :, None] * bt[:, None, :]).reshape(n, r * r)
    small_all = (inv @ pair).reshape(len(xs), r, r)
    cross = (bt[:, :, None] * rhs[:, None, :]).reshape(n, r * rhs.shape[1])
    btr_all = (inv @ cross).reshape(len(xs), r, rhs.shape[1])
    mats = np.diag(s_inv)[None, :, :] - small_all
    c_all = np.linalg.solve(mats, btr_all)  # (K, r, q)
    # second term: sum_k w_k D_k^-1 bt C_k = sum_a bt[n, a] * (sum_k w_k inv[k, n] C_k[a, :])
    wk = ws[:, None] * inv  # (K, n)
    agg = (wk.T @ c_all.reshape(len(xs), -1)).reshape(n, r, rhs.shape[1])
    y += np.einsum("na,naq->nq", bt, agg)
    out: np.ndarray = np.asarray(y, dtype=np.float64)
    return out


@dataclass(frozen=True)
class GLMRobust:
    """Cluster-robust covariance of a GLM with the per-cluster pieces of its Satterthwaite df.

    Attributes
    ----------
    vcov : ndarray, shape (p, p)
        The CR0/CR1/CR2 covariance.
    mey : list of ndarray
        ``M Y_j'`` per cluster (``p x n_j``; ``Y_j = A_j``-adjusted scaled design).
    theta : list of ndarray
        The working variances ``Theta_j`` (diagonal) per cluster.
    zl : list of ndarray
        ``Theta_j Z_j L`` (``n_j x p``, ``L L' = M``) per cluster.
    m : ndarray, shape (p, p)
        ``M = (X~' W X~)^{-1}``.
    """

    vcov: np.ndarray
    mey: list[np.ndarray]  # M E_j = M Y_j' diag(sqrt theta)  (p x n_j), as M Y_j'
    theta: list[np.ndarray]
    zl: list[np.ndarray]  # theta_j Z_j L   (n_j x p), for H_j = M Y_j' (theta Z_j L)
    m: np.ndarray


def glm_cluster_robust(
    kind: str,
    xt: np.ndarray,
    omega: np.ndarray,
    resid: np.ndarray,
    groups: list[np.ndarray],
    m: np.ndarray,
    dense_limit: int,
) -> GLMRobust:
    r"""CR2, CR1 or CR0 of a GLM clustered by ``groups``, as clubSandwich's ``vcovCR.glm``.

    With working weights written through the derivative-scaled design ``X~ = diag(mu_eta) X``
    and ``W = diag(omega)``, ``omega = 1 / V(mu)``, ``Theta = W^-1``, cluster ``j`` gets
    ``A_j = Theta_j^{1/2} G_j^{+1/2} Theta_j^{1/2}`` with ``G_j = Theta_j^{1/2} (Theta_j -
    X~_j M X~_j') Theta_j^{1/2}`` and ``M = (X~'WX~)^-1`` (``+1/2``: the symmetric inverse
    square root on the range, :func:`pinv_sqrt_psd`; cluster fixed effects make every
    ``G_j`` singular).  This is CR2 of :func:`sandwich_vcov` with the working model as the
    weights, with a pseudo-inverse.  Clusters above ``dense_limit`` rows use an exact-to-
    rounding quadrature for ``G_j^{+1/2}`` (Woodbury solves of a diagonal-plus-low-rank
    matrix).  CR1 is CR0 times ``J / (J - 1)``.

    Parameters
    ----------
    kind : {"cr2", "cr1", "cr0"}
        The estimator.
    xt : ndarray, shape (n, p)
        ``X~``.
    omega : ndarray, shape (n,)
        Working weights ``1 / V(mu)``.
    resid : ndarray, shape (n,)
        Response residuals ``y - mu``.
    groups : list of ndarray
        Row indices of each cluster.
    m : ndarray, shape (p, p)
        ``(X~' W X~)^{-1}``.
    dense_limit : int
        Largest cluster size adjusted by a dense eigendecomposition.

    Returns
    -------
    GLMRobust
        The covariance and the pieces of :func:`glm_satterthwaite_df`.

    References
    ----------
    Bell RM, McCaffrey DF (2002). Survey Methodology 28:169-181.
    Pustejovsky JE, Tipton E (2018). J Bus Econ Stat 36:672-683.

    Examples
    --------
    Ordinary least squares (``X~ = X``, unit weights) with two clusters: CR0 is the
    textbook cluster sandwich (the example of :func:`sandwich_vcov`).

    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import glm_cluster_robust
    >>> x = np.ones((4, 1))
    >>> e = np.array([0.5, 1.0, -1.0, -0.5])
    >>> rob = glm_cluster_robust("cr0", x, np.ones(4), e, [np.arange(2), np.arange(2, 4)],
    ...                          np.array([[0.25]]), 150)
    >>> float(rob.vcov[0, 0])
    0.28125
    """
    n_cl = len(groups)
    lm = np.linalg.cholesky(m)
    meat = np.zeros_like(m)
    mey, thetas, zls = [], [], []
    for idx in groups:
        theta = 1.0 / omega[idx]
        z = xt[idx] * np.sqrt(omega[idx])[:, None]
        if kind == "cr2":
            y = (
                _cr2_y_dense(z, theta, m)
                if len(idx) <= dense_limit
                else _cr2_y_quadrature(z, theta, m)
            )
        else:
            a = np.sqrt(n_cl / (n_cl - 1.0)) if kind == "cr1" else 1.0
            y = a * z / theta[:, None]
        u = y.T @ (np.sqrt(theta) * resid[idx])
        meat += np.outer(u, u)
        mey.append(m @ y.T)
        thetas.append(theta)
        zls.append((theta[:, None] * z) @ lm)
    return GLMRobust(vcov=m @ meat @ m, mey=mey, theta=thetas, zl=zls, m=m)


def glm_satterthwaite_df(rob: GLMRobust, c: np.ndarray) -> float:
    """ClubSandwich's Satterthwaite df for the contrast ``c' beta`` of a GLM fit.

    Parameters
    ----------
    rob : GLMRobust
        From :func:`glm_cluster_robust`.
    c : ndarray, shape (p,)
        Contrast (a coefficient when ``c = e_k``).

    Returns
    -------
    float
        ``tr(P)^2 / tr(P^2)`` (NaN when the contrast has no variance).

    Examples
    --------
    Two clusters and a single mean (see :func:`glm_cluster_robust`): one df.

    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import glm_cluster_robust, glm_satterthwaite_df
    >>> rob = glm_cluster_robust("cr2", np.ones((4, 1)), np.ones(4),
    ...                          np.array([0.5, 1.0, -1.0, -0.5]),
    ...                          [np.arange(2), np.arange(2, 4)], np.array([[0.25]]), 150)
    >>> round(glm_satterthwaite_df(rob, np.array([1.0])), 12)
    1.0
    """
    # G_j = c' M E_j Theta_j^{1/2} = (c' M Y_j') * theta_j ;  H_j = c' M E_j X~_j L
    g_ss = np.array(
        [float(np.sum(((c @ me) * th) ** 2)) for me, th in zip(rob.mey, rob.theta, strict=True)]
    )
    h = np.array([(c @ me) @ zl for me, zl in zip(rob.mey, rob.zl, strict=True)])  # (J, p)
    p_mat = -h @ h.T
    p_mat[np.diag_indices_from(p_mat)] += g_ss
    e = float(np.trace(p_mat))
    v = float(np.sum(p_mat**2))
    return e * e / v if v > 0 else float("nan")


def wls_cr2(
    x: np.ndarray, w: np.ndarray, resid: np.ndarray, ci: np.ndarray, bread: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    r"""CR2 covariance of weighted least squares clustered by ``ci``, as clubSandwich's lm.

    clubSandwich's ``vcovCR.lm`` with weights uses the weight matrix ``W`` in the estimating
    equations and the identity as working variance ``Phi`` of the adjustment (Pustejovsky
    and Tipton 2018, eq. 7): ``A_j = G_j^{+1/2}`` with
    ``G_j = I - H_jj - H_jj' + X_j M (X'W^2 X) M X_j'``, ``H_jj = X_j M X_j' W_j`` and
    ``M = (X'WX)^{-1}`` (without weights this is the usual ``(I - H_jj)^{-1/2}``).

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Design.
    w : ndarray, shape (n,)
        Weights (CR2 is invariant to their scale).
    resid : ndarray, shape (n,)
        Unweighted residuals.
    ci : ndarray, shape (n,)
        Cluster codes.
    bread : ndarray, shape (p, p)
        ``M = (X'WX)^{-1}``.

    Returns
    -------
    tuple
        The covariance, ``X'W^2X`` and the per-cluster ``A_j W_j X_j`` (for
        :func:`wls_satterthwaite_df`).

    References
    ----------
    Pustejovsky JE, Tipton E (2018). J Bus Econ Stat 36:672-683.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import wls_cr2
    >>> v, _, _ = wls_cr2(np.ones((4, 1)), np.ones(4), np.array([0.5, 1.0, -1.0, -0.5]),
    ...                   np.array([0, 0, 1, 1]), np.array([[0.25]]))
    >>> round(float(v[0, 0]), 12)  # (1 - 1/2)^-1 times CR0's 0.28125
    0.5625
    """
    xw2x = x.T @ (w[:, None] ** 2 * x)
    core = bread @ xw2x @ bread
    meat = np.zeros_like(bread)
    awx: list[np.ndarray] = []
    for i in np.unique(ci):
        idx = np.flatnonzero(ci == i)
        xj, wj = x[idx], w[idx]
        h = (xj @ bread @ xj.T) * wj[None, :]
        g = np.eye(len(idx)) - h - h.T + xj @ core @ xj.T
        a_wx = pinv_sqrt_psd(g) @ (wj[:, None] * xj)
        u = a_wx.T @ resid[idx]
        meat += np.outer(u, u)
        awx.append(a_wx)
    return bread @ meat @ bread, xw2x, awx


def wls_satterthwaite_df(
    c: np.ndarray,
    w: np.ndarray,
    ci: np.ndarray,
    x: np.ndarray,
    bread: np.ndarray,
    xw2x: np.ndarray,
    awx: list[np.ndarray],
) -> float:
    r"""Satterthwaite df of the CR2 variance of ``c' beta`` under the working model ``Phi = I``.

    The CR2 variance is ``y' S y`` with ``S = sum_j q_j q_j'``, ``q_j = (I - H)_j' g_j``,
    ``g_j = A_j W_j X_j M c``; matching its first two moments under ``y ~ (mu, s^2 I)``
    gives ``df = tr(S)^2 / tr(S^2) = (sum_j P_jj)^2 / sum_jk P_jk^2`` with
    ``P_jk = q_j' q_k = [j = k] g_j'g_j - r_j'u_k - r_k'u_j + u_j' X'W^2X u_k``,
    ``u_j = M X_j' g_j`` and ``r_j = X_j' W_j g_j`` (all p-vectors: no N x N matrix).

    Parameters
    ----------
    c : ndarray, shape (p,)
        Contrast.
    w, ci, x, bread
        As :func:`wls_cr2`.
    xw2x, awx
        The second and third outputs of :func:`wls_cr2`.

    Returns
    -------
    float
        The df (NaN when the contrast has no variance).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import wls_cr2, wls_satterthwaite_df
    >>> x, w, ci, m = np.ones((4, 1)), np.ones(4), np.array([0, 0, 1, 1]), np.array([[0.25]])
    >>> _, xw2x, awx = wls_cr2(x, w, np.array([0.5, 1.0, -1.0, -0.5]), ci, m)
    >>> round(wls_satterthwaite_df(np.array([1.0]), w, ci, x, m, xw2x, awx), 12)
    1.0
    """
    mc = bread @ c
    gs = [a @ mc for a in awx]
    groups = [np.flatnonzero(ci == i) for i in np.unique(ci)]
    u = np.array([bread @ (x[idx].T @ g) for idx, g in zip(groups, gs, strict=True)])
    r = np.array([x[idx].T @ (w[idx] * g) for idx, g in zip(groups, gs, strict=True)])
    ru = r @ u.T
    p_mat = -ru - ru.T + u @ xw2x @ u.T
    p_mat[np.diag_indices_from(p_mat)] += [float(g @ g) for g in gs]
    v = float(np.sum(p_mat**2))
    return float(np.trace(p_mat)) ** 2 / v if v > 0 else float("nan")


def wls_hc2(q: np.ndarray, xw: np.ndarray, resid_w: np.ndarray, bread: np.ndarray) -> np.ndarray:
    """HC2 sandwich of a weighted least-squares fit (each row its own variance).

    Parameters
    ----------
    q : ndarray, shape (n, p)
        Orthonormal ``Q`` of the weighted design ``xw = R``-factorised (leverages ``|q_k|^2``).
    xw : ndarray, shape (n, p)
        Weighted design ``diag(sqrt w) X``.
    resid_w : ndarray, shape (n,)
        Weighted residuals.
    bread : ndarray, shape (p, p)
        ``(X'WX)^{-1}``.

    Returns
    -------
    ndarray, shape (p, p)

    Raises
    ------
    DataError
        If a row has leverage 1 (fitted exactly).

    References
    ----------
    MacKinnon JG, White H (1985). J Econometrics 29:305-325.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import wls_hc2
    >>> xw = np.ones((4, 1))
    >>> q = xw / 2.0
    >>> v = wls_hc2(q, xw, np.array([0.5, 1.0, -1.0, -0.5]), np.array([[0.25]]))
    >>> round(float(v[0, 0]), 12)  # sum e^2 / (1 - 1/4) / 4^2
    0.208333333333
    """
    h = np.sum(q * q, axis=1)  # leverages of the weighted fit
    if np.any(h > 1 - 1e-10):
        raise DataError(
            "`vcov='hc2'` needs every cell leverage below 1; a cell is fitted exactly (e.g. a "
            "cluster observed in a single period). Use vcov='cr2' or 'model'."
        )
    u = xw * (resid_w / np.sqrt(1.0 - h))[:, None]
    out: np.ndarray = bread @ (u.T @ u) @ bread
    return out
