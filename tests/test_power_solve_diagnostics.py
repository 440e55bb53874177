"""solve_power, design effects, information content and cell weights."""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import EXACT_REL, LINALG, ZERO_ATOL_1E10, printed
from scipy.special import ndtri

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, SolveError
from steppedwedge.planning import (
    cell_weights,
    design_effect,
    information_content,
    power,
    solve_power,
)
from steppedwedge.variance import VarianceComponents as VC


# --------------------------------------------------------------------------- solve_power
@pytest.mark.reference
def test_sp01_solve_cluster_size() -> None:
    # SteppedPower vignette SP-01: smallest m = 50, power 0.8074
    res = solve_power(
        Design.stepped_wedge(3, 3), effect=0.2, variance=VC(sigma2=1.0), solve_for="cluster_size"
    )
    assert res.solution == 50 and res.solved_for == "cluster_size"
    assert abs(res.power - 0.8074) <= 5e-5


@pytest.mark.reference
def test_cp1_hooper_clusters_per_step() -> None:
    # clusterPower cpa.sw.normal help: m=50, K=5 steps, theta=1.5, ICC 0.2, CAC 0.8,
    # total variance 16, 1t power 0.8 -> 1.288772 clusters per step (uniroot, tol 2e-4)
    vc = VC.from_correlations(0.2, cac=0.8, total_variance=16)
    de = design_effect(n_sequences=5, cluster_size=50, icc=0.2, cac=0.8)
    # Var(g) = 4 sigma^2 DE / (5 g m); solve Phi(theta/se - z) = 0.8 for continuous g
    zz = (ndtri(0.975) + ndtri(0.8)) ** 2
    g_de = 4 * 16 * de.value / (5 * 50) * zz / 1.5**2
    assert abs(g_de - 1.288772) <= 2e-4
    # exact GLS with one cluster per sequence scales as 1/g
    v1 = power(Design.stepped_wedge(5), effect=1.5, variance=vc, cluster_size=50).variance
    assert abs(v1 * zz / 1.5**2 - 1.288772) <= 2e-4
    res = solve_power(
        Design.stepped_wedge(5), effect=1.5, variance=vc, cluster_size=50, one_tail=True
    )
    assert res.solution == 2 and res.design.n_clusters == 10
    below = power(Design.stepped_wedge(5), effect=1.5, variance=vc, cluster_size=50)
    assert below.power_one_tail < 0.8 <= res.power_one_tail


def test_solve_effect_inverts_power() -> None:
    d = Design.stepped_wedge(4, 2)
    vc = VC.from_correlations(0.05, cac=0.7)
    res = solve_power(d, variance=vc, cluster_size=20, solve_for="effect", power=0.9)
    assert abs(res.power - 0.9) < 1e-9
    # normal closed form check: power(theta) with theta the MDE
    check = power(d, effect=res.solution, variance=vc, cluster_size=20).power
    assert abs(check - 0.9) < 1e-9
    neg = solve_power(d, effect=-1, variance=vc, cluster_size=20, solve_for="effect", power=0.9)
    assert abs(neg.solution + res.solution) < 1e-9


def test_solve_effect_binary_unreachable() -> None:
    d = Design.stepped_wedge(2)
    with pytest.raises(SolveError, match="not reachable"):
        solve_power(
            d,
            variance=VC.from_correlations(0.3),
            cluster_size=2,
            family="binomial",
            link="identity",
            baseline=0.5,
            solve_for="effect",
            power=0.99,
        )


def test_solve_clusters_minimal_integer() -> None:
    d = Design.stepped_wedge(4, 1)
    vc = VC.from_correlations(0.05, cac=0.8)
    res = solve_power(d, effect=0.3, variance=vc, cluster_size=10)
    n = int(res.solution)
    assert res.power >= 0.8
    prev = power(Design.stepped_wedge(4, n - 1), effect=0.3, variance=vc, cluster_size=10)
    assert prev.power < 0.8


def test_solve_replicates_unequal_sequences() -> None:
    d = Design.stepped_wedge(3, [1, 2, 1])
    vc = VC.from_correlations(0.05)
    res = solve_power(d, effect=0.3, variance=vc, cluster_size=[10, 20, 20, 10])
    assert res.solved_for == "design_replicates"
    k = int(res.solution)
    assert res.design.n_clusters == 4 * k
    # information is additive over replicated clusters: Var(k) = Var(1) / k
    v1 = power(d, effect=0.3, variance=vc, cluster_size=[10, 20, 20, 10]).variance
    np.testing.assert_allclose(res.variance, v1 / k, **LINALG)


def test_solve_n_sequences() -> None:
    d = Design.stepped_wedge(3, 2)
    vc = VC.from_correlations(0.05)
    res = solve_power(d, effect=0.25, variance=vc, cluster_size=10, solve_for="n_sequences")
    s = int(res.solution)
    assert res.power >= 0.8
    assert (
        power(Design.stepped_wedge(s - 1, 2), effect=0.25, variance=vc, cluster_size=10).power < 0.8
    )


def test_solve_cluster_size_plateau_raises() -> None:
    d = Design.parallel(2, 2)
    with pytest.raises(SolveError, match="not reached"):
        solve_power(
            d,
            effect=0.1,
            variance=VC.from_correlations(0.3),
            solve_for="cluster_size",
            max_value=10_000,
        )


def test_solve_effect_zero_rejected() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        solve_power(Design.stepped_wedge(3), effect=0.0, variance=VC(), cluster_size=10)


# --------------------------------------------------------------------------- design effects
@pytest.mark.reference
@pytest.mark.parametrize(("k", "m", "expected"), [(4, 10, 0.535), (3, 20, 0.767), (4, 20, 0.572)])
def test_woertman_kristunas_table2(k: int, m: int, expected: float) -> None:
    # Kristunas et al. 2017 Trials 18:109, Table 2 (CV = 0, ICC = 0.05 inferred)
    de = design_effect(n_sequences=k, cluster_size=m, icc=0.05, method="woertman")
    assert abs(de.value - expected) <= 5e-4
    de_gls = design_effect(Design.stepped_wedge(k), cluster_size=m, icc=0.05, method="gls")
    np.testing.assert_allclose(de_gls.value, de.value, **LINALG)


def test_design_effect_from_design_and_conventions() -> None:
    d = Design.stepped_wedge(4, 3)
    de = design_effect(d, cluster_size=20, icc=0.05, cac=0.8)
    assert de.method == "hooper" and de.n_periods == 5
    v = power(d, effect=1, variance=VC.from_correlations(0.05, cac=0.8), cluster_size=20).variance
    np.testing.assert_allclose(de.variance(12, 20), v, **LINALG)
    assert de.total_sample_size(100) == pytest.approx(5 * 100 * de.value)
    with pytest.raises(DesignError):
        design_effect(Design.stepped_wedge(3, 1, extra_treated_periods=1), cluster_size=5, icc=0.1)
    with pytest.raises(ValueError, match="icc"):
        design_effect(n_sequences=3, cluster_size=5, icc=1.5)


# --------------------------------------------------------------------------- IC and weights
@pytest.mark.reference
def test_id8_information_content() -> None:
    # published-cases.md Part B ID-8 (Kasza & Forbes 2019 definition)
    vc = VC(sigma2=1.0, tau2=0.05 / 0.95)
    ic = information_content(Design.stepped_wedge(4), variance=vc, cluster_size=10)
    expected = np.array(
        [
            [1.0433, 1.3318, 1.0754, 1.0009, 1.0433],
            [1.0046, 1.1005, 1.1912, 1.0285, 1.0046],
            [1.0046, 1.0285, 1.1912, 1.1005, 1.0046],
            [1.0433, 1.0009, 1.0754, 1.3318, 1.0433],
        ]
    )
    np.testing.assert_allclose(ic.variance, 0.0563265306, atol=printed(10))
    np.testing.assert_allclose(ic.values, expected, atol=printed(4))


def test_information_content_brute_force_incomplete() -> None:
    # removing a cell = marking it unobserved and recomputing power from scratch
    nan = np.nan
    x = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, nan, 1], [0, 0, 0, 1]])
    vc = VC(sigma2=1.0, tau2=0.1, gamma2=0.05, decay=0.6)
    ic = information_content(x, variance=vc, cluster_size=7)
    full = power(x, effect=1, variance=vc, cluster_size=7).variance
    for i, j in [(0, 0), (1, 2), (3, 3), (2, 1)]:
        y = x.copy()
        y[i, j] = nan
        np.testing.assert_allclose(
            ic.values[i, j],
            power(y, effect=1, variance=vc, cluster_size=7).variance / full,
            **LINALG,
        )
    assert np.isnan(ic.values[2, 2])


@pytest.mark.reference
@pytest.mark.parametrize(
    ("icc", "expected"),
    [
        (0.0, (0.6, 0.3, 0.1, 0.0)),
        (0.05, (0.9762, 0.3, -0.0881, -0.1881)),
        (0.2, (0.9947, 0.3, -0.0974, -0.1974)),
    ],
)
def test_id7_exposure_time_weights(icc: float, expected: tuple[float, ...]) -> None:
    vc = VC(sigma2=1.0, tau2=icc / (1 - icc))
    cw = cell_weights(Design.stepped_wedge(4), variance=vc, cluster_size=100)
    assert cw.exposure_weights is not None
    np.testing.assert_allclose(cw.exposure_weights, expected, atol=printed(4))
    assert abs(cw.exposure_weights.sum() - 1) < 1e-10
    # within each period the weights sum to zero
    np.testing.assert_allclose(np.nansum(cw.values, axis=0), 0.0, atol=ZERO_ATOL_1E10)


def test_plots_return_axes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vc = VC.from_correlations(0.05)
    ic = information_content(Design.stepped_wedge(3), variance=vc, cluster_size=10)
    ax = ic.plot()
    assert ax.get_title() == "Information content"
    res = power(Design.stepped_wedge(3), effect=0.3, variance=vc, cluster_size=10)
    assert res.plot().get_title() == "GLS cell weights"
    plt.close("all")


def test_power_curves_match_power() -> None:
    from steppedwedge.planning import power_curve

    vc = VC.from_correlations(0.05, cac=0.8)
    c = power_curve(
        Design.stepped_wedge(4),
        vary="clusters_per_sequence",
        values=[1, 2, 3],
        effect=0.3,
        variance=vc,
        cluster_size=10,
    )
    for n, p in zip([1, 2, 3], c.power, strict=True):
        assert p == pytest.approx(
            power(Design.stepped_wedge(4, n), effect=0.3, variance=vc, cluster_size=10).power,
            rel=EXACT_REL,
        )
    assert np.all(np.diff(c.power) > 0)
    e = power_curve(
        Design.stepped_wedge(4), vary="effect", values=[0.1, 0.2], variance=vc, cluster_size=10
    )
    assert e.to_frame().shape == (2, 4)
    m = power_curve(
        Design.stepped_wedge(4), vary="cluster_size", values=[5, 50], effect=0.3, variance=vc
    )
    assert m.power[1] > m.power[0]
    with pytest.raises(ValueError, match="positive integers"):
        power_curve(
            Design.stepped_wedge(4),
            vary="clusters_per_sequence",
            values=[1.5],
            effect=0.3,
            variance=vc,
            cluster_size=10,
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert c.plot().get_xlabel() == "clusters per sequence"
    plt.close("all")


def test_summary_renderings() -> None:
    res = power(
        Design.stepped_wedge(3, 3),
        effect=0.2,
        variance=VC(tau2=0.01),
        cluster_size=50,
        dof="residual-individuals",
    )
    text = str(res)
    assert "t with 1795 df" in text and "power" in text
    assert "<table" in res._repr_html_()
    assert res.summary().as_markdown().startswith("**Analytic power**")
    assert "tabular" in res.summary().as_latex()
    tidy = res.tidy()
    assert list(tidy.columns) == [
        "term",
        "effect",
        "std_error",
        "statistic",
        "df",
        "alpha",
        "power",
        "power_one_tail",
    ]
    assert repr(res).startswith("PowerResult(power=")


@pytest.mark.parametrize(
    "kw",
    [
        dict(transition_periods=1),
        dict(baseline_periods=2, periods_per_step=2, extra_treated_periods=1),
        dict(transition_periods=1, transition="partial"),
    ],
)
def test_solve_n_sequences_keeps_layout(kw: dict[str, object]) -> None:
    vc = VC.from_correlations(0.05)
    res = solve_power(
        Design.stepped_wedge(4, 2, **kw),
        effect=0.2,
        variance=vc,
        cluster_size=20,
        solve_for="n_sequences",
    )
    s = int(res.solution)
    again = Design.stepped_wedge(s, 2, **kw)
    np.testing.assert_array_equal(
        np.nan_to_num(res.design.matrix, nan=-1), np.nan_to_num(again.matrix, nan=-1)
    )
    assert res.power >= 0.8
    assert (
        power(Design.stepped_wedge(s - 1, 2, **kw), effect=0.2, variance=vc, cluster_size=20).power
        < 0.8
    )
