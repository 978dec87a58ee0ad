"""Sphinx configuration for trio_tts_stream."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "trio_tts_stream"
author = "trio_tts_stream developers"
copyright = "2026, trio_tts_stream developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
nitpicky = False
html_theme = "alabaster"
# _bench_results.rst is included by benchmarks.rst, not a page of its own.
exclude_patterns = ["_build", "_bench_results.rst"]
