"""Where admitted requests wait until a worker is free: one protocol, several stores.

The memory frontier is a priority heap (higher ``priority`` first, then first in, first out).
The SQLite and Redis stores implement the same protocol.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import Protocol

from scraper.http import Request


@dataclasses.dataclass(frozen=True, slots=True)
class Scheduled:
    """A request the scheduler admitted, with its dedup fingerprint."""

    request: Request
    fingerprint: str


class Frontier(Protocol):
    async def push(self, entry: Scheduled) -> None: ...

    async def pop(self) -> Scheduled | None:
        """The next entry to fetch, or None when nothing is pending."""
        ...

    def __len__(self) -> int: ...


class MemoryFrontier:
    """Pending requests in a heap in memory: fast, gone when the process ends."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Scheduled]] = []
        self._order = itertools.count()

    async def push(self, entry: Scheduled) -> None:
        heapq.heappush(self._heap, (-entry.request.priority, next(self._order), entry))

    async def pop(self) -> Scheduled | None:
        return heapq.heappop(self._heap)[2] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
