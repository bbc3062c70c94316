"""The SQL of one group commit: request rows in, items upserted into their typed tables,
errors recorded, outcomes applied. The statements are built on the event loop, then sent to
the connection's thread all at once (``execute_all``) inside the storage writer's transaction."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiosqlite

from scraper import schema
from scraper.codec import EncodedRequest, RequestNotStorable, encode
from scraper.errors import StorageError
from scraper.frontier import Refused, Scheduled
from scraper.http import Request
from scraper.item import FRAMEWORK_COLUMNS, MAX_COLUMNS, META_COLUMNS, SQLITE_MAX_COLUMNS, folded
from scraper.records import ErrorRecord, Outcome, StoredItem
from scraper.schema import Statement

logger = logging.getLogger(__name__)

_MAX_ROWS = 500  # rows per statement, at most: fewer, longer statements bind the same values in fewer steps
_MAX_PARAMETERS = 30_000  # SQLite allows 32,766 bound parameters


class ItemRefused(ValueError):
    """An item its table cannot take: it is not stored, the others are (a ``ValueError``, so
    storage leaves it out; ``item`` names it)."""

    def __init__(self, item: StoredItem, message: str) -> None:
        super().__init__(message)
        self.item = item


class ColumnsExhausted(ItemRefused):
    """An item whose new columns would take its table past SQLite's limit."""


class KeyConflict(ItemRefused):
    """An item whose class has another key than the class that wrote its table first in this
    run (a resumed crawl is a new run). Its table cannot have both: each class's first item
    replaced the other's unique index, or one class's rows failed on the other's."""


class ItemTables:
    """Creates item tables on first sight and adds columns for new fields; remembers what
    exists so that the common case costs nothing. A name that differs from a column only in
    case is that column (SQLite's rule): it is written there, not added."""

    def __init__(self) -> None:
        self._columns: dict[str, set[str]] = {}  # names known to be writable, as items spell them
        self._folded: dict[str, set[str]] = {}  # the table's columns, as SQLite compares them
        self._spelled_keys: dict[str, tuple[str, ...]] = {}  # the key of each table made, as items spell it
        self._keys: dict[str, tuple[str, ...]] = {}  # each table's key, by its name as SQLite compares it
        self._shared = False  # a second class with another key met a table: screen items for it

    def forget(self) -> None:
        """Forget what exists (a transaction that made it was rolled back), but not which key
        each table has: the class that wrote a table first keeps it for the run."""
        self._columns.clear()
        self._folded.clear()
        self._spelled_keys.clear()

    def knows(self, item: StoredItem) -> bool:
        """Whether ``item``'s table and columns exist already, with its key (checked without an
        await)."""
        known = self._columns.get(item.table)
        return known is not None and self._spelled_keys[item.table] == item.key and known.issuperset(item.columns)

    async def ensure_all(self, db: aiosqlite.Connection, items: Sequence[StoredItem]) -> None:
        """Create the tables and columns that ``items`` need and that do not exist yet (rare:
        the first items of a class, a new field), one after the other, before the inserts."""
        for item in items:
            if not self.knows(item):
                await self.ensure(db, item)

    def conflicting(self, items: Sequence[StoredItem]) -> list[KeyConflict]:
        """The refusals of the items whose class has another key than their table's in this
        run, found before the transaction (each had failed its whole group commit, which was
        then written a page at a time: a crawl with such a class ran 19 times slower). Only
        items ``knows`` does not know are looked at, and only once a conflict was met."""
        if not self._shared:  # no two classes have claimed one table yet: nothing to look at
            return []
        conflicts = []
        for item in items:
            if not self.knows(item):
                key = self._keys.get(folded(item.table))
                if key is not None and key != item.key:
                    conflicts.append(self._conflict(item, key))
        return conflicts

    @staticmethod
    def _conflict(item: StoredItem, key: tuple[str, ...]) -> KeyConflict:
        return KeyConflict(
            item,
            f"table {item.table!r} has key {key or 'none'} in this run (another item class wrote it first), "
            f"this item's class {item.key or 'none'}: give both one key, or each its own table",
        )

    async def ensure(self, db: aiosqlite.Connection, item: StoredItem) -> None:
        """Create what ``knows`` found missing: the table, new columns, the key's index."""
        key = self._keys.setdefault(folded(item.table), item.key)
        if key != item.key:
            self._shared = True  # from now on, such items are screened before their transaction
            raise self._conflict(item, key)
        known = self._columns.get(item.table)
        if known is None:
            await db.execute(schema.create_item_table(item.table, dict(item.columns)))
            async with db.execute(f"PRAGMA table_info({schema.quote(item.table)})") as cursor:
                declared = {row[1]: row[2] for row in await cursor.fetchall()}
            missing = [name for name in META_COLUMNS if name not in declared]
            if missing:  # another program's table: its rows are not items, nor are columns added to it
                raise StorageError(
                    f"table {item.table!r} is not one of this framework's (it has no {', '.join(missing)} "
                    f"column): give {item.table!r}'s item class a table of its own (table = '...'), or "
                    "crawl into a new file (--db)"
                )
            known = set(declared)
            _warn_of_changed_types(item, declared)
            await self._drop_other_keys(db, item)
            self._columns[item.table] = known
            self._spelled_keys[item.table] = item.key
            self._folded[item.table] = {folded(name) for name in known}
        existing = self._folded[item.table]
        new = {folded(name) for name in item.columns} - existing
        if len(existing - FRAMEWORK_COLUMNS) + len(new) > MAX_COLUMNS:  # the table's own columns, as for one item
            message = f"table {item.table!r} cannot take {len(new):,} more columns (SQLite's {SQLITE_MAX_COLUMNS:,})"
            raise ColumnsExhausted(item, message)
        for name, kind in item.columns.items():
            column = folded(name)
            if column not in existing:
                await db.execute(schema.add_column(item.table, name, kind))
                existing.add(column)
            known.add(name)
        if item.key:
            try:
                await db.execute(schema.create_key_index(item.table, item.key))
            except sqlite3.IntegrityError as exc:
                keep_last = schema.keep_last_of_each_key(item.table, item.key)
                raise StorageError(
                    f"table {item.table!r} holds duplicate rows for key {item.key}: {exc}; keep the last of each "
                    f"with sqlite3 and {keep_last!r}, or crawl into a new file (--db)"
                ) from None

    async def _drop_other_keys(self, db: aiosqlite.Connection, item: StoredItem) -> None:
        """Drop the unique index of a key the item's class no longer has. Kept, the old key
        still held: with ``key = ("sku",)`` where an earlier crawl had ``("url",)``, every page
        of several products failed on "UNIQUE constraint failed: product.url"."""
        current = folded(schema.key_index_name(item.table, item.key)) if item.key else None
        prefix = schema.key_index_prefix(item.table)
        async with db.execute(f"PRAGMA index_list({schema.quote(item.table)})") as cursor:
            indexes = [row[1] for row in await cursor.fetchall()]
        for index in indexes:  # named as SQLite compares names: 'Mixed__key__a' is a key of 'mixed'
            if folded(index).startswith(folded(prefix)) and folded(index) != current:
                await db.execute(schema.drop_index(index))
                old_key = tuple(index[len(prefix) :].split("__"))
                logger.warning("table %r: its key is now %s, not %s; the old key's unique index is dropped",
                               item.table, item.key or "none", old_key)  # fmt: skip


def _warn_of_changed_types(item: StoredItem, declared: dict[str, str]) -> None:
    """Say when a field's type is not its column's, declared by an earlier crawl (SQLite cannot
    change it): SQLite converts what it can, so text that looks like a number ('00123') goes
    into an INTEGER column as the number 123, and numbers into a TEXT column as text."""
    for name, kind in item.columns.items():
        was = declared.get(name, "")
        if kind and was and kind != was:
            logger.warning(
                "table %r: column %r is %s (made by an earlier crawl), but the field is %s now; SQLite converts "
                "values to the column's type (text '00123' to 123): rename the field, or the table",
                item.table, name, was, kind,
            )  # fmt: skip


def insert_requests(entries: list[Scheduled], refused: list[Refused], crawl_id: int, now: str) -> list[Statement]:
    rows = [_admitted_row(entry, crawl_id, now) for entry in entries]
    rows += [_refused_row(refusal, crawl_id, now) for refusal in refused]
    return chunked(schema.insert_requests, rows, schema.REQUEST_WIDTH)


def _admitted_row(entry: Scheduled, crawl_id: int, now: str) -> tuple[Any, ...]:
    encoded = entry.encoded or encode(entry.request)
    leased = 1 if entry.in_memory else 0  # spilled rows wait, unleased, for a refill
    return _row(entry.request, entry.fingerprint, entry.host, encoded, "pending", None, leased, crawl_id, now)


def _refused_row(refusal: Refused, crawl_id: int, now: str) -> tuple[Any, ...]:
    try:
        encoded = encode(refusal.request)
    except RequestNotStorable:  # never resumed: the row only records that it was seen
        encoded = encode(refusal.request.replace(meta=None, cb_kwargs=None, callback=None))
    return _row(
        refusal.request, refusal.fingerprint, refusal.host, encoded, "filtered", refusal.reason, 0, crawl_id, now
    )


def _row(
    request: Request, fingerprint: str, host: str, encoded: EncodedRequest, state: str, reason: str | None,
    leased: int, crawl_id: int, now: str,
) -> tuple[Any, ...]:  # fmt: skip
    """Values in the order of ``schema.REQUEST_COLUMNS``."""
    return (
        fingerprint, request.url, request.method, host, request.depth, request.priority, encoded.callback,
        encoded.headers, encoded.body, encoded.meta, encoded.cb_kwargs, int(request.dont_filter),
        state, reason, leased, crawl_id, now, now,
    )  # fmt: skip


def finish_requests(outcomes: list[Outcome], now: str) -> list[Statement]:
    rows = [
        (o.state, o.attempts, o.status, o.reason, o.not_before, 1 if o.state == "pending" else 0, now, o.fingerprint)
        for o in outcomes
    ]
    return chunked(schema.finish_requests, rows, schema.FINISH_WIDTH)


def insert_errors(errors: list[ErrorRecord], crawl_id: int, now: str) -> list[Statement]:
    rows = [(crawl_id, e.url, e.stage, e.error_type, e.message, e.traceback, now) for e in errors]
    return chunked(schema.insert_errors, rows, schema.ERROR_WIDTH)


def insert_items(items: list[StoredItem], crawl_id: int, now: str) -> tuple[list[Statement], dict[str, int]]:
    """Statements inserting (or upserting) ``items``, grouped by table and column set, and
    the count of rows they store in each table. Their tables must exist (``ItemTables``)."""
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
    for item in items:
        columns = (*item.row.keys(), "_crawl_id", "_url", "_scraped_at")
        groups[(item.table, item.key, columns)].append((*item.row.values(), crawl_id, item.url, now))
    statements: list[Statement] = []
    counts: dict[str, int] = defaultdict(int)
    for (table, key, columns), rows in groups.items():
        statements += chunked(functools.partial(schema.insert_item, table, columns, key), rows, len(columns))
        counts[table] += len(rows)
    return statements, counts


def chunked(statement_for: Callable[[int], str], rows: Sequence[Sequence[Any]], width: int) -> list[Statement]:
    """``statement_for(n)`` over ``rows`` in chunks of many rows per statement, where
    ``executemany`` would step once per row. The parameters are flattened in C (``chain``):
    no Python step per value on the event loop."""
    statements: list[Statement] = []
    start = 0
    for size in statement_sizes(len(rows), max(1, min(_MAX_ROWS, _MAX_PARAMETERS // width))):
        statements.append((statement_for(size), list(itertools.chain.from_iterable(rows[start : start + size]))))
        start += size
    return statements


async def execute_all(db: aiosqlite.Connection, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in order, as one trip to the connection's thread and back.

    Awaited one by one, each statement is a trip, and the way back waits for a turn of the
    loop: 10-25 ms when the loop is busy. A group commit of a dozen statements then took
    70-200 ms on the 2,000-product shop, the writer fell ~800 commits behind, and the end of
    the crawl waited 30-45 ms for them. Started together, every statement is queued for the
    connection's thread in this order (each task queues its statement in its first step, and
    tasks take their first step in the order they were created) and runs right after the one
    before. Raises the first failure once all have run; the caller's transaction is then
    rolled back whole."""
    await _in_one_trip([db.execute(sql, parameters) for sql, parameters in statements])


async def fetch_all(db: aiosqlite.Connection, statements: Sequence[Statement]) -> list[Any]:
    """The rows of ``statements`` (queries, or statements ``RETURNING`` rows), in order, in one
    list: one trip, as ``execute_all``."""
    results = await _in_one_trip([db.execute_fetchall(sql, parameters) for sql, parameters in statements])
    return [row for rows in results for row in rows]


async def _in_one_trip(calls: list[Awaitable[Any]]) -> list[Any]:
    """Await ``calls``, queued on the connection's thread together (in this order); raises the
    first failure once all have run."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def statement_sizes(rows: int, largest: int) -> Iterator[int]:
    """Row counts adding up to ``rows``: ``largest`` while that many are left, then the rest
    in powers of two, largest first. A group commit holds anything from one row to hundreds;
    a statement for each count was compiled at almost every commit, as the connection's cache
    cannot keep hundreds of them (the compiling cost SQLite's thread 37k instructions a page on
    the latency crawl). With these, each kind of statement has a dozen texts at most, all
    kept, for at most log2(largest) more trips a commit."""
    while rows >= largest:
        yield largest
        rows -= largest
    while rows:
        size = 1 << (rows.bit_length() - 1)
        yield size
        rows -= size
