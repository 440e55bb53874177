"""``sw.fit`` routes each method to its fitter with the same answer as calling it directly."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from tests._tolerances import EXACT

import steppedwedge as sw
import steppedwedge.models.spec as spec_module
from steppedwedge.data import TrialData
from steppedwedge.exceptions import OptionError
from steppedwedge.models.fit import FITTERS, _entry
from steppedwedge.models.fixed_effects import fit_fixed_effects
from steppedwedge.models.spec import METHODS
from steppedwedge.results import EstimationResult

ARCHITECTURE = "docs/explanation/architecture.rst"


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


# ---------------------------------------------------------------- the registry
def test_every_method_has_a_fitter_entry() -> None:
    assert set(FITTERS) == set(METHODS)
    assert all(callable(entry) for entry in FITTERS.values())


def _doc_example() -> tuple[str, str]:
    """The worked example of architecture.rst: the module's code and its registry line."""
    text = (Path(__file__).resolve().parents[1] / ARCHITECTURE).read_text()
    block = text.split("models/mean_difference.py``", 1)[1].split(".. code-block:: python", 1)[1]
    code_lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("      "):
            break
        code_lines.append(line)
    registry = re.search(r'^\s*("mean-difference": _entry\(.*\)),\s*$', text, re.M)
    assert registry is not None
    return textwrap.dedent("\n".join(code_lines)), registry.group(1)


def test_documented_example_estimator_is_one_module_and_one_line(
    monkeypatch: pytest.MonkeyPatch, binary_trial: pd.DataFrame
) -> None:
    code, line = _doc_example()
    module = types.ModuleType("steppedwedge.models.mean_difference")
    module.__package__ = "steppedwedge.models"
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "architecture.rst", "exec"), module.__dict__)
    name, entry = line.split(": ", 1)
    monkeypatch.setitem(FITTERS, eval(name), eval(entry, {"_entry": _entry}))
    monkeypatch.setattr(spec_module, "METHODS", (*METHODS, "mean-difference"))

    roles = dict(outcome="y", cluster="cluster", period="period", treatment="treated")
    res = sw.fit(binary_trial, **roles, method="mean-difference")
    # independent: the difference of treated and control cell means, by hand with pandas
    cells = binary_trial.groupby(["cluster", "period"])[["y", "treated"]].mean()
    on = cells["treated"] > 0
    assert_allclose(res.estimate, cells["y"][on].mean() - cells["y"][~on].mean(), **EXACT)
    assert isinstance(res, EstimationResult) and res.df == 6
    lo, hi = res.conf_int()
    assert lo < res.estimate < hi
    assert res.tidy()["term"].tolist() == ["treatment"]
    with pytest.raises(OptionError, match="with_vcov"):
        res.with_vcov("cr2")


def test_fixed_effects_rows_are_checked_once(
    monkeypatch: pytest.MonkeyPatch, binary_trial: pd.DataFrame
) -> None:
    calls = []
    original = TrialData.from_frame.__func__  # type: ignore[attr-defined]

    def counting(cls: type, *args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("outcome"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(TrialData, "from_frame", classmethod(counting))
    roles = dict(outcome="y", cluster="cluster", period="period", treatment="treated")
    sw.fit(binary_trial, **roles, family="binomial", method="fixed-effects")
    assert calls == ["y"]
