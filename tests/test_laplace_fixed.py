"""``fit_glmm_core(..., fixed=)``: variance parameters held at given values (profile likelihood).

Data: the glmmTMB decay reference panel (``tests/reference/glmm_decay/data/council_decay.csv``,
17 councils x 20 quarters, persistent + AR(1) council-quarter effects), in the engine's own
units.  Checks by exact algebra: holding a parameter at its MLE reproduces the MLE and its
log-likelihood; holding it elsewhere gives a lower log-likelihood, and the profile at that
point is a maximum over the remaining parameters (its free gradient vanishes, and no
perturbation of them does better); bad indices and values are refused by name.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import GLMM_LOGLIK_ATOL, PROFILE_AT_MLE_ATOL
from test_glmm_decay import _units  # the 17 x 20 council decay data as engine units

from steppedwedge._core.families import make_family
from steppedwedge._core.laplace import PHI_MAX, UnitData, fit_glmm_core, modes


@pytest.fixture(scope="module", params=["poisson", "negative_binomial"])
def mle(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    fam = make_family(request.param)
    ud, beta0, sig0 = _units(request.param)
    core = fit_glmm_core(ud, fam, beta0, sig0, math.log(10.0))
    assert core.converged and core.free.all()
    return ud, fam, beta0, sig0, core


@pytest.mark.parametrize("j", [0, 1, 2])
def test_fixing_at_the_mle_returns_the_mle(mle, j: int) -> None:  # type: ignore[no-untyped-def]
    ud, fam, beta0, sig0, core = mle
    held = fit_glmm_core(ud, fam, beta0, sig0, math.log(10.0), fixed={j: core.sigma[j]})
    assert held.sigma[j] == core.sigma[j]
    assert not held.free[ud.x.shape[2] + j] and held.free.sum() == core.free.sum() - 1
    assert abs(held.loglik - core.loglik) <= 1e-8
    np.testing.assert_allclose(held.beta, core.beta, rtol=0, atol=PROFILE_AT_MLE_ATOL)
    np.testing.assert_allclose(held.sigma, core.sigma, rtol=0, atol=PROFILE_AT_MLE_ATOL)


@pytest.mark.parametrize(("j", "factor"), [(0, 0.5), (1, 1.6), (2, 0.5)])
def test_fixing_elsewhere_gives_the_lower_profile(mle, j: int, factor: float) -> None:  # type: ignore[no-untyped-def]
    ud, fam, beta0, sig0, core = mle
    value = float(core.sigma[j] * factor)
    held = fit_glmm_core(ud, fam, beta0, sig0, math.log(10.0), fixed={j: value})
    p = ud.x.shape[2]
    assert held.converged and held.sigma[j] == value
    assert held.loglik < core.loglik - 1e-3
    # a maximum over the others: their gradient vanishes ...
    assert np.max(np.abs(held.grad[held.free])) < 1e-3
    # ... and perturbing them (a finite check of the Hessian's sign) does not do better
    alpha = held.alpha
    for k in np.flatnonzero(held.free):
        for h in (-1e-3, 1e-3):
            b, s, a = held.beta.copy(), held.sigma.copy(), alpha
            if k < p:
                b[k] += h
            elif k < p + ud.n_var:
                s[k - p] += h
            else:
                a += h
            assert modes(ud, fam, b, s, a).value <= held.loglik + GLMM_LOGLIK_ATOL


def test_fixing_the_nb_log_size(mle) -> None:  # type: ignore[no-untyped-def]
    ud, fam, beta0, sig0, core = mle
    if not fam.has_dispersion:
        with pytest.raises(ValueError, match=r"`fixed` index 3"):
            fit_glmm_core(ud, fam, beta0, sig0, fixed={3: 1.0})
        return
    same = fit_glmm_core(ud, fam, beta0, sig0, math.log(10.0), fixed={3: core.alpha})
    assert abs(same.loglik - core.loglik) <= 1e-8 and same.alpha == core.alpha
    other = fit_glmm_core(ud, fam, beta0, sig0, math.log(10.0), fixed={3: core.alpha - 1.0})
    assert other.alpha == core.alpha - 1.0 and other.loglik < core.loglik - 1e-3


@pytest.mark.parametrize(
    ("fixed", "match"),
    [
        ({5: 0.1}, r"`fixed` index 5 is not"),
        ({-1: 0.1}, r"`fixed` index -1 is not"),
        ({0: -0.2}, r"`fixed\[0\]` is a standard deviation"),
        ({2: PHI_MAX + 1.0}, r"`fixed\[2\]` is phi"),
        ({1: float("nan")}, r"`fixed\[1\]` must be finite"),
    ],
)
def test_bad_fixed_values_are_refused(fixed: dict[int, float], match: str) -> None:
    ud, beta0, sig0 = _units("poisson")
    with pytest.raises(ValueError, match=match):
        fit_glmm_core(ud, make_family("poisson"), beta0, sig0, fixed=fixed)


def test_no_fixed_is_the_unconstrained_fit() -> None:
    """``fixed=None`` and ``fixed={}`` are the ordinary fit, bit for bit."""
    ud, beta0, sig0 = _units("poisson")
    fam = make_family("poisson")
    a = fit_glmm_core(ud, fam, beta0, sig0)
    b = fit_glmm_core(ud, fam, beta0, sig0, fixed={})
    assert a.loglik == b.loglik
    np.testing.assert_array_equal(a.hessian, b.hessian)


# ------------------------------------------------------------------ the ridge probe


def _audit_units(seed: int) -> tuple[UnitData, np.ndarray, np.ndarray]:
    """One null trial of the count audit (tests/calibration_counts.py) in engine units."""
    from calibration_counts import council_scenario

    d = council_scenario(17).draw(0.0, seed).sort_values(["council", "quarter"])
    n_i, n_t = 17, 20
    q = pd.factorize(d["quarter"], sort=True)[0]
    x = np.column_stack([np.ones(len(d)), np.eye(n_t)[q][:, 1:], d["treated"]])
    z = np.column_stack([np.ones(len(d)), np.eye(n_t)[q]])
    y = d["entries_into_care"].to_numpy(float)
    off = np.log(d["population_0_17"].to_numpy(float))
    ud = UnitData(
        y=y.reshape(n_i, n_t),
        n=np.ones((n_i, n_t)),
        offset=off.reshape(n_i, n_t),
        weight=np.ones((n_i, n_t)),
        x=x.reshape(n_i, n_t, -1),
        z=z.reshape(n_i, n_t, -1),
        comp=np.array([0] + [1] * n_t),
        n_comp=2,
        ar1=(1, n_t),
    )
    beta = np.linalg.lstsq(x, np.log(y + 0.5) - off, rcond=None)[0]
    return ud, beta, np.array([0.3, 0.1, math.atanh(0.6)])


def test_ridge_boundary_fit_is_the_boundary_maximum() -> None:
    """Audit trial 141: the optimum has no persistent variance (tau = 0, r ~ 0.99), reached
    through the ridge probe.  It must be the fit with tau held at 0 (same loglik to 1e-8) and
    a maximum in tau too: moving tau off 0 (others re-maximised) lowers the likelihood."""
    ud, beta0, sig0 = _audit_units(141)
    fam = make_family("poisson")
    core = fit_glmm_core(ud, fam, beta0, sig0)
    assert core.converged and core.sigma[0] == 0.0 and np.tanh(core.sigma[2]) > 0.98
    assert core.ridge_end  # reached by the probe, checked a maximum
    held = fit_glmm_core(ud, fam, beta0, sig0, fixed={0: 0.0})
    assert abs(held.loglik - core.loglik) <= 1e-8
    off = fit_glmm_core(ud, fam, core.beta, core.sigma, fixed={0: 0.05})
    assert off.loglik < core.loglik


def test_ridge_interior_fit_is_a_stationary_point() -> None:
    """Audit trial 154: a persistent variance on the same ridge (tau ~ 0.21, r ~ 0.99), where
    the probe's boundary is not a maximum and is rejected: the fit is interior, its free
    gradient vanishes and holding tau at 0 gives a lower likelihood."""
    ud, beta0, sig0 = _audit_units(154)
    fam = make_family("poisson")
    core = fit_glmm_core(ud, fam, beta0, sig0)
    assert core.converged and core.free.all() and core.sigma[0] > 0.1 and not core.ridge_end
    assert np.tanh(core.sigma[2]) > 0.98
    assert np.max(np.abs(core.grad)) < 1e-3
    held = fit_glmm_core(ud, fam, beta0, sig0, fixed={0: 0.0})
    assert held.loglik < core.loglik


def test_every_variance_parameter_held() -> None:
    """A cluster-intercept model with its only SD held: the profile maximises over beta
    alone (no variance columns to difference); at the MLE it is the MLE."""
    ud2, beta0, _ = _units("poisson")
    ud = UnitData(
        y=ud2.y,
        n=ud2.n,
        offset=ud2.offset,
        weight=ud2.weight,
        x=ud2.x,
        z=ud2.z[:, :, :1],
        comp=np.array([0]),
        n_comp=1,
    )
    fam = make_family("poisson")
    core = fit_glmm_core(ud, fam, beta0, np.array([0.3]))
    assert core.converged and core.free.all()
    held = fit_glmm_core(ud, fam, beta0, np.array([0.3]), fixed={0: core.sigma[0]})
    assert held.converged and not held.free[-1]
    assert abs(held.loglik - core.loglik) <= 1e-8
    np.testing.assert_allclose(held.beta, core.beta, rtol=0, atol=PROFILE_AT_MLE_ATOL)
    lower = fit_glmm_core(ud, fam, beta0, np.array([0.3]), fixed={0: 0.5 * core.sigma[0]})
    assert lower.converged and lower.loglik < core.loglik - 1e-3
