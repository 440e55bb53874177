"""The example notebooks run: their code cells are executed in order, in the examples folder.

Light on purpose (no Jupyter kernel): the cells are read with :mod:`json` and executed in
one namespace, as a kernel would, with the working directory set to ``examples/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


@pytest.mark.examples
@pytest.mark.parametrize("name", ["own_trial_report.ipynb"])
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    for item in ("trial.toml", "council_counts.csv", "council_characteristics.csv", name):
        shutil.copy(EXAMPLES / item, tmp_path / item)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    cells = code_cells(tmp_path / name)
    assert cells
    for k, source in enumerate(cells):
        exec(compile(source, f"{name}[cell {k}]", "exec"), namespace)  # noqa: S102
    report = namespace["report"]
    assert (tmp_path / "council-report" / "report.html").is_file()
    assert getattr(report, "sections", None)
