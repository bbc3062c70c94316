"""Admission and hand-out of requests: dedup, depth and scope checks in; next request out.

The scheduler also knows when a crawl is over: nothing pending and nothing in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from scraper.fingerprint import fingerprint
from scraper.frontier import Frontier, Scheduled
from scraper.http import Request
from scraper.stats import Stats


class Scheduler:
    def __init__(self, *, frontier: Frontier, max_depth: int, stats: Stats) -> None:
        self._frontier = frontier
        self._max_depth = max_depth
        self._stats = stats
        self._seen: set[str] = set()
        self._in_flight = 0
        self._changed = asyncio.Event()
        self._closed = False
        self._producers = 0

    async def add(self, requests: Iterable[Request], *, parent: Request | None = None) -> list[Scheduled]:
        """Admit the new requests into the frontier; returns those admitted."""
        depth = parent.depth + 1 if parent is not None else 0
        admitted: list[Scheduled] = []
        for request in requests:
            if self._max_depth and depth > self._max_depth:
                self._stats.increment("requests/filtered/depth")
                continue
            key = fingerprint(request)
            if key in self._seen and not request.dont_filter:
                self._stats.increment("requests/filtered/duplicate")
                continue
            self._seen.add(key)
            entry = Scheduled(request if request.depth == depth else request.replace(depth=depth), key)
            await self._frontier.push(entry)
            admitted.append(entry)
        if admitted:
            self._stats.increment("requests/admitted", len(admitted))
            self._changed.set()
        return admitted

    async def next(self) -> Scheduled | None:
        """The next request to fetch (counted as in flight), or None if none is ready."""
        if self._closed:
            return None
        entry = await self._frontier.pop()
        if entry is not None:
            self._in_flight += 1
        return entry

    def done(self, entry: Scheduled) -> None:
        """A handed-out request is finished, whatever its outcome."""
        self._in_flight -= 1
        self._changed.set()

    @contextmanager
    def producing(self) -> Iterator[None]:
        """While open, the crawl is not over even if nothing is pending (start requests)."""
        self._producers += 1
        try:
            yield
        finally:
            self._producers -= 1
            self._changed.set()

    def close(self) -> None:
        """Hand out nothing more; requests in flight still finish."""
        self._closed = True
        self._changed.set()

    @property
    def finished(self) -> bool:
        """True when no request is in flight and none will be handed out."""
        if self._in_flight:
            return False
        return self._closed or (len(self._frontier) == 0 and self._producers == 0)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self._frontier)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def wait_for_change(self) -> None:
        """Sleep until a request is added or finished (or the scheduler closes)."""
        self._changed.clear()
        await self._changed.wait()
