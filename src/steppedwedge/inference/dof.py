"""Denominator degrees of freedom for Wald tests of fixed-effect contrasts in Gaussian LMMs.

Rules (``dof=``):

``"kenward-roger"``
    Kenward & Roger (1997) as pbkrtest: adjusted covariance ``Phi_A`` and the KR df; the
    reported standard error is the adjusted one.  REML fits only.
``"satterthwaite"``
    As lmerTest: ``2 (c'Phi c)^2 / (g' A g)``, ``A`` twice the inverse observed Hessian of
    the (RE)ML deviance in the variance parameters; the standard error is model-based.
``"between-within"``
    SAS ``DDFM=BW``-style: a contrast of cluster-level columns only (constant within every
    cluster) gets ``I - r_b`` with ``r_b`` the rank of the cluster-level columns (intercept
    included); any other contrast gets ``N - I - (p - r_b)`` (``N`` rows).  In a stepped wedge
    the treatment varies within clusters, so this is large and close to the normal rule.
``"normal"``
    ``inf`` (z test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._core.kenward_roger import (
    KRAdjustment,
    kr_adjust,
    kr_test,
    kr_unit_df,
    reml_hessian,
    satterthwaite_df,
)
from .._core.reml import (
    CellData,
    CovarianceStructure,
    LMMFit,
    VarianceDerivatives,
    variance_derivatives,
)
from .._core.reml_dense import RowData, gradient_natural_rows, variance_derivatives_rows

__all__ = ["DOF_METHODS", "ContrastInference", "InferenceEngine"]

DOF_METHODS = ("kenward-roger", "satterthwaite", "between-within", "normal")


@dataclass(frozen=True)
class ContrastInference:
    """Estimate, standard error and df of one contrast."""

    estimate: float
    std_error: float
    df: float


class InferenceEngine:
    """Computes per-contrast inference for a fitted model under one df rule."""

    def __init__(
        self,
        fit: LMMFit,
        cells: CellData,
        structure: CovarianceStructure,
        dof: str,
        *,
        robust_cov: np.ndarray | None = None,
        robust_df: float | None = None,
        rows: RowData | None = None,
    ) -> None:
        self.rows = rows
        self.fit = fit
        self.cells = cells
        self.structure = structure
        self.dof = dof
        self.robust_cov = robust_cov
        self.robust_df = robust_df
        self._deriv: VarianceDerivatives | None = None
        self._kr: KRAdjustment | None = None
        self._hess: np.ndarray | None = None

    @property
    def derivatives(self) -> VarianceDerivatives:
        """Variance-parameter derivatives at the estimates (computed once)."""
        if self._deriv is None:
            if self.rows is not None:
                self._deriv = variance_derivatives_rows(
                    self.fit.natural, self.fit.sigma2, self.rows, self.structure
                )
            else:
                self._deriv = variance_derivatives(
                    self.fit.natural, self.fit.sigma2, self.cells, self.structure
                )
        return self._deriv

    @property
    def kr(self) -> KRAdjustment:
        """Kenward-Roger adjustment (computed once)."""
        if self._kr is None:
            self._kr = kr_adjust(self.derivatives)
        return self._kr

    @property
    def hessian(self) -> np.ndarray:
        """Observed Hessian of the deviance in (natural parameters, sigma2)."""
        if self._hess is None:
            if self.rows is not None:
                self._hess = reml_hessian(
                    self.fit.natural,
                    self.fit.sigma2,
                    self.cells,
                    self.structure,
                    reml=self.fit.reml,
                    gradient=gradient_natural_rows,
                    data=self.rows,
                )
            else:
                self._hess = reml_hessian(
                    self.fit.natural,
                    self.fit.sigma2,
                    self.cells,
                    self.structure,
                    reml=self.fit.reml,
                )
        return self._hess

    @property
    def keep(self) -> np.ndarray:
        """Variance parameters not on the boundary (used by Satterthwaite)."""
        return np.array([n not in self.fit.at_bound for n in self.fit.names] + [True])

    @property
    def vcov(self) -> np.ndarray:
        """Covariance of the fixed effects used for inference."""
        if self.robust_cov is not None:
            return self.robust_cov
        if self.dof == "kenward-roger":
            return self.kr.phi_adj
        return self.fit.cov_beta

    def contrast(self, c: np.ndarray) -> ContrastInference:
        """Inference for ``c' beta``."""
        c = np.asarray(c, dtype=float)
        est = float(c @ self.fit.beta)
        se = float(np.sqrt(max(c @ self.vcov @ c, 0.0)))
        if self.robust_cov is not None:
            df = float(self.robust_df) if self.robust_df is not None else float("inf")
        elif self.dof == "kenward-roger":
            df = kr_test(self.kr, c)[0]
        elif self.dof == "satterthwaite":
            df = satterthwaite_df(self.derivatives, self.hessian, c, self.keep)
        elif self.dof == "between-within":
            df = self._between_within(c)
        else:
            df = float("inf")
        return ContrastInference(est, se, df)

    def unit_contrasts(self) -> list[ContrastInference]:
        """Inference for every coefficient ``beta_k`` (the rows of the coefficient table).

        Equals ``[self.contrast(e_k) for k]``; under Kenward-Roger the df of all
        coefficients come from one vectorised computation.
        """
        p = self.fit.beta.size
        if self.robust_cov is None and self.dof == "kenward-roger":
            vmat = self.vcov
            dfs = kr_unit_df(self.kr)
            return [
                ContrastInference(
                    float(self.fit.beta[k]),
                    float(np.sqrt(max(vmat[k, k], 0.0))),
                    float(dfs[k]),
                )
                for k in range(p)
            ]
        return [self.contrast(np.eye(p)[k]) for k in range(p)]

    def _between_within(self, c: np.ndarray) -> float:
        cells = self.cells
        x = cells.xbar
        obs = cells.observed
        p = x.shape[2]
        # a column is cluster-level when constant over each cluster's observed cells and
        # without within-cell variation
        within_var = np.diag(cells.within)[:p] > 1e-12 * (1 + np.abs(np.diag(cells.within)[:p]))
        cluster_level = np.ones(p, dtype=bool)
        for k in range(p):
            if within_var[k]:
                cluster_level[k] = False
                continue
            col = np.where(obs, x[:, :, k], np.nan)
            spread = np.nanmax(col, axis=1) - np.nanmin(col, axis=1)
            cluster_level[k] = bool(np.all(spread[np.isfinite(spread)] < 1e-12))
        i_n = int(np.sum(obs.any(axis=1)))
        xb = np.array([x[i, obs[i]][0] for i in range(x.shape[0]) if obs[i].any()])[
            :, cluster_level
        ]
        r_b = int(np.linalg.matrix_rank(xb)) if xb.size else 0
        if np.all(cluster_level[np.abs(c) > 0]):
            return float(max(i_n - r_b, 1))
        return float(max(cells.n_total - i_n - (p - r_b), 1))
