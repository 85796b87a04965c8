"""Sphinx configuration of nsgflow's documentation: ``make docs`` builds it into docs/_build/html."""

import sys
from pathlib import Path

import nsgflow

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "nsgflow"
author = "the nsgflow authors"
copyright = "the nsgflow authors, MIT licence"
release = nsgflow.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "nsgflow_settings",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]

# Markdown pages link to each other's sections, as on GitHub (guide.md#what-it-writes)
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# numpydoc, as astropy and photutils use it
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
autodoc_typehints = "none"  # the numpydoc Parameters sections give the types
autodoc_member_order = "bysource"

html_theme = "pydata_sphinx_theme"
html_title = f"nsgflow {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []
