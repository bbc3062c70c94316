"""The durable frontier: pending requests live in the crawl's ``scraper_requests`` table and
only a bounded buffer of them in memory, so memory does not grow with the frontier and a
crawl can resume after any stop.

Admission keeps a request in memory while the buffer has room (its row is written leased);
past that it is *spilled*: only its row is written. When the buffer runs low, ``refill``
leases the best pending rows and loads them. A host with spilled rows and none in memory is
*hungry*: its own best rows are loaded into whatever room the buffer has, a share each, so
that the few hosts whose requests filled memory first do not set the pace of the crawl (30
hosts with a per-host delay crawled at the rate of 5). A host that rests (its breaker tripped,
a Retry-After) while rows wait gives its requests' leases back, so that it does not hold the
room either (five dead hosts' links had kept every other host waiting for their rests,
minutes). Nor does a host that holds the room without resting (its pages hang, or come
slowly): when hungry hosts have waited a while as a host held more than its part, every
host is cut to a share. On resume the dead run's leases are released and everything pending
is loaded these ways. A row the spider can no longer run (its callback was renamed or
removed between the runs) fails with an error row instead of staying pending.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from scraper.codec import RequestNotStorable, decode
from scraper.crawls import TRACKED_HOSTS
from scraper.frontier import MemoryFrontier, Scheduled
from scraper.records import Commit, Outcome, error_record
from scraper.stats import Stats
from scraper.storage import Storage

_EMPTY_REFILL_PAUSE = 0.02  # seconds before asking again when the spilled rows are not committed yet
_EMPTY_REFILL_MAX = 1.0  # the pause doubles up to this while refills find nothing (resting hosts' rows only)
_LOOK_EVERY = 0.05  # seconds between loads for hungry hosts (each is a transaction)
_HOSTS_A_LOOK = 64  # hungry hosts loaded by one look, at most
_LEAST_SHARE = 16  # rows loaded for a hungry host at once, at least: the room a look waits for
_MISSES = 3  # loads that found nothing (its rows not committed yet) before a hungry host is let go
_REST_TO_GIVE_BACK = 5.0  # seconds of rest after which a host's requests leave memory (while rows wait)
# seconds hungry hosts may wait while a host holds more than its fair part of the buffer; then
# every host gives back what it holds past that (a hung host's 50 requests held a buffer of 50
# for a minute)
_STARVED_FOR = 1.0
# resting hosts whose rows a refill of the best rows leaves, at most (each a bound parameter:
# SQLite allows 32,766; 500 let a broad crawl's other dead hosts' rows fill the buffer)
_RESTING_EXCLUDED = 16_384


class SQLiteFrontier(MemoryFrontier):
    """The memory frontier as a bounded buffer in front of the database: popping, parking and
    the host queues are the memory frontier's own (several calls a page, none delegated); its
    ``pop`` notes the hosts whose queue it empties, for the hungry hosts' loads."""

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
        """``spilled_by_host``: a resumed crawl's pending rows by host (``spilled`` in all)."""
        super().__init__()
        self._storage = storage
        self._spider = spider
        self._stats = stats
        self._buffer = buffer
        self._spilled = spilled  # pending rows in the database that are not in memory
        self._leasing = 0  # room held for the rows of a load on its way (see _lease)
        self._next_refill = 0.0
        self._empty_pause = _EMPTY_REFILL_PAUSE
        # Only what is loaded lowers _spilled, so a count below never ends the crawl early.
        # The spilled rows of up to TRACKED_HOSTS hosts, counted by host (the others are
        # loaded by the refill of the best rows alone), and the hungry among them, in the
        # order they became hungry, with the loads that found none of their rows.
        self._by_host: dict[str, int] = dict(itertools.islice((spilled_by_host or {}).items(), TRACKED_HOSTS))
        self._hungry: dict[str, int] = dict.fromkeys(self._by_host, 0)
        self._next_look = 0.0
        self._next_watch = 0.0  # when to look again at how the buffer is shared (_watch_fairness)
        # Hosts resting while rows wait: until when (kept out of the hungry meanwhile), and
        # the same in time order; those whose requests are to leave memory at the next refill.
        self._rests: dict[str, float] = {}
        self._rest_ends: list[tuple[float, str]] = []
        self._to_give_back: set[str] = set()
        self._starved_since: float | None = None  # since when hungry hosts wait while a host holds more than its part
        # hosts were cut to a share of the buffer (``_share_out``): requests a host may hold in
        # memory since then, until everything is in memory again; 0: no cut
        self._cap = 0
        if spilled:
            self._emptied = []

    def has_room(self, host: str) -> bool:
        """Room for one more of ``host``'s requests: in the buffer, and, once hosts were cut to
        a share (``_share_out``), within it (else they took the room back at once with their
        own new links)."""
        if self._size + self._leasing >= self._buffer:
            return False
        return not self._cap or len(self._queues.get(host, ())) < self._cap

    def _share(self) -> int:
        """A host's fair part of the buffer: split among the hosts with requests in memory and
        those waiting for some, but at least a load's worth, or a quarter of a small buffer
        (a part of 1 among 250 hosts in a buffer of 100 made the crawl 10% slower, every host
        loaded a row at a time; one of 16 let three hung hosts hold a buffer of 50)."""
        least = min(_LEAST_SHARE, max(1, self._buffer // 4))
        return max(least, self._buffer // (len(self._queues) + len(self._hungry) or 1))

    def _least(self) -> int:
        """The rows a look loads for a hungry host at least, and the room it waits for: a load's
        worth, or the share hosts were cut to when that is less (in a buffer of 50, three hung
        hosts cut to 12 each leave room for a load of 12, not of 16)."""
        return min(_LEAST_SHARE, self._cap) if self._cap else _LEAST_SHARE

    async def push(self, entry: Scheduled, *, not_before: float = 0.0) -> None:
        if entry.in_memory:
            await super().push(entry, not_before=not_before)
            if self._rests and entry.host in self._rests:
                self._to_give_back.add(entry.host)  # admitted while its host rests
            return
        self._spilled += 1  # its row, written by the page's commit, is all there is of it
        if self._empty_pause > _EMPTY_REFILL_PAUSE:  # refills found nothing: this row will be there soon
            self._empty_pause = _EMPTY_REFILL_PAUSE
            self._next_refill = min(self._next_refill, time.monotonic() + _EMPTY_REFILL_PAUSE)
        if self._emptied is None:
            self._emptied = []  # pop notes emptied queues while rows wait in the database
        host = entry.host
        if self._count_spilled(host) and host not in self._queues and host not in self._rests:
            self._hungry[host] = 0

    def _count_spilled(self, host: str) -> bool:
        """One more row of ``host`` waits in the database; False when it is not counted
        (``TRACKED_HOSTS`` others are: the refill of the best rows alone loads it)."""
        count = self._by_host.get(host)
        if count is None and len(self._by_host) >= TRACKED_HOSTS:
            return False
        self._by_host[host] = (count or 0) + 1
        return True

    def resting(self, host: str, until: float) -> None:
        """A host resting ``_REST_TO_GIVE_BACK`` or longer gives its requests' leases back at
        the first refill while rows wait in the database (now, or once some spill), and is not
        loaded until it wakes."""
        if until - time.monotonic() < _REST_TO_GIVE_BACK or self._rests.get(host, 0) >= until:
            return
        self._rests[host] = until
        heapq.heappush(self._rest_ends, (until, host))
        self._hungry.pop(host, None)
        self._to_give_back.add(host)

    async def refill(self) -> list[str]:
        """Load hungry hosts' rows into the buffer's room; and when it is at most half full,
        the best rows (but resting hosts') after them. Returns the hosts of what was loaded
        (or of requests a resting host kept: see ``_give_back``)."""
        now = time.monotonic()
        if self._rest_ends:
            self._wake_rested(now)
        if not self._spilled:
            return []
        hosts = await self._give_back(now) if self._to_give_back else []
        if self._starved_since is not None and now - self._starved_since >= _STARVED_FOR:
            hosts += await self._share_out(now)
        hosts += await self._feed_hungry(now)  # first: the best rows are often the same few hosts'
        if self._size > self._buffer // 2 or not self._spilled or now < self._next_refill:
            return hosts
        resting = list(itertools.islice(self._rests, _RESTING_EXCLUDED))  # their rows would only hold memory
        if self._cap:  # nor those of hosts at their share: the best rows, they took it all back
            resting += [host for host, queue in self._queues.items() if len(queue) >= self._cap]
        rows = await self._lease(self._buffer - self._size, excluding=resting)
        if rows and self._cap:
            rows = await self._within_cap(rows)
        if not rows:
            # only resting hosts' rows wait: ask less and less often (every 20 ms, a transaction
            # each, took 2.5 s of CPU in 10 s of a rest); others wait too: their page's commit is
            # on its way (a writer behind), and they are asked for at the first pace
            if self._spilled > sum(self._by_host.get(host, 0) for host in resting):
                self._empty_pause = _EMPTY_REFILL_PAUSE
            self._next_refill = time.monotonic() + self._empty_pause
            self._empty_pause = min(2 * self._empty_pause, _EMPTY_REFILL_MAX)
            return hosts
        self._empty_pause = _EMPTY_REFILL_PAUSE
        return hosts + await self._loaded(rows)

    async def _feed_hungry(self, now: float) -> list[str]:
        """The best rows of the first hungry hosts, a share of the buffer each, as far as its
        room goes (never past it: hosts that cannot fetch, resting ones, hold no more memory
        than before). One look every ``_LOOK_EVERY`` at most."""
        self._note_emptied()
        if not self._hungry:
            self._starved_since = None
            return []
        if now >= self._next_watch:
            self._next_watch = now + _LOOK_EVERY
            self._watch_fairness(now)
        room, least = self._buffer - self._size, self._least()
        if now < self._next_look or room < least:  # a look waits for room: then it is due at once
            return []
        self._next_look = now + _LOOK_EVERY
        share = max(least, min(self._share(), room // min(len(self._hungry), _HOSTS_A_LOOK)))
        hosts = list(itertools.islice(self._hungry, min(_HOSTS_A_LOOK, room // share)))
        rows = await self._lease(share, hosts=hosts)
        found = Counter(row["host"] for row in rows)
        for host in hosts:
            if host not in found:
                self._missed(host)
        loaded = await self._loaded(rows)
        if self._spilled:  # a host that filled its share has more, whatever its count said (a
            for host, count in found.items():  # host let go, then counted again from one spill)
                if count >= share:
                    self._by_host.setdefault(host, 1)
        return loaded

    def _watch_fairness(self, now: float) -> None:
        """Note since when hungry hosts wait while a host holds more than its fair part (the
        wait for room alone missed a hung host holding 111 of 200: the room reached a load's
        worth now and then, and admissions took it). While all is fair, the share hosts were
        cut to grows with it."""
        share = self._share()
        if any(len(queue) > share for queue in self._queues.values()):
            if self._starved_since is None:
                self._starved_since = now
            return
        self._starved_since = None
        if self._cap:  # fair now: the cap grows with the share as hosts go (a share-out lowers it)
            self._cap = max(self._cap, share)

    async def _within_cap(self, rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
        """The leased ``rows`` that keep each host within the share hosts were cut to; the
        others' leases are given back at once (a hung host whose queue had gone in flight took
        100 of a buffer of 200 again, its cap 16)."""
        left: dict[str, int] = {}
        kept: list[sqlite3.Row] = []
        over: list[sqlite3.Row] = []
        for row in rows:
            host = row["host"]
            room = left.get(host)
            if room is None:
                room = self._cap - len(self._queues.get(host, ()))
            left[host] = room - 1
            (kept if room > 0 else over).append(row)
        if over:
            await self._storage.give_back([row["fingerprint"] for row in over])
        return kept

    async def _lease(
        self, limit: int, *, hosts: Sequence[str] = (), excluding: Sequence[str] = ()
    ) -> list[sqlite3.Row]:
        """Lease up to ``limit`` rows (of each of ``hosts``), the room they need held meanwhile:
        requests admitted while the load was on its way took it too (the buffer held 45 of 40)."""
        held = limit * len(hosts) if hosts else limit
        self._leasing += held
        try:
            return await self._storage.lease_pending(limit, hosts=hosts, excluding=excluding)
        finally:
            self._leasing -= held

    def _wake_rested(self, now: float) -> None:
        """Hosts whose rest is over may be loaded again: the hungry among them are."""
        ends = self._rest_ends
        while ends and ends[0][0] <= now:
            until, host = heapq.heappop(ends)
            if self._rests.get(host) == until:  # else it rests longer now: a later end is queued
                del self._rests[host]
                self._to_give_back.discard(host)
                self._empty_pause = _EMPTY_REFILL_PAUSE  # its rows may be loaded now
                self._next_refill = min(self._next_refill, now)
                if host in self._by_host and host not in self._queues:
                    self._hungry[host] = 0

    async def _give_back(self, now: float) -> list[str]:
        """The requests of resting hosts leave memory, their leases given back, so that their
        room goes to hosts that can be fetched. Not those a retry parked, nor those whose page
        has not been written yet (the database has no row to give back): they stay. Returns
        the hosts of the requests that stayed (queued again)."""
        aside: list[tuple[int, int, Scheduled]] = []
        for host in self._to_give_back:
            if self._rests.get(host, 0) > now:
                aside += self._set_aside(host, keep=0)
        self._to_give_back.clear()
        return await self._returned(aside)

    async def _share_out(self, now: float) -> list[str]:
        """Hungry hosts have waited ``_STARVED_FOR`` while a host held more than its fair part:
        each host holding more gives its worst requests back (a hung or slowed host had held
        the whole buffer, a minute at a time, while other hosts' rows waited). From then on
        until everything is in memory again, no host holds more than that share (``has_room``,
        the refill of the best rows; hungry hosts' loads are of at most the share). Returns
        what ``_give_back`` does."""
        self._starved_since = None  # the next one, if need be, after another wait
        self._next_look = now  # the room goes to the hungry hosts at once
        self._cap = self._share()
        aside: list[tuple[int, int, Scheduled]] = []
        for host in list(self._queues):  # _set_aside may remove a host's queue
            aside += self._set_aside(host, keep=self._cap)
        self._stats.increment("frontier/shared_out", len(aside))
        return await self._returned(aside)

    def _set_aside(self, host: str, *, keep: int) -> list[tuple[int, int, Scheduled]]:
        """Take ``host``'s queued requests out of its queue but its best ``keep`` and those a
        retry parked (the commit of their outcome may still be on its way)."""
        queue = self._queues.get(host)
        if not queue or len(queue) <= keep:
            return []
        ordered = sorted(queue)
        stay = ordered[:keep] + [queued for queued in ordered[keep:] if queued[2].parked]
        aside = [queued for queued in ordered[keep:] if not queued[2].parked]
        if stay:
            heapq.heapify(stay)
            self._queues[host] = stay
        else:
            del self._queues[host]
        return aside

    async def _returned(self, aside: list[tuple[int, int, Scheduled]]) -> list[str]:
        """Give the leases of ``aside``'s requests back: they wait in the database again. One
        whose page is not written yet (no row to give back) is queued again: its host is returned."""
        if not aside:
            return []
        given = await self._storage.give_back([queued[2].fingerprint for queued in aside])
        hosts = []
        for queued in aside:
            entry = queued[2]
            if entry.fingerprint not in given:  # its row is not written yet: it keeps its place
                heapq.heappush(self._queues.setdefault(entry.host, []), queued)
                hosts.append(entry.host)
                continue
            self._size -= 1
            self._spilled += 1
            self._count_spilled(entry.host)
        self._stats.increment("frontier/given_back", len(given))
        return hosts

    def _missed(self, host: str) -> None:
        """A load found none of ``host``'s rows: not committed yet (the page that found them
        is still on its way to the writer), or gone (loaded by a refill meanwhile). It goes to
        the back of the line; after ``_MISSES`` it is let go (its rows, if any, still count in
        ``_spilled``: the refill of the best rows loads them)."""
        misses = self._hungry.pop(host, None)
        if misses is None or host in self._queues:
            return
        if misses + 1 < _MISSES:
            self._hungry[host] = misses + 1
        else:
            self._by_host.pop(host, None)

    def _note_emptied(self) -> None:
        """The hosts whose queue ``pop`` emptied while their rows wait become hungry."""
        emptied = self._emptied
        if emptied:
            for host in emptied:
                if host in self._by_host and host not in self._queues and host not in self._rests:
                    self._hungry.setdefault(host, 0)
            emptied.clear()

    async def _loaded(self, rows: list[sqlite3.Row]) -> list[str]:
        self._spilled = max(0, self._spilled - len(rows))
        by_host, hungry = self._by_host, self._hungry
        hosts = []
        for row in rows:
            host = row["host"]
            left = by_host.get(host)
            if left is not None:
                if left > 1:
                    by_host[host] = left - 1
                else:
                    del by_host[host]
                    hungry.pop(host, None)
            entry = await self._entry(row)
            if entry is None:
                continue
            wait = max(0.0, (row["not_before"] or 0.0) - time.time())
            await super().push(entry, not_before=time.monotonic() + wait if wait else 0.0)
            hungry.pop(host, None)  # it has work in memory now
            hosts.append(host)
        if not self._spilled:  # everything is in memory: nothing to track until the next spill
            by_host.clear()
            hungry.clear()
            self._emptied = None
            self._cap = 0
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
        """The earliest parked entry; or, while rows wait, the earliest of: the next refill of
        the best rows (the buffer at most half full), the next look for hungry hosts (room for
        a share), a rest's end, the share-out due while a host holds more than its part. One
        of these passed already is due now: a refill just before the next look had the look
        dropped, and the feeder slept until a hung page answered (40 s). (``refill`` moves
        each of them on, so the feeder does not spin.)"""
        due = super().next_due()
        if not self._spilled:
            return due
        now = time.monotonic()
        self._note_emptied()
        wanted = [self._rest_ends[0][0]] if self._rest_ends else []
        if self._size <= self._buffer // 2:
            wanted.append(self._next_refill)
        if self._hungry and self._buffer - self._size >= self._least():
            wanted.append(self._next_look)
        if self._starved_since is not None:
            wanted.append(self._starved_since + _STARVED_FOR)
        if wanted:
            soonest = max(now, min(wanted))
            due = soonest if due is None else min(due, soonest)
        return due

    def __len__(self) -> int:
        return self._size + self._spilled
