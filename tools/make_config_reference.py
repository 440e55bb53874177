"""Write docs/reference/config.rst from the trial.toml schema (steppedwedge.report.schema).

Run after changing the schema: ``python tools/make_config_reference.py``.
tests/test_report_config.py fails while the committed page differs from the schema.
"""

from __future__ import annotations

from pathlib import Path

from steppedwedge.report.schema import reference_rst

if __name__ == "__main__":
    page = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.rst"
    page.write_text(reference_rst(), encoding="utf-8")
    print(f"wrote {page}")
