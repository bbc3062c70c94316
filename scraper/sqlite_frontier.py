"""The durable frontier: pending requests live in the crawl's ``scraper_requests`` table and
only a bounded buffer of them in memory, so memory does not grow with the frontier and a
crawl can resume after any stop.

Admission keeps a request in memory while the buffer has room (its row is written leased);
past that it is *spilled*: only its row is written. When the buffer runs low, ``refill``
leases the best pending rows and loads them. On resume the dead run's leases are released and
everything pending is loaded this way. A row the spider can no longer run (its callback was
renamed or removed between the runs) fails with an error row instead of staying pending.
"""

from __future__ import annotations

import sqlite3
import time

from scraper.codec import RequestNotStorable, decode
from scraper.frontier import MemoryFrontier, Scheduled
from scraper.records import Commit, Outcome, error_record
from scraper.stats import Stats
from scraper.storage import Storage

_EMPTY_REFILL_PAUSE = 0.02  # seconds before asking again when the spilled rows are not committed yet


class SQLiteFrontier(MemoryFrontier):
    """The memory frontier as a bounded buffer in front of the database: popping, parking and
    the host queues are the memory frontier's own (several calls a page, none delegated)."""

    def __init__(self, *, storage: Storage, spider: object, stats: Stats, buffer: int, spilled: int = 0) -> None:
        super().__init__()
        self._storage = storage
        self._spider = spider
        self._stats = stats
        self._buffer = buffer
        self._spilled = spilled  # pending rows in the database that are not in memory
        self._next_refill = 0.0

    def has_room(self) -> bool:
        return self._size < self._buffer

    async def push(self, entry: Scheduled, *, not_before: float = 0.0) -> None:
        if entry.in_memory:
            await super().push(entry, not_before=not_before)
        else:
            self._spilled += 1  # its row, written by the page's commit, is all there is of it

    async def refill(self) -> list[str]:
        """Load spilled requests when the buffer is at most half full; returns their hosts."""
        now = time.monotonic()
        if not self._spilled or self._size > self._buffer // 2 or now < self._next_refill:
            return []
        rows = await self._storage.lease_pending(self._buffer - self._size)
        if not rows:
            self._next_refill = now + _EMPTY_REFILL_PAUSE
            return []
        self._spilled = max(0, self._spilled - len(rows))
        hosts = []
        for row in rows:
            entry = await self._entry(row)
            if entry is None:
                continue
            wait = max(0.0, (row["not_before"] or 0.0) - time.time())
            await super().push(entry, not_before=time.monotonic() + wait if wait else 0.0)
            hosts.append(entry.host)
        return hosts

    async def _entry(self, row: sqlite3.Row) -> Scheduled | None:
        """The row's request, or None when this spider cannot run it: the request then fails
        with a ``start`` error row rather than stay pending (and leased) for good."""
        try:
            request = decode(row, self._spider)  # type: ignore[arg-type]  # a Row is read by key, as a Mapping
        except RequestNotStorable as exc:
            failure = error_record("start", exc, row["url"], self._stats)
            outcome = Outcome(row["fingerprint"], "failed", row["attempts"], reason=failure.message)
            await self._storage.submit(Commit(outcome=outcome, errors=[failure]))
            return None
        return Scheduled(request, row["fingerprint"], row["host"], attempts=row["attempts"])

    def next_due(self) -> float | None:
        """The earliest parked entry, or the retry of a refill that found the spilled rows not
        yet committed (only while a refill is wanted and still ahead: never a time past)."""
        due = super().next_due()
        waiting_to_refill = self._spilled and self._size <= self._buffer // 2
        if waiting_to_refill and self._next_refill > time.monotonic():
            due = self._next_refill if due is None else min(due, self._next_refill)
        return due

    def __len__(self) -> int:
        return self._size + self._spilled
