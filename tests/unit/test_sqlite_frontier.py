"""The durable frontier's loads, on a real database: the best rows when the buffer runs low,
and the rows of hosts with none in memory ("hungry" hosts) into whatever room it has, never
past it, and never losing a row whose commit has not reached the writer yet."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scraper import schema, sqlite_frontier
from scraper.codec import encode
from scraper.frontier import Scheduled
from scraper.http import Request
from scraper.records import Commit
from scraper.spider import Spider
from scraper.sqlite_frontier import SQLiteFrontier
from scraper.stats import Stats
from scraper.storage import Storage
from tests.conftest import rows

BUFFER = 40


class Plain(Spider):
    name = "plain"


@pytest.fixture
async def storage(database: Path) -> AsyncIterator[Storage]:
    async with Storage(database, stats=Stats()) as opened:
        await opened.begin_crawl("plain")
        yield opened
        await opened.finish_crawl(status="finished", reason="finished")


def make_frontier(storage: Storage) -> SQLiteFrontier:
    frontier = SQLiteFrontier(storage=storage, spider=Plain(), stats=Stats(), buffer=BUFFER)
    frontier._next_look = -1.0  # each call may look at once: the tests set the pace
    return frontier


async def admit(
    frontier: SQLiteFrontier, host: str, count: int, *, start: int = 0, spill: bool = False
) -> list[Scheduled]:
    """``count`` requests of ``host``, each kept in memory while the buffer has room (as the
    scheduler admits them) unless ``spill``, their rows not committed yet."""
    entries = []
    for n in range(start, start + count):
        request = Request(f"http://{host}/{n}")
        in_memory = frontier.has_room(host) and not spill
        entry = Scheduled(request, f"{host}-{n}", host, encoded=encode(request), in_memory=in_memory)
        await frontier.push(entry)
        entries.append(entry)
    return entries


async def commit(storage: Storage, entries: list[Scheduled]) -> None:
    await storage.submit(Commit(requests=entries))
    await storage.flush()


def pop(frontier: SQLiteFrontier, host: str, count: int) -> None:
    for _ in range(count):
        assert frontier.pop(host) is not None


async def look(frontier: SQLiteFrontier) -> Counter[str]:
    """The hosts of the rows one refill loads (with the next look due at once)."""
    frontier._next_look = -1.0
    return Counter(await frontier.refill())


async def drain(frontier: SQLiteFrontier, hosts: tuple[str, ...]) -> Counter[str]:
    """Pop one request at a time (the first of ``hosts`` that has one) and look after each,
    until nothing is left; the hosts of the rows loaded meanwhile. The buffer never holds more
    than it may."""
    loaded: Counter[str] = Counter()
    while len(frontier):
        for host in hosts:
            if frontier.pop(host) is not None:
                break
        loaded += await look(frontier)
        assert frontier._size <= BUFFER
    return loaded


async def test_a_host_with_none_in_memory_gets_a_share_of_the_room_before_the_buffer_runs_low(
    storage: Storage,
) -> None:
    """a.test's requests filled the buffer, b.test's and c.test's were spilled behind 20 more
    of a's. A refill of the best rows waits for the buffer to be half empty and then reads
    a's first: b and c had to wait for most of a (30 hosts with a delay crawled at the
    pace of 5)."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER + 20)
    b = await admit(frontier, "b.test", 30)
    c = await admit(frontier, "c.test", 30)
    await commit(storage, a + b + c)
    assert len(frontier) == BUFFER + 80
    pop(frontier, "a.test", 17)  # room for a share: 17 of 40, the buffer still more than half full
    assert await look(frontier) == Counter({"b.test": 16})  # the first hungry host first
    assert await look(frontier) == Counter()  # no room left for another share
    pop(frontier, "a.test", 16)
    assert await look(frontier) == Counter({"c.test": 16})
    assert frontier._size <= BUFFER
    # drained, every row is loaded once and the buffer never held more than it may
    loaded = Counter({"a.test": BUFFER, "b.test": 16, "c.test": 16}) + await drain(
        frontier, ("a.test", "b.test", "c.test")
    )
    assert loaded == Counter({"a.test": BUFFER + 20, "b.test": 30, "c.test": 30})


async def test_hungry_hosts_share_the_room_and_wait_for_it(storage: Storage) -> None:
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER)
    others = [entry for n in range(6) for entry in await admit(frontier, f"h{n}.test", 5)]
    await commit(storage, a + others)
    pop(frontier, "a.test", 15)
    assert await look(frontier) == Counter()  # 15 free: less than a share, and no refill yet
    pop(frontier, "a.test", 4)  # 19 free, the buffer still more than half full
    assert await look(frontier) == Counter({"h0.test": 5})  # all it has
    assert await look(frontier) == Counter()  # 14 free
    pop(frontier, "a.test", 2)  # 21 of 40 held: the refill of the best rows still waits
    assert await look(frontier) == Counter({"h1.test": 5})
    assert frontier._size <= BUFFER


async def test_a_hungry_host_whose_rows_are_not_committed_yet_loses_nothing(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page that found b's requests had not reached the writer when its look came: the
    load finds none of them. b goes to the back of the line, and after a few such looks it is
    let go; its rows still count, and the refill of the best rows loads them."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER + 10)
    await commit(storage, a)
    b = await admit(frontier, "b.test", 10)  # spilled; their page's commit still to come
    pop(frontier, "a.test", 17)
    assert await look(frontier) == Counter()  # a miss: b stays hungry
    assert "b.test" in frontier._hungry
    for _ in range(sqlite_frontier._MISSES):
        assert await look(frontier) == Counter()
    assert "b.test" not in frontier._hungry  # let go after its misses
    assert len(frontier) == BUFFER + 20 - 17  # its rows are still counted
    await commit(storage, b)
    pop(frontier, "a.test", 4)  # half the buffer: the refill of the best rows
    loaded = await look(frontier)
    assert loaded == Counter({"a.test": 10, "b.test": 10})


async def test_a_resumed_crawl_knows_its_pending_rows_by_host(database: Path) -> None:
    """A resume releases the dead run's leases: everything pending is in the database, and
    the hosts with none in memory are hungry from the start (else the first refill's few
    hosts set the pace again)."""
    async with Storage(database, stats=Stats()) as first:
        await first.begin_crawl("plain")
        frontier = make_frontier(first)
        entries = [*await admit(frontier, "a.test", BUFFER + 5), *await admit(frontier, "b.test", 7)]
        await commit(first, entries)  # and the process dies: the crawl stays unfinished
    async with Storage(database, stats=Stats()) as second:
        start = await second.begin_crawl("plain")
        assert start.resumed and start.states == {"pending": BUFFER + 12}
        assert start.spilled_by_host == {"a.test": BUFFER + 5, "b.test": 7}
        resumed = SQLiteFrontier(
            storage=second,
            spider=Plain(),
            stats=Stats(),
            buffer=BUFFER,
            spilled=start.states["pending"],
            spilled_by_host=start.spilled_by_host,
        )
        # both hosts are hungry: half the room each (b has only 7), before any refill of the
        # best rows, which are a's (it would have taken all the room)
        assert await look(resumed) == Counter({"a.test": BUFFER // 2, "b.test": 7})
        await second.finish_crawl(status="finished", reason="finished")


async def test_a_resting_host_gives_its_room_back_until_it_wakes(
    storage: Storage, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a.test's requests filled the buffer, then its breaker tripped: it rests. Held, its
    requests kept every other host waiting out the rest (five dead hosts' links: minutes).
    They leave memory, their leases given back, but a retry's (its outcome's commit may still
    be on its way) and one whose page is not written yet (no row to give back); and no load
    brings a.test's rows back before it wakes."""
    monkeypatch.setattr(sqlite_frontier, "_REST_TO_GIVE_BACK", 0.1)
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER + 20)
    b = await admit(frontier, "b.test", 10)
    await commit(storage, a + b)
    first = frontier.pop("a.test")
    assert first is not None
    await frontier.push(first._replace(attempts=1, parked=True), not_before=time.monotonic() - 1)  # a retry
    assert list(frontier.release_due(time.monotonic())) == ["a.test"]
    pop(frontier, "a.test", 1)
    unwritten = await admit(frontier, "a.test", 1, start=1000)  # its page's commit still to come
    assert frontier._size == BUFFER
    frontier.resting("a.test", time.monotonic() + 0.3)
    # the same refill: the unwritten one stays (queued again), and the room goes to b.test,
    # not to a's rows, though they are the best
    assert Counter(await frontier.refill()) == Counter({"a.test": 1, "b.test": 10})
    assert frontier._size == 12 and len(frontier) == BUFFER + 30  # one of a's is in flight
    leased = rows(database, "SELECT count(*) FROM scraper_requests WHERE host = 'a.test' AND leased = 1")
    assert leased == [(2,)]  # the one in flight and the retry; 38 given back (the unwritten one has no row yet)
    assert await look(frontier) == Counter()  # while it rests, none of a's rows come back
    await commit(storage, unwritten)
    await asyncio.sleep(0.35)  # a.test wakes: hungry again
    assert await look(frontier) == Counter({"a.test": BUFFER - 12})
    remaining = await drain(frontier, ("a.test", "b.test"))
    assert remaining == Counter({"a.test": 58 - (BUFFER - 12)})  # 38 given back and 20 spilled, in all


async def test_refills_that_find_only_resting_hosts_rows_ask_less_and_less_often(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row left is a resting host's: each refill of the best rows found nothing and asked
    again 20 ms later, a transaction each time (2.5 s of CPU in 10 s of a rest). The pause
    doubles up to a second, and a new spilled row brings the next refill back in."""
    monkeypatch.setattr(sqlite_frontier, "_REST_TO_GIVE_BACK", 0.1)
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER + 20)
    await commit(storage, a)
    frontier.resting("a.test", time.monotonic() + 60)
    await frontier.refill()  # gives a's back; the refill after it finds none but a's
    pauses = []
    for _ in range(8):
        frontier._next_refill = -1.0
        assert await frontier.refill() == []
        pauses.append(frontier._next_refill - time.monotonic())
    assert pauses == pytest.approx([0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0], abs=0.01)  # 0.02 went first
    due = frontier.next_due()
    assert due is not None and due - time.monotonic() > 0.5  # the feeder sleeps, not spins
    b = await admit(frontier, "b.test", 1, spill=True)  # a row on its way
    assert frontier._next_refill - time.monotonic() <= 0.02
    await commit(storage, b)
    frontier._next_look = float("inf")  # the refill of the best rows alone
    await asyncio.sleep(0.03)
    assert await frontier.refill() == ["b.test"]


async def test_a_host_let_go_and_then_counted_again_stays_tracked_while_it_has_rows(storage: Storage) -> None:
    """b.test was let go after its misses (its rows' commit was late), then one more of its
    requests spilled: it was counted as having one row, and once that one was loaded it was
    forgotten, its other rows waiting for the refill of the best rows (behind a's)."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER + 60)
    await commit(storage, a)
    b = await admit(frontier, "b.test", 40)
    pop(frontier, "a.test", 17)
    for _ in range(sqlite_frontier._MISSES + 1):
        assert await look(frontier) == Counter()
    assert "b.test" not in frontier._by_host  # let go
    await commit(storage, b)
    late = await admit(frontier, "b.test", 1, start=40, spill=True)
    await commit(storage, late)
    assert frontier._by_host["b.test"] == 1
    assert await look(frontier) == Counter({"b.test": 17})  # a share, though it was counted as 1
    pop(frontier, "b.test", 17)
    assert await look(frontier) == Counter({"b.test": 17})  # still hungry: it has more


async def test_rows_whose_commit_is_late_are_asked_for_at_the_first_pace(storage: Storage) -> None:
    """b's rows were spilled but their page's commit had not reached the writer: the refills
    found nothing, and the back-off meant for resting hosts' rows made them wait up to a
    second once it landed (0.77 s, against 0.01 s before the back-off)."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER)
    await commit(storage, a)
    b = await admit(frontier, "b.test", 30, spill=True)
    pop(frontier, "a.test", 25)  # the buffer less than half full
    frontier._next_look = float("inf")  # the refill of the best rows alone
    for _ in range(6):
        frontier._next_refill = -1.0
        assert await frontier.refill() == []
        assert frontier._next_refill - time.monotonic() <= sqlite_frontier._EMPTY_REFILL_PAUSE
    await commit(storage, b)
    await asyncio.sleep(sqlite_frontier._EMPTY_REFILL_PAUSE)
    assert Counter(await frontier.refill()) == Counter({"b.test": 25})


async def test_a_rest_that_ends_brings_the_next_refill_in(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_frontier, "_REST_TO_GIVE_BACK", 0.1)
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER + 20)
    await commit(storage, a)
    frontier.resting("a.test", time.monotonic() + 0.3)
    frontier._next_look = float("inf")
    await frontier.refill()  # a's given back
    for _ in range(6):  # only a's rows wait: the pause grows
        frontier._next_refill = -1.0
        await frontier.refill()
    assert frontier._next_refill - time.monotonic() > 0.5
    await asyncio.sleep(0.3)  # a wakes
    assert len(await frontier.refill()) == BUFFER  # at once, not at the next paced refill


async def test_a_refill_leaves_the_rows_of_every_resting_host_however_many(storage: Storage) -> None:
    """A broad crawl with many dead hosts: past the first 500 resting hosts, a refill of the
    best rows loaded the rest's rows, which held the buffer until their rests ended while the
    other hosts' rows waited."""
    frontier = make_frontier(storage)
    resting = [f"dead{n}.test" for n in range(600)]
    spilled = [entry for host in resting for entry in await admit(frontier, host, 1, spill=True)]
    b = await admit(frontier, "b.test", 10, spill=True)  # behind every resting host's row
    await commit(storage, spilled + b)
    for host in resting:
        frontier.resting(host, time.monotonic() + 60)
    frontier._next_look = float("inf")  # the refill of the best rows alone
    assert Counter(await frontier.refill()) == Counter({"b.test": 10})


def test_the_refill_excluding_resting_hosts_is_a_few_statements_whatever_their_count() -> None:
    """A statement a count of resting hosts had each refill compile anew as hosts rested and
    woke; padded to a power of two, a crawl compiles a dozen at most."""
    texts = set()
    for count in range(1, 2_000):
        hosts = [f"h{n}.test" for n in range(count)]
        sql, parameters = schema.pending_to_load(7, hosts, 40)
        assert parameters[0] == 7 and parameters[-1] == 40 and set(parameters[1:-1]) == set(hosts)
        assert sql.count("?") == len(parameters)
        texts.add(sql)
    assert len(texts) <= 9  # 8 hosts at least, then 16, 32, ... 2,048
    assert schema.pending_to_load(7, [], 40) == (schema.PENDING_TO_LOAD, (7, 40))


@pytest.mark.parametrize("hungry", [False, True])
async def test_requests_admitted_while_a_load_is_on_its_way_never_take_the_room_it_needs(
    storage: Storage, hungry: bool
) -> None:
    """A load leased rows for the buffer's room; requests admitted meanwhile were kept in
    memory too, and the buffer held 43 of its 40."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER)
    b = await admit(frontier, "b.test", 50, spill=True)
    await commit(storage, a + b)
    pop(frontier, "a.test", 25)  # 15 in memory: room for 25
    if not hungry:
        frontier._next_look = float("inf")  # the refill of the best rows alone
    else:
        pop(frontier, "a.test", 15)  # a's queue emptied: b.test, whose rows wait, is hungry
        frontier._next_look = -1.0
    loading = asyncio.create_task(frontier.refill())
    await asyncio.sleep(0)  # the load is on its way to the writer
    during = await admit(frontier, "c.test", 5)
    await loading
    assert frontier._size == BUFFER
    assert not any(entry.in_memory for entry in during)  # they wait in the database
    assert len(frontier) == (0 if hungry else 15) + 50 + 5


async def test_hosts_holding_the_room_while_hungry_hosts_wait_give_back_all_but_their_share(
    storage: Storage, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a.test's requests filled the buffer and none of them left it (a hung host: its few in
    flight wait out their timeouts); b's and c's rows waited the whole time (a minute with a
    buffer of 50). After hungry hosts have waited ``_STARVED_FOR`` while a held more than its
    part, a keeps its part, its best requests, and gives the rest back, which goes to b and c;
    from then on, its new links wait in the database once it holds its part."""
    monkeypatch.setattr(sqlite_frontier, "_STARVED_FOR", 0.05)
    frontier = make_frontier(storage)
    urgent = Request("http://a.test/urgent", priority=5)
    a = [Scheduled(urgent, "a-urgent", "a.test", encoded=encode(urgent)), *await admit(frontier, "a.test", BUFFER - 1)]
    await frontier.push(a[0])
    b = await admit(frontier, "b.test", 30, spill=True)
    c = await admit(frontier, "c.test", 30, spill=True)
    await commit(storage, a + b + c)
    assert await look(frontier) == Counter()  # no room: b and c start waiting
    assert await look(frontier) == Counter()  # not yet long enough
    await asyncio.sleep(0.06)
    part = BUFFER // 3  # 13: less than a load's worth, so a look loads that much
    assert await look(frontier) == Counter({"b.test": part, "c.test": part})  # a's excess went to them
    assert len(frontier._queues["a.test"]) == part and frontier._size == 3 * part
    assert frontier.pop("a.test") is a[0]  # its best stayed
    leased = rows(database, "SELECT count(*) FROM scraper_requests WHERE host = 'a.test' AND leased = 1")
    assert leased == [(part,)]  # the one popped (in flight) and 12 queued; 27 given back
    more = await admit(frontier, "a.test", 2, start=100)
    assert [entry.in_memory for entry in more] == [True, False]  # back to its part, then in the database
    c_more = await admit(frontier, "c.test", 1, start=100)
    assert not c_more[0].in_memory  # c holds its part
    assert (await admit(frontier, "d.test", 1))[0].in_memory  # d holds nothing: it may
    # drained, every row is loaded once
    await commit(storage, more + c_more)
    frontier.pop("d.test")
    loaded = Counter({"a.test": BUFFER + 1, "b.test": part, "c.test": part}) + await drain(
        frontier, ("a.test", "b.test", "c.test")
    )
    assert loaded == Counter({"a.test": BUFFER + 2 + 27, "b.test": 30, "c.test": 30 + 1})


async def test_a_refill_of_the_best_rows_keeps_each_host_within_the_share_it_was_cut_to(
    storage: Storage, database: Path
) -> None:
    """A hung host cut to its share had its queue go in flight; the next refill of the best
    rows, which were its own, loaded 100 of them into a buffer of 200 (its cap 16)."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", 30, spill=True)
    b = await admit(frontier, "b.test", 5, spill=True)
    await commit(storage, a + b)
    frontier._cap = 4  # as a share-out leaves it
    frontier._next_look = frontier._next_watch = float("inf")  # the refill of the best rows alone
    assert Counter(await frontier.refill()) == Counter({"a.test": 4, "b.test": 4})
    leased = rows(database, "SELECT host, count(*) FROM scraper_requests WHERE leased = 1 GROUP BY host")
    assert leased == [("a.test", 4), ("b.test", 4)]  # the others' leases given back at once
    assert len(frontier) == 35


async def test_a_look_whose_time_passed_is_due_now(storage: Storage) -> None:
    """The feeder's refill came just before the next look for hungry hosts; by the time it
    asked when to come back, the look's time had passed, and a time past was dropped: it slept
    until some request ended (a hung page's answer, 40 s later)."""
    frontier = make_frontier(storage)
    a = await admit(frontier, "a.test", BUFFER)
    b = await admit(frontier, "b.test", 20, spill=True)
    await commit(storage, a + b)
    pop(frontier, "a.test", BUFFER)  # in flight, hung: b is hungry, the buffer empty
    frontier._next_refill = frontier._next_look = time.monotonic() - 0.001
    due = frontier.next_due()
    assert due is not None and due <= time.monotonic()
    assert Counter(await frontier.refill()) == Counter({"b.test": 20})
