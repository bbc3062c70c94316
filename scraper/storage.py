"""The crawl database: opened and locked for one crawl, whose row it begins and seals; its
writes go through the writer (``writer.py``), one task that groups many pages into each
transaction, and a second connection answers the frontier's reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sqlite3
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiosqlite

from scraper import crawls, schema, writes
from scraper.cookies import CrawlCookieJar
from scraper.crawls import CrawlStart
from scraper.errors import StorageError, WriteFailed, damaged
from scraper.filewatch import FileWatch
from scraper.invocation import command_prefix
from scraper.lock import CrawlLock
from scraper.records import Commit
from scraper.stats import Stats
from scraper.writer import LINGER, Writer, roll_back

logger = logging.getLogger(__name__)

_CACHED_STATEMENTS = 96  # compiled statements each connection keeps (see _connect)
_BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another program's transaction to end
_SPECIAL_NAMES = {":memory:": "an in-memory database"}  # what SQLite opens instead of a file of that name


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


class Storage:
    def __init__(
        self,
        path: Path,
        *,
        stats: Stats,
        batch_size: int = 500,
        max_items: int = 0,
        linger: float = LINGER,
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
        self._answers_known = answers_known
        self._writer: Writer | None = None  # made by begin_crawl; stopped, it still counts what it stored
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
            raise StorageError(f"cannot open database {self.path}: {exc}{damaged(exc, self.path)}") from None
        except StorageError:
            await self.close()
            raise

    def _lock(self) -> None:
        read_as = _SPECIAL_NAMES.get(str(self.path)) or ("a URI" if str(self.path).startswith("file:") else None)
        if read_as is not None:  # the crawl had run, and kept nothing, or locked another name than it wrote
            raise StorageError(
                f"cannot open database {self.path}: SQLite reads that name as {read_as}; give a file's path"
            )
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
                f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; "
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
        try:
            other = await crawls.unfinished_of_another(self._connection, spider)
        except sqlite3.Error as exc:  # a damaged file: it was a traceback
            raise StorageError(f"cannot read crawls in {self.path}: {exc}{damaged(exc, self.path)}") from None
        if other is not None:
            crawl_id, owner = other
            raise StorageError(
                f"{self.path} holds crawl {crawl_id} of spider {owner!r}, unfinished: finish it first "
                f"({command_prefix()} run {owner} --db {shlex.quote(str(self.path))}) or give {spider!r} a "
                "database of its own (--db); "
                "spiders sharing a file share its requests' rows"
            )
        # one transaction: a resume that cannot write (a disk still full) leaves the crawl's row
        # as it was, 'interrupted' with its reason, where a half-done one marked it running
        db = self._connection
        try:  # BEGIN inside: locked by another program past the busy timeout, it was a traceback
            await db.execute("BEGIN IMMEDIATE")
            start = await crawls.begin(db, spider, fresh=fresh, resume=resume, arguments=arguments or {})
            await db.execute("COMMIT")
        except BaseException as exc:
            await roll_back(db, self.path)
            if isinstance(exc, sqlite3.Error):
                culprits = await asyncio.to_thread(self._read_only_files)
                hint = f" ({', '.join(map(str, culprits))} cannot be written)" if culprits else ""
                raise WriteFailed(
                    f"cannot begin the crawl in {self.path}: {exc}{hint}{damaged(exc, self.path)}"
                ) from exc
            raise
        self.crawl_id = start.crawl_id
        self._writer = Writer(
            db,
            crawl_id=start.crawl_id,
            stats=self._stats,
            watch=self._watch,
            items_stored=sum(start.items.values()),
            batch_size=self._batch_size,
            linger=self._linger,
            max_items=self._max_items,
            track_unwritten=self._answers_known,
        )
        self._writer.start()
        return start

    def _read_only_files(self) -> list[Path]:
        """The database's files that exist but this process may not write: a -shm left
        read-only (SQLite made it so while the file was) refuses every write until removed."""
        files = [self.path, *(self.path.with_name(self.path.name + suffix) for suffix in ("-wal", "-shm"))]
        return [file for file in files if file.exists() and not os.access(file, os.W_OK)]

    def keep_cookies(self, jar: CrawlCookieJar) -> None:
        """Write ``jar``'s changes with the pages, so that a resume starts from what it held:
        each transaction takes those made until it begins (with them those of its pages)."""
        self._writing.cookies = jar

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

    def submit(self, commit: Commit) -> Awaitable[None]:
        """Queue ``commit`` for the next transaction (waits while the queue is full); raises
        ``StorageError`` once the writer has failed. (The writer's own coroutine, returned:
        a page's commit takes no frame of ours.)"""
        return self._writing.submit(commit)

    async def flush(self) -> None:
        """Wait until every commit submitted so far is written, so that ``items_stored``
        counts them all: a refill of nothing, which the writer answers after the commits
        queued before it."""
        await self.lease_pending(0)

    async def lease_pending(
        self, limit: int, hosts: Sequence[str] = (), excluding: Sequence[str] = ()
    ) -> list[sqlite3.Row]:
        """Up to ``limit`` pending, unleased requests of this crawl (highest priority first),
        but none of the hosts ``excluding``; or up to ``limit`` of each of ``hosts``. Now
        leased to it. Goes through the writer, after every commit queued before it."""
        return await self._writing.lease_pending(limit, hosts, excluding)

    async def give_back(self, fingerprints: Sequence[str]) -> set[str]:
        """Release the leases of these pending requests (to be loaded again later); returns
        those released: a request whose page's commit has not been written yet keeps its
        place in memory. Goes through the writer, after every commit queued before it."""
        return await self._writing.give_back(fingerprints)

    @property
    def items_stored(self) -> int:
        """The crawl's items committed so far (resumed runs' included)."""
        return self._writer.items_stored if self._writer is not None else 0  # 0 before the crawl begins

    # -- reads -------------------------------------------------------------------------------

    async def known(self, fingerprints: Sequence[str]) -> set[str]:
        """Which of ``fingerprints`` this crawl has already seen: stored, or queued to be."""
        unwritten = self._writing.unwritten
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

    # -- connections --------------------------------------------------------------------------

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

    @property
    def _writing(self) -> Writer:
        if self._writer is None:
            raise StorageError(f"cannot write to {self.path}: the crawl has not begun")
        return self._writer

    async def _stop_writer(self) -> None:
        """Raises ``WriteFailed`` if a write failed (once: a stopped writer stops again quietly)."""
        if self._writer is not None:
            await self._writer.stop()

    async def _keep_or_forget_cookies(self, status: str) -> None:
        """A crawl that will resume keeps its jar's last changes; one that is over, no cookie
        (the file outlives the sessions it would otherwise hold)."""
        jar = self._writer.cookies if self._writer is not None else None
        if status not in crawls.RESUMABLE:
            await self._connection.execute(schema.FORGET_COOKIES, (self.crawl_id,))
        elif jar is not None and (changes := jar.changes()) is not None:
            await writes.execute_all(self._connection, crawls.save_cookies(self.crawl_id, changes))
            jar.saved(changes)


async def _upgrade(db: aiosqlite.Connection) -> None:
    """Add the columns that a file made by an older version lacks (``CREATE TABLE IF NOT
    EXISTS`` leaves its tables as they were)."""
    for (table, column), statement in schema.UPGRADES.items():
        async with db.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?", (table, column)) as cursor:
            missing = await cursor.fetchone() is None
        if missing:
            await db.execute(statement)


def _log_rescue(path: Path, rescued: Path) -> None:
    """A crawl that ended before it noticed its file had gone still says where its data went."""
    logger.warning("%s was deleted or replaced while the crawl ran: its data is written back to %s", path, rescued)
