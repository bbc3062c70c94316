"""Per-host politeness: at most N requests in flight to one host, and a minimum delay
between the starts of two requests to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from scraper.settings import Settings


class _HostSlot:
    __slots__ = ("delay", "next_start", "semaphore")

    def __init__(self, concurrency: int, delay: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.delay = delay
        self.next_start = 0.0


class HostLimiter:
    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings
        self._slots: dict[str, _HostSlot] = {}

    def _slot(self, host: str) -> _HostSlot:
        slot = self._slots.get(host)
        if slot is None:
            policy = self._settings.policy_for(host)
            slot = self._slots[host] = _HostSlot(policy.concurrency, policy.delay)
        return slot

    @asynccontextmanager
    async def acquire(self, host: str) -> AsyncIterator[None]:
        """Hold one of the host's slots, starting no sooner than its delay allows."""
        slot = self._slot(host)
        async with slot.semaphore:
            if slot.delay:
                now = time.monotonic()
                start = max(now, slot.next_start)
                slot.next_start = start + slot.delay  # reserve before sleeping: order is kept
                if start > now:
                    await asyncio.sleep(start - now)
            yield
