"""``AnalysisSpec``: the shared options of ``sw.fit`` validated once, with the same messages.

Each refusal is checked through the spec and through ``sw.fit`` (the spec is the only place
that raises it, so both must give the exact message); ``replace()`` re-validates and
re-resolves defaults; ``trial_data()`` equals ``TrialData.from_frame`` with the roles.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import steppedwedge as sw
from steppedwedge.data import TrialData
from steppedwedge.exceptions import OptionError
from steppedwedge.models.spec import METHODS, AnalysisSpec

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")


@pytest.fixture
def panel() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = [
        (i, j, float(j > i % 3), int(rng.poisson(20)), 1000 + 10 * i, rng.normal())
        for i in range(6)
        for j in range(4)
    ]
    return pd.DataFrame(rows, columns=["c", "t", "x", "n", "pop", "y"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"family": "normal"}, "`family` must be one of 'gaussian', 'binomial', 'poisson', "
         "'negative_binomial'; got 'normal'."),
        ({"method": "bayes"}, "`method` must be one of 'reml', "),
        ({"method": "laplace"}, "method='laplace' is for non-Gaussian mixed models; Gaussian "
         "outcomes use method='reml' (default) or 'ml', or method='gee' / 'cluster-summary'."),
        ({"family": "poisson", "method": "ml"}, "method='ml' is for Gaussian outcomes; "
         "family='poisson' mixed models use method='laplace' (default) or 'agq'"),
        ({"link": "log"}, "Gaussian mixed models use the identity link; got link='log'."),
        ({"trials": "n"}, "`trials` is for count or binomial outcomes; it cannot be used with "
         "family='gaussian'."),
        ({"exposure": "pop", "method": "ml"}, "`exposure` is for count or binomial outcomes"),
        ({"decay_scale": "days"}, "`decay_scale` must be one of 'period', 'time'; got 'days'."),
        ({"decay_scale": "time", "method": "gee"}, "`decay_scale='time'` is available for mixed "
         "models (method='reml', 'ml', 'laplace' or 'agq') only; got method='gee'."),
        ({"decay_scale": "time"}, "`decay_scale='time'` scales a decaying correlation; "
         "random='nested' has none."),
        ({"decay_scale": "time", "random": "decay"}, "`decay_scale='time'` needs `design=`"),
        ({"method": "fixed-effects", "individual": "id"}, "`individual` and `design` are not "
         "used by method='fixed-effects'; drop them."),
        ({"method": "fixed-effects", "family": "poisson", "link": "sqrt"}, "method="
         "'fixed-effects' uses the canonical link of family='poisson'; got link='sqrt'."),
        ({"method": "fixed-effects", "family": "binomial", "trials": "n"}, "method="
         "'fixed-effects' needs individual binary rows; `trials`"),
        ({"method": "sun-abraham", "random": "cluster", "dof": "normal"}, "`random`, `dof` "
         "do(es) not apply to method='sun-abraham' (a design-based estimator on cluster-period "
         "summaries); use `estimand=` / `event_times=` instead."),
        ({"method": "vertical", "offset": "o"}, "`offset` do(es) not apply to method='vertical' "
         "(a design-based estimator on cluster-period summaries with randomisation inference)"),
        ({"method": "fixed-effects", "family": "binomial", "link": "identity"}, "method="
         "'fixed-effects' uses the canonical link of family='binomial'; got link='identity'."),
        ({"method": "fixed-effects", "random": "cluster", "time": "linear"}, "`random`, "
         "`time` do(es) not apply to method='fixed-effects' (a GLM with cluster and period "
         "fixed effects); leave them at their defaults."),
        ({"method": "cluster-summary", "covariates": "age", "effect": "eti"}, "`covariates`, "
         "`effect` do(es) not apply to method='cluster-summary' (a regression of "
         "cluster-period summaries on treatment and period)"),
        ({"method": "cluster-summary", "knots": [1.5]}, "`knots` do(es) not apply to method="
         "'cluster-summary'"),
    ],
)  # fmt: skip
def test_refusals_same_message_in_spec_and_fit(
    panel: pd.DataFrame, options: dict[str, str], message: str
) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        AnalysisSpec.from_options(**ROLES, **options)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=re.escape(message)):
        sw.fit(panel, **ROLES, **options)  # type: ignore[arg-type]


def test_default_link_per_method() -> None:
    # staggered estimators model binary outcomes as risk differences; the others use logit
    staggered = AnalysisSpec.from_options(**ROLES, family="binomial", method="sun-abraham")
    assert staggered.link == "identity"
    for method in ("laplace", "gee", "vertical", "fixed-effects", "cluster-summary"):
        spec = AnalysisSpec.from_options(**ROLES, family="binomial", method=method)
        assert spec.link == "logit", method
    gaussian_fe = AnalysisSpec.from_options(**ROLES, method="fixed-effects", link="identity")
    assert gaussian_fe.link == "identity"


def test_staggered_accepts_offset_but_design_based_does_not() -> None:
    # the two summary families differ in exactly one option, as before the spec existed
    spec = AnalysisSpec.from_options(**ROLES, method="imputation", offset="o")
    assert spec.offset == "o"
    with pytest.raises(OptionError, match="`offset`"):
        AnalysisSpec.from_options(**ROLES, method="hughes", offset="o")


@pytest.mark.parametrize(
    ("family", "link", "method"),
    [
        ("gaussian", "identity", "reml"),
        ("binomial", "logit", "laplace"),
        ("poisson", "log", "laplace"),
        ("negative_binomial", "log", "laplace"),
    ],
)
def test_defaults_resolved_per_family(family: str, link: str, method: str) -> None:
    spec = AnalysisSpec.from_options(**ROLES, family=family)
    assert (spec.link, spec.method, spec.link_given, spec.method_given) == (
        link,
        method,
        None,
        None,
    )
    assert spec.method in METHODS


def test_replace_revalidates_and_reresolves_defaults() -> None:
    spec = AnalysisSpec.from_options(**ROLES, family="poisson", exposure="pop")
    binary = spec.replace(family="binomial", exposure=None, trials="n")
    assert (binary.link, binary.method, binary.trials) == ("logit", "laplace", "n")
    assert spec.family == "poisson"  # frozen: the original is unchanged
    # an explicit method stays explicit, so it is re-checked against the new family
    agq = spec.replace(method="agq")
    with pytest.raises(OptionError, match="method='agq' is for non-Gaussian"):
        agq.replace(family="gaussian", exposure=None)
    with pytest.raises(OptionError, match=r"no option\(s\) \['bogus'\]"):
        spec.replace(bogus=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.family = "gaussian"  # type: ignore[misc]


def test_spec_equality_pickle_and_roles() -> None:
    a = AnalysisSpec.from_options(
        **ROLES, family="poisson", exposure="pop", time="spline", knots=[1.5]
    )
    b = pickle.loads(pickle.dumps(a))
    assert a == b and hash(a) == hash(b)
    assert a.knots == (1.5,)
    assert a.roles() == {
        "outcome": "y",
        "cluster": "c",
        "period": "t",
        "treatment": "x",
        "individual": None,
        "exposure": "pop",
        "offset": None,
        "trials": None,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"knots": [2.0]}, "`knots` is used only with time='spline'; got time='categorical'"),
        (
            {"method": "gee", "exposure_window": (0, 1)},
            "`exposure_window` is used only with effect='eti' or 'tate'; got effect='immediate'",
        ),
        (
            {"effect": "tate", "exposure_time": 1},
            "`exposure_time` is used only with effect='pte'; got effect='tate'",
        ),
    ],
)
def test_effect_and_time_options_are_refused_where_nothing_reads_them(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        AnalysisSpec.from_options(**ROLES, **options)  # type: ignore[arg-type]


def test_effect_and_time_options_are_kept_where_they_are_read() -> None:
    spec = AnalysisSpec.from_options(**ROLES, time="spline", knots=[2.0])
    assert spec.knots == (2.0,)
    spec = AnalysisSpec.from_options(**ROLES, effect="tate", exposure_window=(1, 2))
    assert spec.exposure_window == (1, 2)
    spec = AnalysisSpec.from_options(**ROLES, effect="pte", exposure_time=1)
    assert spec.exposure_time == 1


def test_trial_data_equals_from_frame(panel: pd.DataFrame) -> None:
    roles = {**ROLES, "outcome": "n"}
    spec = AnalysisSpec.from_options(**roles, family="poisson", exposure="pop")
    got = spec.trial_data(panel, kind="aggregate")
    want = TrialData.from_frame(
        panel,
        outcome="n",
        cluster="c",
        period="t",
        treatment="x",
        family="poisson",
        exposure="pop",
        kind="aggregate",
    )
    assert got.n_clusters == want.n_clusters and got.n_periods == want.n_periods
    pd.testing.assert_frame_equal(got.frame, want.frame)
    assert list(panel.columns) == ["c", "t", "x", "n", "pop", "y"]  # caller's frame untouched


def test_describe_names_model() -> None:
    spec = AnalysisSpec.from_options(**ROLES, family="binomial", random="cluster")
    assert spec.describe() == (
        "binomial GLMM (laplace), link='logit', random='cluster', time='categorical', "
        "effect='immediate'"
    )
    assert "cluster-period summaries" in spec.replace(method="vertical", random="nested").describe()


#: Fragments of every refusal ``AnalysisSpec.from_options`` owns.
SPEC_ONLY_MESSAGES = (
    "is for non-Gaussian mixed models",
    "is for Gaussian outcomes; family=",
    "Gaussian mixed models use the identity link",
    "is for count or binomial outcomes; it cannot be used with",
    "is available for mixed models",
    "scales a decaying correlation",
    "are not used by method='fixed-effects'",
    "uses the canonical link of family",
    "needs individual binary rows",
    "do(es) not apply to method",
)


def test_shared_refusals_are_raised_in_one_place() -> None:
    # validated once: no fitter (or anything else) repeats a check the spec owns
    root = Path(sw.__file__).resolve().parent
    spec_path = root / "models" / "spec.py"
    for fragment in SPEC_ONLY_MESSAGES:
        assert fragment in spec_path.read_text(), fragment
        elsewhere = [
            str(p.relative_to(root))
            for p in root.rglob("*.py")
            if p != spec_path and fragment in p.read_text()
        ]
        assert not elsewhere, (fragment, elsewhere)
