"""Closed-form variance-parameter Hessian of the Laplace log-likelihood (``laplace_hessian``).

Reference: central differences (step 1e-5) of the exact gradient ``laplace_grad`` in each
variance parameter, with the modes re-solved at every shifted point (tolerance 1e-13).  The
data: the count audit (``calibration_counts.council_scenario(17)``, Poisson
``nested+decay`` with exposure) in the units the fitter builds, the same with
continuous-time decay on unequal gaps, the glmmTMB NB decay panel, binomial logit/probit
events/trials with ``nested``, 0/1 rows (many units per cluster), an SD at 0, and a
``nested+random-slope`` arrowhead.  Tolerance: ``CENTRAL_DIFF_HESS_FLOOR`` of each column's
largest entry (the differenced gradients carry the modes' ~1e-13 error divided by h, ~1e-8
of the scale; measured <= 4e-9), while any missing term of the derivation is >= 1e-4.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tolerances import (
    CENTRAL_DIFF_HESS_FLOOR,
    FORWARD_VAR_HESS_REL,
    GLMM_EST,
    GLMM_LOGLIK_ATOL,
    ZERO_ATOL_1E12,
)

sys.path.insert(0, str(Path(__file__).parent))
from calibration_counts import ROLES, council_scenario  # noqa: E402
from test_glmm_decay import _units as _decay_units  # noqa: E402

from steppedwedge._core.families import Family, make_family  # noqa: E402
from steppedwedge._core.laplace import (  # noqa: E402
    UnitData,
    _Objective,
    ar1_factor,
    fit_glmm_core,
    laplace_grad,
    modes,
)
from steppedwedge._core.laplace_hessian import ar1_factor_d2  # noqa: E402
from steppedwedge._core.laplace_hessian import variance_hessian as _vh  # noqa: E402
from steppedwedge.models import glmm as _glmm  # noqa: E402
from steppedwedge.models.spec import AnalysisSpec  # noqa: E402


def variance_hessian(ud: UnitData, fam: Family, st: Any, sig: np.ndarray, alpha: float = 0.0
                     ) -> np.ndarray:  # fmt: skip
    """:func:`~steppedwedge._core.laplace_hessian.variance_hessian` with the AR(1) factors."""
    fac = None
    if ud.ar1 is not None:
        fac = ar1_factor(math.tanh(sig[ud.n_comp]), ud.ar1[1], deriv=True, times=ud.ar1_times)
    return np.asarray(_vh(ud, fam, st, sig, alpha, ar1_factors=fac))


def _engine_units(df: Any, **options: Any) -> tuple[UnitData, np.ndarray]:
    """The fitter's own units (``fit_glmm_spec`` up to the core fit) and the GLM start."""
    spec = AnalysisSpec.from_options(**options)
    td = _glmm._trial_data(df, spec)
    cells = td.cells()
    n_i, n_t = cells.shape
    design = _glmm._cell_design(cells, td.periods, spec.time, spec.knots, spec.effect)
    units = _glmm._units(td, design, spec.family, spec.covariates)
    ud, _ = _glmm._random_design(units, spec.random, n_i, n_t, None)
    fam = make_family(spec.family, spec.link)
    beta0 = _glmm._glm_start(fam, units.y, units.n, units.off, units.x)[0]
    return ud, np.asarray(beta0)


def _audit_units(seed: int = 3) -> tuple[UnitData, np.ndarray]:
    df = council_scenario(17).draw(0.0, seed)
    return _engine_units(df, **ROLES, family="poisson", random="nested+decay")


def _central(ud: UnitData, fam: Family, beta: np.ndarray, sig: np.ndarray, alpha: float,
             v0: np.ndarray, h: float = 1e-5) -> np.ndarray:  # fmt: skip
    """``-d(beta, theta gradient)/d theta_k`` by central differences, modes re-solved."""
    k, p = sig.size, beta.size
    out = np.zeros((p + k, k))
    for j in range(k):
        grads = []
        for sgn in (1.0, -1.0):
            s = sig + sgn * h * np.eye(k)[j]
            st = modes(ud, fam, beta, s, alpha, v0, tol=1e-13)
            gb, gs, _ = laplace_grad(ud, fam, st, s, alpha)
            grads.append(np.r_[gb, gs])
        out[:, j] = -(grads[0] - grads[1]) / (2.0 * h)
    return out


def _check(ud: UnitData, fam: Family, beta: np.ndarray, sig: np.ndarray, alpha: float = 0.0,
           h: float = 1e-5):  # type: ignore[no-untyped-def]  # fmt: skip
    st = modes(ud, fam, beta, sig, alpha, tol=1e-13)
    assert st.converged
    got = variance_hessian(ud, fam, st, sig, alpha)
    num = _central(ud, fam, beta, sig, alpha, st.v, h)
    assert got.shape == (beta.size + ud.n_var, ud.n_var)
    scale = np.abs(num).max(axis=0)
    scale = np.where(scale > 0, scale, scale.max())  # a zero column (phi when gamma = 0)
    err = float((np.abs(got - num) / scale).max())  # relative to each column's largest entry
    assert err < CENTRAL_DIFF_HESS_FLOOR, err
    # the variance block is symmetric (a Hessian), to rounding
    blk = got[beta.size :]
    assert np.abs(blk - blk.T).max() < CENTRAL_DIFF_HESS_FLOOR * scale.max()
    return got, num


# ------------------------------------------------------------------------------ AR(1) factor


@pytest.mark.parametrize(
    ("r", "times"),
    [(0.7, None), (-0.45, None), (0.0, None), (0.93, np.array([0.0, 0.5, 2.0, 2.25, 4.0]))],
)
def test_ar1_second_derivative(r: float, times: np.ndarray | None) -> None:
    """``d2L/dphi2`` against central differences of the closed-form ``dL/dphi``."""
    t, h = 5, 1e-5
    phi = math.atanh(r)
    up = ar1_factor(math.tanh(phi + h), t, deriv=True, times=times)[1]
    dn = ar1_factor(math.tanh(phi - h), t, deriv=True, times=times)[1]
    num = (up - dn) / (2.0 * h)
    got = ar1_factor_d2(r, t, times)
    scale = max(1.0, float(np.abs(num).max()))
    assert np.abs(got - num).max() < CENTRAL_DIFF_HESS_FLOOR * scale
    assert np.all(np.triu(got, 1) == 0.0)
    if times is None and r > 0:  # the integer-lag path and the general one agree
        general = ar1_factor_d2(r, t, np.arange(t, dtype=float))
        assert np.abs(general - got).max() < CENTRAL_DIFF_HESS_FLOOR * scale


# ------------------------------------------------------------------------------ count data


def test_audit_poisson_nested_decay() -> None:
    """The issue-10 audit fit's structure, away from the optimum (nonzero gradient)."""
    ud, beta = _audit_units()
    assert ud.ar1 is not None and ud.x.shape[2] == 21 and ud.z.shape[2] == 21
    got, num = _check(ud, make_family("poisson"), beta, np.array([0.3, 0.15, math.atanh(0.9)]))
    assert np.abs(num[-3:]).min() > 1e-3  # every cross term is exercised


def test_audit_sd_at_zero() -> None:
    """An SD exactly 0 (A is linear in an SD): the persistent SD, then the AR(1) SD.

    The curvature in an SD changes fast near 0 (the central difference's truncation error,
    ``h^2`` times a fourth derivative, is 4.5e-8 of the scale at ``h = 1e-5``, measured to
    fall as ``h^2``), so the step is 1e-6 here (error <= 3e-9).
    """
    ud, beta = _audit_units(5)
    fam = make_family("poisson")
    _check(ud, fam, beta, np.array([0.0, 0.2, math.atanh(0.8)]), h=1e-6)
    got, _ = _check(ud, fam, beta, np.array([0.3, 0.0, math.atanh(0.8)]), h=1e-6)
    assert np.all(got[:-2, 2] == 0.0) and got[-1, 2] == 0.0  # phi enters only with gamma


def test_continuous_time_decay_unequal_gaps() -> None:
    """``ar1_times`` with fractional, unequal gaps (``R_jk = r^|t_j - t_k|``)."""
    ud, beta = _audit_units(7)
    gaps = np.tile([1.0, 0.5, 2.0, 1.5], 5)[: ud.ar1[1] - 1]  # type: ignore[index]
    ud = dataclasses.replace(ud, ar1_times=np.r_[0.0, np.cumsum(gaps)])
    _check(ud, make_family("poisson"), beta, np.array([0.25, 0.2, math.atanh(0.85)]))


def test_negative_binomial_nested_decay() -> None:
    """NB (log size held): the SD and phi columns, rows beta then the variance parameters."""
    ud, beta, sig = _decay_units("negative_binomial")
    _check(ud, make_family("negative_binomial"), beta, sig, math.log(20.0))


# ------------------------------------------------------------------------------ binomial


def _nested_units(n_i: int, n_t: int, m: int, rng: np.random.Generator, slope: bool = False
                  ) -> UnitData:  # fmt: skip
    """Cells of ``m`` rows each (``m = 1``: one 0/1 row per unit, several per cell)."""
    rows = np.repeat(np.arange(n_t), m)  # period of each unit
    n_u = rows.size
    start = (
        rng.permutation(np.arange(1, n_t))[:n_i] if n_i < n_t else np.arange(n_i) % (n_t - 1) + 1
    )
    trt = (rows[None, :] >= start[:, None]).astype(float)
    period = np.eye(n_t)[rows]
    x = np.concatenate(
        [
            np.ones((n_i, n_u, 1)),
            np.broadcast_to(period[:, 1:], (n_i, n_u, n_t - 1)),
            trt[..., None],
        ],
        axis=2,
    )
    cols = [np.ones((n_i, n_u, 1))] + ([trt[..., None]] if slope else [])
    head = len(cols)
    z = np.concatenate([*cols, np.broadcast_to(period, (n_i, n_u, n_t))], axis=2)
    comp = np.r_[np.arange(head), np.full(n_t, head)]
    return UnitData(
        y=np.zeros((n_i, n_u)), n=np.ones((n_i, n_u)), offset=np.zeros((n_i, n_u)),
        weight=np.ones((n_i, n_u)), x=x, z=z, comp=comp, n_comp=head + 1, tail_start=head,
    )  # fmt: skip


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_events_trials_nested(link: str) -> None:
    rng = np.random.default_rng(21)
    ud = _nested_units(8, 5, 1, rng)
    trials = rng.integers(20, 60, size=ud.y.shape).astype(float)
    ud = dataclasses.replace(ud, n=trials, y=rng.binomial(trials.astype(int), 0.3).astype(float))
    beta = np.r_[-0.8, 0.1 * rng.normal(size=ud.x.shape[2] - 1)]
    _check(ud, make_family("binomial", link), beta, np.array([0.4, 0.25]))


def test_binary_rows_many_units_per_cluster() -> None:
    """0/1 individual rows, 12 a cell (U = 60 units per cluster, q = 6), with padding."""
    rng = np.random.default_rng(8)
    ud = _nested_units(7, 5, 12, rng)
    y = (rng.random(ud.y.shape) < 0.35).astype(float)
    weight = np.ones_like(y)
    weight[0, -7:] = 0.0  # a cluster with fewer rows: padded units
    ud = dataclasses.replace(ud, y=y * weight, weight=weight)
    beta = np.r_[-0.6, 0.1 * rng.normal(size=ud.x.shape[2] - 1)]
    _check(ud, make_family("binomial", "logit"), beta, np.array([0.5, 0.3]))


def test_random_slope_arrowhead() -> None:
    """``nested+random-slope``: intercept, treatment slope, one-hot periods (``tail_start=2``)."""
    rng = np.random.default_rng(4)
    ud = _nested_units(9, 6, 1, rng, slope=True)
    trials = rng.integers(30, 80, size=ud.y.shape).astype(float)
    ud = dataclasses.replace(ud, n=trials, y=rng.binomial(trials.astype(int), 0.25).astype(float))
    beta = np.r_[-1.0, 0.1 * rng.normal(size=ud.x.shape[2] - 1)]
    assert ud.tail_start == 2
    _check(ud, make_family("binomial", "logit"), beta, np.array([0.35, 0.3, 0.2]))


# ------------------------------------------------------------------------------ vs the fitter's


def test_agrees_with_forward_differenced_columns() -> None:
    """The fitter's forward-difference columns (step 1e-6, O(h) error) agree to their precision."""
    ud, beta = _audit_units(11)
    fam = make_family("poisson")
    obj = _Objective(ud, fam, 1)
    theta = np.r_[beta, 0.3, 0.15, math.atanh(0.9)]
    val, g, _ = obj.state(theta)
    p = beta.size
    cols = obj.jacobian_columns(theta, g, np.arange(p, p + 3))
    st = obj._last[1]
    got = variance_hessian(ud, fam, st, theta[p:])
    err = float((np.abs(cols - got) / np.abs(got).max(axis=0)).max())
    assert err < FORWARD_VAR_HESS_REL, err


def test_zero_variance_parameters() -> None:
    """No variance parameters: an empty (p, 0) block."""
    rng = np.random.default_rng(0)
    ud = UnitData(y=rng.poisson(5.0, (3, 4)).astype(float), n=np.ones((3, 4)),
                  offset=np.zeros((3, 4)), weight=np.ones((3, 4)), x=np.ones((3, 4, 1)),
                  z=np.zeros((3, 4, 0)), comp=np.zeros(0, dtype=int), n_comp=0)  # fmt: skip
    fam = make_family("poisson")
    st = modes(ud, fam, np.array([1.5]), np.zeros(0))
    assert variance_hessian(ud, fam, st, np.zeros(0)).shape == (1, 0)


def test_ar1_factors_required() -> None:
    ud, beta = _audit_units(2)
    fam = make_family("poisson")
    sig = np.array([0.3, 0.15, math.atanh(0.9)])
    st = modes(ud, fam, beta, sig)
    with pytest.raises(ValueError, match="ar1_factors"):
        _vh(ud, fam, st, sig)


# ------------------------------------------------------------------------------ in the fitter


def test_objective_columns_signs_and_nb_log_size() -> None:
    """``_Objective.exact_columns``: SDs stored negative (the likelihood is even in them) and
    the NB log-size column (differenced, its cross terms filling the log-size row) against
    the forward-difference columns; the kept mode slopes are the implicit-function ones."""
    ud, beta, sig = _decay_units("negative_binomial")
    fam = make_family("negative_binomial")
    obj = _Objective(ud, fam, 1)
    theta = np.r_[beta, -sig[0], sig[1:], math.log(20.0)]  # tau stored negative
    _, g, _ = obj.state(theta)
    p = beta.size
    cols = np.arange(p, p + 4)
    st, alpha = obj._last[1], obj._last[2]
    got = obj.exact_columns(theta, g, cols, st, alpha)
    slopes = obj._slopes[2]
    np.testing.assert_allclose(
        slopes, obj._mode_slopes(theta, cols), rtol=0, atol=ZERO_ATOL_1E12 * np.abs(slopes).max()
    )
    fd = obj.jacobian_columns(theta, g, cols)
    err = float((np.abs(fd - got) / np.abs(got).max(axis=0)).max())
    assert err < FORWARD_VAR_HESS_REL, err
    assert got[p, 1] < 0 < got[p, 0]  # the sign flips the tau row/column's cross terms


@pytest.mark.parametrize("tau0", [0.0, 1e-300, 1e-12, 1e-8])
def test_fit_leaves_a_zero_sd_start(tau0: float) -> None:
    """A start with the persistent SD at or next to 0 (a saddle: the gradient there is 0 and
    the exact cross terms vanish, or nearly) reaches the interior optimum of a start at 0.3."""
    ud, beta = _audit_units(3)
    fam = make_family("poisson")
    ref = fit_glmm_core(ud, fam, beta, np.array([0.3, 0.15, math.atanh(0.8)]))
    got = fit_glmm_core(ud, fam, beta, np.array([tau0, 0.15, math.atanh(0.8)]))
    assert ref.converged and got.converged and ref.free.all() and ref.sigma[0] > 0.1
    assert abs(got.loglik - ref.loglik) < GLMM_LOGLIK_ATOL
    np.testing.assert_allclose(got.sigma, ref.sigma, **GLMM_EST)


def test_negative_decay_correlation() -> None:
    """An AR(1) correlation below 0 (equal gaps: integer powers of a negative ``r``)."""
    ud, beta = _audit_units(9)
    _check(ud, make_family("poisson"), beta, np.array([0.3, 0.2, math.atanh(-0.4)]))


def test_fit_reports_the_closed_form_hessian() -> None:
    """``fit_glmm_core``'s Hessian at the optimum: its variance columns (rows beta and theta)
    are those of central differences there, and it is symmetric."""
    ud, beta = _audit_units(3)
    fam = make_family("poisson")
    core = fit_glmm_core(ud, fam, beta, np.array([0.3, 0.15, math.atanh(0.8)]))
    assert core.converged and core.free.all()
    p = beta.size
    num = _central(ud, fam, core.beta, core.sigma, 0.0, core.v)
    got = core.hessian[:, p:]
    err = float((np.abs(got - num) / np.abs(num).max(axis=0)).max())
    assert err < CENTRAL_DIFF_HESS_FLOOR, err
    assert np.array_equal(core.hessian, core.hessian.T)
