"""Every user error of the command line is one line naming what to fix, with exit status 2.

One test per error class of issue 13 (a TOML syntax error, an unreadable or non-UTF-8 file, a
semicolon CSV, a misspelt column, ``-o`` pointing at a file, a bad seed, an unknown key or
table, a bad value, ...); internal errors exit 1 with a traceback only under ``--debug``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from _report_fixtures import COUNCIL_DATA_TOML, COUNCIL_TOML

from steppedwedge.cli import main
from steppedwedge.datasets import load_council_characteristics, load_councils

# sw.report is the report function; the subpackage is reached through importlib
report_pkg = importlib.import_module("steppedwedge.report")
TRIAL = COUNCIL_TOML + "\n" + COUNCIL_DATA_TOML


@pytest.fixture
def trial(tmp_path: Path) -> Path:
    load_council_characteristics().drop(columns=["wave", "start_date"]).to_csv(
        tmp_path / "clusters.csv", index=False
    )
    load_councils().to_csv(tmp_path / "councils.csv", index=False)
    path = tmp_path / "trial.toml"
    path.write_text(TRIAL, encoding="utf-8")
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    """Run the CLI, check the exit status and that stderr is exactly one line; return it."""
    assert main(args) == code
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err, err
    assert "Traceback" not in err
    return err


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)


def test_valid_config_validates(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(trial)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "17 clusters in 7 waves" in out


def test_toml_syntax_error(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(trial, "seed = 99", "seed = = 99")
    err = run(["report", str(trial)], capsys)
    assert f"{trial}:{line_of(trial, 'seed = =')}:" in err and "TOML syntax error" in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run(["report", str(tmp_path / "nope.toml")], capsys)
    assert "nope.toml" in err and "no such file" in err


def test_config_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run(["validate", str(tmp_path)], capsys)
    assert "is a folder" in err


def test_non_utf8_config(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial.write_bytes(TRIAL.replace("Test trial", "Caf\xe9").encode("latin-1"))
    err = run(["report", str(trial)], capsys)
    assert "not UTF-8" in err and "0xe9" in err


def test_non_utf8_csv(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clusters = trial.parent / "clusters.csv"
    clusters.write_bytes(clusters.read_bytes().replace(b"Council A", b"Conse\xefl A"))
    err = run(["validate", str(trial)], capsys)
    assert "clusters.csv is not UTF-8" in err and f":{line_of(trial, 'clusters =')}:" in err


def test_unreadable_csv(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (trial.parent / "councils.csv").write_text('a,b\n1,"2\n', encoding="utf-8")
    err = run(["validate", str(trial)], capsys)
    assert "[data] file" in err and "councils.csv" in err


def test_semicolon_csv(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = trial.parent / "councils.csv"
    load_councils().to_csv(data, index=False, sep=";")
    err = run(["validate", str(trial)], capsys)
    assert "semicolons" in err and 'delimiter = ";"' in err
    # and the key it names does fix it (the clusters file is then read with ";" too)
    load_council_characteristics().drop(columns=["wave", "start_date"]).to_csv(
        trial.parent / "clusters.csv", index=False, sep=";"
    )
    edit(trial, 'file = "councils.csv"', 'file = "councils.csv"\ndelimiter = ";"')
    assert main(["validate", str(trial)]) == 0


def test_misspelt_exposure_column(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(trial, 'exposure = "population_0_17"', 'exposure = "populaton_0_17"')
    err = run(["report", str(trial)], capsys)
    assert f":{line_of(trial, 'populaton')}: [data] exposure:" in err
    assert "'populaton_0_17'" in err and "did you mean 'population_0_17'" in err


def test_missing_data_file(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (trial.parent / "councils.csv").unlink()
    err = run(["validate", str(trial)], capsys)
    assert "[data] file" in err and "no such file" in err


def test_output_is_a_file(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = trial.parent / "out.txt"
    target.write_text("x")
    err = run(["report", str(trial), "-o", str(target)], capsys)
    assert "`-o`" in err and "is a file" in err


def test_bad_seed_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    for seed in ("abc", "-3"):
        err = run(["randomise", "--example", "councils", "--seed", seed], capsys)
        assert "--seed" in err and "non-negative integer" in err


def test_bad_seed_in_the_config(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(trial, "seed = 99", 'seed = "99"')
    err = run(["validate", str(trial)], capsys)
    assert f":{line_of(trial, 'seed =')}: [randomisation] seed:" in err and "integer" in err
    edit(trial, 'seed = "99"', "seed = -1")
    err = run(["validate", str(trial)], capsys)
    assert "[randomisation] seed" in err and "greater than or equal to 0" in err


def test_unknown_key(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial.write_text(TRIAL + '\n[analysis]\nfamilly = "poisson"\n', encoding="utf-8")
    err = run(["report", str(trial)], capsys)
    assert f":{line_of(trial, 'familly')}: [analysis] familly: unknown key" in err
    assert "did you mean `family`" in err


def test_unknown_table(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial.write_text(TRIAL + '\n[analyses]\nfamily = "poisson"\n', encoding="utf-8")
    err = run(["report", str(trial)], capsys)
    assert f":{line_of(trial, '[analyses]')}: [analyses]: unknown table" in err
    assert "did you mean `analysis`" in err


def test_bad_value(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial.write_text(TRIAL + '\n[analysis]\nfamily = "poison"\n', encoding="utf-8")
    err = run(["report", str(trial)], capsys)
    assert f":{line_of(trial, 'poison')}: [analysis] family:" in err
    assert "did you mean 'poisson'" in err


def test_missing_required_key(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(trial, 'periods = "2022Q1/2026Q4"\n', "")
    err = run(["validate", str(trial)], capsys)
    assert f":{line_of(trial, '[design]')}: [design] periods: is required" in err


def test_unknown_example_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    err = run(["report", "--example", "hospitals"], capsys)
    assert "invalid choice" in err and "--help" in err
    err = run(["frobnicate"], capsys)
    assert "invalid choice" in err


def test_validate_lists_every_problem(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(trial, "seed = 99", 'seed = 99\nstratta = "region"')
    edit(trial, 'outcome = "entries_into_care"', "outcome = 3")
    assert main(["validate", str(trial)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "stratta" in lines[0] and "[data] outcome" in lines[1]


def test_init_refuses_to_overwrite(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run(["report", "--init", str(trial.parent / "councils.csv"), "-o", str(trial)], capsys)
    assert "exists" in err


def test_init_of_a_missing_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run(
        ["report", "--init", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "t.toml")], capsys
    )
    assert "--init" in err and "no such file" in err


def test_record_that_does_not_match(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import steppedwedge as sw

    cfg = report_pkg.TrialConfig.from_toml(trial)
    record = trial.parent / "allocation.json"
    record.write_text(cfg.allocation().to_json(), encoding="utf-8")
    edit(trial, "seed = 99", 'record = "allocation.json"')
    assert main(["validate", str(trial)]) == 0
    capsys.readouterr()
    # the same record against other inputs (no strata) is refused, naming what differs
    edit(trial, 'strata = "region"\n', "")
    err = run(["validate", str(trial)], capsys)
    assert f":{line_of(trial, 'record =')}: [randomisation] record:" in err
    assert "the strata column" in err
    assert isinstance(sw.__version__, str)


def test_internal_error_exit_1(
    trial: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(config: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(report_pkg, "build_report", broken)
    err = run(["report", str(trial), "-o", str(trial.parent / "r")], capsys, code=1)
    assert "internal error: RuntimeError: boom" in err and "--debug" in err
    assert main(["--debug", "report", str(trial), "-o", str(trial.parent / "r")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_empty_and_header_only_csv(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = trial.parent / "councils.csv"
    data.write_text("", encoding="utf-8")
    assert "is empty" in run(["validate", str(trial)], capsys)
    data.write_text("council,quarter,treated\n", encoding="utf-8")
    assert "header but no rows" in run(["validate", str(trial)], capsys)


def test_data_file_is_a_folder(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (trial.parent / "councils.csv").unlink()
    (trial.parent / "councils.csv").mkdir()
    assert "is a folder" in run(["validate", str(trial)], capsys)


def test_clusters_do_not_add_up(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(
        trial,
        "clusters_per_wave = [3, 2, 3, 3, 2, 2, 2]",
        "clusters_per_wave = [3, 2, 3, 3, 2, 2, 3]",
    )
    err = run(["validate", str(trial)], capsys)
    assert "[design] clusters_per_wave: adds up to 18 clusters" in err


def test_unknown_cluster_in_start_dates(trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial.write_text(TRIAL + '\n[rollout]\nstart_dates = {"Councl A" = "never"}\n')
    err = run(["validate", str(trial)], capsys)
    assert f":{line_of(trial, 'Councl')}: [rollout] start_dates.Councl A:" in err
    assert "did you mean 'Council A'" in err


def test_validate_warns_when_the_data_disagree_with_the_allocation(
    trial: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # seed 99 is not the seed that allocated the bundled data: every wave differs
    assert main(["validate", str(trial)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: the data's treatment column `treated` differs") and (
        "\n" not in err
    )
    edit(trial, "seed = 99", "seed = 20230101")
    edit(
        trial,
        'strata = "region"',
        'strata = "region"\nbalance = ["population_0_17", '
        '"baseline_looked_after_per_10k"]\ncutoff = 0.2',
    )
    assert main(["validate", str(trial)]) == 0
    assert capsys.readouterr().err == ""
