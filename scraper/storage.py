"""The crawl database: one writer task owns all writes and groups many pages into each
transaction; a second connection answers the frontier's reads.

Workers hand over ``Commit``s (a page's outcome, its items, its new requests, its errors);
the writer applies whatever has queued up in one ``BEGIN IMMEDIATE`` … ``COMMIT``. An item
counts as stored only once its transaction has committed, and ``max_items`` is enforced
there, so it is never overshot. Refills of the SQLite frontier go through the same queue, so
they see every request admitted before them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from operator import length_hint
from pathlib import Path
from typing import Any

import aiosqlite

from scraper import crawls, schema, writes
from scraper.cookies import CrawlCookieJar
from scraper.crawls import CrawlStart, utc_now
from scraper.errors import StorageError, WriteFailed
from scraper.filewatch import FileGone, FileWatch
from scraper.frontier import Refused, Scheduled
from scraper.handoff import HandOff
from scraper.lock import CrawlLock
from scraper.records import Commit, StoredItem, error_record
from scraper.stats import Stats

logger = logging.getLogger(__name__)

_QUEUE_SIZE = 2_000
_QUEUE_ROWS = 20_000  # rows (requests, items, errors) queued before submitters wait: bounds memory
_BATCH_ROWS = 20_000  # rows per transaction, so one commit never grows huge
_ROW_BYTES = 1024  # an item's text and bytes past this weigh as more rows (see _rows_of): ~20 MB queued at most
_FEW_COMMITS = 32  # a transaction with fewer waits up to the linger for more (see _next_batch)
_LINGER = 0.01  # seconds
_STATS_EVERY = 2.0  # seconds between saved statistics (what a resumed crawl continues from)
_CACHED_STATEMENTS = 96  # compiled statements each connection keeps (see _connect)
# Failures of a value, not of the database: SQLite cannot hold it (an int past 64 bits, a
# string with a lone surrogate, a type sqlite3 cannot bind). See Storage._write_apart.
_UNSTORABLE = (
    OverflowError,
    ValueError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)


def _same(value: Any) -> Any:
    return value


def bind_none_and_bytes_directly() -> None:
    """Register ``sqlite3`` adapters that return ``None`` and ``bytes`` values as they are.

    ``sqlite3`` binds int, float and str as they are, but looks every other value up as
    something to adapt: no adapter registered, it asks the protocol and the value for one,
    and each of those misses raises and clears an ``AttributeError``, all holding the GIL.
    A request row has half a dozen NULLs, so on the latency crawl that was 23k instructions a
    page in SQLite's thread. Registered, each is a dict hit and a call; what is bound is
    unchanged. The registry is process-wide: an adapter the process registered for either
    type itself is kept."""
    for kind in (type(None), bytes):
        if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, _same)


class _Refill:
    """A request to the writer: lease up to ``limit`` pending rows and return them."""

    __slots__ = ("limit", "result")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.result: asyncio.Future[list[sqlite3.Row]] = asyncio.get_running_loop().create_future()


class Storage:
    def __init__(
        self,
        path: Path,
        *,
        stats: Stats,
        batch_size: int = 500,
        max_items: int = 0,
        linger: float = _LINGER,
        answers_known: bool = True,
    ) -> None:
        """``answers_known``: ``known()`` will be asked (the SQLite frontier's seen-set), so the
        fingerprints of requests queued but not yet committed are kept for it. An in-memory
        seen-set never asks: without it, no page pays for that bookkeeping."""
        self.path = path
        self._stats = stats
        self._batch_size = batch_size
        self._linger = linger
        self._max_items = max_items
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._exit = ExitStack()
        self._watch = FileWatch(path)  # deleted while the crawl runs, the file is written back
        self._queue: HandOff[tuple[Commit, int] | _Refill | None] = HandOff(_QUEUE_SIZE)  # a commit with its rows
        self._writer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._tables = writes.ItemTables()
        # fingerprints queued but not yet committed; None: known() is never asked
        self._unwritten: Counter[str] | None = Counter() if answers_known else None
        self._queued_rows = 0
        self._room = asyncio.Condition()  # signalled when committed rows leave the queue
        self._stats_saved = 0.0
        self._cookies: CrawlCookieJar | None = None  # the jar kept with the crawl (keep_cookies)
        self.items_stored = 0
        self.crawl_id = 0

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Lock the database for this crawl, then open it (creating the schema)."""
        try:
            await asyncio.to_thread(self._lock)  # file system work, off the event loop
            self._db = await self._connect(create_tables=True)
            self._reader = await self._connect()
            await self._watch.start()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StorageError(f"cannot open database {self.path}: {exc}") from None
        except StorageError:
            await self.close()
            raise

    def _lock(self) -> None:
        if self.path.is_dir():  # before a lock file is made beside it; SQLite says "unable to open database file"
            raise StorageError(f"cannot open database {self.path}: a folder; give a file's path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._exit.enter_context(CrawlLock(self.path))

    async def _connect(self, *, create_tables: bool = False) -> aiosqlite.Connection:
        """A connection in WAL mode, and with ``create_tables`` the framework's tables (one
        trip to the connection's thread for the settings, one for the tables)."""
        # Group commits write statements of up to ten row counts per kind (writes.statement_sizes;
        # the kinds: requests, outcomes, errors, leases, each item table), all kept: 1-2 MB for
        # a kind whose every size is used. (With a statement for every row count up to 500,
        # sqlite3's default cache of 128 had held ~20 MB of them on a 20,000-product crawl.)
        bind_none_and_bytes_directly()
        db = await aiosqlite.connect(self.path, isolation_level=None, cached_statements=_CACHED_STATEMENTS)
        db.row_factory = sqlite3.Row
        try:
            # synchronous first: a new file's switch to WAL then syncs less. temp_store: a
            # statement of many rows inside a transaction keeps the pages it changes in a
            # statement journal, which SQLite spills to a temporary file past 64 KiB: ~800
            # page writes a 2,000-product crawl, ~11,000 (44 MB) at 10,000 products, more as
            # the tables grow. In memory it is at most the pages one statement changes.
            await db.executescript(
                "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; "
                "PRAGMA journal_mode = WAL;"
            )
            if create_tables:
                await db.executescript(f"BEGIN; {schema.FRAMEWORK_TABLES} COMMIT;")  # one transaction, not one each
                await _upgrade(db)
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        """Write what is queued, then close the connections and release the lock."""
        try:
            await self._stop_writer()
        finally:
            if self._db is not None and (rescued := await self._watch.rescue(self._db)):
                _log_rescue(self.path, rescued)
            for connection in (self._reader, self._db):
                if connection is not None:
                    await connection.close()
            self._db = self._reader = None
            await asyncio.to_thread(self._exit.close)  # releases the lock file

    # -- crawl lifecycle ---------------------------------------------------------------------

    async def begin_crawl(
        self, spider: str, *, fresh: bool = False, resume: bool = True, arguments: Mapping[str, str] | None = None
    ) -> CrawlStart:
        """Start a crawl, or resume the spider's unfinished one; then start the writer.
        Refused (``StorageError``) while another spider's crawl in this file is unfinished,
        and (``ConfigError``) when the unfinished one was started with other ``arguments``."""
        other = await crawls.unfinished_of_another(self._connection, spider)
        if other is not None:
            crawl_id, owner = other
            raise StorageError(
                f"{self.path} holds crawl {crawl_id} of spider {owner!r}, unfinished: finish it first "
                f"(python -m scraper run {owner}) or give {spider!r} a database of its own (--db); "
                "spiders sharing a file share its requests' rows"
            )
        # one transaction: a resume that cannot write (a disk still full) leaves the crawl's row
        # as it was, 'interrupted' with its reason, where a half-done one marked it running
        db = self._connection
        await db.execute("BEGIN IMMEDIATE")
        try:
            start = await crawls.begin(db, spider, fresh=fresh, resume=resume, arguments=arguments or {})
            await db.execute("COMMIT")
        except BaseException as exc:
            await self._roll_back(db)
            if isinstance(exc, sqlite3.Error):
                raise WriteFailed(f"cannot begin the crawl in {self.path}: {exc}") from exc
            raise
        self.crawl_id = start.crawl_id
        self.items_stored = sum(start.items.values())
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        return start

    def keep_cookies(self, jar: CrawlCookieJar) -> None:
        """Write ``jar``'s changes with the pages, so that a resume starts from what it held:
        each transaction takes those made until it begins (with them those of its pages)."""
        self._cookies = jar

    async def finish_crawl(self, *, status: str, reason: str) -> None:
        """Drain the writer, then close the crawl's row with its status and final statistics.

        A crawl whose writes failed (a full disk) is 'interrupted': what it committed is
        consistent, so the next run resumes it once the cause is gone instead of starting over.
        Should even that row not be written, it stays 'running', which resumes the same way."""
        failure: StorageError | None = None
        try:
            await self._stop_writer()
        except StorageError as exc:
            failure, status, reason = exc, "interrupted", str(exc)
        try:
            stats = self._stats.snapshot()
            await self._keep_or_forget_cookies(status)
            await crawls.finish(self._connection, self.crawl_id, status=status, reason=reason, stats=stats)
        except sqlite3.Error as exc:
            if failure is None:
                raise
            logger.warning("the crawl's row in %s stays 'running' (resumable): %s", self.path, exc)
        rescued = await self._watch.rescue(self._connection)  # with the row just written
        if failure is not None:
            raise WriteFailed(f"{failure}; what it committed is written back to {rescued}") if rescued else failure
        if rescued:
            _log_rescue(self.path, rescued)

    # -- writes ------------------------------------------------------------------------------

    async def submit(self, commit: Commit) -> None:
        """Queue ``commit`` for the next transaction (waits while the queue is full).

        Raises ``StorageError`` once the writer has failed: the crawl must stop, not lose data."""
        self._check_writer()
        rows = _rows_of(commit)
        if not self._has_room_for(rows):  # backpressure in rows: a page with 1,000 links weighs 1,000
            async with self._room:
                await self._room.wait_for(lambda: self._has_room_for(rows))
            self._check_writer()
        self._queued_rows += rows
        if self._unwritten is not None and (commit.requests or commit.refused):
            self._unwritten.update(_fingerprints(commit.requests, commit.refused))
        await self._queue.put((commit, rows))

    async def flush(self) -> None:
        """Wait until every commit submitted so far is written, so that ``items_stored``
        counts them all: a refill of nothing, which the writer answers after the commits
        queued before it."""
        await self.lease_pending(0)

    async def lease_pending(self, limit: int) -> list[sqlite3.Row]:
        """Up to ``limit`` pending, unleased requests of this crawl (highest priority first),
        now leased to it. Goes through the writer, after every commit queued before it."""
        self._check_writer()
        refill = _Refill(limit)
        await self._queue.put(refill)
        return await refill.result

    # -- reads -------------------------------------------------------------------------------

    async def known(self, fingerprints: Sequence[str]) -> set[str]:
        """Which of ``fingerprints`` this crawl has already seen: stored, or queued to be."""
        unwritten = self._unwritten
        if unwritten is None:
            raise RuntimeError("Storage(answers_known=False) does not track queued fingerprints")
        found = {fingerprint for fingerprint in fingerprints if fingerprint in unwritten}
        rest = [fingerprint for fingerprint in fingerprints if fingerprint not in found]
        for start in range(0, len(rest), 500):
            chunk = rest[start : start + 500]
            sql = (
                "SELECT fingerprint FROM scraper_requests WHERE crawl_id = ? "
                f"AND fingerprint IN ({', '.join('?' * len(chunk))})"
            )
            async with self._read.execute(sql, (self.crawl_id, *chunk)) as cursor:
                found.update(row[0] for row in await cursor.fetchall())
        return found

    # -- the writer --------------------------------------------------------------------------

    @property
    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError(f"database {self.path} is not open")
        return self._db

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageError(f"database {self.path} is not open")
        return self._reader

    def _has_room_for(self, rows: int) -> bool:
        """A failed writer always has room: the submitter must wake up to see the failure."""
        return self._failure is not None or not self._queued_rows or self._queued_rows + rows <= _QUEUE_ROWS

    def _check_writer(self) -> None:
        if self._failure is not None or self._writer is None:
            raise StorageError(f"cannot write to {self.path}: {self._failure or 'writer not running'}")

    async def _stop_writer(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        await self._queue.put(None)
        await writer
        if self._failure is not None:
            raise self._failed() from self._failure

    async def _keep_or_forget_cookies(self, status: str) -> None:
        """A crawl that will resume keeps its jar's last changes; one that is over, no cookie
        (the file outlives the sessions it would otherwise hold)."""
        if status not in crawls.RESUMABLE:
            await self._connection.execute(schema.FORGET_COOKIES, (self.crawl_id,))
        elif self._cookies is not None and (changes := self._cookies.changes()) is not None:
            await writes.execute_all(self._connection, crawls.save_cookies(self.crawl_id, changes))
            self._cookies.saved(changes)

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
                    refill.result.set_result(await self._lease(refill.limit))
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
        return WriteFailed(f"writing to {self.path} failed: {self._failure}")

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
        unstorable = await asyncio.to_thread(_unbindable, commit.items)
        tried = 0  # items left out by the last try
        while True:
            culprit = getattr(error, "item", None)
            if isinstance(culprit, StoredItem) and all(culprit is not bad for bad, _ in unstorable):
                unstorable.append((culprit, error))
            if len(unstorable) == tried:
                break  # nothing (more) to leave out: the page's items go
            tried = len(unstorable)
            counted = Stats()  # counted once the commit is in
            failures = [
                error_record(
                    "validate",
                    cause,
                    item.url,
                    counted,
                    context=f"not stored in table {item.table!r}: ",
                    announce=False,
                )
                for item, cause in unstorable
            ]
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

    async def _write(self, batch: list[Commit]) -> None:
        """One transaction for ``batch``: three trips to the connection's thread (the
        ``BEGIN``, every statement at once, the ``COMMIT``), whatever its size."""
        db, now, crawl_id = self._connection, utc_now(), self.crawl_id
        items = self._within_limit(_gathered(batch, "items"))
        requests, refused = _gathered(batch, "requests"), _gathered(batch, "refused")
        item_statements, stored = writes.insert_items(items, crawl_id, now)
        statements = [
            *writes.insert_requests(requests, refused, crawl_id, now),
            *item_statements,
            *writes.insert_errors(_gathered(batch, "errors"), crawl_id, now),
            *writes.finish_requests(list(filter(None, map(_OUTCOME, batch))), now),
        ]
        statements += self._stats_now_and_then()
        jar = self._cookies
        cookies = jar.changes() if jar is not None else None
        if cookies is not None:
            statements += crawls.save_cookies(crawl_id, cookies)
        await db.execute("BEGIN IMMEDIATE")
        try:
            await self._tables.ensure_all(db, items)
            await writes.execute_all(db, statements)
            await db.execute("COMMIT")
        except BaseException:
            await self._roll_back(db)
            self._tables = writes.ItemTables()  # what it knew may include tables rolled back
            raise
        self._committed(requests, refused, stored)
        if jar is not None and cookies is not None:
            jar.saved(cookies)

    async def _roll_back(self, db: aiosqlite.Connection) -> None:
        """Undo the failed transaction, if SQLite has not already (a full disk or an I/O error
        ends it): the failure to report is the one that got us here, not the ROLLBACK's
        'no transaction is active'."""
        if not db.in_transaction:
            return
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            logger.warning("rolling back on %s failed too: %s", self.path, exc)

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
        unwritten = self._unwritten
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
        return [crawls.save_stats(self.crawl_id, self._stats.snapshot())]

    async def _lease(self, limit: int) -> list[Any]:
        if not limit:  # a refill of nothing (``flush``): answered, in order, with no transaction
            return []
        db = self._connection
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute(schema.PENDING_TO_LOAD, (self.crawl_id, limit)) as cursor:
                rows = list(await cursor.fetchall())
            await writes.execute_all(db, writes.chunked(schema.lease, [(row["id"],) for row in rows], 1))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return rows


async def _upgrade(db: aiosqlite.Connection) -> None:
    """Add the columns that a file made by an older version lacks (``CREATE TABLE IF NOT
    EXISTS`` leaves its tables as they were)."""
    for (table, column), statement in schema.UPGRADES.items():
        async with db.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?", (table, column)) as cursor:
            missing = await cursor.fetchone() is None
        if missing:
            await db.execute(statement)


_OUTCOME = operator.attrgetter("outcome")
_FINGERPRINT = operator.attrgetter("fingerprint")


def _log_rescue(path: Path, rescued: Path) -> None:
    """A crawl that ended before it noticed its file had gone still says where its data went."""
    logger.warning("%s was deleted or replaced while the crawl ran: its data is written back to %s", path, rescued)


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
    """The fingerprints of admitted and refused requests: the keys of ``_unwritten``."""
    return map(_FINGERPRINT, itertools.chain(*entries))
