"""The command line's two streams, which a reader that went away does not break.

``run ... | head -1``, or a terminal closed under a crawl, made the next line the crawl
printed raise ``BrokenPipeError``: the crawl died there, its row left 'running', its pages
in memory lost. What a crawl prints is secondary to what it stores: once its reader is gone,
a stream takes what is written and drops it, and the crawl goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO


class Output:
    """``sys.stdout`` or ``sys.stderr``, looked up at each write (tests swap them), that
    drops what is written once its reader is gone."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._gone = False

    def _stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self._name)
        # under a live display, rich's proxy of the stream: write past it, as rich itself does
        return getattr(stream, "rich_proxied_file", stream)

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream().write(text)
            except (OSError, ValueError):  # a broken pipe, a terminal gone (EIO), a closed stream
                self._went_away()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream().flush()
            except (OSError, ValueError):
                self._went_away()

    def _went_away(self) -> None:
        """Drop the rest; and point the stream's descriptor at /dev/null, so that what its
        buffer still holds is flushed somewhere when the interpreter exits (else one more
        "Exception ignored ... BrokenPipeError")."""
        self._gone = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream().fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        if name == "rich_proxied_file":  # rich writes to what this names: it must be this object
            raise AttributeError(name)
        return getattr(self._stream(), name)
