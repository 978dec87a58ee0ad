"""Keep the C libraries' debugging chatter off a command line user's terminal.

Theory of operation: PortAudio's ALSA host API and ALSA itself print diagnostics straight
to file descriptor 2 (``Expression '...' failed in 'src/hostapi/alsa/...'`` when a sound
server dies under a running stream, ``ALSA lib pcm.c:...`` when a configuration entry does
not resolve). Python cannot intercept those writes through ``sys.stderr``, so while the
CLI plays on a sound device, :func:`quiet_native_chatter` points descriptor 2 at a pipe
and a thread forwards every line to the real stderr except those two kinds. The CLI's own
one-line error is printed after the block, straight to the terminal. Forwarding is
line-by-line, so nothing else is lost or reordered.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["is_native_chatter", "quiet_native_chatter"]

_CHATTER = re.compile(rb"^(Expression '.*' failed in 'src/|ALSA lib )")


def is_native_chatter(line: bytes) -> bool:
    """A diagnostic line of PortAudio's ALSA host API or of ALSA, not for users."""
    return _CHATTER.match(line) is not None


@contextmanager
def quiet_native_chatter() -> Iterator[None]:
    """Drop :func:`is_native_chatter` lines written to descriptor 2 inside the block;
    everything else written there reaches stderr unchanged."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2 (a detached process): nothing to do
        yield
        return
    read_end, write_end = os.pipe()

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not is_native_chatter(line):
                    with suppress(OSError):
                        os.write(saved, line)

    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to EOF
        thread.join(1.0)
        os.close(saved)
