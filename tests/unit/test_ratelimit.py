"""The per-host limiter: slots and delay, the adaptive rate, the breaker, forgetting idle hosts."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Any

import pytest

from scraper.errors import HostGivenUp, TryLater
from scraper.ratelimit import HostLimiter, Signal, describe_policy
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


def _fail(hosts: HostLimiter, host: str, times: int) -> None:
    for _ in range(times):
        hosts.begin(host, time.monotonic())
        hosts.end(host, Signal.FAILED)


async def test_a_host_tripped_max_trips_times_in_a_row_is_given_up_and_its_requests_fail_unsent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """20 requests to a port nothing listens on were not done after 5 minutes of rests."""
    hosts = limiter(breaker={"failures": 2, "pause": 10, "max_trips": 2}, per_host={"concurrency": 4})
    _fail(hosts, "a.test", 2)
    assert hosts.ready_at("a.test") > time.monotonic() + 9  # the first trip rests it
    _fail(hosts, "a.test", 2)
    state = hosts.state("a.test")
    assert state.given_up == "a.test given up after 2 breaker trips in a row (2 failures each)"
    assert state.limit == 4  # its requests fail at once, none waits its turn
    with pytest.raises(HostGivenUp, match=r"^a\.test given up after 2 breaker trips") as caught:
        await hosts.wait_turn("a.test", "http://a.test/x")
    assert caught.value.url == "http://a.test/x"
    assert hosts.evict_idle(time.monotonic() + 3600, busy=lambda host: False) == 0  # not forgotten
    await hosts.wait_turn("b.test", "http://b.test/")  # other hosts go on
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == [
        "resting a.test for 10s: 2 failures in a row (trip 1 in a row, given up at 2)",
        "a.test given up after 2 breaker trips in a row (2 failures each): its requests fail from now on, "
        "unsent (breaker.max_trips)",
    ]


def test_one_burst_of_failures_in_flight_trips_the_breaker_once(caplog: pytest.LogCaptureFixture) -> None:
    """Eight 500s that came back together tripped it three times and gave the host up within
    0.5 s, with no rest between ("given up after 3 trips", then "after 4"): the failures of
    requests sent before a trip answer that trip, not the next."""
    hosts = limiter(breaker={"failures": 2, "pause": 2, "max_trips": 3}, per_host={"concurrency": 8})
    now = time.monotonic()
    for _ in range(8):
        hosts.begin("a.test", now)
    for _ in range(8):
        hosts.end("a.test", Signal.FAILED)
    state = hosts.state("a.test")
    assert (state.trips, state.given_up) == (1, None)
    assert [record.getMessage() for record in caplog.records if record.levelname == "WARNING"] == [
        "resting a.test for 2s: 2 failures in a row (trip 1 in a row, given up at 3)"
    ]
    _fail(hosts, "a.test", 2)  # the probe after the rest, and the next: a trip of their own
    assert state.trips == 2


def test_a_given_up_hosts_requests_are_handed_out_at_once() -> None:
    """They fail unsent, yet went out one per host delay (30 in 30 s at delay 1; at the delay
    the adaptive rate had reached, up to 30 s each)."""
    hosts = limiter(breaker={"failures": 1, "pause": 10, "max_trips": 1}, per_host={"concurrency": 1, "delay": 1})
    now = time.monotonic()
    hosts.begin("a.test", now)
    hosts.end("a.test", Signal.THROTTLED)  # slowed down and tripped: given up
    assert hosts.state("a.test").given_up is not None
    for _ in range(30):
        assert hosts.ready_at("a.test") <= now
        hosts.begin("a.test", now)
        hosts.end("a.test", Signal.SKIPPED)  # failed at wait_turn, unsent


def test_a_success_between_trips_starts_the_count_again_and_0_never_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hosts = limiter(breaker={"failures": 1, "pause": 0, "max_trips": 2})
    _fail(hosts, "a.test", 1)
    hosts.begin("a.test", time.monotonic())
    hosts.end("a.test", Signal.OK)
    _fail(hosts, "a.test", 1)
    assert hosts.state("a.test").given_up is None
    never = limiter(breaker={"failures": 1, "pause": 0, "max_trips": 0})
    caplog.clear()
    _fail(never, "b.test", 50)
    assert never.state("b.test").given_up is None
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings[0] == "resting b.test for 0s: 1 failures in a row (trip 1 in a row)"  # no promise to give it up
    # every rest is said: after the first, a crawl waiting on longer ones looked hung
    assert len(warnings) == 50 and warnings[-1].endswith("(trip 50 in a row)")


def test_a_burst_of_throttled_answers_slows_a_host_once() -> None:
    """Each throttled answer of requests sent at the old rate halved the rate anew: eight
    one-off 503s took a host to one request every 30 s, and the crawl to minutes."""
    hosts = limiter(per_host={"concurrency": 8, "delay": 0.0}, breaker={"failures": 100})
    now = time.monotonic()
    for _ in range(8):
        hosts.begin("a.test", now)
    for _ in range(8):
        hosts.end("a.test", Signal.THROTTLED, retried=False)
    state = hosts.state("a.test")
    assert (state.limit, state.delay) == (4, 0.25)  # once, for the burst
    hosts.begin("a.test", now)  # sent at the new rate: its throttled answer slows the host again
    hosts.end("a.test", Signal.THROTTLED)
    assert (state.limit, state.delay) == (2, 0.5)


async def test_requests_waiting_their_turn_at_a_slow_down_are_not_exempt_from_the_next() -> None:
    """A slow-down exempts the answers of the requests sent at the old rate; it exempted those
    handed out and still waiting for their turn too, which go at the new rate: after a burst
    of 503s, the retries' 503s slowed the host once in two."""
    hosts = limiter(per_host={"concurrency": 8, "delay": 0.0}, breaker={"failures": 100})
    state = hosts.state("a.test")
    hosts.begin("a.test", time.monotonic())
    await hosts.wait_turn("a.test", "http://a.test/1")
    hosts.end("a.test", Signal.THROTTLED)  # 0.25 s apart from now on
    hosts.begin("a.test", time.monotonic())  # 2 and 3 handed out
    hosts.begin("a.test", time.monotonic())
    sent = asyncio.create_task(hosts.wait_turn("a.test", "http://a.test/2"))
    later = asyncio.create_task(hosts.wait_turn("a.test", "http://a.test/3"))
    await sent
    hosts.end("a.test", Signal.THROTTLED)  # 2's 503, while 3 waits for its turn
    assert (state.limit, state.delay, state.exempt) == (2, 0.5, 0)
    await later
    hosts.end("a.test", Signal.THROTTLED)  # sent at the new rate: it slows the host again
    assert (state.limit, state.delay) == (1, 1.0)
    assert hosts._stats.get("hosts/slowed_down") == 3


def test_a_retried_request_failing_again_does_not_count_toward_the_breaker() -> None:
    """One broken URL retried (its retries alone left at the end of a crawl) rested a healthy
    host again and again, the rests doubling: 480 s for a crawl whose pages took 1 s."""
    hosts = limiter(breaker={"failures": 3, "pause": 10})
    hosts.begin("a.test", time.monotonic())
    hosts.end("a.test", Signal.FAILED)
    for _ in range(5):
        hosts.begin("a.test", time.monotonic())
        hosts.end("a.test", Signal.FAILED, retried=True)
    assert hosts.ready_at("a.test") <= time.monotonic() and hosts.state("a.test").failures == 1
    _fail(hosts, "a.test", 2)  # three requests failing: a host in trouble
    assert hosts.ready_at("a.test") > time.monotonic() + 9
    state = hosts.state("a.test")
    state.paused_until = 0.0  # the rest is over: the probe after it is a retry, and it fails
    for _ in range(3):
        hosts.begin("a.test", time.monotonic())
        hosts.end("a.test", Signal.FAILED, retried=True)
    assert state.trips == 2  # rested again: the retries of a host already rested count


async def test_a_paused_host_turns_requests_away_at_the_last_moment() -> None:
    hosts = limiter()
    hosts.pause("a.test", time.monotonic() + 5, "Retry-After")
    with pytest.raises(TryLater):
        await hosts.wait_turn("a.test", "http://a.test/")


async def test_a_stopping_crawl_sends_no_request_still_waiting_for_its_turn() -> None:
    """Each went out a delay after the one before, the first Ctrl-C notwithstanding."""
    hosts = limiter(per_host={"delay": 5.0})
    await hosts.wait_turn("a.test", "http://a.test/1")  # the first goes at once
    waiting = asyncio.create_task(hosts.wait_turn("a.test", "http://a.test/2"))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    hosts.stop()
    with pytest.raises(TryLater, match=r"^not sent: the crawl is stopping$"):
        await waiting
    assert time.monotonic() - started < 1
    with pytest.raises(TryLater):  # and none handed out later
        await hosts.wait_turn("b.test", "http://b.test/")


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


def test_the_policy_line_says_when_a_host_is_given_up() -> None:
    assert "breaker after 5 failures rests a host 30s, 5 trips in a row give it up" in describe_policy(make_settings())
    assert "give it up" not in describe_policy(make_settings(breaker={"max_trips": 0}))


def test_the_policy_says_what_a_hosts_entry_replaces() -> None:
    """A -s per_host.delay=0.5 seemed ignored on the hosts that config.yaml's entry matched."""
    settings = make_settings(
        per_host={"delay": 0.5, "concurrency": 2}, hosts={"127.0.0.1": {"delay": 0.1, "concurrency": 2}}
    )
    assert (
        describe_policy(settings).splitlines()[-1]
        == "hosts 127.0.0.1: concurrency=2, delay=0.1 (instead of per_host's 0.5)"
    )


@pytest.mark.parametrize("robots_txt", [True, False])
def test_a_new_host_s_first_request_goes_alone_while_robots_txt_is_obeyed(robots_txt: bool) -> None:
    """It loads the host's robots.txt, which the others would wait for, each in a worker."""
    hosts = limiter(robots_txt=robots_txt, per_host={"concurrency": 4})
    now = time.monotonic()
    hosts.begin("a.test", now)
    assert hosts.ready_at("a.test") == (math.inf if robots_txt else now)
    hosts.end("a.test", Signal.OK)
    for _ in range(4):  # then the host's own concurrency
        assert hosts.ready_at("a.test") <= now
        hosts.begin("a.test", now)
    assert hosts.ready_at("a.test") == math.inf


def test_each_pause_is_told_to_the_frontier_and_a_rested_host_is_not_forgotten() -> None:
    """The frontier hears of every pause (a Retry-After with no retry left was never told,
    and its host's requests held memory for the whole pause); and a host whose rest is over,
    its requests given back out of memory, keeps its trips (forgotten, it began again at trip 1
    and a dead host was never given up)."""
    hosts = limiter(breaker={"failures": 2, "pause": 0.01, "max_trips": 3}, per_host={"concurrency": 1})
    told: list[tuple[str, float]] = []
    hosts.on_pause = lambda host, until: told.append((host, until))
    _fail(hosts, "a.test", 2)
    hosts.pause("b.test", time.monotonic() + 30, "Retry-After")
    hosts.pause("b.test", time.monotonic() + 10, "Retry-After")  # shorter: the pause stands, nothing to tell
    assert [host for host, _ in told] == ["a.test", "b.test"]
    assert told[1][1] > time.monotonic() + 29
    assert hosts.evict_idle(time.monotonic() + 5, busy=lambda host: False) == 0  # a's rest is over, b's is not
    assert hosts.evict_idle(time.monotonic() + 3600, busy=lambda host: False) == 1  # b, its pause over
    assert hosts.state("a.test").trips == 1


async def test_the_first_request_after_a_slow_down_is_spaced_from_the_last_start() -> None:
    """With no delay, a start was not recorded: the request right after the first slow-down
    (0.25 s apart) went 4 ms after the last, and so did the first page after a robots.txt
    whose Crawl-delay had just been told."""
    hosts = limiter(per_host={"concurrency": 2, "delay": 0.0})
    await hosts.wait_turn("a.test", "http://a.test/1")
    began = time.monotonic()
    hosts.begin("a.test", began)
    hosts.end("a.test", Signal.THROTTLED)  # 0.25 s apart from now on
    await hosts.wait_turn("a.test", "http://a.test/2")
    assert time.monotonic() - began >= 0.2


async def test_a_request_waiting_its_turn_when_its_host_rests_is_parked_not_sent() -> None:
    """The pause was checked before the wait only: a breaker trip meanwhile had a request go
    0.2 s into a 1 s rest."""
    hosts = limiter(per_host={"concurrency": 2, "delay": 0.2})
    await hosts.wait_turn("a.test", "http://a.test/1")
    waiting = asyncio.create_task(hosts.wait_turn("a.test", "http://a.test/2"))
    await asyncio.sleep(0.05)
    rest_ends = time.monotonic() + 1
    hosts.pause("a.test", rest_ends, "test")
    with pytest.raises(TryLater, match=r"^a\.test is paused$") as parked:
        await waiting
    assert parked.value.until == rest_ends


def test_a_long_rest_is_a_warning_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Said at INFO only, a crawl waiting on a Retry-After of 40 s (or of 10 minutes) showed
    nothing but its status line, and looked hung."""
    caplog.set_level(logging.INFO, logger="scraper.ratelimit")
    hosts = limiter()
    hosts.pause("a.test", time.monotonic() + 40, "Retry-After on HTTP 429")
    hosts.pause("b.test", time.monotonic() + 2, "Retry-After on HTTP 503")
    said = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in said] == ["WARNING", "INFO"]
    assert re.fullmatch(r"pausing a\.test for (40\.0|39\.9)s: Retry-After on HTTP 429", said[0][1])
