"""``.. state-diagram::``: the playback state machine drawn from ``_state.TRANSITIONS``.

The DOT source is made at build time by :func:`trio_tts_stream._state.transitions_dot`
and handed to ``sphinx.ext.graphviz``, so the picture cannot drift from the code (no
picture is committed). Needs Graphviz's ``dot`` (Debian: ``apt-get install graphviz``).
"""

from __future__ import annotations

from typing import Any

from docutils.nodes import Node
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.ext.graphviz import Graphviz

from trio_tts_stream._state import transitions_dot


class StateDiagram(Graphviz):
    """A ``graphviz`` directive whose content is the generated DOT source."""

    required_arguments = 0
    optional_arguments = 0
    has_content = False

    def run(self) -> list[Node]:
        self.arguments = []
        self.content = StringList(transitions_dot().splitlines(), source="_state.TRANSITIONS")
        self.options.setdefault("alt", "the playback state machine (from _state.TRANSITIONS)")
        return super().run()


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.graphviz")
    app.add_directive("state-diagram", StateDiagram)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
