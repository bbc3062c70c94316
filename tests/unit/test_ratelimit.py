"""The per-host limiter: slots and delay, the adaptive rate, the breaker, forgetting idle hosts."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from scraper.errors import TryLater
from scraper.ratelimit import HostLimiter, Signal
from scraper.stats import Stats
from tests.conftest import make_settings


def limiter(**settings: Any) -> HostLimiter:
    return HostLimiter(settings=make_settings(**settings), stats=Stats())


def test_slots_fill_then_free() -> None:
    hosts = limiter(per_host={"concurrency": 2})
    now = time.monotonic()
    hosts.begin("a.test", now)
    hosts.begin("a.test", now)
    assert hosts.ready_at("a.test") == math.inf
    hosts.end("a.test", Signal.OK)
    assert hosts.ready_at("a.test") <= now


def test_begin_returns_the_ready_time_after_it() -> None:
    hosts = limiter(per_host={"concurrency": 2, "delay": 0.5})
    now = time.monotonic()
    first = hosts.begin("a.test", now)
    assert first == hosts.ready_at("a.test") == now + 0.5  # a slot is free, the next start reserved
    hosts.pause("a.test", now + 3, "test")
    hosts.end("a.test", Signal.SKIPPED)
    assert hosts.begin("a.test", now) == hosts.ready_at("a.test") == now + 3  # paused
    assert hosts.begin("a.test", now) == hosts.ready_at("a.test") == math.inf  # both slots taken


def test_throttling_halves_slots_and_doubles_delay_then_recovers_slowly() -> None:
    hosts = limiter(per_host={"concurrency": 8, "delay": 0.0})
    hosts.begin("a.test", time.monotonic())
    hosts.end("a.test", Signal.THROTTLED)
    state = hosts.state("a.test")
    assert (state.limit, state.delay) == (4, 0.25)
    for _ in range(4):  # one clean window at the current rate
        hosts.begin("a.test", time.monotonic())
        hosts.end("a.test", Signal.OK)
    assert state.limit == 5 and 0 < state.delay < 0.25


def test_slow_down_never_goes_below_crawl_delay() -> None:
    hosts = limiter(per_host={"max_delay": 0.2})
    hosts.set_crawl_delay("a.test", 0.5)
    hosts.begin("a.test", time.monotonic())
    hosts.end("a.test", Signal.THROTTLED)
    assert hosts.state("a.test").delay == 0.5


def test_the_breaker_pauses_a_failing_host() -> None:
    hosts = limiter(breaker={"failures": 3, "pause": 10})
    for _ in range(3):
        hosts.begin("a.test", time.monotonic())
        hosts.end("a.test", Signal.FAILED)
    assert hosts.ready_at("a.test") > time.monotonic() + 9
    assert hosts.state("a.test").limit == 1  # half-open: one probe when the pause ends


async def test_a_paused_host_turns_requests_away_at_the_last_moment() -> None:
    hosts = limiter()
    hosts.pause("a.test", time.monotonic() + 5, "Retry-After")
    with pytest.raises(TryLater):
        await hosts.wait_turn("a.test")


def test_idle_hosts_are_forgotten_busy_and_slowed_ones_kept() -> None:
    hosts = limiter(per_host={"delay": 0.0})
    now = time.monotonic()
    for host in ("idle.test", "busy.test", "slowed.test", "active.test"):
        hosts.begin(host, now)
        hosts.end(host, Signal.OK)
    hosts.begin("slowed.test", now)
    hosts.end("slowed.test", Signal.THROTTLED)
    hosts.begin("active.test", now)
    forgotten = hosts.evict_idle(time.monotonic() + 1, busy=lambda host: host == "busy.test")
    assert forgotten == 1
    assert len(hosts) == 3
