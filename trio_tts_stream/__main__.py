"""``python -m trio_tts_stream``: see :mod:`trio_tts_stream._cli`."""

from ._cli import run

run()
