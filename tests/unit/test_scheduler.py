"""Admission (dedup, depth), hand-out order and the end-of-crawl condition."""

from __future__ import annotations

from scraper.frontier import MemoryFrontier
from scraper.http import Request
from scraper.scheduler import Scheduler
from scraper.stats import Stats


def scheduler(max_depth: int = 0) -> tuple[Scheduler, Stats]:
    stats = Stats()
    return Scheduler(frontier=MemoryFrontier(), max_depth=max_depth, stats=stats), stats


async def test_duplicates_are_filtered_unless_dont_filter() -> None:
    sched, stats = scheduler()
    first = await sched.add([Request("http://a.test/x?b=1&a=2"), Request("HTTP://A.test:80/x?a=2&b=1#frag")])
    again = await sched.add([Request("http://a.test/x?a=2&b=1", dont_filter=True)])
    assert len(first) == 1 and len(again) == 1
    assert stats.get("requests/filtered/duplicate") == 1


async def test_depth_is_assigned_and_limited() -> None:
    sched, stats = scheduler(max_depth=1)
    (root,) = await sched.add([Request("http://a.test/")])
    (child,) = await sched.add([Request("http://a.test/1")], parent=root.request)
    grandchildren = await sched.add([Request("http://a.test/2")], parent=child.request)
    assert (root.request.depth, child.request.depth) == (0, 1)
    assert grandchildren == []
    assert stats.get("requests/filtered/depth") == 1


async def test_higher_priority_first_then_fifo() -> None:
    sched, _ = scheduler()
    await sched.add([Request("http://a.test/1"), Request("http://a.test/2"), Request("http://a.test/3", priority=9)])
    order = [(await sched.next()).request.url for _ in range(3)]  # type: ignore[union-attr]
    assert order == ["http://a.test/3", "http://a.test/1", "http://a.test/2"]


async def test_finished_only_when_nothing_pending_in_flight_or_producing() -> None:
    sched, _ = scheduler()
    assert sched.finished
    with sched.producing():
        assert not sched.finished
    await sched.add([Request("http://a.test/")])
    assert not sched.finished
    entry = await sched.next()
    assert entry is not None and sched.in_flight == 1 and not sched.finished
    sched.done(entry)
    assert sched.finished


async def test_close_stops_hand_out_but_waits_for_in_flight() -> None:
    sched, _ = scheduler()
    await sched.add([Request("http://a.test/1"), Request("http://a.test/2")])
    entry = await sched.next()
    assert entry is not None
    sched.close()
    assert await sched.next() is None
    assert not sched.finished
    sched.done(entry)
    assert sched.finished and sched.pending == 1
