"""Crawl bookkeeping in ``scraper_crawls``: start a crawl or resume the spider's unfinished
one, and seal it with a status, a reason and its statistics."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import aiosqlite

from scraper import schema
from scraper.cookies import CookieChanges, StoredCookie
from scraper.errors import ConfigError
from scraper.schema import Statement

RESUMABLE = ("running", "interrupted")  # "running" with no live process: it was killed
TRACKED_HOSTS = 50_000  # hosts whose spilled requests the durable frontier counts (sqlite_frontier.py)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlStart:
    crawl_id: int
    resumed: bool
    states: dict[str, int]  # request rows by state (a resumed crawl's progress so far)
    pages: int  # pages fetched and parsed so far (done rows that are not redirect hops)
    items: dict[str, int]  # stored items by table
    stats: dict[str, Any]  # the last statistics saved, to continue counting from
    errors: dict[str, int] = dataclasses.field(default_factory=dict)  # error rows, as stats count them
    fetches: int = 0  # fetches made so far (each attempt: retries and redirect hops too), for max_pages
    unfinished: int | None = None  # an unfinished crawl of the spider that this one does not resume
    cookies: tuple[StoredCookie, ...] = ()  # the jar a resumed crawl kept
    spilled_by_host: dict[str, int] = dataclasses.field(default_factory=dict)  # pending rows by host, resumed

    def describe(self, spider: str) -> str:
        if not self.resumed:
            return f"crawl {self.crawl_id} of {spider} started"
        counts = ", ".join(f"{count:,} {state}" for state, count in sorted(self.states.items())) or "no requests"
        items = sum(self.items.values())
        return f"resuming crawl {self.crawl_id} of {spider}: {counts}; {items:,} items stored (--fresh starts anew)"


async def begin(
    db: aiosqlite.Connection,
    spider: str,
    *,
    fresh: bool,
    resume: bool = True,
    arguments: Mapping[str, str] | None = None,
) -> CrawlStart:
    """Resume the spider's last crawl if it did not finish (unless ``fresh``, or unless it
    cannot ``resume``, which leaves that crawl as it is), else start one.

    Resuming returns every lease to the pool: whatever a dead run held in memory or in flight
    is pending again, and only those requests in flight at the crash can be fetched twice.
    A crawl resumes only with the ``-a`` ``arguments`` it was started with (``ConfigError``):
    with others, its pending pages would be crawled for one set and the new ones for another."""
    digest = arguments_digest(arguments or {})
    async with db.execute(
        "SELECT id, status, stats, arguments FROM scraper_crawls WHERE spider = ? ORDER BY id DESC LIMIT 1",
        (spider,),
    ) as cursor:
        last = await cursor.fetchone()
    unfinished = last if last is not None and last[1] in RESUMABLE else None
    if unfinished is not None and resume and not fresh:
        if unfinished[3] is not None:  # NULL: started before the arguments were kept
            _check_arguments(unfinished[0], spider, json.loads(unfinished[3]), digest)
        return await _resume(db, unfinished[0], json.loads(unfinished[2]) if unfinished[2] else {})
    cursor = await db.execute(
        "INSERT INTO scraper_crawls (spider, started_at, status, arguments) VALUES (?, ?, 'running', ?)",
        (spider, utc_now(), json.dumps(digest)),
    )
    crawl_id = cursor.lastrowid or 0
    # no earlier crawl of the spider will resume: its cookies (a session, maybe) go
    await db.execute(
        "DELETE FROM scraper_cookies WHERE crawl_id IN (SELECT id FROM scraper_crawls WHERE spider = ? AND id != ?)",
        (spider, crawl_id),
    )
    left = unfinished[0] if unfinished is not None and not fresh else None
    return CrawlStart(crawl_id, False, {}, 0, {}, {}, unfinished=left)


def arguments_digest(arguments: Mapping[str, str]) -> dict[str, str]:
    """Each ``-a`` name with a digest of its value: enough to tell a resume given other values,
    without keeping in the crawl's file a value that may be a secret (``-a token=...``)."""
    return {
        name: hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        for name, value in sorted(arguments.items())
    }


def _check_arguments(crawl_id: int, spider: str, started: dict[str, str], given: dict[str, str]) -> None:
    """Refuse to resume with ``-a`` values other than those the crawl was started with."""
    differences = [
        f"{name}: "
        + ("not given now" if name not in given else "given now only" if name not in started else "another value")
        for name in sorted(started.keys() | given.keys())
        if started.get(name) != given.get(name)
    ]
    if differences:
        raise ConfigError(
            f"crawl {crawl_id} of {spider} was started with other -a arguments ({'; '.join(differences)}): "
            "give the same ones to resume it, or --fresh to start anew"
        )


async def unfinished_of_another(db: aiosqlite.Connection, spider: str) -> tuple[int, str] | None:
    """The id and spider of another spider's crawl in this file that is left unfinished (its
    spider's last crawl, interrupted or killed), if there is one. A request has one row
    whatever crawl made it, so a crawl here would take over the pending rows the two share,
    and the other, resumed, would fetch one of those pages only if it met a link to it again."""
    placeholders = ", ".join("?" for _ in RESUMABLE)
    async with db.execute(
        f"""SELECT id, spider FROM scraper_crawls AS crawl WHERE spider != ? AND status IN ({placeholders})
            AND id = (SELECT max(id) FROM scraper_crawls WHERE spider = crawl.spider) ORDER BY id LIMIT 1""",
        (spider, *RESUMABLE),
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


async def _resume(db: aiosqlite.Connection, crawl_id: int, stats: dict[str, Any]) -> CrawlStart:
    await db.execute(
        "UPDATE scraper_crawls SET status = 'running', finished_at = NULL, finish_reason = NULL WHERE id = ?",
        (crawl_id,),
    )
    await db.execute(schema.RELEASE_LEASES, (crawl_id,))
    async with db.execute(
        "SELECT state, count(*) FROM scraper_requests WHERE crawl_id = ? GROUP BY state", (crawl_id,)
    ) as cursor:
        states = {state: count for state, count in await cursor.fetchall()}
    # one pass over the crawl's rows: its pages (done, and not a redirect hop) and its fetches
    # (every attempt, retries and hops included: what close.max_pages counts)
    async with db.execute(
        "SELECT coalesce(sum(state = 'done' AND (reason IS NULL OR reason NOT LIKE 'redirect to %')), 0),"
        " coalesce(sum(attempts), 0) FROM scraper_requests WHERE crawl_id = ?",
        (crawl_id,),
    ) as cursor:
        pages, fetches = await cursor.fetchone() or (0, 0)
    async with db.execute(schema.CRAWL_COOKIES, (crawl_id,)) as cursor:
        cookies = tuple(StoredCookie(*row) for row in await cursor.fetchall())
    async with db.execute(
        "SELECT stage, error_type, count(*) FROM scraper_errors WHERE crawl_id = ? GROUP BY stage, error_type",
        (crawl_id,),
    ) as cursor:
        errors = {f"errors/{stage}/{kind}": count for stage, kind, count in await cursor.fetchall()}
    async with db.execute(schema.SPILLED_BY_HOST, (crawl_id, TRACKED_HOSTS)) as cursor:
        spilled_by_host = {host: count for host, count in await cursor.fetchall()}
    items = await count_items(db, crawl_id)
    return CrawlStart(
        crawl_id,
        True,
        states,
        pages,
        items,
        stats,
        errors=errors,
        fetches=fetches,
        cookies=cookies,
        spilled_by_host=spilled_by_host,
    )


async def count_items(db: aiosqlite.Connection, crawl_id: int) -> dict[str, int]:
    """Stored items of a crawl by table (tables with a ``_crawl_id`` column)."""
    async with db.execute(
        "SELECT m.name FROM sqlite_master AS m WHERE m.type = 'table'"
        " AND m.name NOT LIKE 'scraper\\_%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        " AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) AS c WHERE c.name = '_crawl_id')"  # not another program's
    ) as cursor:
        tables = [row[0] for row in await cursor.fetchall()]
    counts = {}
    for table in tables:
        async with db.execute(f"SELECT count(*) FROM {schema.quote(table)} WHERE _crawl_id = ?", (crawl_id,)) as cursor:
            row = await cursor.fetchone()
        if row and row[0]:
            counts[table] = int(row[0])
    return counts


def save_stats(crawl_id: int, stats: dict[str, Any]) -> Statement:
    """The statement that saves a running crawl's statistics (what a resumed crawl goes on from)."""
    return "UPDATE scraper_crawls SET stats = ? WHERE id = ?", (json.dumps(stats), crawl_id)


def save_cookies(crawl_id: int, changes: CookieChanges) -> list[Statement]:
    """The statements that bring the crawl's kept cookies up to its jar."""
    return [
        *((schema.SAVE_COOKIE, (crawl_id, *cookie)) for cookie in changes.written),
        *((schema.DELETE_COOKIE, (crawl_id, *key)) for key in changes.deleted),
    ]


async def finish(db: aiosqlite.Connection, crawl_id: int, *, status: str, reason: str, stats: dict[str, Any]) -> None:
    """Seal the crawl's row; the requests it still held (a stop, ``max_pages``) are no longer
    held by anything: their leases go (they read as 'leased' in ``status`` for good)."""
    await db.execute(schema.RELEASE_LEASES, (crawl_id,))
    await db.execute(
        "UPDATE scraper_crawls SET finished_at = ?, status = ?, finish_reason = ?, stats = ? WHERE id = ?",
        (utc_now(), status, reason, json.dumps(stats), crawl_id),
    )
