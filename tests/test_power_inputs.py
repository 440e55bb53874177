"""Bad input to power / solve_power: clear errors naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, SolveError
from steppedwedge.planning import power, solve_power
from steppedwedge.variance import VarianceComponents as VC

D = Design.stepped_wedge(3, 2)
OK = dict(effect=0.3, variance=VC(tau2=0.1), cluster_size=10)


def call(**changes: object):
    kw = dict(OK)
    kw.update(changes)
    return power(D, **kw)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (dict(cluster_size=np.ones(5)), "cluster_size"),
        (dict(cluster_size=np.ones((6, 3))), "cluster_size"),
        (dict(cluster_size=0), "cluster_size"),
        (dict(cluster_size=np.where(np.eye(6, 4) > 0, 0.0, 5.0)), "cluster 0, period 1"),
        (dict(weights=[0.5, 0.5]), "one value per exposure time"),
        (dict(weights=[0.5, 0.3, 0.1]), "sum to 1"),
        (dict(alpha=1.5), "alpha"),
        (dict(dof="kenward"), "dof"),
        (dict(dof=-3), "dof"),
        (dict(sampling="panel"), "sampling"),
        (dict(churn=0.5), "churn"),
        (dict(sampling="cohort", churn=1.5), "churn"),
        (dict(individual_decay=0.5), "individual_decay"),
        (dict(effect=float("nan")), "effect"),
        (dict(variance=0.1), "VarianceComponents"),
    ],
)
def test_bad_power_inputs(bad: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call(**bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(icc=1.2), "icc"),
        (dict(icc=0.1, cac=-0.1), "cac"),
        (dict(icc=0.1, iac=1.5), "iac"),
        (dict(icc=0.1, decay=1.5), "decay"),
    ],
)
def test_bad_correlations(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VC.from_correlations(**kwargs)


def test_negative_variance() -> None:
    with pytest.raises(ValueError, match="tau2"):
        VC(tau2=-0.1)


def test_unobserved_cells_may_have_any_size() -> None:
    x = np.array([[0, 1, 1], [0, 0, 1], [0, np.nan, 0]])
    size = np.array([[5, 5, 5], [5, 5, 5], [5, 0, 5]])
    res = power(x, effect=0.5, variance=VC(tau2=0.1), cluster_size=size)
    assert np.isnan(res.cluster_size[2, 1])


def test_not_estimable_eti_estimand() -> None:
    # exposure time 2 occurs only in period 3, where every observed cell has it: delta_2 is
    # confounded with the period-3 effect
    x = np.array([[0, 1, 1], [0, 1, 1], [0, 0, np.nan]])
    ok = power(x, effect=0.5, variance=VC(tau2=0.1), cluster_size=10, weights=[1.0, 0.0])
    assert ok.variance > 0
    with pytest.raises(DesignError, match="not estimable"):
        power(x, effect=0.5, variance=VC(tau2=0.1), cluster_size=10, weights=[0.0, 1.0])


def test_fractional_cells_with_eti_weights() -> None:
    d = Design.stepped_wedge(3, 1, transition_periods=1, transition="partial")
    with pytest.raises(DesignError, match="fractional"):
        power(d, effect=0.5, variance=VC(tau2=0.1), cluster_size=10, weights=[1, 0, 0])


def test_solve_errors() -> None:
    with pytest.raises(ValueError, match="solve_for"):
        solve_power(D, effect=0.3, variance=VC(), cluster_size=10, solve_for="alpha")
    with pytest.raises(ValueError, match="cluster_size"):
        solve_power(D, effect=0.3, variance=VC(), solve_for="clusters_per_sequence")
    with pytest.raises(ValueError, match="leave"):
        solve_power(D, effect=0.3, variance=VC(), cluster_size=3, solve_for="cluster_size")
    with pytest.raises(SolveError, match="not reached"):
        solve_power(D, effect=1e-4, variance=VC(tau2=0.1), cluster_size=10, max_value=4)
    with pytest.raises(ValueError, match="n_sequences"):
        solve_power(
            Design.parallel(2, 2),
            effect=0.3,
            variance=VC(),
            cluster_size=3,
            solve_for="n_sequences",
        )


def test_t_dof_rules() -> None:
    base = call()
    assert base.df is None
    rules = ("residual", "between-within", "containment")
    for rule in (*rules, *(f"{r}-individuals" for r in rules)):
        res = call(dof=rule)
        assert res.df is not None and res.df >= 1
        assert res.power < base.power
    # SteppedPower's rules on cluster-period means (6 clusters x 4 periods, p = 4 + 1):
    # residual I*T - p, containment I*T - I, between-within I - p
    assert call(dof="residual").df == 24 - 5
    assert call(dof="containment").df == 24 - 6
    assert call(dof="between-within").df == 6 - 5
    # individual-level counts: 6 x 4 x 10 individuals - (4 periods + 1)
    assert call(dof="residual-individuals").df == 240 - 5
    # containment-individuals with a random treatment effect: I - 2
    assert call(dof="containment-individuals", variance=VC(tau2=0.1, eta2=0.05)).df == 4
    assert call(dof=12).df == 12.0
    # t power with huge df tends to normal power
    assert abs(call(dof=1e9).power - base.power) < 1e-7


def test_treatment_correlation_errors() -> None:
    kw = dict(family="binomial", baseline=0.2, analysis="gee")
    with pytest.raises(ValueError, match="treatment_correlation"):
        call(treatment_correlation=(0.1, 0.1, 0.1), family="binomial", baseline=0.2)
    with pytest.raises(ValueError, match="treatment_correlation"):
        call(treatment_correlation=(0.1, 0.1), **kw)
    with pytest.raises(ValueError, match="treatment_correlation"):
        call(treatment_correlation=(0.1, 1.5, 0.1), **kw)
