"""Notices when code running on the event loop holds it, and says so.

A callback or a pipeline stage that calls ``time.sleep()``, ``requests.get()`` or reads a
big file, or parses for a second, holds the whole crawl meanwhile: every fetch, timer and
write waits, and the crawl only looks slow. A timer that should run every 50 ms measures
how late it ran (a hold that began just after a run shows that much short: run every
quarter second, it missed a 0.7 s hold and took one of a second for 0.8 s); when it ran
``threshold`` seconds late or more, the loop was held, and the first time this happens in a
crawl it is a warning saying what usually causes it. The framework's own garbage
collections are left out (``own_pauses``). Every stall is counted (``loop/stalls``, and the
worst in ``loop/worst_stall_ms``) for the summary. Twenty timer runs a second: nothing on
the page's path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from scraper.stats import Stats

logger = logging.getLogger(__name__)

THRESHOLD = 0.5  # seconds late: a busy crawl's loop lags well under 0.1 s (bench/latency.py)
EVERY = 0.05


class LoopWatch:
    def __init__(
        self,
        stats: Stats,
        *,
        every: float = EVERY,
        threshold: float = THRESHOLD,
        own_pauses: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``own_pauses``: the seconds the framework itself has held the loop so far (its
        garbage collections), left out of what is blamed on the spider's code: a full
        collection of 0.76 s on a crawl of 20,000 hosts was reported as blocking code in a
        callback or stage."""
        self._stats = stats
        self._every = every
        self._threshold = threshold
        self._own_pauses = own_pauses
        self._own_so_far = 0.0
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._warned = False  # in this run: a resumed crawl's counts carry the earlier runs' stalls

    def __enter__(self) -> LoopWatch:
        self._schedule(asyncio.get_running_loop())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self._every
        self._timer = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        own, self._own_so_far = self._own_so_far, self._own_pauses()
        late = loop.time() - self._due - (self._own_so_far - own)
        if late >= self._threshold:
            self._held(late)
        self._schedule(loop)

    def _held(self, seconds: float) -> None:
        self._stats.increment("loop/stalls")
        self._stats.keep_largest("loop/worst_stall_ms", round(seconds * 1000))
        if not self._warned:
            self._warned = True
            logger.warning(
                "the event loop was held for %.1f s or more: code running on it blocked (time.sleep(), requests, "
                "file reads, or seconds of parsing in a callback or a pipeline stage), and every request "
                "waited meanwhile. Await instead (asyncio.sleep(), per_host.delay for politeness, "
                "aiofiles), or set parse_processes for heavy parsing",
                seconds,
            )
