"""Per-host politeness: how many requests may be in flight to a host, how far apart they
start, and when a host must rest.

The scheduler asks ``ready_at`` before handing out a host's request and calls ``begin``; the
fetcher calls ``wait_turn`` at the actual start (queue time can bunch starts) and the worker
reports how the fetch went with ``end``. An AIMD controller slows a host down on 429/503 and
timeouts (halve concurrency, double delay) and speeds it up slowly on success; a circuit
breaker rests a host after K consecutive failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import Callable

from scraper.errors import HostGivenUp, TryLater
from scraper.settings import HostPolicy, Settings
from scraper.stats import Stats

logger = logging.getLogger(__name__)

_FIRST_BACKOFF_DELAY = 0.25  # seconds: the first slow-down of a host that had no delay
_RECOVERY = 0.8  # each good window shrinks the extra delay by this factor
_MAX_TRIP_FACTOR = 16
_NOT_SENT = "not sent: the crawl is stopping"  # the reason a pending row gives
_SAY_FROM = 10.0  # seconds of a host's rest from which it is a warning, not an INFO line


class Signal(enum.Enum):
    """How a fetch went, as far as the host's health is concerned."""

    OK = "ok"  # an answer the server was happy to give (2xx-4xx except 429)
    THROTTLED = "throttled"  # 429, 503, or a timeout: the host wants us slower
    FAILED = "failed"  # connection error or 5xx: the host may be down
    SKIPPED = "skipped"  # nothing reached the host (robots.txt said no, or try later)


class HostState:
    __slots__ = (
        "active",
        "before_trip",
        "crawl_delay",
        "delay",
        "exempt",
        "failures",
        "given_up",
        "last_start",
        "limit",
        "next_start",
        "paused_until",
        "policy",
        "probing",
        "successes",
        "trips",
        "waiting",
    )

    def __init__(self, policy: HostPolicy, *, probe_first: bool = False) -> None:
        """``probe_first``: one request at a time until the first ends (see HostLimiter.end)."""
        self.policy = policy
        self.probing = probe_first
        self.limit = 1 if probe_first else policy.concurrency  # live concurrency, moved by AIMD
        self.delay = policy.delay  # live delay between starts, moved by AIMD
        self.crawl_delay = 0.0  # from robots.txt
        self.active = 0  # handed out and not ended: sent, or waiting for their turn
        self.waiting = 0  # of those, sleeping in wait_turn: not sent yet
        self.next_start = 0.0  # reservation time of the next hand-out
        self.last_start = -math.inf  # when the last request really started
        self.paused_until = 0.0
        self.failures = 0  # consecutive
        self.exempt = 0  # outcomes still due of requests sent before the last slow-down
        self.before_trip = 0  # outcomes still due of requests sent before the last breaker trip
        self.successes = 0  # since the last change of rate
        self.trips = 0  # consecutive breaker trips
        self.given_up: str | None = None  # why the host's requests fail unsent (breaker.max_trips)

    @property
    def floor_delay(self) -> float:
        return max(self.policy.delay, self.crawl_delay)

    def ready_at(self) -> float:
        """When a new request may be handed out: ``inf`` while every slot is taken, else once
        the reserved start time and any pause are past."""
        if self.active >= self.limit:
            return math.inf
        return max(self.next_start, self.paused_until)


class _HostStates(dict[str, HostState]):
    """Host -> its state, made from the host's policy on first use. A plain subscript is the
    lookup: several per page, so no method call around it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._probe_first = settings.robots_txt  # a new host's first request loads its robots.txt

    def __missing__(self, host: str) -> HostState:
        state = self[host] = HostState(self._settings.policy_for(host), probe_first=self._probe_first)
        return state


class HostLimiter:
    def __init__(self, *, settings: Settings, stats: Stats) -> None:
        self._settings = settings
        self._stats = stats
        self._hosts = _HostStates(settings)
        self._stopping = asyncio.Event()  # what a turn waits on, besides its time
        self._stopped = False  # the same, read by every request: an attribute, not a method call
        # told of each pause (a breaker's rest, a Retry-After): the frontier, which may move the
        # host's waiting requests out of memory meanwhile (set by the scheduler)
        self.on_pause: Callable[[str, float], None] | None = None

    def state(self, host: str) -> HostState:
        return self._hosts[host]

    def ready_at(self, host: str) -> float:
        """When a new request to ``host`` may be handed out (``inf`` while its slots are full)."""
        return self._hosts[host].ready_at()

    def begin(self, host: str, now: float) -> float:
        """A request to ``host`` is handed out: take a slot and reserve the next start time.
        Returns ``ready_at(host)`` after it, which the scheduler wants next (one lookup of
        the host's state a hand-out, not two)."""
        state = self._hosts[host]
        state.active += 1
        state.next_start = max(now, state.next_start) + state.delay
        return state.ready_at()

    def stop(self) -> None:
        """The crawl is stopping: a request not sent yet (waiting for its turn) is not sent."""
        self._stopped = True
        self._stopping.set()

    async def wait_turn(self, host: str, url: str) -> None:
        """Sleep until ``delay`` has passed since the last real start to ``host``. A host paused
        since the request was handed out raises ``TryLater``: the request is parked, not sent;
        a host given up raises ``HostGivenUp``: the request to ``url`` fails, unsent. So does a
        stopping crawl (``TryLater``): its requests waiting for their turn had gone out after the
        first Ctrl-C, one a delay apart, for up to ``close.drain_timeout``."""
        state = self._hosts[host]
        now = time.monotonic()
        if state.given_up is not None:
            raise HostGivenUp(state.given_up, url=url)
        if state.paused_until > now:
            raise TryLater(f"{host} is paused", until=state.paused_until)
        if self._stopped:
            raise TryLater(_NOT_SENT, until=now)
        if not state.delay:
            # recorded all the same: a delay that begins now (a slow-down, a Crawl-delay just
            # told) counts from this start (the next request went 4 ms after it)
            state.last_start = now
            return
        start = max(now, state.last_start + state.delay)
        state.last_start = start  # reserved before sleeping, so turns keep their order
        if start > now:
            state.waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(start - now):
                        await self._stopping.wait()
            finally:
                state.waiting -= 1
            self._check_after_wait(state, host, url)

    def _check_after_wait(self, state: HostState, host: str, url: str) -> None:
        """What may have changed while a request waited for its turn: the crawl stopping, or
        its host resting or given up (a breaker trip meanwhile had a request go 0.2 s into a
        1 s rest)."""
        now = time.monotonic()
        if self._stopped:
            raise TryLater(_NOT_SENT, until=now)
        if state.given_up is not None:
            raise HostGivenUp(state.given_up, url=url)
        if state.paused_until > now:
            raise TryLater(f"{host} is paused", until=state.paused_until)

    def end(self, host: str, signal: Signal, *, retried: bool = False) -> None:
        """Release the slot and adapt the host's rate to how the fetch went.

        A slow-down answers the requests sent at the old rate once: their outcomes still due
        are exempt from slowing it again (each throttled one in a burst had halved the rate
        anew, and a burst of eight one-off 503s took the host to one request every 30 s). A
        ``retried`` request that fails again does not count toward the breaker, which its
        first failure did: one broken URL retried had rested a healthy host, again and again."""
        state = self._hosts[host]
        state.active = max(0, state.active - 1)
        if state.probing:
            # a new host's first request goes alone (with robots.txt obeyed): it loads the
            # host's robots.txt, which every other request waits for in a worker; eight of
            # each of four hosts whose robots.txt hung held all 32 workers for the timeout
            state.probing = False
            state.limit = state.policy.concurrency
        exempt = state.exempt > 0
        if exempt:  # a request sent at the old rate, whatever its outcome
            state.exempt -= 1
        sent_before_trip = state.before_trip > 0
        if sent_before_trip:
            state.before_trip -= 1
        if signal is Signal.SKIPPED:
            return
        if signal is Signal.OK:
            self._recover(state)
            return
        # a failure of a request sent before the last trip does not count toward the next one:
        # that trip answered it (one burst of eight 500s in flight had tripped the breaker three
        # times within half a second, and given the host up without a rest); once rested, every
        # failure counts (the probe after a rest is often a retry)
        if not sent_before_trip and (not retried or state.trips):
            state.failures += 1
        if signal is Signal.THROTTLED and state.policy.adaptive and not exempt:
            self._slow_down(host, state)
        if state.failures >= self._settings.breaker.failures:
            self._trip(host, state)

    def pause(self, host: str, until: float, reason: str, *, announced: bool = False) -> None:
        """Rest ``host`` until ``until`` (monotonic seconds); other hosts go on. A rest of
        ``_SAY_FROM`` seconds or more is a warning (unless ``announced`` already): said at INFO
        only, a crawl waiting on a Retry-After of 40 s showed nothing but its status line."""
        state = self._hosts[host]
        if until > state.paused_until:
            state.paused_until = until
            self._stats.increment("hosts/paused")
            seconds = until - time.monotonic()
            level = logging.WARNING if seconds >= _SAY_FROM and not announced else logging.INFO
            logger.log(level, "pausing %s for %.1fs: %s", host, seconds, reason)
            if self.on_pause is not None:
                self.on_pause(host, until)

    def set_crawl_delay(self, host: str, seconds: float) -> None:
        """robots.txt's Crawl-delay: a floor for the host's delay (told with each of the host's
        requests: a host forgotten by ``evict_idle`` gets it back with its next one)."""
        state = self._hosts[host]
        if state.crawl_delay != seconds:
            state.crawl_delay = seconds
            state.delay = max(state.delay, seconds)

    def evict_idle(self, now: float, *, busy: Callable[[str], bool]) -> int:
        """Forget hosts with nothing to remember: no request in flight or queued (``busy``),
        no pause, no slow-down, and their delay long past. Keeps memory flat on crawls that
        touch many hosts; a forgotten host starts again from its policy (and its Crawl-delay,
        which robots.txt tells again with its next request)."""
        idle = [
            host
            for host, state in self._hosts.items()
            if not state.active
            and not state.failures
            and state.given_up is None
            and not state.trips  # its breaker's history: forgotten, a dead host was never given up
            and state.paused_until <= now
            and state.limit == state.policy.concurrency
            and state.delay == state.floor_delay
            and max(state.next_start, state.last_start + state.delay) <= now
            and not busy(host)
        ]
        for host in idle:
            del self._hosts[host]
        return len(idle)

    def __len__(self) -> int:
        return len(self._hosts)

    def _slow_down(self, host: str, state: HostState) -> None:
        # the requests on the wire were sent at the old rate; those waiting for their turn go
        # at the new one, and their answers tell of it (they were exempt: a retry's second 503
        # did not slow the host again)
        state.exempt = state.active - state.waiting
        state.limit = max(1, state.limit // 2)
        slower = min(state.policy.max_delay, max(state.delay * 2, _FIRST_BACKOFF_DELAY))
        state.delay = max(state.floor_delay, slower)  # never faster than configured or Crawl-delay
        state.successes = 0
        self._stats.increment("hosts/slowed_down")
        logger.info("slowing down %s: %d in flight, %.2fs apart", host, state.limit, state.delay)

    def _recover(self, state: HostState) -> None:
        state.failures = 0
        state.trips = 0
        state.successes += 1
        if state.successes < state.limit:
            return  # one good window at the current rate before speeding up
        state.successes = 0
        state.limit = min(state.policy.concurrency, state.limit + 1)
        extra = (state.delay - state.floor_delay) * _RECOVERY
        state.delay = state.floor_delay + (extra if extra > 0.01 else 0.0)

    def _trip(self, host: str, state: HostState) -> None:
        breaker = self._settings.breaker
        pause = breaker.pause * min(2**state.trips, _MAX_TRIP_FACTOR)
        state.trips += 1
        state.failures = 0
        state.before_trip = state.active - state.waiting  # on the wire: their failures tell of before this trip
        self._stats.increment("hosts/breaker_trips")
        if breaker.max_trips and state.trips >= breaker.max_trips:
            # a host down for good: its requests would wait ever longer (20 requests to a port
            # nothing listens on were not done after 5 minutes; the doubling rests add up to
            # ~1.7 hours), so they fail now, each an error row
            state.given_up = (
                f"{host} given up after {state.trips} breaker trips in a row ({breaker.failures} failures each)"
            )
            # they fail unsent: no need to take turns, nor to keep a delay between them (they
            # went out one per delay: 30 in 30 s at delay 1, up to 30 s each at an adaptive one)
            state.limit, state.delay, state.next_start = state.policy.concurrency, 0.0, 0.0
            self._stats.increment("hosts/given_up")
            logger.warning("%s: its requests fail from now on, unsent (breaker.max_trips)", state.given_up)
            return
        state.limit = 1  # half-open: one request probes the host when the pause ends
        reason = f"{breaker.failures} failures in a row"
        # each rest said: only the first was, and a crawl waiting minutes on the later, longer
        # ones looked hung (one a host: they double, so few)
        trip = f"trip {state.trips} in a row" + (f", given up at {breaker.max_trips}" if breaker.max_trips else "")
        logger.warning("resting %s for %gs: %s (%s)", host, pause, reason, trip)
        self.pause(host, time.monotonic() + pause, reason, announced=True)


def describe_policy(settings: Settings) -> str:
    """The effective politeness policy in one paragraph, printed when a crawl starts."""
    host = settings.per_host
    lines = [
        f"concurrency {settings.concurrency}; per host {host.concurrency} in flight, "
        f"{host.delay:g}s apart" + (f", adaptive up to {host.max_delay:g}s" if host.adaptive else ", fixed"),
        f"retry {settings.retry.times}x (back-off {settings.retry.backoff:g}s..{settings.retry.max_backoff:g}s, "
        f"Retry-After up to {settings.retry.max_retry_after:g}s); breaker after {settings.breaker.failures} "
        f"failures rests a host {settings.breaker.pause:g}s"
        + (f", {settings.breaker.max_trips} trips in a row give it up" if settings.breaker.max_trips else ""),
        f"robots.txt {'obeyed' if settings.robots_txt else 'ignored'}; timeout {settings.timeout:g}s; "
        f"body cap {settings.max_response_bytes / 2**20:g} MiB; redirects up to {settings.redirect.max_hops}",
    ]
    general = host.model_dump()
    for pattern, override in settings.hosts.items():
        # a host's own entry wins over per_host from any layer: say what it replaces, since a
        # -s per_host.delay=... seemed ignored for hosts that config.yaml's entry matched
        changes = [
            f"{key}={value}" + (f" (instead of per_host's {general[key]})" if general[key] != value else "")
            for key, value in override.model_dump(exclude_none=True).items()
        ]
        lines.append(f"hosts {pattern}: " + ", ".join(changes))
    return "\n".join(lines)
