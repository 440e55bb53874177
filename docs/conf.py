"""Sphinx configuration for the steppedwedge documentation."""

from __future__ import annotations

import steppedwedge

project = "steppedwedge"
author = "steppedwedge developers"
copyright = "2026, steppedwedge developers"  # noqa: A001
version = release = steppedwedge.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
numpydoc_show_class_members = False
# autosummary tables only link to the entries documented on the same page: no stub pages
autosummary_generate = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
