"""Closed-form variances and design effects for complete stepped-wedge designs.

Every function here is vectorised: scalar or array arguments broadcast against each other,
so a grid of scenarios is evaluated in one call.  They are used both as fast paths
(:func:`steppedwedge.power_grid`) and as independent checks of the general GLS code in
:mod:`steppedwedge._core.gls` (the tests assert equality to ~1e-10).

Notation (methods.md section 0): ``I`` clusters, ``T`` periods, ``m`` individuals per
cluster-period, ``X`` the ``I x T`` 0/1 treatment matrix and the design summaries

``U = sum_ij X_ij``, ``V = sum_i (sum_j X_ij)^2``, ``W = sum_j (sum_i X_ij)^2``,
``P = sum_i sum_{j<T} X_ij X_i,j+1``, ``Q = sum_{j<T} X_.j X_.,j+1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayOrFloat = Any

__all__ = [
    "design_summaries",
    "two_eigenvalue_variance",
    "hussey_hughes_variance",
    "nested_exchangeable_variance",
    "kasza_open_cohort_variance",
    "li_decay_cohort_variance",
    "hooper_design_effect",
    "woertman_design_effect",
    "standard_design",
    "harrison_wang_variance",
]


def standard_design(n_sequences: int, clusters_per_sequence: int = 1) -> FloatArray:
    """Treatment matrix of the standard design: ``S`` sequences, ``T = S + 1`` periods."""
    s = np.arange(1, n_sequences + 1)[:, None]
    j = np.arange(1, n_sequences + 2)[None, :]
    seq = (j > s).astype(float)
    return np.repeat(seq, clusters_per_sequence, axis=0)


def design_summaries(matrix: FloatArray) -> dict[str, float]:
    """Return ``I, T, U, V, W, P, Q`` of a complete ``I x T`` treatment matrix."""
    x = np.asarray(matrix, dtype=float)
    col = x.sum(axis=0)
    row = x.sum(axis=1)
    return {
        "I": float(x.shape[0]),
        "T": float(x.shape[1]),
        "U": float(x.sum()),
        "V": float((row**2).sum()),
        "W": float((col**2).sum()),
        "P": float((x[:, :-1] * x[:, 1:]).sum()),
        "Q": float((col[:-1] * col[1:]).sum()),
    }


def two_eigenvalue_variance(
    n_clusters: ArrayOrFloat,
    n_periods: ArrayOrFloat,
    u: ArrayOrFloat,
    v: ArrayOrFloat,
    w: ArrayOrFloat,
    lambda1: ArrayOrFloat,
    lambda2: ArrayOrFloat,
) -> Any:
    r"""Variance of the GLS treatment estimator when every ``Sigma_i = a I + b J``.

    With eigenvalues ``lambda1 = a`` and ``lambda2 = a + T b`` (methods.md section 2.3):

    .. math::

        \operatorname{Var}(\hat\theta) = \frac{I T \lambda_1 \lambda_2}
            {(U^2 + I T U - T W - I V)\lambda_2 - (U^2 - I V)\lambda_1}

    Valid for any complete 0/1 design with categorical period effects.
    """
    i = np.asarray(n_clusters, dtype=float)
    t = np.asarray(n_periods, dtype=float)
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    w = np.asarray(w, dtype=float)
    l1 = np.asarray(lambda1, dtype=float)
    l2 = np.asarray(lambda2, dtype=float)
    denom = (u**2 + i * t * u - t * w - i * v) * l2 - (u**2 - i * v) * l1
    return i * t * l1 * l2 / denom


def hussey_hughes_variance(
    matrix: FloatArray, sigma2: ArrayOrFloat, tau2: ArrayOrFloat, m: ArrayOrFloat
) -> Any:
    r"""Hussey & Hughes (2007) variance of the treatment effect.

    .. math::

        \operatorname{Var}(\hat\theta) = \frac{I \sigma_m^2(\sigma_m^2 + T\tau^2)}
            {(IU - W)\sigma_m^2 + (U^2 + ITU - TW - IV)\tau^2}, \qquad \sigma_m^2 = \sigma^2/m
    """
    d = design_summaries(matrix)
    sm = np.asarray(sigma2, dtype=float) / np.asarray(m, dtype=float)
    tau2 = np.asarray(tau2, dtype=float)
    i, t, u, v, w = d["I"], d["T"], d["U"], d["V"], d["W"]
    num = i * sm * (sm + t * tau2)
    den = (i * u - w) * sm + (u**2 + i * t * u - t * w - i * v) * tau2
    return num / den


def nested_exchangeable_variance(
    matrix: FloatArray,
    *,
    m: ArrayOrFloat,
    sigma2: ArrayOrFloat,
    tau2: ArrayOrFloat = 0.0,
    gamma2: ArrayOrFloat = 0.0,
    psi2: ArrayOrFloat = 0.0,
    churn: ArrayOrFloat = 1.0,
) -> Any:
    """Variance for ``Sigma_i = tau2 J + (gamma2 + sigma2/m) I`` plus a cohort term.

    The individual effect ``psi2`` splits into ``churn * psi2 / m`` on the diagonal and
    ``(1 - churn) * psi2 / m`` on every entry (Kasza et al. 2020 equivalence), so this covers
    Hussey & Hughes, nested exchangeable, closed and open cohorts.
    """
    d = design_summaries(matrix)
    m = np.asarray(m, dtype=float)
    churn = np.asarray(churn, dtype=float)
    psi2 = np.asarray(psi2, dtype=float)
    a = np.asarray(gamma2, dtype=float) + np.asarray(sigma2, dtype=float) / m + churn * psi2 / m
    b = np.asarray(tau2, dtype=float) + (1.0 - churn) * psi2 / m
    return two_eigenvalue_variance(d["I"], d["T"], d["U"], d["V"], d["W"], a, a + d["T"] * b)


def kasza_open_cohort_variance(
    matrix: FloatArray,
    *,
    m: ArrayOrFloat,
    total_variance: ArrayOrFloat,
    rho_w: ArrayOrFloat,
    rho_b: ArrayOrFloat,
    rho_a: ArrayOrFloat,
    churn: ArrayOrFloat,
) -> Any:
    r"""Kasza, Hooper, Copas & Forbes (2020) open-cohort variance.

    ``rho_w`` = same period, different individuals; ``rho_b`` = different periods, different
    individuals; ``rho_a`` = same individual, different periods; ``churn`` = share replaced
    between periods (0 closed cohort, 1 cross-sectional).

    .. math::

        \lambda_1 &= 1 + (m-1)(\rho_W-\rho_B) - \rho_A + \chi(\rho_A-\rho_B) \\
        \lambda_2 &= 1 + (m-1)\rho_W + (T-1)(m-1)\rho_B + (T-1)\rho_A - (T-1)\chi(\rho_A-\rho_B)

    and ``Var = (sigma_tot^2/m) I T lambda1 lambda2 / [...]`` (the two-eigenvalue form).
    """
    d = design_summaries(matrix)
    m = np.asarray(m, dtype=float)
    rw, rb, ra = (np.asarray(x, dtype=float) for x in (rho_w, rho_b, rho_a))
    chi = np.asarray(churn, dtype=float)
    t = d["T"]
    l1 = 1 + (m - 1) * (rw - rb) - ra + chi * (ra - rb)
    l2 = 1 + (m - 1) * rw + (t - 1) * (m - 1) * rb + (t - 1) * ra - (t - 1) * chi * (ra - rb)
    scale = np.asarray(total_variance, dtype=float) / m
    return scale * two_eigenvalue_variance(d["I"], t, d["U"], d["V"], d["W"], l1, l2)


def li_decay_cohort_variance(
    matrix: FloatArray,
    *,
    m: ArrayOrFloat,
    total_variance: ArrayOrFloat,
    icc: ArrayOrFloat,
    decay: ArrayOrFloat,
) -> Any:
    r"""Li (2020) proportional-decay closed cohort variance.

    ``corr(Y_ijk, Y_ij'k') = icc r^{|j-j'|}`` for different individuals and ``r^{|j-j'|}``
    for the same individual:

    .. math::

        \operatorname{Var}(\hat\theta) = \frac{\sigma^2_{tot} I (1-r^2)(1+(m-1)\rho)}
            {m [ (IU - W)(1+r^2) - 2(IP - Q) r ]}
    """
    d = design_summaries(matrix)
    m = np.asarray(m, dtype=float)
    r = np.asarray(decay, dtype=float)
    rho = np.asarray(icc, dtype=float)
    i, u, w, p, q = d["I"], d["U"], d["W"], d["P"], d["Q"]
    num = np.asarray(total_variance, dtype=float) * i * (1 - r**2) * (1 + (m - 1) * rho)
    den = m * ((i * u - w) * (1 + r**2) - 2 * (i * p - q) * r)
    return num / den


def hooper_design_effect(
    n_sequences: ArrayOrFloat,
    m: ArrayOrFloat,
    icc: ArrayOrFloat,
    cac: ArrayOrFloat = 1.0,
    iac: ArrayOrFloat = 0.0,
) -> tuple[Any, Any, Any]:
    r"""Hooper et al. (2016) design effect for the standard design with ``K`` sequences.

    Returns ``(DE_C, r, DE_R)`` with

    .. math::

        DE_C = 1 + (m-1)\rho, \quad r = \frac{m\rho r_C + (1-\rho) r_S}{DE_C}, \quad
        DE_R = \frac{3K(1-r)(1+Kr)}{(K^2-1)(2+Kr)}

    so that ``Var = 4 sigma_tot^2 DE_C DE_R / (I m)``.
    """
    k = np.asarray(n_sequences, dtype=float)
    m = np.asarray(m, dtype=float)
    rho = np.asarray(icc, dtype=float)
    de_c = 1 + (m - 1) * rho
    r = (m * rho * np.asarray(cac, dtype=float) + (1 - rho) * np.asarray(iac, dtype=float)) / de_c
    de_r = 3 * k * (1 - r) * (1 + k * r) / ((k**2 - 1) * (2 + k * r))
    return de_c, r, de_r


def woertman_design_effect(
    n_steps: ArrayOrFloat,
    m: ArrayOrFloat,
    icc: ArrayOrFloat,
    baseline_periods: ArrayOrFloat = 1,
    periods_per_step: ArrayOrFloat = 1,
) -> Any:
    r"""Woertman et al. (2013) design effect ``DE_w``.

    .. math::

        DE_w = \frac{1 + \rho(ktn + bn - 1)}{1 + \rho(\tfrac12 ktn + bn - 1)}
               \cdot \frac{3(1-\rho)}{2t(k - 1/k)}

    Exact identity (methods.md section 4.1): ``Var = 4 sigma_tot^2 DE_w / (I m)``.
    """
    k = np.asarray(n_steps, dtype=float)
    n = np.asarray(m, dtype=float)
    rho = np.asarray(icc, dtype=float)
    b = np.asarray(baseline_periods, dtype=float)
    t = np.asarray(periods_per_step, dtype=float)
    first = (1 + rho * (k * t * n + b * n - 1)) / (1 + rho * (0.5 * k * t * n + b * n - 1))
    return first * 3 * (1 - rho) / (2 * t * (k - 1 / k))


def harrison_wang_variance(
    *,
    n_clusters: ArrayOrFloat,
    n_periods: ArrayOrFloat,
    m: ArrayOrFloat,
    icc: ArrayOrFloat,
    total_variance: ArrayOrFloat = 1.0,
    p0: ArrayOrFloat | None = None,
    p1: ArrayOrFloat | None = None,
    model: str = "linear",
    period_effects: bool = False,
) -> Any:
    r"""Harrison & Wang (2021) closed forms for the standard design (``T-1`` equal sequences).

    Exchangeable correlation ``rho``, ``n`` per cluster-period, ``I`` clusters:

    * linear, no period effects:
      ``12 s2 (1-rho)(1-rho+nT rho) / [nIT (3(1-rho) + 2 n rho (T+1))]``;
    * linear, period effects (= Hussey & Hughes):
      ``12 s2 (T-1)(1-rho)(1-rho+nT rho) / [nIT (T-2)(2(1-rho) + n rho (T+1))]``;
    * logistic (log odds ratio), no period effects, ``a = sqrt(p0 q0)``, ``b = sqrt(p1 q1)``:
      ``[6(1-rho)(a^2+b^2) + 2n rho (T+1)(a-b)^2](1-rho+nT rho) /
      [nIT a^2 b^2 (3(1-rho) + 2n rho (T+1))]``.
    """
    i = np.asarray(n_clusters, dtype=float)
    t = np.asarray(n_periods, dtype=float)
    n = np.asarray(m, dtype=float)
    rho = np.asarray(icc, dtype=float)
    s2 = np.asarray(total_variance, dtype=float)
    common = 1 - rho + n * t * rho
    if model == "linear" and not period_effects:
        return 12 * s2 * (1 - rho) * common / (n * i * t * (3 * (1 - rho) + 2 * n * rho * (t + 1)))
    if model == "linear":
        num = 12 * s2 * (t - 1) * (1 - rho) * common
        return num / (n * i * t * (t - 2) * (2 * (1 - rho) + n * rho * (t + 1)))
    if model == "logistic" and not period_effects and p0 is not None and p1 is not None:
        a2 = np.asarray(p0, dtype=float) * (1 - np.asarray(p0, dtype=float))
        b2 = np.asarray(p1, dtype=float) * (1 - np.asarray(p1, dtype=float))
        diff2 = (np.sqrt(a2) - np.sqrt(b2)) ** 2
        num = (6 * (1 - rho) * (a2 + b2) + 2 * n * rho * (t + 1) * diff2) * common
        return num / (n * i * t * a2 * b2 * (3 * (1 - rho) + 2 * n * rho * (t + 1)))
    raise ValueError("unsupported combination (logistic with period effects has no closed form)")
