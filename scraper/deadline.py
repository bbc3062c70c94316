"""One time limit for many tasks at the cost of a number each, not a timer each.

``asyncio.timeout`` (and aiohttp's total timeout) arms and cancels a loop timer every time
it is entered; a worker enters the fetch's ``timeout`` and the callback's
``callback_timeout`` once per page each, thousands of times a second, and they almost never
fire. ``Deadlines`` instead records when each task's awaitable is due and checks
them all on a timer that runs only while something is being timed, every quarter of the
limit (at most every second): an awaitable is cancelled between ``limit`` and ``limit +
period`` seconds after it started, and the awaiting task gets a ``TimeoutError``, as from
``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_MAX_PERIOD = 1.0  # seconds between checks, at most


class DeadlinePassed(TimeoutError):
    """The limit of ``Deadlines.within`` passed: a ``TimeoutError`` of its own, so that the
    awaited code's own (an ``asyncio.wait_for`` in a callback) is not taken for it."""


class Deadlines:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.period = min(_MAX_PERIOD, limit / 4)
        self._due: dict[asyncio.Task[object], float] = {}  # task -> monotonic deadline
        self._overran: set[asyncio.Task[object]] = set()  # cancelled by a check, not yet told
        self._check_timer: asyncio.TimerHandle | None = None

    async def within(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` in the current task; ``DeadlinePassed`` (a ``TimeoutError``) once
        it runs past the limit.
        A cancellation from elsewhere still propagates as ``CancelledError``."""
        task = asyncio.current_task()
        assert task is not None, "Deadlines.within runs inside a task"
        self._due[task] = time.monotonic() + self.limit
        if self._check_timer is None:
            self._check_timer = asyncio.get_running_loop().call_later(self.period, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self._overran:
                self._overran.discard(task)
                if task.uncancel() == 0:  # only our cancellation: it was the deadline
                    raise DeadlinePassed from None
            raise
        finally:
            del self._due[task]
            if task in self._overran:  # the awaitable swallowed our cancellation: take it back
                self._overran.discard(task)
                task.uncancel()

    def _check(self) -> None:
        now = time.monotonic()
        for task, due in self._due.items():
            if due <= now and task not in self._overran:
                self._overran.add(task)
                task.cancel()
        self._check_timer = asyncio.get_running_loop().call_later(self.period, self._check) if self._due else None
