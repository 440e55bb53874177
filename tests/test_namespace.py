"""The public namespace: a snapshot of ``__all__`` and import hygiene."""

from __future__ import annotations

import subprocess
import sys

import steppedwedge as sw


def test_all_names_resolve() -> None:
    for name in sw.__all__:
        assert hasattr(sw, name), name


def test_import_does_not_import_matplotlib() -> None:
    code = "import sys, steppedwedge; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_core_imports_only_numpy_and_scipy() -> None:
    code = (
        "import sys, importlib, pkgutil, steppedwedge._core as c\n"
        "before = set(sys.modules)\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module('steppedwedge._core.' + m.name)\n"
        "bad = [n for n in ('pandas', 'statsmodels', 'matplotlib') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    # Run in a fresh interpreter that imports only the _core package path.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # steppedwedge/__init__ may import pandas for the domain layer, so check the _core
    # source files themselves never name the forbidden packages.
    import pathlib

    core = pathlib.Path(sw.__file__).parent / "_core"
    for path in core.glob("*.py"):
        text = path.read_text()
        for forbidden in (
            "import pandas",
            "import statsmodels",
            "import matplotlib",
            "from pandas",
            "from statsmodels",
            "from matplotlib",
            "from ..",
        ):
            assert forbidden not in text, f"{path.name} must not contain {forbidden!r}"
    assert out.returncode == 0


def test_public_api_snapshot() -> None:
    # A deliberate change to the public API must update this list (and CHANGELOG.md).
    expected = {
        "Allocation",
        "AnalysisComparison",
        "AssuranceResult",
        "CellMap",
        "CellSummary",
        "ComparisonCouncils",
        "ConvergenceWarning",
        "DataError",
        "Design",
        "DesignEffect",
        "DesignError",
        "DesignSearchResult",
        "EstimatedVariance",
        "ExpectedPowerResult",
        "MissingDataWarning",
        "PowerCurve",
        "PowerResult",
        "SmallSampleWarning",
        "SolveError",
        "SteppedWedgeError",
        "SteppedWedgeWarning",
        "TrialData",
        "VarianceComponents",
        "VarianceEstimate",
        "__version__",
        "assurance",
        "cell_weights",
        "datasets",
        "design_effect",
        "estimate_variance",
        "expected_power",
        "information_content",
        "power",
        "power_curve",
        "power_grid",
        "randomise",
        "report",
        "search_designs",
        "solve_power",
        # analysis, simulation, design-based inference, real-trial workflow
        "ClusterSummaryResult",
        "CohortFrame",
        "EstimationResult",
        "FitResult",
        "FixedEffectsResult",
        "GEEResult",
        "GLMMResult",
        "PermutationResult",
        "PooledResult",
        "SimulatedPowerResult",
        "cohort_from_events",
        "compare",
        "compare_analyses",
        "comparison_councils",
        "fit",
        "permutation_test",
        "pool",
        "simulate",
        "simulate_power",
        "NullSimulationPlan",
        "null_simulation_plan",
        # errors of options (keyword arguments, config keys, CLI flags)
        "OptionError",
        # staggered-rollout estimators (method="efficient-staggered", ...)
        "StaggeredResult",
        # design-based estimators (method="vertical", "hughes", ...)
        "DesignBasedResult",
    }
    assert set(sw.__all__) == expected


def test_information_content_method_matches_function() -> None:
    d = sw.Design.stepped_wedge(4, 2)
    vc = sw.VarianceComponents.from_correlations(0.05, cac=0.7)
    a = d.information_content(variance=vc, cluster_size=15).values
    b = sw.information_content(d, variance=vc, cluster_size=15).values
    assert (a == b).all()
