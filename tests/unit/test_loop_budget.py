"""LoopBudget: worker steps spread over loop turns once a turn has spent its budget.

The clock is a fake one that each step advances by hand, so that what a turn admits does not
depend on this machine's speed; turns are counted by a callback that runs once per turn."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from scraper.loop_budget import LoopBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TurnCounter:
    """Counts the event loop's turns: a callback that schedules itself again runs once in each."""

    def __init__(self) -> None:
        self.turn = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def steps_per_turn(budget: float, min_steps: int, count: int, cost: float) -> list[int]:
    """How many of ``count`` steps (each costing ``cost`` on a fake clock) ran in each turn, in
    turn order; checks they all ran in the order they came."""
    clock = FakeClock()
    ran = await run_steps(LoopBudget(budget, min_steps=min_steps, clock=clock), clock, count=count, cost=cost)
    assert [number for number, _ in ran] == list(range(count))
    per_turn = Counter(turn for _, turn in ran)
    return [per_turn[turn] for turn in sorted(per_turn)]


async def run_steps(budget: LoopBudget, clock: FakeClock, count: int, cost: float) -> list[tuple[int, int]]:
    """``count`` tasks, started in one turn, each admitted once and then spending ``cost`` on
    the fake clock; returns (task number, turn it ran in) in the order they ran."""
    turns = TurnCounter()
    ran: list[tuple[int, int]] = []

    async def step(number: int) -> None:
        await budget.admit()
        ran.append((number, turns.turn))
        clock.now += cost

    try:
        await asyncio.gather(*(step(n) for n in range(count)))
    finally:
        turns.stop()
    return ran


async def test_steps_within_the_budget_go_on_without_yielding_to_the_loop() -> None:
    clock = FakeClock()
    budget = LoopBudget(0.010, min_steps=0, clock=clock)
    turns = TurnCounter()
    try:
        await asyncio.sleep(0)
        before = turns.turn
        for _ in range(5):
            await budget.admit()
            clock.now += 0.001
        assert turns.turn == before
        assert budget.waiting == 0
    finally:
        turns.stop()


async def test_steps_past_the_budget_run_in_later_turns_in_the_order_they_came() -> None:
    # a turn admits steps until 10 ms are spent: starting at 0, 4 and 8 ms, never a fourth
    assert await steps_per_turn(0.010, min_steps=0, count=12, cost=0.004) == [3, 3, 3, 3]


async def test_a_step_longer_than_the_budget_has_its_turn_to_itself() -> None:
    assert await steps_per_turn(0.010, min_steps=0, count=5, cost=0.050) == [1, 1, 1, 1, 1]


async def test_a_cancelled_waiting_step_does_not_hold_up_the_others() -> None:
    clock = FakeClock()
    budget = LoopBudget(0.010, min_steps=0, clock=clock)
    ran: list[int] = []

    async def step(number: int) -> None:
        await budget.admit()
        ran.append(number)
        clock.now += 0.010

    tasks = [asyncio.create_task(step(n)) for n in range(4)]
    await asyncio.sleep(0)  # all four have asked; the first ran and spent the turn's budget
    assert ran == [0]
    assert budget.waiting == 3
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert ran == [0, 2, 3]
    assert isinstance(results[1], asyncio.CancelledError)
    assert budget.waiting == 0


@pytest.mark.parametrize("count", [1, 40])
async def test_a_new_turn_starts_a_new_budget(count: int) -> None:
    clock = FakeClock()
    budget = LoopBudget(0.010, min_steps=0, clock=clock)
    await run_steps(budget, clock, count=count, cost=0.004)
    await asyncio.sleep(0)  # the last turn's bookkeeping has run
    await asyncio.sleep(0)

    turns = TurnCounter()
    try:
        await asyncio.sleep(0)
        before = turns.turn
        await budget.admit()  # long after the others: not held back by what they spent
        assert turns.turn == before
    finally:
        turns.stop()


async def test_a_turn_admits_its_first_min_steps_whatever_they_cost() -> None:
    # the first five in one turn, over budget; then the other three, a later turn's first steps
    assert await steps_per_turn(0.010, min_steps=5, count=8, cost=0.050) == [5, 3]


async def test_many_workers_get_a_tighter_turn_than_a_few_dozen() -> None:
    first_turns = []
    for concurrency in (32, 5_000):
        clock = FakeClock()
        ran = await run_steps(LoopBudget.for_concurrency(concurrency, clock=clock), clock, count=80, cost=0.004)
        first_turns.append(sum(1 for _, turn in ran if turn == ran[0][1]))
    # each step costs 4 ms: past the budget, only the floor decides how many run in a turn
    assert first_turns == [64, 16]
