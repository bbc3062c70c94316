"""How the crawl's process runs: which event loop (uvloop when installed), how the cyclic
garbage collector is tuned while a crawl runs, and how much freed memory the C allocator
keeps. Process-wide choices, kept in one place."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from scraper.errors import ConfigError
from scraper.loop_budget import MANY_WORKERS

T = TypeVar("T")
EventLoop = Literal["auto", "asyncio", "uvloop"]

FEW_WORKERS_TICK = 0.25  # seconds between young collections
MANY_WORKERS_TICK = 0.05  # ... past MANY_WORKERS (loop_budget's threshold: the same crawls)
QUIET_FOR = 0.5  # seconds of ticks that only freeze, at most, after a collection found no garbage
_YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default is 700)
KEPT_HEAP = 8 * 1024 * 1024  # bytes of freed heap glibc keeps for reuse (its default: 128 KiB at first)
OPEN_FILES = 65_536  # the soft limit a crawl asks for (allow_open_files)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's own). ``auto`` takes uvloop when it is
    installed (the ``fast`` extra: ``pip install -e '.[fast]'`` in a clone): its loop, timers
    and sockets are written in C, which saves CPU on every request."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_available()):
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError("event_loop: uvloop is not installed (pip install -e '.[fast]' in a clone)") from None
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


def allow_open_files(wanted: int = OPEN_FILES) -> int:
    """Raise this process's soft limit on open files to ``wanted`` when the hard limit allows
    (never lower it); returns the soft limit now in force (0 where there is none to read).

    Why: a crawl over thousands of hosts holds a socket for each connection kept alive, and
    the usual soft limit of 1,024 ran out: 2,653 fetches failed with "Too many open files",
    robots.txt went unread, and breakers rested healthy hosts. The hard limit is the system's
    word on what a process may hold; the soft one is a default, which servers raise too."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def keep_freed_heap(size: int = KEPT_HEAP) -> bool:
    """Have glibc's malloc keep up to ``size`` bytes of freed memory at the top of the heap,
    where it gives it back to the kernel once 128 KiB are free there (until a large block
    has been freed: its thresholds adapt). Returns whether it applied (on glibc only;
    elsewhere nothing changes).

    Why: Lexbor allocates a few hundred KiB of working memory for every page it parses (the
    tokenizer, the document's pools, the CSS selector engine) and frees it afterwards. When
    that memory sits at the top of the heap, every page gave it back to the kernel and took
    it again, page fault by page fault: a crawl of 10,000 small pages at concurrency 5,000
    took ~156,000 page faults, and ~25,000 with 8 MiB kept, for 10-20% less CPU.

    Setting one threshold turns glibc's adaptation off, so both are set as it would adapt
    them: blocks under half of ``size`` (a page body of up to 4 MiB) come from the heap,
    where a freed one is reused, instead of a fresh mapping each time. The setting stays for
    the life of the process; what it costs is up to ``size`` bytes of free memory kept."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.confstr("CS_GNU_LIBC_VERSION")  # raises where the C library is not glibc
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, size // 2)) and bool(mallopt(_M_TRIM_THRESHOLD, size))


class CrawlCollector:
    """The cyclic garbage collector, driven by the crawl instead of by allocation counts.

    Why: a crawl at high concurrency holds ~20 container objects per request in flight
    (100,000 at concurrency 5,000). CPython's own collections walk them again and again: a
    young collection walks everything allocated since the last one that is still alive, and
    3.11 counts the deaths of old objects against the young count, so the young generation
    grows far past its threshold. Each walk stalls the event loop for 60-150 ms. Our own code
    leaves almost no cyclic garbage (a shop crawl: none per page), so walking live objects is
    all those pauses do.

    What instead: automatic collection is off while the crawl runs. Every ``every`` seconds
    a timer on the loop collects the young generation (what was allocated since the last
    tick, cheap) and freezes the survivors, so that no later collection walks them again.
    The period depends on the crawl (``for_concurrency``). A few dozen workers finish a page
    in milliseconds, so a tick walks about what is in flight at that moment (~4,000 objects,
    ~1 ms) whatever the period, and a longer one pays that less often: on a 10,000-page
    crawl, 56 ms in all every 250 ms against 133 ms every 50 ms. Thousands of slow requests
    keep what they allocate for a second or more, so every object is walked once whatever
    the period, and a longer one only makes each pause longer (at concurrency 5,000 the
    worst loop stall rose from 52-60 to 68-78 ms at 250 ms): they tick every 50 ms.
    Most crawls make almost no cyclic garbage (10 objects in a 10,000-page crawl at
    concurrency 5,000, whose young collections took 400-560 ms in all), so a collection that
    found none is followed by ticks that only freeze, in runs of 1, 2, 4... ticks up to
    ``quiet_for`` seconds' worth (90-113 ms in all for that crawl); garbage found brings back
    a collection at every tick. Frozen objects still die by reference counting like any
    other; only a reference cycle that forms among them (or is frozen by a quiet tick) stays
    until a full collection. For that, memory is watched: once Python's allocated blocks
    have grown by ``full_growth`` since the last full collection, and at most once every
    ``full_every`` seconds, everything is unfrozen and collected (the one long pause, and a
    bound on what cycles can hold). Everything is undone on exit."""

    @classmethod
    def for_concurrency(cls, concurrency: int) -> CrawlCollector:
        """The collector for a crawl of ``concurrency`` workers."""
        return cls(every=MANY_WORKERS_TICK if concurrency > MANY_WORKERS else FEW_WORKERS_TICK)

    def __init__(
        self,
        *,
        every: float = FEW_WORKERS_TICK,
        quiet_for: float = QUIET_FOR,
        full_growth: float = 1.5,
        full_every: float = 30.0,
        blocks: Callable[[], int] = sys.getallocatedblocks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every = every
        self._max_quiet_ticks = int(quiet_for / every)
        self._quiet_ticks = 0  # how many ticks only freeze after the last collection
        self._quiet_left = 0
        self._full_growth = full_growth
        self._full_every = full_every
        self._blocks = blocks
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._was_enabled = False
        self._blocks_after_full = 0
        self._last_full = 0.0
        self.ticks = 0
        self.young_collections = 0
        self.full_collections = 0
        self.paused = 0.0  # seconds its collections held the loop (for LoopWatch: not the spider's doing)

    @property
    def every(self) -> float:
        """Seconds between young collections."""
        return self._every

    def __enter__(self) -> CrawlCollector:
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()  # what exists now (modules, settings) is never walked during the crawl
        self._blocks_after_full = self._blocks()
        self._last_full = self._clock()
        self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()

    def _tick(self) -> None:
        self.ticks += 1
        started = time.perf_counter()
        if self._quiet_left:
            self._quiet_left -= 1
        else:
            self._collect_young()
        gc.freeze()
        if self._full_is_due():
            self.collect_all()
        self.paused += time.perf_counter() - started
        self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)

    def _collect_young(self) -> None:
        """A young collection. One that found no garbage is followed by ticks that only
        freeze, twice as many as the last time (up to ``quiet_for`` seconds' worth); one that
        found some, by collections at every tick."""
        found = gc.collect(0)
        self.young_collections += 1
        self._quiet_ticks = 0 if found else min(max(1, 2 * self._quiet_ticks), self._max_quiet_ticks)
        self._quiet_left = self._quiet_ticks

    def _full_is_due(self) -> bool:
        if self._clock() - self._last_full < self._full_every:
            return False
        return self._blocks() > self._blocks_after_full * self._full_growth

    def collect_all(self) -> None:
        """A full collection, frozen objects included; then freeze again."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.full_collections += 1
        self._blocks_after_full = self._blocks()
        self._last_full = self._clock()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Fewer, cheaper collections for a process without a crawl's loop (a parse process,
    whose loop blocks while it waits for pages, so that no timer could drive the collector).

    What exists at the start is frozen, out of every walk, and the young generation is
    collected every 20,000 allocations instead of 700; both are undone afterwards. (No
    collection before the freeze: it walks the whole heap, tens of ms after big imports, to
    free the little that import-time garbage holds.) Automatic collection is on inside,
    even in a fork of a crawl, whose ``CrawlCollector`` had turned it off."""
    thresholds, was_enabled = gc.get_threshold(), gc.isenabled()
    gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *thresholds[1:])
    gc.enable()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if not was_enabled:
            gc.disable()
