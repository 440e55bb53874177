"""The Sphinx documentation builds with warnings as errors (broken docstrings fail here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.examples
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="sphinx is in the test extra; install .[test]")
    if not (DOCS / "conf.py").exists():  # pragma: no cover - e.g. an installed wheel
        pytest.skip("docs/ not present")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-E", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "index.html").exists()
