"""Admission and hand-out of requests.

In: dedup by fingerprint, depth, scope (``allowed_domains``), link hygiene and traps, host
page budgets; a request that fails a check is *filtered* with a reason. Out: the next request
of a host that may take one now (free slot, delay passed, not paused), so that a slow or
resting host never holds the workers. The crawl is over when nothing is pending, parked,
in flight or still being produced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from scraper.codec import RequestNotStorable, encode
from scraper.errors import describe
from scraper.fingerprint import copy_key, fingerprint
from scraper.frontier import Frontier, Refused, Scheduled
from scraper.http import Request
from scraper.links import inspect_link
from scraper.ratelimit import HostLimiter, Signal
from scraper.seen import SeenSet
from scraper.settings import Settings
from scraper.stats import Stats

_EVICT_EVERY = 1000  # hand-outs between sweeps of idle host state
_EVICT_ABOVE = 1000  # only sweep when this many hosts are remembered
# links checked and fingerprinted in one step of the loop: a page of 300,000 links
# (links.max_per_page: 0) held the loop for 10 s in one add(); in parts, fetches and timers
# go on between them
_CHECK_AT_ONCE = 1000


@dataclasses.dataclass(slots=True)
class Admission:
    admitted: list[Scheduled] = dataclasses.field(default_factory=list)
    refused: list[Refused] = dataclasses.field(default_factory=list)
    unstorable: list[tuple[Request, RequestNotStorable]] = dataclasses.field(default_factory=list)
    # links no crawl fetches (``inspect_link``'s reason): only counted for a page's links, but
    # a start request among them is the spider's mistake, an error row of its own (see Engine)
    unfollowable: list[tuple[Request, str]] = dataclasses.field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        *,
        frontier: Frontier,
        seen: SeenSet,
        limiter: HostLimiter,
        settings: Settings,
        stats: Stats,
        allowed_domains: Sequence[str] = (),
        handed_out: int = 0,
    ) -> None:
        """``handed_out``: the fetches a resumed crawl made before (retries and redirect hops
        included, as this run counts its own), counted against ``close.max_pages`` (each
        resume had the whole quota again: 1,702 pages for 1,001; counting only the pages done
        before, a resumed crawl fetched 665 where one left to run fetched 653)."""
        self._frontier = frontier
        self._seen = seen
        self._limiter = limiter
        limiter.on_pause = frontier.resting  # a paused host's waiting requests may leave memory
        self._settings = settings
        self._stats = stats
        self._allowed = tuple(domain.lower().lstrip(".") for domain in allowed_domains)
        self._per_host: Counter[str] = Counter()  # admitted requests, for per_host.max_pages
        self._claimed: set[str] = set()  # keys an admission in progress is deciding on
        self._hosts: list[tuple[float, int, str]] = []  # (ready time, order, host) of hosts with work
        self._queued_hosts: set[str] = set()  # hosts in _hosts
        self._full_hosts: set[str] = set()  # hosts with work whose slots are all taken
        self._order = itertools.count()
        self._handed_out = handed_out
        self._in_flight = 0
        self._producers = 0
        self._changed = asyncio.Event()
        self._wake: asyncio.Handle | None = None  # armed by wait_for_change...
        self._wake_at = 0.0  # ...for this time (uvloop's handle of a time past has no when())
        self._closed = False
        self.limit_reached: str | None = None
        if settings.close.max_pages and handed_out >= settings.close.max_pages:
            self.limit_reached = "max_pages"  # reached before the stop: nothing more to hand out
            self.close()

    # -- admission ---------------------------------------------------------------------------

    async def add(
        self,
        requests: Iterable[Request],
        *,
        parent: Request | None = None,
        depth: int | None = None,
        copies: bool = True,
    ) -> Admission:
        """Admit new requests (links found on ``parent`` are one level deeper; redirect hops
        pass ``depth``). Duplicates and unfollowable links are only counted; requests refused
        by scope or budget, and requests that cannot be stored, are returned. A ``dont_filter``
        request already seen is admitted again as a copy, unless ``copies`` is off (a resumed
        crawl's start requests: those its first run admitted are skipped, not counted)."""
        requests = list(requests)
        if not requests:  # most pages (leaves) find nothing to follow: no awaits for them
            return Admission()
        if depth is None:
            depth = parent.depth + 1 if parent is not None else 0
        admission = Admission()
        if len(requests) > _CHECK_AT_ONCE:
            candidates = await self._candidates_in_parts(requests, admission)
        else:
            candidates = self._candidates(requests, admission)
        # Claim the keys before asking the seen-set (which may await the database): a page
        # parsed meanwhile that links to the same new URL must find it taken, not unseen.
        claimed = {key for _, key, _ in candidates} - self._claimed
        self._claimed |= claimed
        try:
            unseen = await self._seen.unseen(list(claimed))
            for request, key, host in candidates:
                row_key = key
                if key not in unseen:
                    if not copies:  # a resumed crawl's start request, admitted by its first run: no duplicate
                        continue
                    if not request.dont_filter:
                        self._stats.increment("requests/filtered/duplicate")
                        continue
                    row_key = copy_key(key)  # a copy asked for: a row of its own
                self._seen.add(key)
                unseen.discard(key)  # a second copy in this batch is a duplicate
                await self._admit(request, row_key, host, depth, admission)
        finally:
            self._claimed -= claimed  # every claimed key is in the seen-set by now
        if admission.admitted:
            self._stats.increment("requests/admitted", len(admission.admitted))
            self._changed.set()
        return admission

    async def _candidates_in_parts(
        self, requests: list[Request], admission: Admission
    ) -> list[tuple[Request, str, str]]:
        """``_candidates`` of a page of many links, ``_CHECK_AT_ONCE`` at a time, the loop
        running between the parts (the checks and fingerprints are most of an admission's work).
        Nothing is admitted meanwhile: admitted in parts, a request could be handed out and
        finished before its page's commit, and its outcome, written before its row, was lost
        (the row stayed pending in a finished crawl)."""
        candidates: list[tuple[Request, str, str]] = []
        for start in range(0, len(requests), _CHECK_AT_ONCE):
            candidates += self._candidates(requests[start : start + _CHECK_AT_ONCE], admission)
            await asyncio.sleep(0)
        return candidates

    def _candidates(self, requests: Iterable[Request], admission: Admission) -> list[tuple[Request, str, str]]:
        """Requests worth a fingerprint, with it and their host (each URL parsed once):
        unfollowable links and traps are counted and dropped; a request whose body cannot be
        made (``json`` holding an object JSON cannot write) goes to ``admission.unstorable``."""
        candidates = []
        for request in requests:
            reason, parsed = inspect_link(request.url, self._settings.links, parse=request.parsed_url)
            if reason is not None or parsed is None:
                self._stats.increment(f"requests/filtered/{reason}")
                admission.unfollowable.append((request, reason or "malformed"))
                continue
            try:
                key = fingerprint(request, self._settings.links.session_parameters, parsed=parsed)
            except (TypeError, ValueError) as exc:  # the body, made to be hashed: one request fails
                problem = RequestNotStorable(f"the body of {request.url} cannot be made: {describe(exc)}")
                admission.unstorable.append((request, problem))
                continue
            candidates.append((request, key, parsed.host or ""))
        return candidates

    async def _admit(self, request: Request, key: str, host: str, depth: int, admission: Admission) -> None:
        reason = self._scope_reason(host, depth)
        if reason is not None:
            self._stats.increment(f"requests/filtered/{reason}")
            admission.refused.append(Refused(request, key, host, reason))
            return
        try:
            encoded = encode(request)
        except RequestNotStorable as exc:
            admission.unstorable.append((request, exc))
            return
        request = request if request.depth == depth else request.replace(depth=depth)
        in_memory = self._frontier.has_room(host)
        entry = Scheduled(request, key, host, encoded=encoded, in_memory=in_memory)
        await self._frontier.push(entry)
        if self._limiter.state(host).policy.max_pages:
            self._per_host[host] += 1
        self._schedule_host(host)
        admission.admitted.append(entry)

    def _scope_reason(self, host: str, depth: int) -> str | None:
        if self._allowed and not any(host == domain or host.endswith(f".{domain}") for domain in self._allowed):
            return "offsite"
        if self._settings.max_depth and depth > self._settings.max_depth:
            return "depth"
        budget = self._limiter.state(host).policy.max_pages
        if budget and self._per_host[host] >= budget:
            return "host_budget"
        return None

    # -- hand-out ----------------------------------------------------------------------------

    async def next(self) -> Scheduled | None:
        """Like ``next_ready``, after loading stored requests if the frontier runs low."""
        if self._closed:
            return None
        for host in await self._frontier.refill():
            self._schedule_host(host)
        return self.next_ready()

    def next_ready(self) -> Scheduled | None:
        """The next request of a host that may take one now (counted as in flight), or None.
        Never waits: a worker that has just finished a page calls it to go straight on."""
        if self._closed:
            return None
        now = time.monotonic()
        for host in self._frontier.release_due(now):
            self._schedule_host(host)
        while self._hosts and self._hosts[0][0] <= now:
            _, _, host = heapq.heappop(self._hosts)
            self._queued_hosts.discard(host)
            ready = self._limiter.ready_at(host)
            if ready > now:
                self._schedule_host(host, ready)  # paused, delayed or full since it was queued
                continue
            entry = self._frontier.pop(host)
            if entry is None:
                continue
            self._schedule_host(host, self._limiter.begin(host, now))
            self._in_flight += 1
            self._after_hand_out(now)
            return entry
        return None

    def _after_hand_out(self, now: float) -> None:
        """The bookkeeping of each hand-out, in one call: ``close.max_pages`` is exact (after
        that many fetches are handed out, none is), and every ``_EVICT_EVERY`` hand-outs the
        rate state of hosts with nothing pending or in flight is dropped."""
        self._handed_out += 1
        limit = self._settings.close.max_pages
        if limit and self._handed_out >= limit:
            self.limit_reached = "max_pages"
            self.close()
        if not self._handed_out % _EVICT_EVERY and len(self._limiter) >= _EVICT_ABOVE:
            evicted = self._limiter.evict_idle(
                now, busy=lambda host: host in self._full_hosts or self._frontier.has_pending(host)
            )
            self._stats.increment("hosts/forgotten", evicted)

    def wake_time(self) -> float | None:
        """When ``next`` may have something again without any other event (monotonic); None
        when only an event can help (nothing waiting, or closed)."""
        if self._closed:
            return None
        times = [t for t in (self._hosts[0][0] if self._hosts else None, self._frontier.next_due()) if t is not None]
        return min(times) if times else None

    def _schedule_host(self, host: str, ready: float | None = None) -> None:
        """Queue ``host`` for hand-out at its ready time, if it has work and is not queued."""
        if host in self._queued_hosts or not self._frontier.has_pending(host):
            return
        ready = self._limiter.ready_at(host) if ready is None else ready
        if ready == math.inf:
            self._full_hosts.add(host)  # comes back in fetched() when a slot frees
            return
        self._full_hosts.discard(host)
        self._queued_hosts.add(host)
        heapq.heappush(self._hosts, (ready, next(self._order), host))

    # -- completion --------------------------------------------------------------------------

    def fetched(self, entry: Scheduled, signal: Signal) -> None:
        """The fetch of ``entry`` ended: free its host slot and adapt the host's rate."""
        self._limiter.end(entry.host, signal, retried=entry.attempts > 0)
        if entry.host in self._full_hosts:
            self._full_hosts.discard(entry.host)
            self._schedule_host(entry.host)
        self._changed.set()

    async def retry(self, entry: Scheduled, *, delay: float, count_attempt: bool = True) -> Scheduled:
        """Park ``entry`` for ``delay`` seconds; no worker waits for it."""
        parked = entry._replace(attempts=entry.attempts + (1 if count_attempt else 0), parked=True)
        await self._frontier.push(parked, not_before=time.monotonic() + delay)
        self._changed.set()  # a new wake time
        return parked

    def done(self, entry: Scheduled) -> None:
        """A handed-out request is finished (or parked again), whatever its outcome. Its host
        slot was freed by ``fetched``; only the last one can change ``finished``."""
        self._in_flight -= 1
        if not self._in_flight:
            self._changed.set()

    # -- lifecycle ---------------------------------------------------------------------------

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
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        """True when no request is in flight and none will be handed out."""
        if self._in_flight:
            return False
        return self._closed or (len(self._frontier) == 0 and self._producers == 0)

    @property
    def pending(self) -> int:
        return len(self._frontier)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def look(self) -> None:
        """The caller is about to look at the scheduler (``finished``, ``next``...): a change
        from now on ends its next ``wait_for_change`` at once."""
        self._changed.clear()

    async def wait_for_change(self, until: float | None = None) -> None:
        """Sleep until a request is added or finished, the scheduler closes, or the monotonic
        time ``until``, counting from the caller's last ``look``: a change made meanwhile,
        as the caller acted on what it saw, is not lost. It may return earlier (the caller
        looks again and waits again)."""
        if until is not None:
            self._arm_wake(until)
        await self._changed.wait()

    def _arm_wake(self, until: float) -> None:
        """One timer serves every wait: a wake-up armed for no later than ``until`` is kept,
        so the wait after each finished request (thousands a second) arms none of its own."""
        if self._wake is not None:
            if self._wake_at <= until:
                return
            self._wake.cancel()
        self._wake_at = until
        self._wake = asyncio.get_running_loop().call_at(until, self._woken)

    def disarm(self) -> None:
        """Cancel the armed wake-up: the crawl is over, the loop may run on (embedded)."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None

    def _woken(self) -> None:
        self._wake = None
        self._changed.set()
