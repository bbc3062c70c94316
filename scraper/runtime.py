"""How the crawl's process runs: which event loop (uvloop when installed) and how the cyclic
garbage collector is tuned while a crawl runs. Process-wide choices, kept in one place."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from scraper.errors import ConfigError

T = TypeVar("T")
EventLoop = Literal["auto", "asyncio", "uvloop"]

_YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default is 700)


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's own). ``auto`` takes uvloop when it is
    installed (``pip install 'scraper[fast]'``): its loop, timers and sockets are written in
    C, which saves CPU on every request."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_available()):
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError("event_loop: uvloop is not installed (pip install 'scraper[fast]')") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, event_loop: EventLoop = "auto") -> T:
    """``asyncio.run(main)`` on the chosen event loop."""
    try:
        factory = loop_factory(event_loop)
    except ConfigError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    if factory is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


@contextmanager
def crawl_gc() -> Iterator[None]:
    """Fewer, cheaper garbage collections while a crawl runs.

    A crawl allocates a few hundred short-lived objects per page; with CPython's defaults the
    collector runs every 700 allocations and now and then walks every object the process
    holds (settings, modules, the frontier). Freezing what exists at the start takes it out
    of those walks, and a higher young-generation threshold makes collections rarer. Both
    are undone afterwards, so a program that embeds the engine gets its settings back. (No
    collection before the freeze: it walks the whole heap, tens of ms after big imports,
    to free the little that import-time garbage holds.)"""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
