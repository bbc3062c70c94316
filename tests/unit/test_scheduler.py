"""Admission (dedup, depth, scope, hygiene, budgets), per-host hand-out and the end condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scraper.engine import check_spider
from scraper.frontier import MemoryFrontier, Scheduled
from scraper.http import Request, Response
from scraper.ratelimit import HostLimiter, Signal
from scraper.scheduler import Scheduler
from scraper.seen import MemorySeen
from scraper.spider import Spider
from scraper.stats import Stats
from tests.conftest import make_settings


def scheduler(allowed_domains: tuple[str, ...] = (), **settings: Any) -> tuple[Scheduler, Stats]:
    stats = Stats()
    config = make_settings(**settings)
    limiter = HostLimiter(settings=config, stats=stats)
    sched = Scheduler(
        frontier=MemoryFrontier(),
        seen=MemorySeen(),
        limiter=limiter,
        settings=config,
        stats=stats,
        allowed_domains=allowed_domains,
    )
    return sched, stats


async def take(sched: Scheduler) -> Scheduled:
    entry = await sched.next()
    assert entry is not None
    return entry


async def test_duplicates_are_filtered_unless_dont_filter() -> None:
    sched, stats = scheduler()
    first = await sched.add([Request("http://a.test/x?b=1&a=2"), Request("HTTP://A.test:80/x?a=2&b=1#frag")])
    again = await sched.add([Request("http://a.test/x?a=2&b=1", dont_filter=True)])
    assert len(first.admitted) == 1 and len(again.admitted) == 1
    assert stats.get("requests/filtered/duplicate") == 1


async def test_a_resumed_crawls_start_requests_seen_before_are_skipped_not_counted_as_duplicates() -> None:
    """Every resume reported "filtered duplicate: N" for its own start requests, which read as
    N pages skipped."""
    sched, stats = scheduler()
    await sched.add([Request("http://a.test/"), Request("http://a.test/seed", dont_filter=True)])
    resumed = await sched.add(
        [Request("http://a.test/"), Request("http://a.test/seed", dont_filter=True)], copies=False
    )
    assert resumed.admitted == [] and stats.get("requests/filtered/duplicate") == 0


async def test_session_ids_do_not_make_urls_new() -> None:
    sched, stats = scheduler()
    admission = await sched.add(
        [Request("http://a.test/p?id=1&PHPSESSID=abc"), Request("http://a.test/p?id=1&PHPSESSID=xyz")]
    )
    assert len(admission.admitted) == 1
    assert stats.get("requests/filtered/duplicate") == 1


async def test_depth_is_assigned_and_limited() -> None:
    sched, stats = scheduler(max_depth=1)
    (root,) = (await sched.add([Request("http://a.test/")])).admitted
    (child,) = (await sched.add([Request("http://a.test/1")], parent=root.request)).admitted
    deeper = await sched.add([Request("http://a.test/2")], parent=child.request)
    assert (root.request.depth, child.request.depth) == (0, 1)
    assert deeper.admitted == [] and [refused.reason for refused in deeper.refused] == ["depth"]
    assert stats.get("requests/filtered/depth") == 1


async def test_unfollowable_links_are_counted_not_admitted() -> None:
    sched, stats = scheduler()
    links = ["mailto:a@b.test", "javascript:void(0)", "tel:+1", "http://a.test/" + "x" * 3000, "http://a.test/ok"]
    admission = await sched.add([Request(url) for url in links])
    assert [entry.request.url for entry in admission.admitted] == ["http://a.test/ok"]
    assert stats.get("requests/filtered/scheme") == 3
    assert stats.get("requests/filtered/url_too_long") == 1


async def test_offsite_and_host_budget_are_refused_with_a_reason() -> None:
    sched, _ = scheduler(allowed_domains=("a.test",), per_host={"max_pages": 2})
    admission = await sched.add(
        [
            Request(url)
            for url in (
                "http://a.test/1",
                "http://www.a.test/1",
                "http://b.test/1",
                "http://a.test/2",
                "http://a.test/3",
            )
        ]
    )
    assert [entry.request.url for entry in admission.admitted] == [
        "http://a.test/1",
        "http://www.a.test/1",
        "http://a.test/2",
    ]
    assert [(refused.request.url, refused.reason) for refused in admission.refused] == [
        ("http://b.test/1", "offsite"),
        ("http://a.test/3", "host_budget"),
    ]


@pytest.mark.parametrize(
    ("domain", "url"),
    [
        ("example.org", "http://www.example.org/a"),
        (".example.org", "http://example.org/a"),
        ("127.0.0.1", "http://127.0.0.1:8765/a"),
        ("::1", "http://[::1]:8080/a"),
        ("bücher.example", "http://bücher.example/a"),
    ],
)
async def test_hosts_and_ip_addresses_pass_the_spider_check_and_admit_their_urls(domain: str, url: str) -> None:
    class Scoped(Spider):
        name = "scoped"
        allowed_domains = [domain]
        start_urls = [url]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    check_spider(Scoped())  # raises ConfigError for a URL or a port (tests/integration/test_crawl.py)
    sched, _ = scheduler(allowed_domains=(domain,))
    admission = await sched.add([Request(url), Request("http://elsewhere.test/")])
    assert [entry.request.url for entry in admission.admitted] == [url]
    assert [refused.reason for refused in admission.refused] == ["offsite"]


async def test_higher_priority_first_then_fifo_within_a_host() -> None:
    sched, _ = scheduler()
    await sched.add([Request("http://a.test/1"), Request("http://a.test/2"), Request("http://a.test/3", priority=9)])
    order = [(await take(sched)).request.url for _ in range(3)]
    assert order == ["http://a.test/3", "http://a.test/1", "http://a.test/2"]


async def test_a_full_host_does_not_block_other_hosts() -> None:
    sched, _ = scheduler(per_host={"concurrency": 1})
    await sched.add([Request(f"http://slow.test/{n}") for n in range(3)] + [Request("http://fast.test/1")])
    first = await take(sched)
    second = await take(sched)
    assert {first.host, second.host} == {"slow.test", "fast.test"}
    assert await sched.next() is None  # slow.test has its one slot taken
    sched.fetched(first if first.host == "slow.test" else second, Signal.OK)
    assert (await take(sched)).host == "slow.test"


async def test_next_ready_is_the_same_hand_out_without_an_await() -> None:
    """What a worker that finished a page calls: same slots and order, never a coroutine."""
    sched, _ = scheduler(per_host={"concurrency": 1})
    await sched.add([Request("http://a.test/1"), Request("http://a.test/2", priority=5), Request("http://b.test/1")])
    first, second = sched.next_ready(), sched.next_ready()
    assert first is not None and second is not None
    assert {first.request.url, second.request.url} == {"http://a.test/2", "http://b.test/1"}
    assert sched.next_ready() is None and sched.in_flight == 2  # a.test's one slot is taken
    sched.fetched(first if first.host == "a.test" else second, Signal.OK)
    third = sched.next_ready()
    assert third is not None and third.request.url == "http://a.test/1"
    sched.close()
    await sched.add([Request("http://c.test/1")])
    assert sched.next_ready() is None


async def test_host_delay_spaces_hand_outs_and_wake_time_says_when() -> None:
    sched, _ = scheduler(per_host={"delay": 0.2, "adaptive": False})
    await sched.add([Request("http://a.test/1"), Request("http://a.test/2")])
    before = time.monotonic()
    entry = await take(sched)
    sched.fetched(entry, Signal.OK)
    assert await sched.next() is None
    wake = sched.wake_time()
    after = time.monotonic()
    # the delay counts between starts: bounded by clock readings, not by how fast this runs
    assert wake is not None and before + 0.2 <= wake <= after + 0.2
    await asyncio.sleep(max(0.0, wake - time.monotonic()))
    assert (await take(sched)).request.url == "http://a.test/2"


async def test_a_parked_retry_comes_back_after_its_delay() -> None:
    sched, _ = scheduler()
    await sched.add([Request("http://a.test/1")])
    entry = await take(sched)
    sched.fetched(entry, Signal.FAILED)
    parked = await sched.retry(entry, delay=0.1)
    sched.done(entry)
    assert parked.attempts == 1
    assert await sched.next() is None and not sched.finished
    await asyncio.sleep(0.12)
    again = await take(sched)
    assert (again.request.url, again.attempts) == ("http://a.test/1", 1)


async def test_finished_only_when_nothing_pending_in_flight_or_producing() -> None:
    sched, _ = scheduler()
    assert sched.finished
    with sched.producing():
        assert not sched.finished
    await sched.add([Request("http://a.test/")])
    assert not sched.finished
    entry = await take(sched)
    assert sched.in_flight == 1 and not sched.finished
    sched.fetched(entry, Signal.OK)
    sched.done(entry)
    assert sched.finished


async def test_close_stops_hand_out_but_waits_for_in_flight() -> None:
    sched, _ = scheduler()
    await sched.add([Request("http://a.test/1"), Request("http://b.test/2")])
    entry = await take(sched)
    sched.close()
    assert await sched.next() is None
    assert not sched.finished
    sched.done(entry)
    assert sched.finished and sched.pending == 1


async def test_a_page_of_many_links_is_checked_in_parts_and_admitted_at_once() -> None:
    """300,000 links from one page (links.max_per_page: 0) were checked in one step: the loop
    was held for 10 s, every fetch and timer with it. Admitted in parts, though, a request
    could be fetched and finished before its page's commit wrote its row: its outcome was lost.
    So the loop runs between the parts, and none of the page's requests is there to hand out
    until all are admitted."""
    sched, stats = scheduler(allowed_domains=("a.test",))
    (root,) = (await sched.add([Request("http://a.test/")])).admitted
    await take(sched)
    links = [Request(f"http://a.test/{n % 2_400}") for n in range(2_500)]  # the last 100 repeat earlier ones
    links += [Request("http://b.test/offsite")]
    pending_seen: list[int] = []

    async def watching() -> None:
        while True:
            pending_seen.append(sched.pending)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watching())
    await asyncio.sleep(0)
    admission = await sched.add(links, parent=root.request)
    watcher.cancel()
    assert len(pending_seen) >= 3 and set(pending_seen) == {0}  # the loop ran; nothing was out early
    assert len(admission.admitted) == 2_400 and {entry.request.depth for entry in admission.admitted} == {1}
    assert sched.pending == 2_400
    assert [refused.request.url for refused in admission.refused] == ["http://b.test/offsite"]
    assert stats.get("requests/filtered/duplicate") == 100 and stats.get("requests/admitted") == 2_401


async def test_wait_for_change_wakes_at_until_or_on_a_change() -> None:
    sched, _ = scheduler()
    sched.look()
    started = time.monotonic()
    await asyncio.wait_for(sched.wait_for_change(until=started + 0.05), timeout=2)
    assert time.monotonic() - started >= 0.04
    sched.look()
    waiting = asyncio.create_task(sched.wait_for_change(until=time.monotonic() + 60))
    await asyncio.sleep(0)
    sched.close()  # a change
    await asyncio.wait_for(waiting, timeout=2)


async def test_a_change_made_after_the_last_look_ends_the_wait_at_once() -> None:
    """The feeder looked, then handed back the queue at a stop (the last request finishing
    as it did), then waited: the change was cleared by the wait, and the crawl slept out the
    whole drain_timeout (30 s) with nothing in flight."""
    sched, _ = scheduler()
    sched.look()
    sched.close()  # a change, as the caller acts on what it saw
    await asyncio.wait_for(sched.wait_for_change(until=time.monotonic() + 60), timeout=2)


async def test_a_wake_up_armed_for_a_time_past_is_kept_as_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop's call_at() returns a plain Handle, without when(), for a time already past: the
    next wait asked it when it was due, and the crawl ended failed (AttributeError)."""
    sched, _ = scheduler()
    loop = asyncio.get_running_loop()
    original = loop.call_at

    def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        if when <= loop.time():  # as uvloop does
            return loop.call_soon(callback, *args)
        return original(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", call_at)
    sched.look()
    waiting = asyncio.create_task(sched.wait_for_change(until=time.monotonic() - 1))
    sched.look()
    again = asyncio.create_task(sched.wait_for_change(until=time.monotonic() + 60))  # asks the armed one's time
    await asyncio.wait_for(asyncio.gather(waiting, again), timeout=2)


async def test_one_wake_up_serves_successive_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    sched, _ = scheduler()
    loop = asyncio.get_running_loop()
    armed: list[asyncio.TimerHandle] = []

    def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        handle = original(when, callback, *args, **kwargs)
        armed.append(handle)
        return handle

    original = loop.call_at
    monkeypatch.setattr(loop, "call_at", call_at)
    for extra in (30.0, 40.0, 50.0):  # later deadlines: the wake-up armed for the first is kept
        sched.look()
        waiting = asyncio.create_task(sched.wait_for_change(until=time.monotonic() + extra))
        await asyncio.sleep(0)
        sched.close()
        await waiting
    assert len(armed) == 1
    sched.look()
    await sched.wait_for_change(until=time.monotonic() + 0.05)  # earlier: re-armed, and it fires
    assert len(armed) == 2 and armed[0].cancelled()
    sched.look()
    waiting = asyncio.create_task(sched.wait_for_change(until=time.monotonic() + 30))
    await asyncio.sleep(0)
    sched.disarm()  # the crawl is over: no timer is left behind
    assert len(armed) == 3 and armed[2].cancelled()
    waiting.cancel()


async def test_a_request_whose_body_cannot_be_made_is_unstorable_and_the_others_go_on() -> None:
    """json holding an object JSON cannot write failed as the body was hashed, and stopped the
    crawl; now that request alone is returned as unstorable (an error row of its page)."""
    sched, _ = scheduler()
    broken = Request("http://a.test/api", method="POST", json={"when": object()})
    admission = await sched.add([Request("http://a.test/1"), broken, Request("http://a.test/2")])
    assert [entry.request.url for entry in admission.admitted] == ["http://a.test/1", "http://a.test/2"]
    ((request, problem),) = admission.unstorable
    assert request is broken
    assert str(problem) == (
        f"the body of {request.url} cannot be made: TypeError: Object of type object is not JSON serializable"
    )
