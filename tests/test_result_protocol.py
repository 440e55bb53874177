"""Every estimation result follows one protocol: the ``EstimationResult`` base.

Parametrised over every ``sw.fit`` method and the permutation and pooled results.  For each:
``summary()`` renders text and HTML (``str`` and ``_repr_html_`` are those renderings);
``tidy()`` has the ``TIDY_COLUMNS`` and its estimand row equals ``estimate``,
``std_error`` and ``conf_int()``; ``tidy(exponentiate=True)`` is ``exp`` of the link
scale (standard errors unchanged) for log/logit links and an ``OptionError`` naming the
link for identity links; ``ratio`` is ``exp`` of the estimate and interval or None;
``with_vcov`` either returns a new result of the same class with the same estimate and a
recomputed standard error, or raises ``OptionError`` with a message; ``method_label`` is a
non-empty string; ``plot()`` returns an Axes.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from tests._tolerances import EXACT  # noqa: E402

import steppedwedge as sw  # noqa: E402
from steppedwedge.exceptions import OptionError, SteppedWedgeWarning  # noqa: E402
from steppedwedge.results import RATIO_LINKS, TIDY_COLUMNS, EstimationResult  # noqa: E402

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")


def _trial(seed: int = 7, n_per_cell: int = 6) -> pd.DataFrame:
    """A stepped wedge of 12 clusters x 5 periods: Gaussian rows and count/binomial cells."""
    rng = np.random.default_rng(seed)
    design = sw.Design.stepped_wedge(4, 3)
    rows = []
    for i, treated in enumerate(design.matrix):
        a = rng.normal(0, 0.3)
        for j, x in enumerate(treated):
            lam = 30.0 * math.exp(a + 0.05 * j - 0.25 * x)
            events = int(rng.poisson(lam))
            for _ in range(n_per_cell):
                y = a + 0.1 * j + 0.4 * x + rng.normal()
                rows.append((i, j, float(x), y, events, 1000, 60, min(events, 60)))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y", "count", "pop", "n", "ev"])


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return _trial()


@pytest.fixture(scope="module")
def cells(rows: pd.DataFrame) -> pd.DataFrame:
    first: pd.DataFrame = rows.groupby(["c", "t"], as_index=False).first()
    return first


COUNTS = dict(outcome="count", family="poisson", exposure="pop")
BINARY = dict(outcome="ev", family="binomial", trials="n")

#: id -> (data kind, sw.fit options, another vcov for with_vcov or None if unsupported)
CASES: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "reml": ("rows", dict(method="reml"), "cr2"),
    "ml": ("rows", dict(method="ml"), "cr0"),
    "laplace": ("cells", dict(COUNTS, method="laplace", random="cluster"), "cr2"),
    # robust variances need the Laplace scores: AGQ refuses (an OptionError with a message)
    "agq": ("cells", dict(BINARY, method="agq", random="cluster", n_quadrature=5), None),
    "gee": ("cells", dict(COUNTS, method="gee"), "model"),
    "cluster-summary": ("cells", dict(COUNTS, method="cluster-summary"), "model"),
    "fixed-effects": ("cells", dict(COUNTS, method="fixed-effects"), "cr0"),
    "efficient-staggered": ("cells", dict(method="efficient-staggered"), None),
    "callaway-santanna": ("cells", dict(method="callaway-santanna"), None),
    "sun-abraham": ("cells", dict(method="sun-abraham"), None),
    "imputation": ("cells", dict(method="imputation"), None),
    "vertical": ("cells", dict(method="vertical", n_permutations=99, rng=1), None),
    "hughes": ("cells", dict(method="hughes", n_permutations=99, rng=1), None),
    "synthetic-control": (
        "cells",
        dict(method="synthetic-control", n_permutations=19, rng=1),
        None,
    ),
    "crossover": ("cells", dict(method="crossover", n_permutations=99, rng=1), None),
}


def _fit(case: str, rows: pd.DataFrame, cells: pd.DataFrame) -> EstimationResult:
    kind, options, _ = CASES[case]
    data = rows if kind == "rows" else cells
    return sw.fit(data, **{**ROLES, **options})


def _permutation(cells: pd.DataFrame) -> EstimationResult:
    res: EstimationResult = sw.permutation_test(
        cells, **ROLES, n_permutations=99, rng=3, confidence_level=0.95
    )
    return res


def _pooled(rows: pd.DataFrame) -> EstimationResult:
    fits = [sw.fit(_trial(seed), **ROLES) for seed in (1, 2, 3)]
    res: EstimationResult = sw.pool(fits)
    return res


@pytest.fixture(scope="module")
def results(rows: pd.DataFrame, cells: pd.DataFrame) -> dict[str, EstimationResult]:
    with warnings.catch_warnings():  # small-sample notes are not what is tested here
        warnings.simplefilter("ignore", SteppedWedgeWarning)
        out = {case: _fit(case, rows, cells) for case in CASES}
        out["permutation"] = _permutation(cells)
        out["pooled"] = _pooled(rows)
    return out


ALL = [*CASES, "permutation", "pooled"]


@pytest.mark.parametrize("case", ALL)
def test_is_estimation_result_with_label(case: str, results: dict[str, EstimationResult]) -> None:
    res = results[case]
    assert isinstance(res, EstimationResult), type(res)
    assert isinstance(res.method_label, str) and res.method_label.strip()


@pytest.mark.parametrize("case", ALL)
def test_summary_renders(case: str, results: dict[str, EstimationResult]) -> None:
    res = results[case]
    summary = res.summary()
    text, html = summary.as_text(), summary.as_html()
    assert text.strip() and "<" in html
    assert str(res) == text
    assert res._repr_html_() == html


@pytest.mark.parametrize("case", ALL)
def test_tidy_estimand_row_matches(case: str, results: dict[str, EstimationResult]) -> None:
    res = results[case]
    table = res.tidy()
    assert tuple(table.columns[: len(TIDY_COLUMNS)]) == TIDY_COLUMNS
    row = table.loc[table["term"] == res.estimand]
    assert len(row) == 1, (res.estimand, table["term"].tolist())
    got = row.iloc[0]
    lo, hi = res.conf_int()
    np.testing.assert_allclose(
        [got["estimate"], got["conf_low"], got["conf_high"]], [res.estimate, lo, hi], **EXACT
    )
    np.testing.assert_allclose(got["std_error"], res.std_error, **EXACT, equal_nan=True)


@pytest.mark.parametrize("case", ALL)
def test_exponentiate_and_ratio(case: str, results: dict[str, EstimationResult]) -> None:
    res = results[case]
    if res.link in RATIO_LINKS:
        plain, expo = res.tidy(), res.tidy(exponentiate=True)
        for c in ("estimate", "conf_low", "conf_high"):
            np.testing.assert_allclose(expo[c], np.exp(plain[c]), **EXACT)
        np.testing.assert_allclose(expo["std_error"], plain["std_error"], **EXACT, equal_nan=True)
        lo, hi = res.conf_int()
        assert res.ratio is not None
        np.testing.assert_allclose(res.ratio, np.exp([res.estimate, lo, hi]), **EXACT)
    else:
        assert res.link == "identity", res.link
        with pytest.raises(OptionError, match="link='identity'"):
            res.tidy(exponentiate=True)
        assert res.ratio is None


@pytest.mark.parametrize("case", ALL)
def test_with_vcov(case: str, results: dict[str, EstimationResult]) -> None:
    res = results[case]
    other = CASES[case][2] if case in CASES else None
    if other is None:
        # the base refuses for a result that cannot recompute its variance; AGQ says why
        why = "needs the Laplace fit" if case == "agq" else r"with_vcov\(\) is not available for"
        with pytest.raises(OptionError, match=why):
            res.with_vcov("cr2")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SteppedWedgeWarning)
        new = res.with_vcov(other)
    assert type(new) is type(res) and new is not res
    np.testing.assert_allclose(new.estimate, res.estimate, **EXACT)
    assert new.std_error > 0 and not math.isclose(new.std_error, res.std_error, rel_tol=1e-9)
    with pytest.raises(OptionError, match="`vcov` must be one of"), warnings.catch_warnings():
        warnings.simplefilter("ignore", SteppedWedgeWarning)
        res.with_vcov("no-such-estimator")


@pytest.mark.parametrize("case", ALL)
def test_plot_returns_axes(case: str, results: dict[str, EstimationResult]) -> None:
    ax = results[case].plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    plt.close("all")


def test_compare_labels_each_row_by_method_label(results: dict[str, EstimationResult]) -> None:
    table = sw.compare({case: results[case] for case in ALL})
    assert table["model"].tolist() == ALL
    assert table["method"].tolist() == [results[case].method_label for case in ALL]
    np.testing.assert_allclose(table["estimate"], [results[c].estimate for c in ALL], **EXACT)
