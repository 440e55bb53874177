"""Self-consistency of the committed Gaussian LMM reference fixtures.

These tests do not run R and do not touch the library: they check that
``tests/reference/{lmm,rsteppedwedge}/cases.json`` parse, follow the fixture contract,
name datasets that exist, and that each dataset has the columns its case declares.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from _tolerances import EXACT_REL

REF = Path(__file__).resolve().parent / "reference"
FIXTURE_DIRS = [REF / "lmm", REF / "rsteppedwedge"]

REQUIRED_KEYS = {
    "name",
    "dataset",
    "random",
    "time",
    "effect",
    "method",
    "individual",
    "covariates",
    "r_formula",
    "fixef_names",
    "fixef",
    "fixef_se",
    "vcov",
    "loglik",
    "varcomp",
    "treatment_term",
    "satterthwaite",
    "kenward_roger",
    "tate",
}
VARCOMP_KEYS = {"tau2", "gamma2", "sigma2", "decay", "eta2", "rho", "psi2"}
RANDOM = {"cluster", "nested", "decay", "random-slope", "random-slope-corr"}
#: third-party originals kept only for provenance (the cases use a derived copy)
PROVENANCE_ONLY = {"rsteppedwedge_sw_data_example.csv"}
#: variables in an R formula that are not data columns
R_WORDS = {"y", "factor", "ar1", "cluster", "period"}


def _cases() -> list[tuple[Path, dict]]:
    out = []
    for d in FIXTURE_DIRS:
        path = d / "cases.json"
        if path.exists():
            out.extend((d, case) for case in json.loads(path.read_text()))
    return out


CASES = _cases()


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


def _columns(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def test_lmm_cases_present() -> None:
    names = [c["name"] for d, c in CASES if d.name == "lmm"]
    assert len(names) >= 20
    assert len(set(n for _, c in CASES for n in [c["name"]])) == len(CASES), "duplicate case names"


@pytest.mark.parametrize(("folder", "case"), CASES, ids=[c["name"] for _, c in CASES])
def test_case_is_self_consistent(folder: Path, case: dict) -> None:
    missing = REQUIRED_KEYS - case.keys()
    assert not missing, f"{case['name']}: missing keys {sorted(missing)}"
    assert case["random"] in RANDOM
    assert case["time"] in {"categorical", "linear"}
    assert case["effect"] in {"immediate", "eti"}
    assert case["method"] in {"reml", "ml"}
    assert set(case["varcomp"]) == VARCOMP_KEYS
    assert case["varcomp"]["sigma2"] > 0

    # the dataset exists and has the columns the case needs
    csv_path = folder / "data" / case["dataset"]
    assert csv_path.is_file(), f"{case['name']}: no dataset {csv_path}"
    header = _header(csv_path)
    needed = {"cluster", "period", "treatment", "y"}
    if case["individual"]:
        needed.add("individual")
    if case["effect"] == "eti":
        needed.add("exposure_time")
    if case["covariates"]:
        needed.update(v.strip() for v in case["covariates"].split("+"))
    formula_vars = set(re.findall(r"[A-Za-z_][A-Za-z_0-9.]*", case["r_formula"])) - R_WORDS
    needed.update(
        v
        for v in formula_vars
        if v not in {"treatment", "individual", "exposure_time"} and not v.isdigit()
    )
    assert needed <= set(header), f"{case['name']}: {csv_path.name} lacks {needed - set(header)}"

    # numeric blocks have matching shapes; SEs are the root diagonal of vcov
    p = len(case["fixef_names"])
    beta = np.asarray(case["fixef"], dtype=float)
    se = np.asarray(case["fixef_se"], dtype=float)
    vcov = np.asarray(case["vcov"], dtype=float)
    assert beta.shape == (p,) and se.shape == (p,) and vcov.shape == (p, p)
    np.testing.assert_allclose(vcov, vcov.T, rtol=0, atol=EXACT_REL * np.abs(vcov).max())
    np.testing.assert_allclose(se, np.sqrt(np.diag(vcov)), rtol=EXACT_REL)

    if case["effect"] == "eti":
        terms = case["treatment_term"]
        assert all(t in case["fixef_names"] for t in terms)
        tate = case["tate"]
        w = np.isin(case["fixef_names"], terms) / len(terms)
        np.testing.assert_allclose(tate["estimate"], w @ beta, rtol=EXACT_REL)
        np.testing.assert_allclose(tate["se"], np.sqrt(w @ vcov @ w), rtol=EXACT_REL)
    else:
        assert case["treatment_term"] in case["fixef_names"]
        assert case["tate"] is None


@pytest.mark.parametrize(
    "folder", [d for d in FIXTURE_DIRS if (d / "data").is_dir()], ids=lambda d: d.name
)
def test_datasets_are_stepped_wedge(folder: Path) -> None:
    for path in sorted((folder / "data").glob("*.csv")):
        if path.name in PROVENANCE_ONLY:
            continue
        cols = _columns(path)
        assert {"cluster", "period", "treatment", "y"} <= cols.keys(), path.name
        assert np.all(cols["cluster"] == np.round(cols["cluster"])), path.name
        periods = np.unique(cols["period"])
        np.testing.assert_array_equal(periods, np.arange(1, len(periods) + 1), err_msg=path.name)
        assert set(np.unique(cols["treatment"])) <= {0.0, 1.0}, path.name
        assert np.all(np.isfinite(cols["y"])), path.name
        # treatment never switches off within a cluster
        for c in np.unique(cols["cluster"]):
            sel = cols["cluster"] == c
            order = np.argsort(cols["period"][sel], kind="stable")
            assert np.all(np.diff(cols["treatment"][sel][order]) >= 0), f"{path.name} cluster {c}"
