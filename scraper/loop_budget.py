"""A time budget for the workers' share of each event-loop turn.

At high concurrency, hundreds of responses can become ready in the same instant. Every
worker woken by one then runs its step (the callback, the commit, the start of its next
fetch) in the same loop turn, and timers, sockets and the progress display wait for all of
them: at concurrency 5,000 such a turn took 80-90 ms, and the loop went 200-250 ms without
serving a timer. ``LoopBudget.admit()`` lets worker steps through while the current turn
has spent less than the budget on them (after its first ``min_steps``, which go through
whatever they cost), and moves the rest to the following turns in the order they came.
Below the budget it returns without yielding, so a light crawl pays one clock reading per
step.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

DEFAULT_BUDGET = 0.015  # seconds of worker steps per loop turn
# Steps every turn admits before the budget counts: a crawl of a few dozen workers never waits
# (at 32 workers and a 15 ms budget alone, a slow spell of the machine deferred fetch starts
# and cost up to a fifth of the pages/s).
DEFAULT_MIN_STEPS = 64
# Past this many workers, deferring a step leaves plenty in flight, so the loop's
# responsiveness comes first: at concurrency 5,000, 10 ms and 16 steps a turn kept the worst
# loop lag at 69-75 ms (p99 50-60 ms), against 75-100 ms (p99 71-83 ms) with the defaults.
MANY_WORKERS = 256
MANY_WORKERS_BUDGET = 0.010
MANY_WORKERS_MIN_STEPS = 16

_MIN_RELEASE = 16  # waiting steps woken for the next turn, at least


class LoopBudget:
    """Admits worker steps while this loop turn is within ``budget`` seconds of them (and
    always its first ``min_steps``).

    A turn's budget starts at the first step admitted in it. When it runs out, steps wait in
    a queue; a callback scheduled for the start of the next turn starts that turn's budget and
    wakes as many waiting steps as the last turn admitted (a woken task runs one turn after
    it is woken, right behind that callback). A woken step checks the budget again, so a
    wrong guess costs a wait, never an overrun."""

    def __init__(
        self,
        budget: float = DEFAULT_BUDGET,
        *,
        min_steps: int = DEFAULT_MIN_STEPS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._budget = budget
        self._min_steps = min_steps
        self._clock = clock
        self._began = 0.0  # when this turn's budget started
        self._turn_marked = False  # a callback will start the next turn's budget
        self._admitted = 0  # steps admitted since that callback last ran
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._done: asyncio.Future[None] | None = None  # what admit() returns when there is room

    @classmethod
    def for_concurrency(cls, concurrency: int, *, clock: Callable[[], float] = time.perf_counter) -> LoopBudget:
        """The budget for a crawl of ``concurrency`` workers: the defaults for a few dozen,
        a tighter turn for hundreds or thousands."""
        if concurrency > MANY_WORKERS:
            return cls(MANY_WORKERS_BUDGET, min_steps=MANY_WORKERS_MIN_STEPS, clock=clock)
        return cls(clock=clock)

    @property
    def waiting(self) -> int:
        """Steps waiting for a later turn."""
        return len(self._waiting)

    def admit(self) -> Awaitable[None]:
        """Await it to go on: at once while this turn is within budget, else in a later turn.
        (A plain method returning a finished future in the usual case: a coroutine per call
        would cost more than the check.)"""
        now = self._clock()
        if not self._turn_marked:  # the first step of a turn: its budget starts now
            self._mark_turn(now)
        elif self._admitted >= self._min_steps and now - self._began >= self._budget:
            return self._wait_for_turn()
        self._admitted += 1
        return self._done or self._admitted_now()

    def _admitted_now(self) -> asyncio.Future[None]:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            self._done.set_result(None)
        return self._done

    async def _wait_for_turn(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        await waiter
        await self.admit()  # the budget is checked again: a wrong guess costs another wait

    def _mark_turn(self, now: float) -> None:
        self._turn_marked = True
        self._began = now
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """The start of a loop turn: its budget begins; waiting steps go next."""
        self._turn_marked = False
        admitted, self._admitted = self._admitted, 0
        if not self._waiting:
            return
        self._mark_turn(self._clock())  # scheduled before the woken steps: it runs first again
        for _ in range(min(len(self._waiting), max(admitted, _MIN_RELEASE))):
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled step has gone away
                waiter.set_result(None)
