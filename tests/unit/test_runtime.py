"""The crawl's garbage collector: young collections on a timer, survivors frozen, a full
collection when memory has grown (and not too often), everything undone on exit. And the
freed heap glibc keeps, so that parsing does not fault its memory back in page by page."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from scraper.loop_budget import MANY_WORKERS
from scraper.runtime import CrawlCollector, allow_open_files, fewer_collections, keep_freed_heap


class Cycle:
    """An object that refers to itself: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def dropped_cycle() -> weakref.ref[Cycle]:
    return weakref.ref(Cycle())


def is_frozen(target: object) -> bool:
    """Frozen objects belong to no generation, so ``gc.get_objects()`` skips them."""
    return gc.is_tracked(target) and not any(obj is target for obj in gc.get_objects())


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def ticks(collector: CrawlCollector, count: int) -> None:
    target = collector.ticks + count
    await wait_for(lambda: collector.ticks >= target)


async def test_automatic_collection_is_off_during_the_crawl_and_restored_after() -> None:
    assert gc.isenabled()
    with CrawlCollector(every=10.0):
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_crawl_of_thousands_of_workers_ticks_more_often() -> None:
    """Past the loop budget's threshold the young generation is what a short period allocates,
    so the pauses stay short; a few dozen workers tick less often and walk less in all."""
    few, many = CrawlCollector.for_concurrency(32), CrawlCollector.for_concurrency(5000)
    assert many.every < few.every
    assert CrawlCollector.for_concurrency(MANY_WORKERS).every == few.every
    assert CrawlCollector.for_concurrency(MANY_WORKERS + 1).every == many.every


async def test_a_tick_frees_young_cycles() -> None:
    with CrawlCollector(every=0.01) as collector:
        cycle = dropped_cycle()
        assert cycle() is not None  # nothing collects between ticks
        await ticks(collector, 1)
        assert cycle() is None


def tick_by_hand(collector: CrawlCollector, count: int, *, garbage: bool = False) -> None:
    """``count`` ticks, each after dropping a reference cycle if ``garbage``."""
    for _ in range(count):
        if garbage:
            dropped_cycle()
        collector._tick()


async def test_after_a_collection_that_found_no_garbage_ticks_only_freeze_for_a_while() -> None:
    """A crawl that makes no cyclic garbage (most: 10 objects in a 10,000-page crawl) need not
    walk what it allocates at every tick: quiet runs of 1, 2, 4, then 4 (``quiet_for``) ticks."""
    with CrawlCollector(every=1000.0, quiet_for=4000.0) as collector:  # ticked by hand
        tick_by_hand(collector, 1, garbage=True)  # found some: the next tick collects too
        tick_by_hand(collector, 11)
        assert (collector.ticks, collector.young_collections) == (12, 5)  # ticks 1, 2, 4, 7 and 12
        survivor = Cycle()
        tick_by_hand(collector, 1)  # a quiet tick: frozen without a walk
        assert is_frozen(survivor)


async def test_garbage_found_brings_back_a_collection_at_every_tick() -> None:
    with CrawlCollector(every=1000.0, quiet_for=4000.0) as collector:
        tick_by_hand(collector, 1, garbage=True)
        tick_by_hand(collector, 7)  # collections at ticks 1, 2, 4 and 7; 8 is the first of 4 quiet
        assert collector.young_collections == 4
        cycles = [dropped_cycle() for _ in range(3)]
        tick_by_hand(collector, 1)  # quiet: the cycles are frozen, not walked
        assert all(cycle() is not None for cycle in cycles)
        tick_by_hand(collector, 3, garbage=True)  # 10 and 11 quiet; 12 collects and finds garbage
        assert collector.young_collections == 5
        tick_by_hand(collector, 3, garbage=True)
        assert collector.young_collections == 8  # every tick again
        assert all(cycle() is not None for cycle in cycles)  # what a quiet tick froze waits...
        collector.collect_all()
        assert all(cycle() is None for cycle in cycles)  # ...for a full collection


async def test_survivors_are_frozen_and_their_cycles_wait_for_a_full_collection() -> None:
    with CrawlCollector(every=0.01) as collector:
        survivor = Cycle()
        await ticks(collector, 1)
        assert is_frozen(survivor)
        cycle = weakref.ref(survivor)
        del survivor
        await ticks(collector, 2)
        assert cycle() is not None  # young collections never walk frozen objects again
        collector.collect_all()
        assert cycle() is None
        assert collector.full_collections == 1


async def test_a_full_collection_follows_memory_growth_at_most_once_per_interval() -> None:
    blocks, now = [1_000], [0.0]
    collector = CrawlCollector(
        every=0.01, full_growth=1.5, full_every=30.0, blocks=lambda: blocks[0], clock=lambda: now[0]
    )
    with collector:
        survivor = Cycle()
        await ticks(collector, 1)
        cycle = weakref.ref(survivor)
        del survivor
        blocks[0] = 2_000  # grown past 1.5x, but the last full collection was just now
        await ticks(collector, 2)
        assert (collector.full_collections, cycle() is not None) == (0, True)
        now[0] = 31.0
        await ticks(collector, 1)
        assert (collector.full_collections, cycle()) == (1, None)
        now[0] = 70.0  # long enough, but no growth since the full collection (2,000 blocks)
        await ticks(collector, 2)
        assert collector.full_collections == 1
        blocks[0] = 3_100
        await ticks(collector, 1)
        assert collector.full_collections == 2


async def test_exit_unfreezes_and_stops_ticking() -> None:
    with CrawlCollector(every=0.01) as collector:
        survivor = Cycle()
        await ticks(collector, 1)
        assert is_frozen(survivor)
    assert not is_frozen(survivor)
    assert gc.get_freeze_count() == 0
    stopped_at = collector.ticks
    await asyncio.sleep(0.05)
    assert collector.ticks == stopped_at


def test_fewer_collections_turns_collection_on_with_a_high_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    gc.disable()  # as in a fork of a crawl
    try:
        with fewer_collections():
            assert gc.isenabled()
            assert gc.get_threshold()[0] == 20_000
            assert gc.get_freeze_count() > 0
        assert not gc.isenabled()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


# Allocates 2 MiB at the top of the heap in 64 KiB blocks, writes it, frees it; 50 times.
# Prints the page faults that took (a 4 KiB page faulted in again costs one).
_CHURN = """
import ctypes, resource, sys
from scraper.runtime import keep_freed_heap
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "kept":
    assert keep_freed_heap()
blocks = [0] * 32
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    for i in range(32):
        blocks[i] = libc.malloc(65536)
        libc.memset(blocks[i], 1, 65536)
    for i in reversed(range(32)):
        libc.free(blocks[i])
    if sys.argv[1] == "handed back":
        libc.malloc_trim(0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn_faults(mode: str) -> int:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True, cwd=root, timeout=60
    )
    return int(done.stdout)


@pytest.mark.skipif(not _glibc(), reason="glibc's malloc only")
def test_kept_heap_is_reused_instead_of_faulted_in_again() -> None:
    pages_per_round = 2 * 1024 * 1024 // 4096
    # the control: memory given back to the kernel after every round is faulted in again
    assert _churn_faults("handed back") > 25 * pages_per_round
    assert _churn_faults("kept") < 5 * pages_per_round  # the first round only, give or take


def test_keeping_freed_heap_applies_on_glibc_and_is_a_no_op_elsewhere() -> None:
    assert keep_freed_heap() is _glibc()


def test_a_crawl_raises_the_soft_limit_on_open_files_within_the_hard_one() -> None:
    """At 1,024 open files a crawl over 5,000 hosts failed thousands of fetches with "Too
    many open files", its kept-alive sockets one per host."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1_024:
        pytest.skip("the hard limit leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1_024, hard))
    try:
        allowed = allow_open_files(4_096)
        assert allowed == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(4_096, hard)
        assert allow_open_files(2_048) == allowed  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
