"""The SQL of one group commit: request rows in, items upserted into their typed tables,
errors recorded, outcomes applied. Called by the storage writer inside its transaction."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any

import aiosqlite

from scraper import schema
from scraper.codec import encode
from scraper.errors import StorageError
from scraper.frontier import Refused, Scheduled
from scraper.records import ErrorRecord, Outcome, StoredItem


class ItemTables:
    """Creates item tables on first sight and adds columns for new fields; remembers what
    exists so that the common case costs nothing."""

    def __init__(self) -> None:
        self._columns: dict[str, set[str]] = {}

    async def ensure(self, db: aiosqlite.Connection, item: StoredItem) -> None:
        known = self._columns.get(item.table)
        if known is not None and known.issuperset(item.columns):
            return
        if known is None:
            await db.execute(schema.create_item_table(item.table, dict(item.columns)))
            async with db.execute(f"PRAGMA table_info({schema.quote(item.table)})") as cursor:
                known = {row[1] for row in await cursor.fetchall()}
            self._columns[item.table] = known
        for name, kind in item.columns.items():
            if name not in known:
                await db.execute(schema.add_column(item.table, name, kind))
                known.add(name)
        if item.key:
            try:
                await db.execute(schema.create_key_index(item.table, item.key))
            except sqlite3.IntegrityError as exc:
                raise StorageError(f"table {item.table!r} holds duplicate rows for key {item.key}: {exc}") from None


async def insert_requests(
    db: aiosqlite.Connection, entries: list[Scheduled], refused: list[Refused], crawl_id: int, now: str
) -> None:
    rows = [_request_row(e.request, e.fingerprint, e.host, e, "pending", None, crawl_id, now) for e in entries]
    rows += [_request_row(r.request, r.fingerprint, r.host, None, "filtered", r.reason, crawl_id, now) for r in refused]
    if rows:
        await db.executemany(schema.INSERT_REQUEST, rows)


def _request_row(
    request: Any, fingerprint: str, host: str, entry: Scheduled | None, state: str, reason: str | None,
    crawl_id: int, now: str,
) -> tuple[Any, ...]:  # fmt: skip
    encoded = entry.encoded if entry is not None and entry.encoded is not None else encode_lenient(request)
    leased = 1 if entry is not None and entry.in_memory else 0
    return (
        fingerprint, request.url, request.method, host, request.depth, request.priority, encoded.callback,
        encoded.headers, encoded.body, encoded.meta, encoded.cb_kwargs, int(request.dont_filter),
        state, reason, leased, crawl_id, now, now,
    )  # fmt: skip


def encode_lenient(request: Any) -> Any:
    """The storable form of a request kept only as history (a refused one): never raises."""
    try:
        return encode(request)
    except Exception:  # a filtered request is not resumed; its row only records that it was seen
        return encode(request.replace(meta=None, cb_kwargs=None, callback=None))


async def finish_requests(db: aiosqlite.Connection, outcomes: list[Outcome], now: str) -> None:
    rows = [
        (o.state, o.attempts, o.status, o.reason, o.not_before, 1 if o.state == "pending" else 0, now, o.fingerprint)
        for o in outcomes
    ]
    if rows:
        await db.executemany(schema.FINISH_REQUEST, rows)


async def insert_errors(db: aiosqlite.Connection, errors: list[ErrorRecord], crawl_id: int, now: str) -> None:
    rows = [(crawl_id, e.url, e.stage, e.error_type, e.message, e.traceback, now) for e in errors]
    if rows:
        await db.executemany(schema.INSERT_ERROR, rows)


async def insert_items(
    db: aiosqlite.Connection, tables: ItemTables, items: list[StoredItem], crawl_id: int, now: str
) -> dict[str, int]:
    """Insert (or upsert) items grouped by table and column set; returns counts per table."""
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
    for item in items:
        await tables.ensure(db, item)
        columns = (*item.row.keys(), "_crawl_id", "_url", "_scraped_at")
        groups[(item.table, item.key, columns)].append((*item.row.values(), crawl_id, item.url, now))
    counts: dict[str, int] = defaultdict(int)
    for (table, key, columns), rows in groups.items():
        await db.executemany(schema.insert_item(table, columns, key), rows)
        counts[table] += len(rows)
    return counts
