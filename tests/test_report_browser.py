"""The HTML report as a browser renders it, and as an HTML parser reads it.

The parser checks always run.  The browser checks need a headless Chromium (the Debian
``chromium`` package; or set ``STEPPEDWEDGE_CHROMIUM`` to a Chrome/Chromium binary) and are
skipped with the reason when there is none.  The page is rendered at 1280 px wide with a
small probe script appended to a copy of it (the report itself has no script): the probe
measures horizontal overflow, checks every image decoded, and reads the visible text.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _report_fixtures import HOSTILE, hostile_example

from steppedwedge.report import build_report

_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example with Council A renamed to a string of HTML and Markdown markup."""
    cfg = hostile_example(sensitivity=("fixed-effects", "cluster-summary"))
    folder = tmp_path_factory.mktemp("report")
    build_report(cfg).write(folder)
    return folder


class _Checker(HTMLParser):
    """Well-formedness: every non-void element closed in order, ids unique, no script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id":
                if value in self.ids:
                    self.errors.append(f"duplicate id {value!r}")
                self.ids.add(str(value))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def test_html_is_well_formed(written: Path) -> None:
    page = (written / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert "script" not in checker.tags
    # links of the contents list all point at a section
    for target in re.findall(r'href="#([^"]+)"', page):
        assert target in checker.ids
    # no network: nothing is loaded from outside the file
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_html5lib_parses_without_errors(written: Path) -> None:
    html5lib = pytest.importorskip("html5lib")
    page = (written / "report.html").read_text(encoding="utf-8")
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(page)  # raises on the first parse error
    assert parser.errors == []


def _chromium() -> str | None:
    env = os.environ.get("STEPPEDWEDGE_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


_PROBE = """<script>
window.addEventListener("load", function () {
  var d = document.documentElement;
  var out = {
    scrollWidth: d.scrollWidth,
    clientWidth: d.clientWidth,
    text: document.body.innerText,
    images: Array.from(document.images).map(function (i) {
      return {alt: i.alt, complete: i.complete, width: i.naturalWidth,
              right: i.getBoundingClientRect().right};
    }),
    scrolling: Array.from(document.querySelectorAll(".table-wrap"))
      .filter(function (w) { return w.scrollWidth > w.clientWidth + 1; })
      .map(function (w) { return w.querySelector("table").id; })
  };
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def rendered(written: Path) -> dict[str, Any]:
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium: install the Debian package `chromium`")
    page = (written / "report.html").read_text(encoding="utf-8")
    probe = written / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "\n</body>"), encoding="utf-8")
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,2000",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, flags=re.S)
    assert found, f"the probe did not run: {run.stderr[-2000:]}"
    data: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return data


def test_no_horizontal_scroll_at_1280_px(rendered: dict[str, Any]) -> None:
    assert rendered["scrollWidth"] <= rendered["clientWidth"], rendered["scrollWidth"]
    assert rendered["scrolling"] == [], "tables that scroll sideways"


def test_every_figure_is_shown(rendered: dict[str, Any], written: Path) -> None:
    results = json.loads((written / "results.json").read_text())
    expected = [f for s in results["sections"].values() for f in s["figures"]]
    images = rendered["images"]
    assert len(images) == len(expected) >= 7
    for img in images:
        assert img["complete"] and img["width"] > 100, img["alt"]
        assert img["right"] <= rendered["clientWidth"], img["alt"]


def test_no_raw_markdown_and_the_hostile_name_is_text(rendered: dict[str, Any]) -> None:
    text = rendered["text"]
    assert HOSTILE in text
    for marker in ("**", "`", "|---", "\\|", "\\*", "](", "&amp;", "&lt;"):
        assert marker not in text, marker
