"""The ``status`` view of a crawl database: counts per host and state, leased only while a
crawl is live, items, errors, rate and ETA, and a rendering that fits 80 columns."""

from __future__ import annotations

import datetime as dt
import io
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from rich.console import Console

from scraper.errors import StorageError
from scraper.frontier import Scheduled
from scraper.http import Request
from scraper.lock import CrawlLock
from scraper.query import read_only
from scraper.records import Commit, ErrorRecord, Outcome
from scraper.schema import FRAMEWORK_TABLES
from scraper.stats import Stats
from scraper.status import ErrorCount, HostCounts, read_status, recent_rate, render
from scraper.storage import Storage
from scraper.worker import stored_item

NOW = dt.datetime(2026, 11, 22, 3, 10, 0, tzinfo=dt.UTC)


def iso(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def make_database(path: Path, requests: list[tuple[str, str, int, float]], *, status: str = "running") -> None:
    """A crawl started ten minutes before NOW, with ``(host, state, leased, seconds_ago)`` requests."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(FRAMEWORK_TABLES)
        db.execute("INSERT INTO scraper_crawls (spider, started_at, status) VALUES ('shop', ?, ?)", (iso(600), status))
        db.executemany(
            "INSERT INTO scraper_requests (fingerprint, url, method, host, depth, priority, state, leased, crawl_id,"
            " added_at, updated_at) VALUES (?, ?, 'GET', ?, 0, 0, ?, ?, 1, ?, ?)",
            [
                (f"fp{n}", f"http://{host}/{n}", host, state, leased, iso(600), iso(ago))
                for n, (host, state, leased, ago) in enumerate(requests)
            ],
        )


def scheduled(url: str, *, in_memory: bool = True) -> Scheduled:
    return Scheduled(Request(url), url, url.split("/")[2], in_memory=in_memory)


async def test_a_live_crawl_shows_its_leased_requests(database: Path) -> None:
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("shop")
        held = [scheduled(f"http://a.test/{n}") for n in range(3)]
        spilled = [scheduled(f"http://b.test/{n}", in_memory=False) for n in range(2)]
        await storage.submit(Commit(requests=[*held, *spilled]))
        error = ErrorRecord("http://a.test/0", "parse", "ValueError", "bad", None)
        again = ErrorRecord("http://a.test/1", "parse", "ValueError", "worse", None)
        page = stored_item({"name": "x"}, "http://a.test/0")
        await storage.submit(Commit(outcome=Outcome(held[0].fingerprint, "done"), items=[page], errors=[error]))
        await storage.submit(Commit(errors=[again]))
        await storage.lease_pending(0)  # a barrier: every commit queued before it is written

        status = await read_status(database)
        assert status is not None and status.live and status.state == "running"
        assert status.hosts == [HostCounts("a.test", 0, 2, 1, 0, 0), HostCounts("b.test", 2, 0, 0, 0, 0)]
        assert status.items == {"item": 1}
        assert status.errors == [ErrorCount("parse", "ValueError", 2, first="bad")]
        assert status.rate.pages == 1 and status.rate.eta is not None
        await storage.finish_crawl(status="finished", reason="finished")

    status = await read_status(database)
    assert status is not None and not status.live and status.state == "finished"
    assert status.crawl.finished_at is not None and status.rate.eta is None
    assert status.hosts[0] == HostCounts("a.test", 2, 0, 1, 0, 0)  # leases of a stopped crawl mean nothing


async def test_a_running_row_without_a_live_lock_was_killed(database: Path) -> None:
    make_database(database, [("a.test", "pending", 1, 5), ("a.test", "done", 0, 5), ("b.test", "filtered", 0, 5)])
    status = await read_status(database, now=NOW)
    assert status is not None and not status.live
    assert status.state == "killed, resumes on next run"
    assert status.hosts == [HostCounts("a.test", 1, 0, 1, 0, 0), HostCounts("b.test", 0, 0, 0, 0, 1)]
    assert status.elapsed is None and status.rate.eta is None

    with CrawlLock(database):  # the same rows, with a process holding the lock
        status = await read_status(database, now=NOW)
    assert status is not None and status.live and status.state == "running"
    assert status.hosts[0] == HostCounts("a.test", 0, 1, 1, 0, 0)
    assert status.elapsed == 600


async def test_rate_counts_pages_finished_in_the_last_minute_and_eta_follows(database: Path) -> None:
    recent = [("a.test", "done", 0, 30.0)] * 25 + [("a.test", "failed", 0, 59.9)] * 5
    older = [("a.test", "done", 0, 61.0)] * 20 + [("a.test", "filtered", 0, 1.0)] * 4
    make_database(database, [*recent, *older, *[("a.test", "pending", 0, 1.0)] * 90])
    async with read_only(database) as db:
        crawl = (await read_status(database, now=NOW)).crawl  # type: ignore[union-attr]
        rate = await recent_rate(db, crawl, pending=90, live=True, now=NOW)
        assert (rate.pages, rate.window, rate.per_second, rate.eta) == (30, 60.0, 0.5, 180.0)
        assert (await recent_rate(db, crawl, pending=90, live=False, now=NOW)).eta is None
        young = await recent_rate(db, crawl, pending=90, live=True, now=NOW - dt.timedelta(seconds=590))
        assert young.window == 10.0  # a crawl younger than a minute is measured over its age


async def test_the_eta_is_no_sooner_than_the_last_parked_request(database: Path) -> None:
    """One request parked for 400 s by a Retry-After gave an ETA of 0.6 s."""
    make_database(database, [("a.test", "done", 0, 30.0)] * 30 + [("a.test", "pending", 0, 1.0)])
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("UPDATE scraper_requests SET not_before = ? WHERE state = 'pending'", (NOW.timestamp() + 400,))
    async with read_only(database) as db:
        crawl = (await read_status(database, now=NOW)).crawl  # type: ignore[union-attr]
        rate = await recent_rate(db, crawl, pending=1, live=True, now=NOW)
    assert rate.per_second == 0.5 and rate.eta == 400.0


async def test_a_stopped_crawl_shows_the_pace_it_ran_at(database: Path) -> None:
    """Asked ten minutes after it ended, a finished crawl's rate is over its own run (here
    10 s: the whole crawl), not over the empty minute before NOW."""
    make_database(database, [("a.test", "done", 0, 595.0)] * 40 + [("a.test", "failed", 0, 591.0)] * 10)
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("UPDATE scraper_crawls SET status = 'finished', finished_at = ?", (iso(590),))
    status = await read_status(database, now=NOW)
    assert status is not None and not status.live
    assert (status.rate.pages, status.rate.window, status.rate.per_second) == (50, 10.0, 5.0)
    assert status.rate.span == "whole crawl" and status.rate.eta is None
    console = Console(file=io.StringIO(), width=80)
    console.print(render(status))
    assert "5.0 pages/s (whole crawl) · ETA —" in console.file.getvalue()  # type: ignore[attr-defined]


async def test_a_killed_crawl_is_measured_up_to_its_last_finished_page(database: Path) -> None:
    """No finished_at: the window is the minute before its last page, 300 s before NOW."""
    ran = [("a.test", "done", 0, 330.0)] * 30 + [("a.test", "done", 0, 300.0)] * 12 + [("a.test", "done", 0, 400.0)] * 9
    make_database(database, [*ran, ("a.test", "pending", 1, 600.0)])
    status = await read_status(database, now=NOW)
    assert status is not None and status.state == "killed, resumes on next run"
    assert (status.rate.pages, status.rate.window, status.rate.span) == (42, 60.0, "its last 60s")
    assert status.rate.eta is None


async def test_a_crawl_stopped_before_any_page_finished_has_no_rate(database: Path) -> None:
    make_database(database, [("a.test", "pending", 1, 600.0)])
    status = await read_status(database, now=NOW)
    assert status is not None and not status.live
    assert (status.rate.pages, status.rate.per_second, status.rate.eta) == (0, 0.0, None)


async def test_idle_live_crawl_has_no_eta(database: Path) -> None:
    make_database(database, [("a.test", "pending", 0, 300.0)])
    with CrawlLock(database):
        status = await read_status(database, now=NOW)
    assert status is not None and status.live and status.rate.per_second == 0 and status.rate.eta is None


async def test_choosing_a_crawl_by_id_or_spider(database: Path) -> None:
    make_database(database, [], status="finished")
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("INSERT INTO scraper_crawls (spider, started_at, status) VALUES ('other', ?, 'failed')", (iso(1),))
    assert (await read_status(database)).crawl.id == 2  # type: ignore[union-attr]
    assert (await read_status(database, crawl_id=1)).crawl.spider == "shop"  # type: ignore[union-attr]
    assert (await read_status(database, spider="shop")).crawl.id == 1  # type: ignore[union-attr]
    assert await read_status(database, crawl_id=9) is None
    assert await read_status(database, spider="nobody") is None


async def test_a_killed_crawl_that_a_later_one_replaced_does_not_resume(database: Path) -> None:
    """After --fresh, the killed crawl still read "resumes on next run": the next run resumes
    the later one."""
    make_database(database, [])  # crawl 1 of shop, left 'running' by a killed process
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("INSERT INTO scraper_crawls (spider, started_at, status) VALUES ('shop', ?, 'running')", (iso(1),))
    first, latest = await read_status(database, crawl_id=1), await read_status(database)
    assert first is not None and first.state == "killed, given up: a later crawl started"
    assert latest is not None and latest.crawl.id == 2 and latest.state == "killed, resumes on next run"


async def test_an_earlier_crawl_says_a_later_one_took_over_its_rows_and_what_it_counted(database: Path) -> None:
    """It showed no pages, a rate of 0 and no keyed items, as if it had done nothing."""
    make_database(database, [], status="finished")
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "UPDATE scraper_crawls SET stats = ?", ('{"pages": 59, "items/stored": 43, "elapsed_seconds": 2.0}',)
        )
        db.execute("INSERT INTO scraper_crawls (spider, started_at, status) VALUES ('shop', ?, 'finished')", (iso(1),))
    earlier, latest = await read_status(database, crawl_id=1), await read_status(database)
    assert earlier is not None and latest is not None
    console = Console(file=io.StringIO(), width=80)
    console.print(render(earlier))
    said = " ".join(console.file.getvalue().split())  # type: ignore[attr-defined]
    assert "rate 29.5 pages/s (whole crawl)" in said  # from its own statistics, its rows being the later one's
    assert (
        "note a later crawl of shop took over the requests and keyed items it met again, so below is what is "
        "left of this one; it counted 59 pages and 43 items stored"
    ) in said
    console = Console(file=io.StringIO(), width=80)
    console.print(render(latest))
    assert "note" not in console.file.getvalue()  # type: ignore[attr-defined]


async def test_a_crawl_whose_start_requests_raised_says_so(database: Path) -> None:
    """The summary said so and run exited 1, but status showed a crawl 'finished' like any other."""
    make_database(database, [], status="finished")
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("UPDATE scraper_crawls SET stats = ?", ('{"pages": 3, "start/raised": 1}',))
    shown = await read_status(database)
    assert shown is not None
    console = Console(file=io.StringIO(), width=80)
    console.print(render(shown))
    said = " ".join(console.file.getvalue().split())  # type: ignore[attr-defined]
    assert "seeding start_requests() raised, so nothing it had yet to yield was crawled" in said


async def test_an_empty_or_foreign_database(database: Path, tmp_path: Path) -> None:
    make_database(database, [])
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("DELETE FROM scraper_crawls")
    assert await read_status(database) is None
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StorageError) as caught:  # it said "no such table: scraper_crawls"
        await read_status(foreign)
    assert str(caught.value) == f"{foreign} holds no crawl (it has no scraper_crawls table)"
    with pytest.raises(StorageError, match="no database at"):
        await read_status(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db.lock").exists()


async def test_render_fits_80_columns_and_folds_many_hosts(database: Path) -> None:
    hosts = [(f"host-{n:02d}.a-rather-long-subdomain.example.com", "done", 0, 5.0) for n in range(25)]
    make_database(database, [*hosts, ("host-00.a-rather-long-subdomain.example.com", "pending", 1, 5.0)])
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "INSERT INTO scraper_errors VALUES (1, 1, 'u', 'fetch', 'HttpStatusError', 'HTTP 503', NULL, ?)", (iso(1),)
        )
        long = "1 validation error for Product\nprice\n  Input should be a valid number " + "x" * 300
        db.execute(
            "INSERT INTO scraper_errors VALUES (2, 1, 'u', 'validate', 'ValidationError', ?, NULL, ?)", (long, iso(1))
        )
    with CrawlLock(database):
        status = await read_status(database, now=NOW)
    assert status is not None
    console = Console(file=io.StringIO(), width=80, record=True)
    console.print(render(status))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80
    assert re.search(r"host +pending +leased +done +failed +filtered", text)  # "in flight" read as fetching
    assert "running" in text and "5 more hosts" in text and "all 25 hosts" in text
    assert "HttpStatusError" in text and "items stored: none" in text and "ETA 2.4s" in text
    assert re.search(r"stage +error +count +first", text) and re.search(r"HttpStatusError +1 +HTTP 503", text)
    words = " ".join(text.split())  # the message's own line breaks are spaces; the column wraps it
    assert "ValidationError 1 1 validation error for Product price Input should be a valid number xxx" in words
    assert "xxx…" in text  # cut: the whole message is in scraper_errors
