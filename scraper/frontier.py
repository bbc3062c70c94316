"""Where admitted requests wait: one queue per host (higher ``priority`` first, then first
in, first out) and a parking area for requests with a not-before time (retries, paused
hosts). One protocol; the memory store is here, SQLite and Redis stores implement the same.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from scraper.codec import EncodedRequest
from scraper.http import Request


class Scheduled(NamedTuple):
    """A request the scheduler admitted, with its dedup fingerprint and host."""

    request: Request
    fingerprint: str
    host: str
    attempts: int = 0  # fetches already made (retries park the request with attempts + 1)
    encoded: EncodedRequest | None = None  # its storable form (None: stored as it is, no body)
    in_memory: bool = True  # False: spilled, it waits in the database until a refill
    # parked by this run (a retry, a host paused since hand-out): the commit of its outcome
    # may still be on its way to storage, so a store must not give its lease back
    parked: bool = False


class Refused(NamedTuple):
    """A request admission turned away, and why (``scraper_requests.reason``)."""

    request: Request
    fingerprint: str
    host: str
    reason: str


class Frontier(Protocol):
    async def push(self, entry: Scheduled, *, not_before: float = 0.0) -> None:
        """Store ``entry``; with ``not_before`` (monotonic seconds) it waits until then."""
        ...

    def pop(self, host: str) -> Scheduled | None:
        """The next entry for ``host``, or None. Ready entries are always in memory (a
        store loads its rows in ``refill``), so that a free worker takes one without waiting."""
        ...

    def release_due(self, now: float) -> Iterable[str]:
        """Move parked entries whose time has come to their host queues; returns those hosts
        (read them all: a store may move the entries as they are read)."""
        ...

    def next_due(self) -> float | None:
        """The earliest not-before time among parked entries."""
        ...

    def has_pending(self, host: str) -> bool: ...

    def resting(self, host: str, until: float) -> None:
        """``host`` may not be fetched before ``until`` (monotonic): a store may move its
        waiting entries out of memory meanwhile, to make room for hosts that can be."""
        ...

    def has_room(self, host: str) -> bool:
        """Whether a new entry of ``host`` may be kept in memory (else it waits in the store only)."""
        ...

    async def refill(self) -> list[str]:
        """Load entries waiting in the store when memory runs low; returns their hosts."""
        ...

    def __len__(self) -> int:
        """Every entry, ready, parked or waiting in the store."""
        ...


class MemoryFrontier:
    """Pending requests in memory: fast, gone when the process ends."""

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[int, int, Scheduled]]] = {}
        self._parked: list[tuple[float, int, Scheduled]] = []
        self._order = itertools.count()
        self._size = 0
        self._emptied: list[str] | None = None  # a subclass's list of hosts whose queue pop emptied

    async def push(self, entry: Scheduled, *, not_before: float = 0.0) -> None:
        self._size += 1
        if not_before:
            heapq.heappush(self._parked, (not_before, next(self._order), entry))
        else:
            self._enqueue(entry)

    def pop(self, host: str) -> Scheduled | None:
        queue = self._queues.get(host)
        if not queue:
            return None
        entry = heapq.heappop(queue)[2]
        if not queue:
            del self._queues[host]
            if self._emptied is not None:
                self._emptied.append(host)
        self._size -= 1
        return entry

    def release_due(self, now: float) -> Iterable[str]:
        if not self._parked or self._parked[0][0] > now:
            return ()  # nearly every call (one per hand-out): no generator to make
        return self._released(now)

    def _released(self, now: float) -> Iterator[str]:
        while self._parked and self._parked[0][0] <= now:
            entry = heapq.heappop(self._parked)[2]
            self._enqueue(entry)
            yield entry.host

    def next_due(self) -> float | None:
        return self._parked[0][0] if self._parked else None

    def has_pending(self, host: str) -> bool:
        return bool(self._queues.get(host))

    def resting(self, host: str, until: float) -> None:
        return None  # everything is in memory: there is no room to make

    def has_room(self, host: str) -> bool:
        return True

    async def refill(self) -> list[str]:
        return []

    def __len__(self) -> int:
        return self._size

    def _enqueue(self, entry: Scheduled) -> None:
        queue = self._queues.setdefault(entry.host, [])
        heapq.heappush(queue, (-entry.request.priority, next(self._order), entry))
