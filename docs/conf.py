"""Sphinx configuration for trio_tts_stream."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

project = "trio_tts_stream"
author = "trio_tts_stream developers"
copyright = "2026, trio_tts_stream developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.graphviz",
    "statediagram",  # _ext/statediagram.py: the state machine drawn from _state.TRANSITIONS
]
graphviz_output_format = "svg"
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
html_static_path = ["_static"]
