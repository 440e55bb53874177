"""Run every ``examples/plot_*.py`` script and check the numbers it prints are sane.

The scripts write their figures to a temporary folder (``STEPPEDWEDGE_FIGURES``) and the
simulation example uses few replicates (``STEPPEDWEDGE_NSIMS``) so the module stays fast.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("plot_*.py")) if EXAMPLES.exists() else []

pytestmark = pytest.mark.examples


def _run(script: Path, tmp_path: Path, nsims: int = 20) -> str:
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        STEPPEDWEDGE_FIGURES=str(tmp_path),
        STEPPEDWEDGE_NSIMS=str(nsims),
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    return proc.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in output"
    return float(match.group(1))


def test_all_scripts_are_covered() -> None:
    if not SCRIPTS:  # pragma: no cover - e.g. an installed wheel
        pytest.skip("examples/ not present")
    names = {s.name for s in SCRIPTS}
    assert names >= {
        "plot_planning.py",
        "plot_analysis_gaussian.py",
        "plot_counts.py",
        "plot_simulation.py",
    }


@pytest.fixture
def script(request: pytest.FixtureRequest) -> Path:
    path = EXAMPLES / request.param
    if not path.exists():  # pragma: no cover
        pytest.skip("examples/ not present")
    return path


@pytest.mark.parametrize("script", ["plot_planning.py"], indirect=True)
def test_planning(script: Path, tmp_path: Path) -> None:
    out = _run(script, tmp_path)
    power = _number(r"Poisson GLMM power, the 17 councils: ([\d.]+)", out)
    assert 0.5 < power < 1
    assert 0 < _number(r"theta = 50 per council-quarter\): ([\d.]+)", out) < power
    # more councils per wave always help: the 'step 2' curve is increasing
    step2 = [float(v) for v in re.findall(r": ([\d.]+)", out.split("step 2:")[1].split("\n")[0])]
    assert step2 == sorted(step2)
    assert (tmp_path / "planning_power_curve.png").exists()
    assert (tmp_path / "planning_heatmap.png").exists()
    assert (tmp_path / "planning_assurance.png").exists()
    assert 0 < _number(r"assurance, 14 councils \(2 per wave\): ([\d.]+)", out) < 1


@pytest.mark.parametrize("script", ["plot_analysis_gaussian.py"], indirect=True)
def test_analysis_gaussian(script: Path, tmp_path: Path) -> None:
    out = _run(script, tmp_path)
    low = _number(r"rate ratio [\d.]+ \(95% CI ([\d.]+) to", out)
    high = _number(r"rate ratio [\d.]+ \(95% CI [\d.]+ to ([\d.]+)\)", out)
    assert low < 0.85 < high < 1  # the true rate ratio of the synthetic data is 0.85
    assert 0 < _number(r"cac: ([\d.]+)", out) < 1
    assert 0 < _number(r"power for RR 0.85 with the estimated components: ([\d.]+)", out) < 1


@pytest.mark.parametrize("script", ["plot_counts.py"], indirect=True)
def test_counts(script: Path, tmp_path: Path) -> None:
    out = _run(script, tmp_path)
    covered = re.findall(r"95% CI covers the true 0.85: (True|False)", out)
    assert len(covered) == 7 and all(c == "True" for c in covered)  # incl. the randomisation CI
    assert 0 < _number(r"permutation test: estimate -?[\d.]+, p = ([\d.]+)", out) < 0.2


@pytest.mark.parametrize("script", ["plot_simulation.py"], indirect=True)
def test_simulation(script: Path, tmp_path: Path) -> None:
    out = _run(script, tmp_path, nsims=20)
    assert 0 < _number(r"simulated power ([\d.]+)", out) <= 1
    assert 0 <= _number(r"type-I error ([\d.]+)", out) < 0.5
    assert 0 < _number(r"analytic power ([\d.]+)", out) < 1
