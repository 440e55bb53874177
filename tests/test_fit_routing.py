"""``sw.fit`` routes each method to its fitter with the same answer as calling it directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from tests._tolerances import EXACT

import steppedwedge as sw
from steppedwedge.models.fixed_effects import fit_fixed_effects


@pytest.fixture
def binary_trial() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    design = sw.Design.stepped_wedge(4, 2)
    rows = []
    for i, row in enumerate(design.matrix):
        a = rng.normal(0, 0.3)
        for j, x in enumerate(row):
            for _ in range(40):
                age = rng.uniform(0, 17)
                eta = -2.0 + 0.3 * x + a + 0.05 * j + 0.02 * age
                rows.append((i, j + 1, int(x), age, int(rng.random() < 1 / (1 + np.exp(-eta)))))
    return pd.DataFrame(rows, columns=["cluster", "period", "treated", "age", "y"])


def test_fixed_effects_route_equals_direct_call(binary_trial: pd.DataFrame) -> None:
    kw = dict(
        outcome="y", cluster="cluster", period="period", treatment="treated", covariates="age"
    )
    routed = sw.fit(binary_trial, family="binomial", method="fixed-effects", **kw)
    direct = fit_fixed_effects(binary_trial, family="binomial", **kw)
    assert isinstance(routed, sw.FixedEffectsResult)
    assert_allclose(
        [routed.estimate, routed.std_error, routed.df],
        [direct.estimate, direct.std_error, direct.df],
        **EXACT,
    )


def test_fixed_effects_route_rejects_trials(binary_trial: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="trials"):
        sw.fit(
            binary_trial,
            outcome="y",
            cluster="cluster",
            period="period",
            treatment="treated",
            family="binomial",
            method="fixed-effects",
            trials="n",
        )


def test_unknown_method_lists_choices(binary_trial: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fixed-effects"):
        sw.fit(
            binary_trial,
            outcome="y",
            cluster="cluster",
            period="period",
            treatment="treated",
            method="bayes",
        )
