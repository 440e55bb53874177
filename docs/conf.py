"""Sphinx configuration for the steppedwedge documentation."""

from __future__ import annotations

import steppedwedge

project = "steppedwedge"
author = "steppedwedge developers"
copyright = "2026, steppedwedge developers"  # noqa: A001
version = release = steppedwedge.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
