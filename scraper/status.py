"""The ``status`` command: where a live or stopped crawl stands, read from its database.

A read-only connection sees the crawl through WAL while its writer keeps going; the crawl lock
tells a live run from a killed one. Queries return plain values, rendering is separate."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosqlite
from filelock import FileLock, Timeout
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from scraper.crawls import RESUMABLE, count_items
from scraper.errors import StorageError, damaged
from scraper.lock import CrawlLock
from scraper.progress import one_line
from scraper.query import read_only
from scraper.stats import SEEDING_CUT_SHORT, SEEDING_CUT_SHORT_SAYS

RATE_WINDOW = 60.0  # seconds of finished pages the rate is measured over
TOP_HOSTS = 20
_FIRST_CHARS = 150  # of a kind's first error message: two lines on 80 columns; the rest is in scraper_errors


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlInfo:
    id: int
    spider: str
    status: str  # as stored: running / finished / interrupted / failed
    started_at: str  # ISO 8601, UTC
    finished_at: str | None
    finish_reason: str | None
    superseded: bool = False  # a later crawl of the spider started (--fresh): this one never resumes
    stats: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the statistics it saved last

    def counted(self, key: str) -> int:
        """A count from the crawl's own statistics (0 when it saved none)."""
        value = self.stats.get(key, 0)
        return value if isinstance(value, int) else 0


@dataclasses.dataclass(frozen=True, slots=True)
class HostCounts:
    host: str
    pending: int  # waiting in the store
    leased: int  # pending but taken by the live crawl: in its memory queue or being fetched
    done: int
    failed: int
    filtered: int


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorCount:
    stage: str
    error_type: str
    count: int
    first: str  # the message of the kind's first error in the crawl


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    pages: int  # pages finished (done or failed) within the window
    window: float  # seconds: RATE_WINDOW, or less for a crawl shorter than that
    eta: float | None  # seconds until nothing is pending; only for a live crawl that moves
    ended: bool = False  # the window ends where the crawl stopped, not now
    whole: bool = False  # the window is the whole crawl, however long

    @property
    def span(self) -> str:
        """What the window covers, in words: its last seconds until now, or of a stopped crawl."""
        if not self.ended:
            return f"last {self.window:.0f}s"
        return "whole crawl" if self.whole or self.window < RATE_WINDOW else f"its last {self.window:.0f}s"

    @property
    def per_second(self) -> float:
        return self.pages / self.window if self.window > 0 else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlStatus:
    database: Path
    crawl: CrawlInfo
    live: bool  # a process holds the crawl lock and the row says running
    elapsed: float | None  # seconds run so far (live) or in all (finished)
    hosts: list[HostCounts]  # most requests first
    items: dict[str, int]
    errors: list[ErrorCount]  # most frequent first
    rate: Rate

    @property
    def state(self) -> str:
        """The stored status, corrected by the lock: "running" with no live process was killed."""
        crawl = self.crawl
        if self.live:
            return "running"
        label = "killed" if crawl.status == "running" else crawl.status
        if crawl.finish_reason and crawl.finish_reason != crawl.status:
            label += f" ({crawl.finish_reason})"
        if crawl.status not in RESUMABLE:
            return label
        return f"{label}, given up: a later crawl started" if crawl.superseded else f"{label}, resumes on next run"


def lock_is_held(database: Path) -> bool:
    """Try the crawl's lock and give it straight back: the OS frees a dead process's lock, so
    only a live crawl makes this fail. No lock file means no crawl ever ran (none is created)."""
    path = CrawlLock(database).path
    if not path.exists():
        return False
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:  # a lock file we may not open (another user's crawl): ask its pid file
        return _pid_alive(path.with_name(path.name + ".pid"))
    lock.release()
    return False


def _pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except PermissionError:
        return True  # alive, owned by someone else
    except (OSError, ValueError):
        return False
    return True


async def find_crawl(db: aiosqlite.Connection, *, spider: str | None, crawl_id: int | None) -> CrawlInfo | None:
    """The chosen crawl, else the latest (of ``spider``, when given)."""
    conditions = [("spider = ?", spider), ("id = ?", crawl_id)]
    chosen = [(sql, value) for sql, value in conditions if value is not None]
    where = " AND ".join(sql for sql, _ in chosen) or "1"
    later = "EXISTS (SELECT 1 FROM scraper_crawls AS later WHERE later.spider = c.spider AND later.id > c.id)"
    columns = f"id, spider, status, started_at, finished_at, finish_reason, {later}, stats"
    sql = f"SELECT {columns} FROM scraper_crawls AS c WHERE {where}"
    async with db.execute(sql + " ORDER BY id DESC LIMIT 1", [value for _, value in chosen]) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    crawl_id, spider_name, status, started_at, finished_at, reason, superseded, stats = row
    saved = json.loads(stats) if stats else {}
    return CrawlInfo(crawl_id, spider_name, status, started_at, finished_at, reason, bool(superseded), saved)


async def host_counts(db: aiosqlite.Connection, crawl_id: int, *, live: bool) -> list[HostCounts]:
    """Requests per host and state. Leases of a dead crawl are stale (it resumes them), so
    they count as leased only while the crawl is live."""
    sql = """
        SELECT host, sum(state = 'pending' AND NOT (leased AND :live)), sum(state = 'pending' AND leased AND :live),
               sum(state = 'done'), sum(state = 'failed'), sum(state = 'filtered')
        FROM scraper_requests WHERE crawl_id = :crawl GROUP BY host ORDER BY count(*) DESC, host"""
    async with db.execute(sql, {"crawl": crawl_id, "live": int(live)}) as cursor:
        return [HostCounts(*row) for row in await cursor.fetchall()]


async def error_counts(db: aiosqlite.Connection, crawl_id: int) -> list[ErrorCount]:
    sql = """WITH kinds AS (SELECT stage, error_type, count(*) AS n, min(id) AS first FROM scraper_errors
                            WHERE crawl_id = ? GROUP BY stage, error_type)
             SELECT kinds.stage, kinds.error_type, n, message FROM kinds JOIN scraper_errors ON id = first
             ORDER BY n DESC, kinds.stage, kinds.error_type"""
    async with db.execute(sql, (crawl_id,)) as cursor:
        return [ErrorCount(*row) for row in await cursor.fetchall()]


async def recent_rate(
    db: aiosqlite.Connection, crawl: CrawlInfo, *, pending: int, live: bool, now: dt.datetime
) -> Rate:
    """Pages finished in the last minute of the crawl: up to now while it is live, up to where
    it stopped otherwise (its ``finished_at``; for a killed crawl its last finished page), so
    that a stopped crawl shows the pace it ran at, not the nothing of the minute before ``status``
    was asked. A crawl shorter than a minute is measured over its length (at least a second
    while live). A crawl a later one took over (whose rows now count for that one) is measured
    over its whole length, from its own statistics. ``updated_at`` is ISO text in UTC, so it
    compares as text."""
    seconds = crawl.stats.get("elapsed_seconds")
    if crawl.superseded and not live and isinstance(seconds, (int, float)) and seconds > 0:
        # a later crawl took its rows over (they count for that one): its own statistics tell its pace
        return Rate(crawl.counted("pages"), float(seconds), None, ended=True, whole=True)
    end = now if live else await _stopped_at(db, crawl)
    if end is None:  # stopped before any page finished
        return Rate(0, 0.0, None, ended=True)
    length = (end - dt.datetime.fromisoformat(crawl.started_at)).total_seconds()
    window = min(RATE_WINDOW, max(length, 1.0 if live else 0.001))
    cutoff = (end - dt.timedelta(seconds=window)).astimezone(dt.UTC).isoformat(timespec="milliseconds")
    sql = "SELECT count(*) FROM scraper_requests WHERE crawl_id = ? AND state IN ('done', 'failed') AND updated_at >= ?"
    async with db.execute(sql, (crawl.id, cutoff)) as cursor:
        row = await cursor.fetchone()
    rate = Rate(row[0] if row else 0, window, None, ended=not live)
    if live and rate.per_second > 0:
        # no sooner than the last parked request's time: one request parked for 400 s by a
        # Retry-After gave an ETA of 0.6 s
        sql = "SELECT max(not_before) FROM scraper_requests WHERE crawl_id = ? AND state = 'pending'"
        async with db.execute(sql, (crawl.id,)) as cursor:
            parked = await cursor.fetchone()
        wait = (parked[0] - now.timestamp()) if parked and parked[0] else 0.0
        return dataclasses.replace(rate, eta=max(pending / rate.per_second, wait))
    return rate


async def _stopped_at(db: aiosqlite.Connection, crawl: CrawlInfo) -> dt.datetime | None:
    """When a stopped crawl ended: its ``finished_at``, else (killed) its last finished page."""
    if crawl.finished_at:
        return dt.datetime.fromisoformat(crawl.finished_at)
    sql = "SELECT max(updated_at) FROM scraper_requests WHERE crawl_id = ? AND state IN ('done', 'failed')"
    async with db.execute(sql, (crawl.id,)) as cursor:
        row = await cursor.fetchone()
    return dt.datetime.fromisoformat(row[0]) if row and row[0] else None


async def read_status(
    database: Path, *, spider: str | None = None, crawl_id: int | None = None, now: dt.datetime | None = None
) -> CrawlStatus | None:
    """The status of one crawl, or ``None`` when none matches. The lock is checked first: a
    crawl that ends meanwhile then reads as finished rather than killed."""
    locked = await asyncio.to_thread(lock_is_held, database)
    now = now or dt.datetime.now(dt.UTC)
    async with read_only(database) as db:
        try:
            await db.execute("BEGIN")  # one snapshot: hosts, items and errors agree
            crawl = await find_crawl(db, spider=spider, crawl_id=crawl_id)
            if crawl is None:
                return None
            live = locked and crawl.status == "running"
            hosts = await host_counts(db, crawl.id, live=live)
            pending = sum(host.pending + host.leased for host in hosts)
            rate = await recent_rate(db, crawl, pending=pending, live=live, now=now)
            items, errors = await count_items(db, crawl.id), await error_counts(db, crawl.id)
        except sqlite3.Error as exc:
            if str(exc) == "no such table: scraper_crawls":  # an SQLite file, but not a crawl's
                raise StorageError(f"{database} holds no crawl (it has no scraper_crawls table)") from None
            raise StorageError(f"cannot read crawl status from {database}: {exc}{damaged(exc, database)}") from None
    return CrawlStatus(database, crawl, live, _elapsed(crawl, live, now), hosts, items, errors, rate)


def _elapsed(crawl: CrawlInfo, live: bool, now: dt.datetime) -> float | None:
    """Seconds run so far (live) or in all (finished); unknown for a killed crawl."""
    end = now if live else dt.datetime.fromisoformat(crawl.finished_at) if crawl.finished_at else None
    return None if end is None else (end - dt.datetime.fromisoformat(crawl.started_at)).total_seconds()


def render(status: CrawlStatus, *, top: int = TOP_HOSTS) -> Group:
    """Header, hosts, items and errors, each narrow enough for an 80-column terminal."""
    crawl, rate = status.crawl, status.rate
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column(overflow="fold")
    header.add_row("crawl", f"{crawl.id} of {crawl.spider}: {status.state}")
    header.add_row("started", f"{_clock(crawl.started_at)}, finished {_clock(crawl.finished_at)}")
    header.add_row("elapsed", "—" if status.elapsed is None else _duration(status.elapsed))
    eta = "—" if rate.eta is None else _duration(rate.eta)
    header.add_row("rate", f"{rate.per_second:,.1f} pages/s ({rate.span}) · ETA {eta}")
    header.add_row("database", str(status.database))
    if crawl.counted(SEEDING_CUT_SHORT):  # the summary said so; run exited 1
        header.add_row("seeding", SEEDING_CUT_SHORT_SAYS)
    if crawl.superseded:  # its pages' rows, and its keyed items, belong to the crawls that met them again
        header.add_row(
            "note",
            f"a later crawl of {crawl.spider} took over the requests and keyed items it met again, so below is "
            f"what is left of this one; it counted {crawl.counted('pages'):,} pages and "
            f"{crawl.counted('items/stored'):,} items stored",
        )
    sections = (_host_table(status.hosts, top), _items_table(status.items), _error_table(status.errors))
    return Group(header, *(part for section in sections for part in (Text(), section)))


def _table(title: str, *columns: str, text: int = 1) -> Table:
    """A borderless table with a rule under its header: ``text`` columns of words, then numbers."""
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False)
    for index, name in enumerate(columns):
        table.add_column(name, overflow="fold", justify="left" if index < text else "right")
    return table


def _host_table(hosts: list[HostCounts], top: int) -> Table:
    table = _table("requests by host", "host", "pending", "leased", "done", "failed", "filtered")
    for host in hosts[:top]:
        table.add_row(host.host, *(f"{n:,}" for n in dataclasses.astuple(host)[1:]))
    if len(hosts) > top:
        table.add_row(f"{len(hosts) - top:,} more hosts", style="dim")
    totals = [sum(column) for column in zip(*(dataclasses.astuple(host)[1:] for host in hosts), strict=True)]
    if len(hosts) > 1:
        table.add_section()
        table.add_row(f"all {len(hosts):,} hosts", *(f"{n:,}" for n in totals), style="bold")
    return table


def _items_table(items: dict[str, int]) -> Table | Text:
    table = _table("items stored", "table", "items")
    for name, count in sorted(items.items()):
        table.add_row(name, f"{count:,}")
    return table if items else Text("items stored: none", style="italic")


def _error_table(errors: list[ErrorCount]) -> Table | Text:
    table = _table("errors", "stage", "error", "count", text=2)
    table.add_column("first")  # the widest column: what a narrow terminal wraps first
    for error in errors:
        table.add_row(error.stage, error.error_type, f"{error.count:,}", one_line(error.first, _FIRST_CHARS))
    return table if errors else Text("errors: none", style="italic")


def _clock(iso: str | None) -> str:
    return "—" if iso is None else iso[:19].replace("T", " ") + " UTC"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"
