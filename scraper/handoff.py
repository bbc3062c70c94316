"""A bounded first-in, first-out queue between coroutines, for the two hand-offs every page
goes through (feeder → workers, workers → storage writer).

``asyncio.Queue`` does the same job with bookkeeping these hand-offs never use: a count of
unfinished tasks, an ``Event`` cleared on every put for ``join()``, and a coroutine per
``put()`` and ``get()``. Together that is about 15 Python calls per item and queue; here an
item that finds room, or a waiting item, costs two or three. Same semantics otherwise:
``put`` waits while the queue is full, ``get`` while it is empty, waiters are served in
arrival order, and a cancelled waiter passes its wake-up on, so that no item is stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable
from typing import Generic, TypeVar

T = TypeVar("T")


class HandOff(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._added: asyncio.Future[None] | None = None  # what put() returns when there was room

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def put_nowait(self, item: T) -> None:
        """Add ``item``; raises ``asyncio.QueueFull`` when there is no room."""
        items = self._items
        if len(items) >= self._maxsize:
            raise asyncio.QueueFull
        items.append(item)
        if self._getters:
            _wake_first(self._getters)

    def put(self, item: T) -> Awaitable[None]:
        """Add ``item``, once there is room. Not a coroutine function: when there is room, the
        item is added now and what it returns is an already finished future."""
        items = self._items
        if len(items) >= self._maxsize:
            return self._put_later(item)
        items.append(item)  # put_nowait's work, without a second call and check (a put per page)
        if self._getters:
            _wake_first(self._getters)
        if self._added is None:
            self._added = asyncio.get_running_loop().create_future()
            self._added.set_result(None)
        return self._added

    async def _put_later(self, item: T) -> None:
        while len(self._items) >= self._maxsize:
            room = asyncio.get_running_loop().create_future()
            self._putters.append(room)
            try:
                await room
            except BaseException:
                _leave(room, self._putters, pass_on=len(self._items) < self._maxsize)
                raise
        self.put_nowait(item)

    def get_nowait(self) -> T:
        """The oldest item; raises ``asyncio.QueueEmpty`` when there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if self._putters:
            _wake_first(self._putters)
        return item

    def get(self) -> Awaitable[T]:
        """The oldest item, once there is one. Not a coroutine function: when an item is
        waiting, what it returns is an already finished future."""
        if not self._items:
            return self._get_later()
        ready: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        ready.set_result(self.get_nowait())
        return ready

    async def _get_later(self) -> T:
        while not self._items:
            turn = asyncio.get_running_loop().create_future()
            self._getters.append(turn)
            try:
                await turn
            except BaseException:
                _leave(turn, self._getters, pass_on=bool(self._items))
                raise
        return self.get_nowait()


def _wake_first(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _leave(waiter: asyncio.Future[None], waiters: deque[asyncio.Future[None]], *, pass_on: bool) -> None:
    """A waiter was cancelled: take it off the line, and if it had been woken already and
    what it was woken for is still there, wake the next one instead."""
    waiter.cancel()
    with contextlib.suppress(ValueError):  # else it was woken, and so taken off the line
        waiters.remove(waiter)
    if pass_on:
        _wake_first(waiters)
