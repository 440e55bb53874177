"""``fit_glmm_spec``: the GLMM entry that ``sw.fit`` dispatches to, against the keyword entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import steppedwedge as sw
from steppedwedge.exceptions import OptionError
from steppedwedge.models.glmm import fit_glmm, fit_glmm_spec
from steppedwedge.models.spec import AnalysisSpec

DATA = pd.read_csv(
    Path(__file__).parent / "reference" / "glmm_decay" / "data" / "council_decay.csv"
)
ROLES = dict(outcome="count", cluster="council", period="quarter", treatment="treatment")


@pytest.mark.parametrize(
    "options",
    [
        dict(family="poisson", exposure="pop", random="nested+decay", vcov="cr2"),
        dict(family="negative_binomial", exposure="pop", random="cluster", dof="normal"),
        dict(family="poisson", exposure="pop", random="cluster", method="agq"),
        dict(family="poisson", exposure="pop", effect="tate", exposure_window=(1, 3)),
    ],
)
def test_spec_entry_equals_keyword_entry_and_sw_fit(options) -> None:
    numerics = {"n_quadrature": 5} if options.get("method") == "agq" else {}
    spec = AnalysisSpec.from_options(**ROLES, **options)
    via_spec = fit_glmm_spec(DATA, spec, **numerics)
    via_keywords = fit_glmm(DATA, **ROLES, **options, **numerics)
    via_fit = sw.fit(DATA, **ROLES, **options, **numerics)
    for other in (via_keywords, via_fit):
        pd.testing.assert_frame_equal(via_spec.tidy(), other.tidy(), check_exact=True)
        assert via_spec.messages == other.messages
        assert via_spec.variance_components == other.variance_components
        assert via_spec.method_label == other.method_label


def test_spec_defaults_resolved_for_the_glmm() -> None:
    spec = AnalysisSpec.from_options(**ROLES, family="poisson", exposure="pop", random="cluster")
    res = fit_glmm_spec(DATA, spec)
    assert (res.link, res.method, res.vcov) == ("log", "laplace", "model")
    assert res.df == DATA["council"].nunique() - 2  # dof=None: the "clusters" rule
    assert res.method_label == "GLMM (laplace)"
    lo, hi = res.conf_int()
    assert res.ratio == pytest.approx((np.exp(res.estimate), np.exp(lo), np.exp(hi)))


def test_glmm_options_checked_by_the_fitter() -> None:
    """The spec leaves the GLMM's own options (random, link of the family, agq) to the fitter."""
    base = dict(**ROLES, family="poisson", exposure="pop")
    for bad, match in (
        (dict(random="ar1"), "random"),
        (dict(link="logit"), "link='logit'"),
        (dict(method="agq", random="nested"), "agq"),
        (dict(dof="satterthwaite"), "dof"),
    ):
        spec = AnalysisSpec.from_options(**base, **bad)
        with pytest.raises(OptionError, match=match):
            fit_glmm_spec(DATA, spec)
    with pytest.raises(OptionError, match="n_quadrature"):
        fit_glmm_spec(DATA, AnalysisSpec.from_options(**base), n_quadrature=9)
    # the shared ones are the spec's: refused before any fitter runs
    with pytest.raises(OptionError, match="decay_scale"):
        AnalysisSpec.from_options(**base, random="nested+decay", decay_scale="time")
