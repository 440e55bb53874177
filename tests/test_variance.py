"""VarianceComponents: conversions are exact inverses and inputs are validated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from tests._tolerances import EXACT, EXACT_REL, ZERO_ATOL_1E15

import steppedwedge as sw
from steppedwedge._core.covariance import decay_matrix

unit = st.floats(0.0, 0.99, allow_nan=False)


@pytest.mark.property
@given(icc=unit, cac=st.floats(0.0, 1.0), iac=unit, total=st.floats(0.1, 50.0))
def test_from_correlations_round_trip(icc: float, cac: float, iac: float, total: float) -> None:
    vc = sw.VarianceComponents.from_correlations(icc, cac=cac, iac=iac, total_variance=total)
    assert_allclose(vc.total_variance, total, rtol=EXACT_REL)
    assert_allclose(vc.icc, icc, rtol=EXACT_REL, atol=ZERO_ATOL_1E15)
    if icc * total >= np.finfo(float).tiny:  # a normal cluster variance keeps its split
        assert_allclose(vc.cac, cac, rtol=EXACT_REL, atol=ZERO_ATOL_1E15)
    else:  # subnormal: taken as exactly zero (see the test below)
        assert vc.tau2 == vc.gamma2 == 0.0
    assert_allclose(vc.iac, iac, rtol=EXACT_REL, atol=ZERO_ATOL_1E15)


@pytest.mark.parametrize("icc", [5e-324, 1e-310, 2e-308])
def test_from_correlations_subnormal_icc_is_zero(icc: float) -> None:
    # issue 14: icc=5e-324 gave tau2 = 0.5 * 5e-324 = 0 but gamma2 = 5e-324, so cac came back
    # as 0 instead of 0.5 (the hypothesis test failed at random).  A cluster variance below
    # the smallest normal double cannot hold a split; it is exactly 0, and cac reads 1.
    vc = sw.VarianceComponents.from_correlations(icc, cac=0.5, total_variance=1.0)
    assert vc.tau2 == 0.0 and vc.gamma2 == 0.0
    assert vc.icc == 0.0 and vc.cac == 1.0
    assert vc.total_variance == 1.0


def test_sigma2_zero_is_accepted_where_it_has_no_role() -> None:
    # issue 14: count families have no residual variance on the link scale
    vc = sw.VarianceComponents(sigma2=0.0, tau2=0.04, gamma2=0.01)
    assert vc.sigma2 == 0.0
    assert vc.icc == pytest.approx(1.0)
    assert vc.iac == 0.0
    assert np.isnan(sw.VarianceComponents(sigma2=0.0).icc)


def test_from_correlations_matches_swcrtdesign_conversion() -> None:
    # methods.md 3.1 (swCRTdesign manual): for given residual sigma2 and CAC < 1,
    # kappa2 = rho sigma2 (1 - r_C) / (1 - rho), tau2 = kappa2 r_C / (1 - r_C).
    icc, cac = 0.1, 0.6
    vc = sw.VarianceComponents.from_correlations(icc, cac=cac, total_variance=2.5)
    kappa2 = icc * vc.sigma2 * (1 - cac) / (1 - icc)
    tau2 = kappa2 * cac / (1 - cac)
    assert_allclose([vc.gamma2, vc.tau2], [kappa2, tau2], **EXACT)


def test_covariance_matches_dense_construction() -> None:
    vc = sw.VarianceComponents(sigma2=2.0, tau2=0.3, gamma2=0.2, decay=0.6, eta2=0.1, rho=0.5)
    m = np.array([[5.0, 8.0, 0.0, 4.0], [3.0, 3.0, 3.0, 3.0]])
    x = np.array([[0.0, 1.0, np.nan, 1.0], [0.0, 0.0, 0.5, 1.0]])
    cov = vc.covariance(m, treatment=x)
    r = decay_matrix(0.6, np.arange(4.0))
    for i in range(2):
        xi = np.nan_to_num(x[i])
        one = np.ones(4)
        with np.errstate(divide="ignore"):
            resid = np.where(m[i] > 0, 2.0 / m[i], 0.0)
        dense = (
            0.3 * np.outer(one, one)
            + 0.2 * r
            + 0.1 * np.outer(xi, xi)
            + 0.5 * np.sqrt(0.3 * 0.1) * (np.outer(one, xi) + np.outer(xi, one))
            + np.diag(resid)
        )
        obs = m[i] > 0
        expected = np.eye(4)
        expected[np.ix_(obs, obs)] = dense[np.ix_(obs, obs)]
        assert_allclose(cov[i], expected, **EXACT)


def test_cluster_correlation_is_cac_plus_decay() -> None:
    vc = sw.VarianceComponents(tau2=0.2, gamma2=0.6, decay=0.7)
    lags = np.arange(5.0)
    cov = vc.tau2 + vc.gamma2 * 0.7**lags
    assert_allclose(vc.cluster_correlation(lags), cov / (vc.tau2 + vc.gamma2), **EXACT)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma2": -1.0}, "sigma2"),
        ({"tau2": -0.1}, "tau2"),
        ({"gamma2": float("nan")}, "gamma2"),
        ({"rho": 1.5}, "rho"),
        ({"decay": 1.2}, "decay"),
        ({"decay": -0.1}, "decay"),
    ],
)
def test_invalid_components(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sw.VarianceComponents(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"icc": 1.2}, "icc"),
        ({"icc": 1.0}, "icc"),
        ({"icc": -0.1}, "icc"),
        ({"icc": 0.1, "cac": 1.1}, "cac"),
        ({"icc": 0.1, "iac": -0.2}, "iac"),
        ({"icc": 0.1, "total_variance": 0}, "total_variance"),
        ({"icc": 0.1, "decay": 2.0}, "decay"),
    ],
)
def test_invalid_correlations(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sw.VarianceComponents.from_correlations(**kwargs)


def test_frozen_and_with() -> None:
    vc = sw.VarianceComponents(tau2=0.1)
    with pytest.raises(AttributeError):
        vc.tau2 = 0.2  # type: ignore[misc]
    assert vc.with_(tau2=0.2).tau2 == 0.2
    with pytest.raises(ValueError, match="tau2"):
        vc.with_(tau2=-1)
