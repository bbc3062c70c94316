"""HandOff: a bounded FIFO between coroutines, with asyncio.Queue's waiting semantics."""

from __future__ import annotations

import asyncio

import pytest

from scraper.handoff import HandOff


async def test_items_come_out_in_the_order_they_went_in() -> None:
    queue: HandOff[int] = HandOff(10)
    for number in range(5):
        queue.put_nowait(number)
    assert len(queue) == 5
    assert [await queue.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert queue.empty()


async def test_nowait_calls_refuse_a_full_or_empty_queue() -> None:
    queue: HandOff[str] = HandOff(1)
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait("a")
    assert queue.full()
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait("b")
    assert queue.get_nowait() == "a"


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        HandOff(0)


async def test_getters_wait_for_items_and_are_served_in_arrival_order() -> None:
    queue: HandOff[str] = HandOff(10)
    got: list[tuple[int, str]] = []

    async def getter(number: int) -> None:
        got.append((number, await queue.get()))

    tasks = [asyncio.create_task(getter(number)) for number in range(3)]
    await asyncio.sleep(0)
    assert got == []  # nothing to take yet
    for item in "xyz":
        queue.put_nowait(item)
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert got == [(0, "x"), (1, "y"), (2, "z")]


async def test_put_waits_for_room() -> None:
    queue: HandOff[int] = HandOff(2)
    queue.put_nowait(1)
    queue.put_nowait(2)
    putter = asyncio.create_task(queue.put(3))
    await asyncio.sleep(0)
    assert not putter.done() and len(queue) == 2
    assert await queue.get() == 1
    await asyncio.wait_for(putter, 1)
    assert [queue.get_nowait(), queue.get_nowait()] == [2, 3]


async def test_a_cancelled_getter_passes_its_item_on() -> None:
    queue: HandOff[str] = HandOff(10)
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "only"
    assert first.cancelled()


async def test_a_cancelled_putter_passes_the_room_on() -> None:
    queue: HandOff[int] = HandOff(1)
    queue.put_nowait(0)
    first = asyncio.create_task(queue.put(1))
    second = asyncio.create_task(queue.put(2))
    await asyncio.sleep(0)
    assert queue.get_nowait() == 0  # room for one: wakes the first putter...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, 1)
    assert queue.get_nowait() == 2
    assert first.cancelled()


async def test_a_getter_cancelled_while_waiting_leaves_the_line() -> None:
    queue: HandOff[int] = HandOff(10)
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    queue.put_nowait(7)
    assert await queue.get() == 7  # not handed to the cancelled getter
