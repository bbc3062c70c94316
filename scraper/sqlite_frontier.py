"""The durable frontier: pending requests live in the crawl's ``scraper_requests`` table and
only a bounded buffer of them in memory, so memory does not grow with the frontier and a
crawl can resume after any stop.

Admission keeps a request in memory while the buffer has room (its row is written leased);
past that it is *spilled*: only its row is written. When the buffer runs low, ``refill``
leases the best pending rows and loads them; and a host with spilled rows but none in memory
gets its share of them at once (else the buffer, filled with a few hosts' requests, kept the
others waiting: 30 hosts with a delay crawled at the pace of 5). On resume the dead run's leases are released and
everything pending is loaded this way. A row the spider can no longer run (its callback was
renamed or removed between the runs) fails with an error row instead of staying pending.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Mapping

from scraper.codec import RequestNotStorable, decode
from scraper.frontier import MemoryFrontier, Scheduled
from scraper.records import Commit, Outcome, error_record
from scraper.stats import Stats
from scraper.storage import Storage

_EMPTY_REFILL_PAUSE = 0.02  # seconds before asking again when the spilled rows are not committed yet
_HOSTS_EVERY = 0.05  # seconds between looks for hosts whose spilled rows wait while their queue is empty
_HOSTS_A_REFILL = 64  # such hosts loaded by one refill
_LEAST_SHARE = 16  # rows of a host loaded at once, at least


class SQLiteFrontier(MemoryFrontier):
    """The memory frontier as a bounded buffer in front of the database: parking and the host
    queues are the memory frontier's own; ``pop`` notes a host whose queue it empties while
    its spilled rows wait."""

    def __init__(
        self,
        *,
        storage: Storage,
        spider: object,
        stats: Stats,
        buffer: int,
        spilled: int = 0,
        spilled_by_host: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self._storage = storage
        self._spider = spider
        self._stats = stats
        self._buffer = buffer
        self._spilled = spilled  # pending rows in the database that are not in memory
        self._spilled_by_host: dict[str, int] = dict(spilled_by_host or {})  # the same, by host
        self._waiting: dict[str, None] = dict.fromkeys(self._spilled_by_host)  # those with none in memory, in order
        self._next_refill = 0.0
        self._next_hosts_look = 0.0

    def has_room(self) -> bool:
        return self._size < self._buffer

    async def push(self, entry: Scheduled, *, not_before: float = 0.0) -> None:
        if entry.in_memory:
            await super().push(entry, not_before=not_before)
        else:
            host = entry.host
            self._spilled += 1  # its row, written by the page's commit, is all there is of it
            self._spilled_by_host[host] = self._spilled_by_host.get(host, 0) + 1
            if host not in self._queues:
                self._waiting[host] = None

    def pop(self, host: str) -> Scheduled | None:
        entry = super().pop(host)
        if host not in self._queues and host in self._spilled_by_host:
            self._waiting[host] = None  # its queue is empty, its rows wait in the database
        return entry

    async def refill(self) -> list[str]:
        """Load spilled requests when the buffer is at most half full, or the share of the
        hosts whose queue is empty while their rows wait; returns their hosts."""
        now = time.monotonic()
        if not self._spilled or now < self._next_refill:
            return []
        if self._size <= self._buffer // 2:
            rows = await self._storage.lease_pending(self._buffer - self._size)
            if not rows:
                self._next_refill = now + _EMPTY_REFILL_PAUSE
                return []
        elif now >= self._next_hosts_look and self._waiting:
            self._next_hosts_look = now + _HOSTS_EVERY
            rows = await self._load_waiting_hosts()
        else:
            return []
        return await self._loaded(rows)

    def _share(self) -> int:
        """Rows of a waiting host loaded at once: a fair part of the buffer."""
        return max(_LEAST_SHARE, self._buffer // (len(self._queues) + len(self._waiting)))

    def _room_for_waiting(self) -> int:
        """How many rows waiting hosts may still load: memory holds at most twice the buffer."""
        return 2 * self._buffer - self._size

    async def _load_waiting_hosts(self) -> list[sqlite3.Row]:
        """The spilled rows of the hosts with none in memory, a share each, as far as memory
        allows. A host that has none left (its count ran ahead: rows can only be fewer) is
        forgotten."""
        share = self._share()
        count = min(len(self._waiting), _HOSTS_A_REFILL, self._room_for_waiting() // share)
        hosts = list(itertools.islice(self._waiting, count))
        if not hosts:
            return []
        for host in hosts:
            del self._waiting[host]
        rows = await self._storage.lease_pending(share, hosts=hosts)
        for host in set(hosts) - {row["host"] for row in rows}:
            self._spilled -= self._spilled_by_host.pop(host, 0)
        return rows

    async def _loaded(self, rows: list[sqlite3.Row]) -> list[str]:
        self._spilled = max(0, self._spilled - len(rows))
        by_host = self._spilled_by_host
        hosts = []
        for row in rows:
            host = row["host"]
            left = by_host.get(host, 0) - 1
            if left > 0:
                by_host[host] = left
            else:
                by_host.pop(host, None)
            self._waiting.pop(host, None)
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
        now = time.monotonic()
        waiting_to_refill = self._spilled and self._size <= self._buffer // 2
        if waiting_to_refill and self._next_refill > now:
            due = self._next_refill if due is None else min(due, self._next_refill)
        elif self._waiting and self._room_for_waiting() >= self._share() and self._next_hosts_look > now:
            # the next look for hosts whose rows wait: every host in memory may be resting
            due = self._next_hosts_look if due is None else min(due, self._next_hosts_look)
        return due

    def __len__(self) -> int:
        return self._size + self._spilled
