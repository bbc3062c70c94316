"""The SQLite writer: one task owns all writes, grouping many pages into each transaction.

Workers hand over ``Commit``s (a page's outcome, its items, its new requests, its errors);
the writer applies whatever has queued up in one ``BEGIN IMMEDIATE`` … ``COMMIT``. An item
counts as stored only once its transaction has committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from scraper import schema
from scraper.errors import StorageError
from scraper.frontier import Refused, Scheduled
from scraper.http import Request
from scraper.spider import callback_name
from scraper.stats import Stats

logger = logging.getLogger(__name__)

_QUEUE_SIZE = 10_000


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclasses.dataclass(frozen=True, slots=True)
class StoredItem:
    """An item ready for its table: ``row`` maps column names to SQLite values."""

    table: str
    key: tuple[str, ...]
    columns: Mapping[str, str]
    row: Mapping[str, Any]
    url: str


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorRecord:
    url: str | None
    stage: str
    error_type: str
    message: str
    traceback: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """Where a handed-out request stands: ``done``, ``failed`` or ``filtered`` (with a reason),
    or ``pending`` again when parked for a retry until ``not_before`` (unix time)."""

    fingerprint: str
    state: str
    attempts: int = 1
    status: int | None = None
    reason: str | None = None
    not_before: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """Everything one page produced, written in the same transaction."""

    outcome: Outcome | None = None
    items: Sequence[StoredItem] = ()
    requests: Sequence[Scheduled] = ()
    refused: Sequence[Refused] = ()
    errors: Sequence[ErrorRecord] = ()


class Storage:
    def __init__(self, path: Path, *, stats: Stats, batch_size: int = 500) -> None:
        self.path = path
        self._stats = stats
        self._batch_size = batch_size
        self._db: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[Commit | None] = asyncio.Queue(_QUEUE_SIZE)
        self._writer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._tables: dict[str, set[str]] = {}
        self.crawl_id = 0

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA busy_timeout = 10000")
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._db.executescript(schema.FRAMEWORK_TABLES)
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StorageError(f"cannot open database {self.path}: {exc}") from None

    async def close(self) -> None:
        """Write what is queued, then close the connection."""
        try:
            await self._stop_writer()
        finally:
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def begin_crawl(self, spider: str) -> int:
        """Record a new crawl as running and start the writer; returns its id."""
        cursor = await self._connection.execute(
            "INSERT INTO scraper_crawls (spider, started_at, status) VALUES (?, ?, 'running')",
            (spider, utc_now()),
        )
        self.crawl_id = cursor.lastrowid or 0
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        return self.crawl_id

    async def finish_crawl(self, *, status: str, reason: str) -> None:
        """Drain the writer, then close the crawl's row with its status and final statistics."""
        failure: StorageError | None = None
        try:
            await self._stop_writer()
        except StorageError as exc:
            failure, status, reason = exc, "failed", str(exc)
        await self._connection.execute(
            "UPDATE scraper_crawls SET finished_at = ?, status = ?, finish_reason = ?, stats = ? WHERE id = ?",
            (utc_now(), status, reason, json.dumps(self._stats.snapshot()), self.crawl_id),
        )
        if failure is not None:
            raise failure

    async def submit(self, commit: Commit) -> None:
        """Queue ``commit`` for the next transaction (waits while the queue is full).

        Raises ``StorageError`` once the writer has failed: the crawl must stop, not lose data."""
        if self._failure is not None or self._writer is None:
            raise StorageError(f"cannot write to {self.path}: {self._failure or 'writer not running'}")
        await self._queue.put(commit)

    @property
    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError(f"database {self.path} is not open")
        return self._db

    async def _stop_writer(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        await self._queue.put(None)
        await writer
        if self._failure is not None:
            raise StorageError(f"writing to {self.path} failed: {self._failure}") from self._failure

    async def _write_loop(self) -> None:
        try:
            while True:
                batch, stop = await self._next_batch()
                if batch:
                    await self._write(batch)
                if stop:
                    return
        except (sqlite3.Error, OSError, StorageError) as exc:
            self._failure = exc
            logger.error("writing to %s failed: %s", self.path, exc)
            await self._discard_until_stopped()

    async def _discard_until_stopped(self) -> None:
        """After a failure, keep taking from the queue so that no submitter waits forever."""
        while await self._queue.get() is not None:
            pass

    async def _next_batch(self) -> tuple[list[Commit], bool]:
        """The commits that queued up while the last transaction ran (group commit)."""
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._batch_size and not self._queue.empty():
            commit = self._queue.get_nowait()
            if commit is None:
                return batch, True
            batch.append(commit)
        return batch, False

    async def _write(self, batch: list[Commit]) -> None:
        db = self._connection
        now = utc_now()
        await db.execute("BEGIN IMMEDIATE")
        try:
            await self._insert_requests(db, [entry for commit in batch for entry in commit.requests], now)
            await self._insert_refused(db, [refused for commit in batch for refused in commit.refused], now)
            stored = await self._insert_items(db, [item for commit in batch for item in commit.items], now)
            await self._insert_errors(db, [error for commit in batch for error in commit.errors], now)
            await self._finish_requests(db, [commit.outcome for commit in batch if commit.outcome], now)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        for table, count in stored.items():
            self._stats.increment(f"items/{table}", count)

    async def _insert_requests(self, db: aiosqlite.Connection, entries: list[Scheduled], now: str) -> None:
        rows = [self._request_row(e.request, e.fingerprint, e.host, "pending", None, now) for e in entries]
        if rows:
            await db.executemany(schema.INSERT_REQUEST, rows)

    async def _insert_refused(self, db: aiosqlite.Connection, refused: list[Refused], now: str) -> None:
        rows = [self._request_row(r.request, r.fingerprint, r.host, "filtered", r.reason, now) for r in refused]
        if rows:
            await db.executemany(schema.INSERT_REQUEST, rows)

    def _request_row(
        self, request: Request, fingerprint: str, host: str, state: str, reason: str | None, now: str
    ) -> tuple[Any, ...]:
        return (
            fingerprint,
            request.url,
            request.method,
            host,
            request.depth,
            request.priority,
            callback_name(request),
            state,
            reason,
            self.crawl_id,
            now,
            now,
        )

    async def _finish_requests(self, db: aiosqlite.Connection, outcomes: list[Outcome], now: str) -> None:
        rows = [(o.state, o.attempts, o.status, o.reason, o.not_before, now, o.fingerprint) for o in outcomes]
        if rows:
            await db.executemany(schema.FINISH_REQUEST, rows)

    async def _insert_errors(self, db: aiosqlite.Connection, errors: list[ErrorRecord], now: str) -> None:
        rows = [(self.crawl_id, e.url, e.stage, e.error_type, e.message, e.traceback, now) for e in errors]
        if rows:
            await db.executemany(schema.INSERT_ERROR, rows)

    async def _insert_items(self, db: aiosqlite.Connection, items: list[StoredItem], now: str) -> dict[str, int]:
        """Insert (or upsert) items grouped by table and column set; returns counts per table."""
        groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
        for item in items:
            await self._ensure_table(db, item)
            columns = (*item.row.keys(), "_crawl_id", "_url", "_scraped_at")
            groups[(item.table, item.key, columns)].append((*item.row.values(), self.crawl_id, item.url, now))
        counts: dict[str, int] = defaultdict(int)
        for (table, key, columns), rows in groups.items():
            await db.executemany(schema.insert_item(table, columns, key), rows)
            counts[table] += len(rows)
        return counts

    async def _ensure_table(self, db: aiosqlite.Connection, item: StoredItem) -> None:
        """Create the item's table on first sight; add columns for fields it has not seen."""
        known = self._tables.get(item.table)
        if known is not None and known.issuperset(item.columns):
            return
        if known is None:
            await db.execute(schema.create_item_table(item.table, dict(item.columns)))
            async with db.execute(f"PRAGMA table_info({schema.quote(item.table)})") as cursor:
                known = {row[1] for row in await cursor.fetchall()}
            self._tables[item.table] = known
        for name, kind in item.columns.items():
            if name not in known:
                await db.execute(schema.add_column(item.table, name, kind))
                known.add(name)
        if item.key:
            try:
                await db.execute(schema.create_key_index(item.table, item.key))
            except sqlite3.IntegrityError as exc:
                raise StorageError(f"table {item.table!r} holds duplicate rows for key {item.key}: {exc}") from None
