"""Keeps the workers supplied: hands the scheduler's ready requests to the bounded queue,
sleeps until the next host is ready or something changes, and watches the crawl's clock
(``max_duration``, the stall watchdog, the drain deadline after a stop). Workers that find
the queue empty take a ready request from the scheduler themselves (``Worker.run``); the
feeder is what wakes them for everything else: refills from the store, delays that pass,
parked retries coming due.

The loop ends when nothing is pending, parked or in flight; then it sends each worker its
stop signal. After a stop, requests no worker has started are handed back (their leases
make them pending again for a resume) and the rest get ``close.drain_timeout`` to finish."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from scraper.errors import ScraperError
from scraper.frontier import Scheduled
from scraper.handoff import HandOff
from scraper.ratelimit import Signal
from scraper.scheduler import Scheduler
from scraper.settings import Settings

# Hand-outs between yields to the loop, so that the feeder's own step stays short at
# concurrency 5,000 (each hand-out asks the scheduler for the next request); the workers it
# wakes start their fetches as the loop budget (loop_budget.py) lets them.
_BURST = 64


class DrainTimeout(ScraperError):
    """Requests in flight did not finish within ``close.drain_timeout`` after a stop."""


class Feeder:
    def __init__(
        self,
        *,
        scheduler: Scheduler,
        queue: HandOff[Scheduled | None],
        settings: Settings,
        stop: Callable[[str], None],
    ) -> None:
        self._scheduler = scheduler
        self._queue = queue
        self._settings = settings
        self._stop = stop
        self._last_progress = time.monotonic()
        self._drain_deadline: float | None = None

    def progress(self) -> None:
        """A request finished: the crawl is not stalled."""
        self._last_progress = time.monotonic()

    async def run(self) -> None:
        try:
            await self._feed()
        finally:
            self._scheduler.disarm()  # also when a drain timeout or a cancellation ends the crawl
        for number in range(1, self._settings.concurrency + 1):
            await self._queue.put(None)  # one stop signal per worker
            if number % _BURST == 0:
                await asyncio.sleep(0)  # thousands of workers ending in one turn would stall the loop

    async def _feed(self) -> None:
        limit = self._settings.close.max_duration
        deadline = time.monotonic() + limit if limit else math.inf
        scheduler = self._scheduler
        handed_out = 0
        while True:
            # from here, a change ends the wait below at once: a request that finished while
            # this turn handed back the queue at a stop had been missed, and the crawl slept
            # out the whole drain_timeout with nothing in flight
            scheduler.look()
            if scheduler.finished:
                return
            now = time.monotonic()
            self._watch(now, deadline)
            if scheduler.closed:
                await self._drain(now)
                continue
            entry = await scheduler.next()
            if entry is not None:
                await self._queue.put(entry)
                handed_out += 1
                if handed_out % _BURST == 0:
                    await asyncio.sleep(0)  # let those workers start before handing out more
                continue
            wake = min(scheduler.wake_time() or math.inf, deadline, self._stall_check_at())
            await scheduler.wait_for_change(until=None if wake == math.inf else wake)

    def _watch(self, now: float, deadline: float) -> None:
        if self._scheduler.closed:
            # stopping already: stopped again, the scheduler was woken again, and this loop,
            # woken at once on every turn, spun with the workers never running (the crawl
            # ended at drain_timeout, 'interrupted', its requests still in flight)
            return
        if now >= deadline:
            self._stop("max_duration")
        if not self._scheduler.in_flight:
            # nothing runs, so nothing stalls: the clock starts with the next request. Idle
            # (a start generator polling a queue, a host resting, a parked retry), the first
            # request after the pause was taken for a stall at once
            self._last_progress = now
            return
        stall = self._settings.close.stall_timeout
        if stall and now - self._last_progress > stall:
            self._stop("stalled")

    def _stall_check_at(self) -> float:
        stall = self._settings.close.stall_timeout
        return self._last_progress + stall + 0.01 if stall and self._scheduler.in_flight else math.inf

    async def _drain(self, now: float) -> None:
        if self._scheduler.limit_reached is None:  # max_pages: what was handed out is the quota
            self._hand_back_unstarted()
        if self._drain_deadline is None:
            self._drain_deadline = now + self._settings.close.drain_timeout
        if now >= self._drain_deadline and not self._scheduler.finished:
            raise DrainTimeout(
                f"{self._scheduler.in_flight} requests still in flight after {self._settings.close.drain_timeout:g}s"
            )
        await self._scheduler.wait_for_change(until=self._drain_deadline)

    def _hand_back_unstarted(self) -> None:
        while not self._queue.empty():
            entry = self._queue.get_nowait()
            if entry is not None:
                self._scheduler.fetched(entry, Signal.SKIPPED)
                self._scheduler.done(entry)
