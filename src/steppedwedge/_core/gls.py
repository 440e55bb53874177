"""Generalised least squares on cluster-period means, batched over clusters.

For each cluster ``i`` with fixed-effect design ``Z_i`` (``T x p``) and covariance
``V_i`` (``T x T``), GLS information is ``M = sum_i Z_i' V_i^{-1} Z_i``; the estimator is
``M^{-1} sum_i Z_i' V_i^{-1} y_i`` with model-based covariance ``M^{-1}``.  Analytic power
evaluates ``M`` at the planned design; model fitting evaluates it at the data.  Unobserved
cells are handled by :func:`steppedwedge._core.covariance.mask_unobserved` together with
zero rows in ``Z`` (and ``y``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

__all__ = ["GLSFit", "gls_fit", "gls_information", "whiten", "cell_weights"]


def whiten(cov: FloatArray, arrays: FloatArray) -> FloatArray:
    """Solve ``L_i a = arrays_i`` with ``L_i`` the Cholesky factor of ``cov_i``.

    ``cov`` is ``(I, T, T)`` and ``arrays`` is ``(I, T, k)``; the result has the shape of
    ``arrays``.  ``(L^{-1} Z)' (L^{-1} Z) = Z' V^{-1} Z``.
    """
    chol = np.linalg.cholesky(cov)
    return np.linalg.solve(chol, arrays)


def gls_information(design: FloatArray, cov: FloatArray) -> FloatArray:
    """Return ``sum_i Z_i' V_i^{-1} Z_i`` for ``design`` ``(I, T, p)`` and ``cov`` ``(I, T, T)``."""
    wz = whiten(cov, design)
    info: FloatArray = np.einsum("itp,itq->pq", wz, wz)
    return info


@dataclass(frozen=True, slots=True)
class GLSFit:
    """Coefficients and model-based covariance of a GLS fit."""

    coef: FloatArray
    cov: FloatArray
    information: FloatArray


def gls_fit(design: FloatArray, cov: FloatArray, y: FloatArray) -> GLSFit:
    """GLS estimate for responses ``y`` ``(I, T)`` given ``design`` and ``cov``."""
    stacked = np.concatenate([design, y[:, :, None]], axis=2)
    w = whiten(cov, stacked)
    cross = np.einsum("itp,itq->pq", w, w)
    p = design.shape[2]
    info = cross[:p, :p]
    inv = np.linalg.inv(info)
    coef = inv @ cross[:p, p]
    return GLSFit(coef=coef, cov=inv, information=info)


def cell_weights(design: FloatArray, cov: FloatArray, contrast: FloatArray) -> FloatArray:
    """Weights ``w_ij`` with ``c' beta_hat = sum_ij w_ij Ybar_ij`` (shape ``(I, T)``).

    ``contrast`` is a length-``p`` vector; the weights are the rows of
    ``c' M^{-1} Z_i' V_i^{-1}``.
    """
    info = gls_information(design, cov)
    a = np.linalg.solve(info, contrast)
    za = design @ a  # (I, T)
    vinv_za: FloatArray = np.asarray(np.linalg.solve(cov, za[:, :, None])[:, :, 0], dtype=float)
    return vinv_za
