"""Tests for the watch that notices code holding the event loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from scraper.loop_watch import LoopWatch
from scraper.stats import Stats


async def test_a_held_loop_is_counted_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scraper.loop_watch")
    stats = Stats()
    with LoopWatch(stats, every=0.02, threshold=0.2):
        await asyncio.sleep(0.05)
        time.sleep(0.5)  # noqa: ASYNC251 - the blocking call under test
        await asyncio.sleep(0.05)  # the watch's timer runs, late
        time.sleep(0.3)  # noqa: ASYNC251
        await asyncio.sleep(0.05)

    assert stats.get("loop/stalls") == 2
    assert 450 <= stats.get("loop/worst_stall_ms") <= 2000  # the longer one, measured from when the timer was due
    warnings = [record.getMessage() for record in caplog.records if record.name == "scraper.loop_watch"]
    assert len(warnings) == 1 and warnings[0].startswith("the event loop was held for 0.")
    assert "time.sleep(), requests" in warnings[0] and "parse_processes" in warnings[0]


async def test_a_hold_just_over_the_threshold_is_noticed_at_its_length() -> None:
    """With the timer four times a second, a hold of 0.7 s that began just after it ran was
    0.45 s late by it: not noticed, and a hold of 1 s was reported as 0.8 s."""
    stats = Stats()
    with LoopWatch(stats):  # the crawl's own interval and threshold
        await asyncio.sleep(0.12)
        time.sleep(0.7)  # noqa: ASYNC251 - the blocking call under test
        await asyncio.sleep(0.12)
    assert stats.get("loop/stalls") == 1
    assert 640 <= stats.get("loop/worst_stall_ms") <= 1500


async def test_the_frameworks_own_garbage_collection_is_not_blamed_on_the_spider() -> None:
    """A full collection of 0.76 s on a crawl of 20,000 hosts was reported as blocking code
    in a callback or stage."""
    stats = Stats()
    collected = 0.0
    with LoopWatch(stats, every=0.02, threshold=0.2, own_pauses=lambda: collected):
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - standing for the collector's pause
        collected += 0.3
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the spider's own
        await asyncio.sleep(0.05)
    assert stats.get("loop/stalls") == 1
    assert 250 <= stats.get("loop/worst_stall_ms") <= 1000


async def test_a_loop_that_is_never_held_counts_nothing() -> None:
    """The negative control: the same watch, awaiting instead of blocking."""
    stats = Stats()
    with LoopWatch(stats, every=0.02, threshold=0.2):
        for _ in range(5):
            await asyncio.sleep(0.05)
    assert stats.get("loop/stalls") == 0


async def test_the_timer_stops_with_the_watch() -> None:
    stats = Stats()
    with LoopWatch(stats, every=0.01, threshold=0.05):
        pass
    time.sleep(0.2)  # noqa: ASYNC251 - would be a stall, were the watch still running
    await asyncio.sleep(0.05)
    assert stats.get("loop/stalls") == 0
