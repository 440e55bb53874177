"""The command line: each command end to end, errors, and a deterministic report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import steppedwedge as sw
from steppedwedge.cli import main
from steppedwedge.datasets import load_council_characteristics


def test_design_from_start_dates_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "starts.csv"
    pd.DataFrame(
        {"cluster": ["a", "b", "c"], "start_date": ["2023-02-10", "2023-04-01", "2023-08-15"]}
    ).to_csv(csv, index=False)
    png, out_csv = tmp_path / "d.png", tmp_path / "d.csv"
    code = main(
        [
            "design",
            "--start-dates",
            str(csv),
            "--periods",
            "2023Q1/2023Q4",
            "--plot",
            str(png),
            "--csv",
            str(out_csv),
        ]
    )
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    long = pd.read_csv(out_csv)
    wide = long.pivot(index="cluster", columns="period", values="treatment")
    # quarter containing the start date is the first treated quarter
    assert wide.loc["a"].tolist() == [1, 1, 1, 1]
    assert wide.loc["b"].tolist() == [0, 1, 1, 1]
    assert wide.loc["c"].tolist() == [0, 0, 1, 1]
    assert "3 clusters" in capsys.readouterr().out


def test_design_requires_periods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "starts.csv"
    pd.DataFrame({"cluster": ["a"], "start_date": ["2023-02-10"]}).to_csv(csv, index=False)
    assert main(["design", "--start-dates", str(csv)]) == 2
    assert "--periods" in capsys.readouterr().err


def test_design_bad_date_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "starts.csv"
    pd.DataFrame({"cluster": ["a", "b"], "start_date": ["2023-02-10", "not a date"]}).to_csv(
        csv, index=False
    )
    assert main(["design", "--start-dates", str(csv), "--periods", "2023Q1/2023Q4"]) == 2
    err = capsys.readouterr().err
    assert "b" in err and "not a date" in err


def test_randomise_writes_a_reproducible_record(tmp_path: Path) -> None:
    chars = load_council_characteristics()
    csv = tmp_path / "clusters.csv"
    chars.to_csv(csv, index=False)
    outs = []
    for k in range(2):
        out = tmp_path / f"alloc{k}.json"
        code = main(
            [
                "randomise",
                "--clusters",
                str(csv),
                "--cluster-column",
                "council",
                "--waves",
                "7",
                "--strata",
                "region",
                "--seed",
                "7",
                "-o",
                str(out),
            ]
        )
        assert code == 0
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]
    # the CLI record is the library's record for the same inputs
    design = sw.Design.stepped_wedge(7, [3, 3, 3, 2, 2, 2, 2])
    lib = sw.randomise(design, chars.rename(columns={"council": "cluster"}), strata="region", rng=7)
    assert outs[0]["assignment"] == json.loads(lib.to_json())["assignment"]


def test_randomise_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "clusters.csv"
    pd.DataFrame({"name": ["a", "b", "c"]}).to_csv(csv, index=False)
    assert main(["randomise", "--clusters", str(csv), "--waves", "2", "--seed", "1"]) == 2
    assert "cluster" in capsys.readouterr().err


def test_report_example_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    assert main(["report", "--example", "councils", "-o", str(first)]) == 0
    assert main(["report", "--example", "councils", "-o", str(second)]) == 0
    names = sorted(p.name for p in first.iterdir())
    assert {"report.html", "report.md", "design.png", "allocation.json"} <= set(names)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    html = (first / "report.html").read_text()
    assert "data:image/png;base64," in html  # self-contained
    record = json.loads((first / "allocation.json").read_text())
    assert len(record["assignment"]) == 17


def test_python_dash_m_entry_point() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "steppedwedge", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"steppedwedge {sw.__version__}"


def test_init_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    examples = Path(__file__).resolve().parents[1] / "examples"
    target = tmp_path / "trial.toml"
    assert main(["report", "--init", str(examples / "council_counts.csv"), "-o", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# trial.toml for council_counts.csv")
    # the template is not valid until the seed is filled in, and says so on one line
    assert main(["validate", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "[randomisation] seed: is required" in err and "\n" not in err
    target.write_text(text.replace("# seed = 12345", "seed = 20230101"), encoding="utf-8")
    assert main(["validate", str(target)]) == 0
    assert "17 clusters in 7 waves" in capsys.readouterr().out


def test_report_when_a_council_never_went_live(tmp_path: Path) -> None:
    """A council that never started is analysed as allocated (ITT) or as it was (as-treated)."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    data = pd.read_csv(examples / "council_counts.csv")
    data.loc[data["council"] == "Council A", "treated"] = 0
    data.to_csv(tmp_path / "council_counts.csv", index=False)
    (tmp_path / "council_characteristics.csv").write_bytes(
        (examples / "council_characteristics.csv").read_bytes()
    )
    text = (examples / "trial.toml").read_text(encoding="utf-8")
    text = text.replace('analysis_population = "itt"', 'analysis_population = "as-treated"')
    text = text.replace(
        'sensitivity = ["fixed-effects", "gee", "cluster-summary", "permutation"]',
        'sensitivity = ["permutation"]',
    ).replace("n_permutations = 999", "n_permutations = 99")
    text += '\n[rollout]\nstart_dates = {"Council A" = "never"}\n'
    (tmp_path / "trial.toml").write_text(text, encoding="utf-8")
    assert main(["report", str(tmp_path / "trial.toml"), "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()


def test_randomise_from_a_config_writes_a_record_the_report_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = Path(__file__).resolve().parents[1] / "examples"
    for name in ("trial.toml", "council_counts.csv", "council_characteristics.csv"):
        (tmp_path / name).write_bytes((examples / name).read_bytes())
    record = tmp_path / "allocation.json"
    assert main(["randomise", "--config", str(tmp_path / "trial.toml"), "-o", str(record)]) == 0
    assert json.loads(record.read_text())["seed"] == 20230101
    text = (
        (tmp_path / "trial.toml")
        .read_text()
        .replace("seed = 20230101", 'record = "allocation.json"')
    )
    (tmp_path / "cited.toml").write_text(text)
    assert main(["validate", str(tmp_path / "cited.toml")]) == 0
    assert "allocation record allocation.json verified" in capsys.readouterr().out
    # the configuration says how to randomise: flags that contradict it are refused
    assert main(["randomise", "--config", str(tmp_path / "trial.toml"), "--seed", "5"]) == 2
    assert "differs from the seed 20230101" in capsys.readouterr().err
