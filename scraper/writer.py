"""The writer: the one task that writes to the crawl's database while it runs.

Workers hand over ``Commit``s (a page's outcome, its items, its new requests, its errors);
the writer applies whatever has queued up in one ``BEGIN IMMEDIATE`` … ``COMMIT`` (a group
commit). An item counts as stored only once its transaction has committed, and
``max_items`` is enforced there, so it is never overshot. Refills of the SQLite frontier go
through the same queue, so they see every request admitted before them. The queue is bounded
in rows, so that a writer falling behind holds the crawl back instead of its memory growing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from operator import length_hint
from pathlib import Path
from typing import Any

import aiosqlite

from scraper import crawls, schema, writes
from scraper.cookies import CrawlCookieJar
from scraper.crawls import utc_now
from scraper.errors import StorageError, WriteFailed, damaged
from scraper.filewatch import FileGone, FileWatch
from scraper.frontier import Refused, Scheduled
from scraper.handoff import HandOff
from scraper.records import Commit, ErrorRecord, StoredItem, error_record
from scraper.stats import Stats

logger = logging.getLogger(__name__)

_QUEUE_SIZE = 2_000
_QUEUE_ROWS = 20_000  # rows (requests, items, errors) queued before submitters wait: bounds memory
_BATCH_ROWS = 20_000  # rows per transaction, so one commit never grows huge
_ROW_BYTES = 1024  # an item's text and bytes past this weigh as more rows (see _rows_of): ~20 MB queued at most
_FEW_COMMITS = 32  # a transaction with fewer waits up to the linger for more (see _next_batch)
LINGER = 0.01  # seconds
_STATS_EVERY = 2.0  # seconds between saved statistics (what a resumed crawl continues from)
# Failures of a value, not of the database: SQLite cannot hold it (an int past 64 bits, a
# string with a lone surrogate, a type sqlite3 cannot bind). See Writer._write_apart.
_UNSTORABLE = (
    OverflowError,
    ValueError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)


class _Refill:
    """A request to the writer about leases, answered in order with the commits: lease up to
    ``limit`` pending rows (the crawl's best but those of the hosts ``excluding``, or the
    best of each of ``hosts``) and return them; or give back the leases of ``give_back``
    (fingerprints) and return those given."""

    __slots__ = ("excluding", "give_back", "hosts", "limit", "result")

    def __init__(
        self, limit: int, hosts: Sequence[str] = (), excluding: Sequence[str] = (), give_back: Sequence[str] = ()
    ) -> None:
        self.limit = limit
        self.hosts = hosts
        self.excluding = excluding
        self.give_back = give_back
        self.result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Writer:
    """Writes one crawl's commits, in group commits, on ``db``; ``start`` it, ``stop`` it."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        crawl_id: int,
        stats: Stats,
        watch: FileWatch,
        items_stored: int,
        batch_size: int,
        linger: float,
        max_items: int,
        track_unwritten: bool,
    ) -> None:
        """``track_unwritten``: keep the fingerprints of requests queued but not yet
        committed, for ``unwritten`` (the SQLite frontier's seen-set asks)."""
        self._db = db
        self._crawl_id = crawl_id
        self._stats = stats
        self._watch = watch  # looked at after each transaction: has the file gone?
        self._path = watch.path
        self._batch_size = batch_size
        self._linger = linger
        self._max_items = max_items
        self._queue: HandOff[tuple[Commit, int] | _Refill | None] = HandOff(_QUEUE_SIZE)  # a commit with its rows
        self._queued_rows = 0
        self._room = asyncio.Condition()  # signalled when committed rows leave the queue
        self._line = asyncio.Lock()  # submitters waiting for room, in the order they came (FIFO)
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._tables = writes.ItemTables()
        self._stats_saved = 0.0
        self.unwritten: Counter[str] | None = Counter() if track_unwritten else None
        self.cookies: CrawlCookieJar | None = None  # the jar whose changes each transaction takes
        self.items_stored = items_stored

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def stop(self) -> None:
        """Write what is queued, then end; raises ``WriteFailed`` if a write failed."""
        task, self._task = self._task, None
        if task is None:
            return
        await self._queue.put(None)
        await task
        if self._failure is not None:
            raise self._failed() from self._failure

    async def submit(self, commit: Commit) -> None:
        """Queue ``commit`` for the next transaction (waits while the queue is full).

        Raises ``StorageError`` once the writer has failed: the crawl must stop, not lose data."""
        self._check_running()
        rows = _rows_of(commit)
        # backpressure in rows (a page with 1,000 links weighs 1,000), waited for in line: a
        # small commit let past a large one waiting for room could be a page whose request
        # rows were in the large one, its outcome then written before its row, and lost
        if self._line.locked() or not self._has_room_for(rows):
            async with self._line, self._room:
                await self._room.wait_for(lambda: self._has_room_for(rows))
            self._check_running()
        self._queued_rows += rows
        if self.unwritten is not None and (commit.requests or commit.refused):
            self.unwritten.update(_fingerprints(commit.requests, commit.refused))
        await self._queue.put((commit, rows))

    async def lease_pending(
        self, limit: int, hosts: Sequence[str] = (), excluding: Sequence[str] = ()
    ) -> list[sqlite3.Row]:
        """Up to ``limit`` pending, unleased requests of this crawl (highest priority first)
        but none of the hosts ``excluding``, or up to ``limit`` of each of ``hosts``, now
        leased to it, after every commit queued before."""
        self._check_running()
        refill = _Refill(limit, hosts, excluding)
        await self._queue.put(refill)
        leased: list[sqlite3.Row] = await refill.result
        return leased

    async def give_back(self, fingerprints: Sequence[str]) -> set[str]:
        """Release the leases of these pending requests, after every commit queued before;
        returns the fingerprints of those released (a row not written yet is not)."""
        self._check_running()
        refill = _Refill(0, give_back=fingerprints)
        await self._queue.put(refill)
        given: set[str] = await refill.result
        return given

    def _has_room_for(self, rows: int) -> bool:
        """A failed writer always has room: the submitter must wake up to see the failure."""
        return self._failure is not None or not self._queued_rows or self._queued_rows + rows <= _QUEUE_ROWS

    def _check_running(self) -> None:
        if self._failure is not None or self._task is None:
            raise StorageError(f"cannot write to {self._path}: {self._failure or 'writer not running'}")

    async def _write_loop(self) -> None:
        refill: _Refill | None = None
        stop = False
        try:
            while True:
                batch, rows, refill, stop = await self._next_batch()
                if batch:
                    await self._write_apart(batch)
                    await self._release(rows)
                    await self._watch.check_now_and_then()
                if refill is not None:
                    if refill.give_back:
                        refill.result.set_result(await self._give_back(refill.give_back))
                    else:
                        refill.result.set_result(await self._lease(refill))
                if stop:
                    return
        except Exception as exc:  # whatever it is, the crawl must hear of it and stop (and says it once, at its end)
            self._failure = exc
            async with self._room:
                self._room.notify_all()  # waiting submitters wake up and see the failure
            if refill is not None and not refill.result.done():  # taken with the batch that failed
                refill.result.set_exception(self._failed())
            if not stop:  # else the stop signal came with that batch: nothing more will come
                await self._discard_until_stopped()

    def _failed(self) -> WriteFailed:
        if isinstance(self._failure, FileGone):  # not a write that failed: the file went
            return WriteFailed(str(self._failure))
        return WriteFailed(f"writing to {self._path} failed: {self._failure}{damaged(self._failure, self._path)}")

    async def _discard_until_stopped(self) -> None:
        """After a failure, keep taking from the queue so that no submitter waits forever."""
        while (item := await self._queue.get()) is not None:
            if isinstance(item, _Refill):
                item.result.set_exception(self._failed())

    async def _next_batch(self) -> tuple[list[Commit], int, _Refill | None, bool]:
        """The commits that queued up while the last transaction ran (group commit), and
        their rows, up to a refill or the stop signal, which are answered after them.

        When pages come in slower than transactions go out (a crawl whose loop is not busy:
        callbacks in parse processes, per-host delays), every page would be a transaction of
        its own, each a few trips to SQLite's thread and back (a parse-pool crawl made 2.8
        commits a transaction, ~0.3 ms of the loop's CPU a page). So a transaction of fewer
        than ``_FEW_COMMITS`` waits up to ``linger`` for more; a refill or the stop signal
        ends the wait at once. A busy crawl's transactions are larger and never wait."""
        batch: list[Commit] = []
        rows = 0
        item = await self._queue.get()
        loop = asyncio.get_running_loop()
        linger_until = loop.time() + self._linger
        while True:
            if item is None or isinstance(item, _Refill):
                return batch, rows, item, item is None
            commit, commit_rows = item
            batch.append(commit)
            rows += commit_rows
            if len(batch) >= self._batch_size or rows >= _BATCH_ROWS:
                return batch, rows, None, False
            if not self._queue.empty():
                item = self._queue.get_nowait()
                continue
            left = linger_until - loop.time()
            if len(batch) >= _FEW_COMMITS or left <= 0:
                return batch, rows, None, False
            try:
                async with asyncio.timeout(left):
                    item = await self._queue.get()
            except TimeoutError:
                return batch, rows, None, False

    async def _write_apart(self, batch: list[Commit]) -> None:
        """Write ``batch`` in one transaction. Should one of its values be unstorable, its
        commits are written one by one, and a commit that fails alone is written without what
        SQLite cannot take: one bad item must neither stop the crawl nor cost the other pages
        of its transaction theirs. Any other failure stops the writer."""
        try:
            await self._write(batch)
        except _UNSTORABLE as exc:
            if len(batch) > 1:
                for commit in batch:
                    await self._write_apart([commit])
            else:
                await self._write_without_unstorable(batch[0], exc)

    async def _write_without_unstorable(self, commit: Commit, error: Exception) -> None:
        """``commit`` with an error row in place of each item SQLite cannot take: its values
        (found by binding each item alone) or its new columns (a table past SQLite's 2,000,
        named by the error); failing that, with none of its items and one error row for the
        page. Still atomic: the page's outcome and what is kept commit together."""
        unstorable = await asyncio.to_thread(_unbindable, commit.items) or await self._refused_by_tables(commit.items)
        tried = 0  # items left out by the last try
        while True:
            culprit = getattr(error, "item", None)
            if isinstance(culprit, StoredItem) and all(culprit is not bad for bad, _ in unstorable):
                unstorable.append((culprit, error))
            if len(unstorable) == tried:
                break  # nothing (more) to leave out: the page's items go
            tried = len(unstorable)
            counted = Stats()  # counted once the commit is in
            failures = [_not_stored(item, cause, counted, announce=False) for item, cause in unstorable]
            kept = [item for item in commit.items if all(item is not bad for bad, _ in unstorable)]
            try:
                await self._write([commit._replace(items=kept, errors=[*commit.errors, *failures])])
            except _UNSTORABLE as again:
                error = again
            else:
                self._stats.add(counted)
                return
        url = commit.items[0].url if commit.items else None
        failure = error_record("validate", error, url, self._stats, context="the page's items could not be stored: ")
        await self._write([commit._replace(items=(), errors=[*commit.errors, failure])])

    async def _refused_by_tables(self, items: Sequence[StoredItem]) -> list[tuple[StoredItem, Exception]]:
        """The items their tables refuse (a UNIQUE index a user made, a key another class
        gave the table, a duplicate of an earlier item on the page), each with the error:
        found by storing them one by one in a transaction that is rolled back. Without this,
        one such item cost every item of its page."""
        db, now, found = self._db, utc_now(), []
        await db.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                await db.execute("SAVEPOINT item")
                try:
                    await self._tables.ensure_all(db, [item])
                    await writes.execute_all(db, writes.insert_items([item], self._crawl_id, now)[0])
                except _UNSTORABLE as exc:
                    await db.execute("ROLLBACK TO item")
                    self._tables.forget()  # a table or column it made is gone again
                    found.append((item, _with_key_values(exc, item)))
                await db.execute("RELEASE item")
        finally:
            await roll_back(db, self._path)
            self._tables.forget()
        return found

    async def _write(self, batch: list[Commit]) -> None:
        """One transaction for ``batch``: three trips to the connection's thread (the
        ``BEGIN``, every statement at once, the ``COMMIT``), whatever its size."""
        db, now, crawl_id = self._db, utc_now(), self._crawl_id
        items = _gathered(batch, "items")
        errors = _gathered(batch, "errors")
        conflicts = self._tables.conflicting(items)
        if conflicts:  # known before the transaction: each had failed the whole of it
            refused_items = {id(conflict.item) for conflict in conflicts}
            items = [item for item in items if id(item) not in refused_items]
            errors += [_not_stored(conflict.item, conflict, self._stats) for conflict in conflicts]
        items = self._within_limit(items)
        requests, refused = _gathered(batch, "requests"), _gathered(batch, "refused")
        item_statements, stored = writes.insert_items(items, crawl_id, now)
        statements = [
            *writes.insert_requests(requests, refused, crawl_id, now),
            *item_statements,
            *writes.insert_errors(errors, crawl_id, now),
            *writes.finish_requests(list(filter(None, map(_OUTCOME, batch))), now),
        ]
        statements += self._stats_now_and_then()
        jar = self.cookies
        cookies = jar.changes() if jar is not None else None
        if cookies is not None:
            statements += crawls.save_cookies(crawl_id, cookies)
        await db.execute("BEGIN IMMEDIATE")
        try:
            await self._tables.ensure_all(db, items)
            await writes.execute_all(db, statements)
            await db.execute("COMMIT")
        except BaseException:
            await roll_back(db, self._path)
            self._tables.forget()  # what it knew may include tables rolled back
            raise
        self._committed(requests, refused, stored)
        if jar is not None and cookies is not None:
            jar.saved(cookies)

    async def _release(self, rows: int) -> None:
        """Committed rows leave the queue: submitters waiting for room may go on."""
        async with self._room:
            self._queued_rows -= rows
            self._room.notify_all()

    def _within_limit(self, items: list[StoredItem]) -> list[StoredItem]:
        """Items past ``max_items`` are not stored: the limit is exact, whatever is in flight."""
        if not self._max_items:
            return items
        room = max(0, self._max_items - self.items_stored)
        if len(items) > room:
            self._stats.increment("items/over_limit", len(items) - room)
            return items[:room]
        return items

    def _committed(self, requests: list[Scheduled], refused: list[Refused], stored: dict[str, int]) -> None:
        """The transaction's requests are stored now; its items count."""
        unwritten = self.unwritten
        if unwritten is not None:
            for fingerprint in _fingerprints(requests, refused):
                unwritten[fingerprint] -= 1
                if unwritten[fingerprint] <= 0:
                    unwritten.pop(fingerprint)  # only this batch's keys; dict.pop, not Counter's Python __delitem__
        for table, count in stored.items():
            self._stats.increment(f"items/{table}", count)
            self._stats.increment("items/stored", count)
            self.items_stored += count

    def _stats_now_and_then(self) -> list[schema.Statement]:
        """The statement saving the statistics, every ``_STATS_EVERY`` seconds (else none)."""
        now = time.monotonic()
        if now - self._stats_saved < _STATS_EVERY:
            return []
        self._stats_saved = now
        return [crawls.save_stats(self._crawl_id, self._stats.snapshot())]

    async def _lease(self, refill: _Refill) -> list[Any]:
        limit, hosts = refill.limit, refill.hosts
        if not limit:  # a refill of nothing (``flush``): answered, in order, with no transaction
            return []
        db, crawl_id = self._db, self._crawl_id
        await db.execute("BEGIN IMMEDIATE")
        try:
            queries: list[schema.Statement]
            if hosts:  # each host's query in the same trip to the thread, not one a host
                queries = [(schema.PENDING_OF_HOST_TO_LOAD, (crawl_id, host, limit)) for host in hosts]
            else:
                queries = [schema.pending_to_load(crawl_id, refill.excluding, limit)]
            rows = await writes.fetch_all(db, queries)
            await writes.execute_all(db, writes.chunked(schema.lease, [(row["id"],) for row in rows], 1))
            await db.execute("COMMIT")
        except BaseException:
            await roll_back(db, self._path)
            raise
        return rows

    async def _give_back(self, fingerprints: Sequence[str]) -> set[str]:
        statements: list[schema.Statement] = []
        start = 0
        for size in writes.statement_sizes(len(fingerprints), _GIVE_BACK_AT_ONCE):
            statements.append((schema.give_back(size), [*fingerprints[start : start + size], self._crawl_id]))
            start += size
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            given = {row[0] for row in await writes.fetch_all(db, statements)}
            await db.execute("COMMIT")
        except BaseException:
            await roll_back(db, self._path)
            raise
        return given


_GIVE_BACK_AT_ONCE = 500  # fingerprints a statement
_OUTCOME = operator.attrgetter("outcome")
_FINGERPRINT = operator.attrgetter("fingerprint")


def _gathered(batch: list[Commit], field: str) -> list[Any]:
    """One field's sequences of every commit in ``batch``, concatenated (in C: a batch is
    hundreds of commits, and this runs on the event loop)."""
    return list(itertools.chain.from_iterable(map(operator.attrgetter(field), batch)))


def _unbindable(items: Sequence[StoredItem]) -> list[tuple[StoredItem, Exception]]:
    """The items whose values SQLite cannot take, each with the error, found by binding each
    item's values alone to a statement on a database in memory (run on a thread)."""
    found: list[tuple[StoredItem, Exception]] = []
    with closing(sqlite3.connect(":memory:")) as probe:
        for item in items:
            values = list(item.row.values())
            if not values:
                continue
            try:
                probe.execute(f"SELECT {', '.join('?' * len(values))}", values)
            except _UNSTORABLE as exc:
                for name, value in item.row.items():  # the field, named in the error row
                    try:
                        probe.execute("SELECT ?", [value])
                    except _UNSTORABLE:
                        exc.add_note(f"field {name!r}")
                        break
                found.append((item, exc))
    return found


def _not_stored(item: StoredItem, cause: Exception, stats: Stats, *, announce: bool = True) -> ErrorRecord:
    """The error row of an item left out of its table, as every such row is worded."""
    return error_record(
        "validate", cause, item.url, stats, context=f"not stored in table {item.table!r}: ", announce=announce
    )


_UNIQUE_FAILED = "UNIQUE constraint failed: "


def _with_key_values(error: Exception, item: StoredItem) -> Exception:
    """``error`` with a note of the values SQLite found twice, when it is a UNIQUE constraint's:
    which of the page's items it was."""
    said = str(error)
    if isinstance(error, sqlite3.IntegrityError) and said.startswith(_UNIQUE_FAILED):
        names = [column.rpartition(".")[2] for column in said.removeprefix(_UNIQUE_FAILED).split(", ")]
        values = ", ".join(f"{name}={item.row.get(name)!r}" for name in names)
        error.add_note(values)
    return error


def _rows_of(commit: Commit) -> int:
    """The rows ``commit`` writes, as the queue counts them: an item with more than
    ``_ROW_BYTES`` of text and bytes weighs one row more per ``_ROW_BYTES``, so that the
    queue's bound holds in memory too (with each page stored whole, ~190 KB an item, the
    20,000 rows had held a 5,000-page crawl whole: 1.1 GB)."""
    rows = 1 + len(commit.requests) + len(commit.refused) + len(commit.errors)
    for item in commit.items:
        # the text's and bytes' lengths, in C (length_hint: 0 for a number or None): a loop
        # testing each value's type cost ~150 bytecodes a page
        rows += 1 + sum(map(length_hint, item.row.values())) // _ROW_BYTES
    return rows


def _fingerprints(*entries: Iterable[Scheduled | Refused]) -> Iterator[str]:
    """The fingerprints of admitted and refused requests: the keys of ``unwritten``."""
    return map(_FINGERPRINT, itertools.chain(*entries))


async def roll_back(db: aiosqlite.Connection, path: Path) -> None:
    """Undo the failed transaction, if SQLite has not already (a full disk or an I/O error
    ends it): the failure to report is the one that got us here, not the ROLLBACK's
    'no transaction is active'."""
    if not db.in_transaction:
        return
    try:
        await db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        logger.warning("rolling back on %s failed too: %s", path, exc)
