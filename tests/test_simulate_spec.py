"""The keyword-level data-generating model (``steppedwedge.simulate._spec.SimulationSpec``).

``sw.simulate`` and ``sw.simulate_power`` pass their data-generating keywords through
``SimulationSpec.pick`` (their public signatures are kept); these tests pin that the model's
fields and the public keywords stay the same set with the same defaults, that validation
resolves the defaults once (so re-validating a spec changes nothing), and that the
picklable ``evaluated`` copy used by re-randomised replicates draws exactly the same data.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.exceptions import OptionError
from steppedwedge.simulate import draw_frame
from steppedwedge.simulate._spec import SimulationSpec

VC = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.05, decay=0.8)
FIELDS = [f.name for f in dataclasses.fields(SimulationSpec)]


@pytest.mark.parametrize("function", [sw.simulate, sw.simulate_power])
def test_public_keywords_are_the_model_fields(function: object) -> None:
    """Every field is a keyword of the public function, with the documented default."""
    params = inspect.signature(function).parameters  # type: ignore[arg-type]
    assert set(FIELDS) <= set(params)
    options = inspect.signature(SimulationSpec.from_options).parameters
    assert list(options) == FIELDS  # from_options takes exactly the fields, in order
    for name in FIELDS:
        if options[name].default is inspect.Parameter.empty:
            continue  # required in simulate; optional (a dgp replaces it) in simulate_power
        assert params[name].default == options[name].default, name


def test_from_options_resolves_defaults_once() -> None:
    model = SimulationSpec.from_options(
        effect=0.3, variance=VC, cluster_size=5, family="binomial", baseline=0.2
    )
    assert (model.link, model.level, model.churn, model.sampling) == (
        "logit",
        "individual",
        1.0,
        "cross-sectional",
    )
    again = model.replace()
    assert {f: getattr(again, f) for f in FIELDS} == {f: getattr(model, f) for f in FIELDS}
    counts = SimulationSpec.from_options(
        effect=0.3, variance=VC, cluster_size=1000.0, family="poisson", baseline=0.01
    )
    assert (counts.link, counts.level) == ("log", "cluster-period")
    with pytest.raises(OptionError, match="`churn` applies to sampling='cohort' only"):
        model.replace(churn=0.5)


def test_pick_takes_exactly_the_model_keywords() -> None:
    given = {name: object() for name in [*FIELDS, "design", "rng", "n_sims"]}
    picked = SimulationSpec.pick(given)
    assert list(picked) == FIELDS
    assert all(picked[k] is given[k] for k in FIELDS)


def test_simulate_is_the_spec_drawn() -> None:
    design = Design.stepped_wedge(3, 2)
    kw = dict(effect=0.4, variance=VC, cluster_size=4, time_effects=lambda t: 0.1 * t)
    a = sw.simulate(design, rng=11, **kw)  # type: ignore[arg-type]
    arrays = SimulationSpec.from_options(**kw).arrays(design)
    b = draw_frame(arrays, np.random.default_rng(11))
    pd.testing.assert_frame_equal(a, b)


def test_evaluated_copy_is_picklable_and_draws_the_same_data() -> None:
    design = Design.stepped_wedge(3, 2, baseline_periods=1)
    model = SimulationSpec.from_options(
        effect=0.4,
        variance=VC,
        cluster_size=np.arange(1, 7) + 2,
        time_effects=lambda t: 0.1 * t,
        effect_curve=lambda e: np.minimum(e / 2.0, 1.0),
    )
    arrays = model.arrays(design)
    frozen = pickle.loads(pickle.dumps(model.evaluated(arrays)))
    assert not callable(frozen.time_effects) and not callable(frozen.effect_curve)
    again = frozen.arrays(design)
    for name in ("eta", "xc", "size", "observed", "treatment", "chol_period"):
        np.testing.assert_array_equal(getattr(again, name), getattr(arrays, name), err_msg=name)
    pd.testing.assert_frame_equal(
        draw_frame(again, np.random.default_rng(5)), draw_frame(arrays, np.random.default_rng(5))
    )
