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
    "sphinx.ext.intersphinx",
    "numpydoc",
]
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
}
# The build must work offline (CI has no network): intersphinx inventories are optional.
intersphinx_disabled_reftypes = ["*"]
intersphinx_timeout = 1
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
suppress_warnings = ["intersphinx"]
