"""Deadlines: one periodic check instead of a timer per awaited callback."""

from __future__ import annotations

import asyncio
import time

import pytest

from scraper.deadline import Deadlines


async def test_an_awaitable_within_the_limit_returns_its_result() -> None:
    deadlines = Deadlines(5.0)

    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await deadlines.within(quick()) == "done"


async def test_an_overrun_raises_timeout_error_between_limit_and_limit_plus_period() -> None:
    deadlines = Deadlines(0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadlines.within(asyncio.sleep(30))
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.2 + deadlines.period + 0.5


async def test_each_task_has_its_own_deadline() -> None:
    deadlines = Deadlines(0.2)

    async def slow() -> str:
        await deadlines.within(asyncio.sleep(30))
        return "not reached"

    async def fast() -> str:
        return await deadlines.within(asyncio.sleep(0.05, result="fast"))

    results = await asyncio.gather(slow(), fast(), return_exceptions=True)
    assert isinstance(results[0], TimeoutError) and results[1] == "fast"


async def test_a_task_that_goes_on_after_a_timeout_is_not_cancelled_again() -> None:
    deadlines = Deadlines(0.1)
    with pytest.raises(TimeoutError):
        await deadlines.within(asyncio.sleep(30))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.3)  # no leftover cancellation lands here
    assert await deadlines.within(asyncio.sleep(0, result=1)) == 1


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(30.0)
    task = asyncio.create_task(deadlines.within(asyncio.sleep(30)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_swallowed_deadline_cancellation_is_taken_back() -> None:
    deadlines = Deadlines(0.1)

    async def stubborn() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    assert await deadlines.within(stubborn()) == "kept going"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_no_check_timer_runs_while_nothing_is_timed() -> None:
    deadlines = Deadlines(0.2)
    await deadlines.within(asyncio.sleep(0))
    await asyncio.sleep(deadlines.period * 2)  # the check ran once, found nothing, stopped
    assert deadlines._check_timer is None
