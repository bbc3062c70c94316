"""Read-only access to a crawl database, for ``query`` and the other inspecting commands.

The file is opened with ``mode=ro``: a query can never change or lock a crawl's data."""

from __future__ import annotations

import asyncio
import difflib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from scraper.errors import StorageError, damaged
from scraper.schema import quote

_TABLE_NAMES = (  # the item tables first, then the framework's
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
    "ORDER BY name LIKE 'scraper\\_%' ESCAPE '\\', name"
)


@asynccontextmanager
async def read_only(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    if not await asyncio.to_thread(path.is_file):
        if await asyncio.to_thread(path.is_dir):
            raise StorageError(f"{path} is a folder; give a database file's path")
        raise StorageError(f"no database at {path} (has the spider run yet?)")
    uri = (await asyncio.to_thread(path.resolve)).as_uri()
    try:
        db = await _read_only_connection(uri)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}{damaged(exc, path)}") from None
    try:
        yield db
    except asyncio.CancelledError:  # Ctrl-C: SQLite's step runs on in its thread until told to stop
        await db.interrupt()
        raise
    finally:
        await db.close()


async def _read_only_connection(uri: str) -> aiosqlite.Connection:
    try:
        return await _opened(f"{uri}?mode=ro")
    except sqlite3.OperationalError as exc:
        if str(exc) != "unable to open database file":
            raise
    # on read-only media a WAL file cannot get its shared-memory index: read it as a file
    # that nothing changes (a copy of a crawl's database on a read-only mount failed)
    return await _opened(f"{uri}?mode=ro&immutable=1")


async def _opened(uri: str) -> aiosqlite.Connection:
    """A connection to ``uri``, tried with a first read (a WAL file on read-only media opens,
    then fails there), that may not attach another file: ``ATTACH`` creates the file it names,
    and read-only is the promise of ``query``."""
    db = await aiosqlite.connect(uri, uri=True)
    try:
        await db.set_authorizer(_no_attach)
        async with db.execute("SELECT 1 FROM sqlite_master LIMIT 1") as cursor:
            await cursor.fetchone()
    except BaseException:
        await db.close()
        raise
    return db


def _no_attach(action: int, name: str | None, value: str | None, *_: object) -> int:
    """Denies ATTACH, and a change of journal mode (on a read-only file SQLite answered it
    with a misleading 'disk I/O error')."""
    if action == sqlite3.SQLITE_ATTACH:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (name or "").lower() == "journal_mode" and value is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


async def run_query(
    path: Path, sql: str, parameters: Sequence[Any] = (), *, limit: int = 0
) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """``(column names, rows, more)`` of ``sql``: with a ``limit``, at most that many rows are
    read (a ``SELECT *`` of a big crawl would hold it all in memory) and ``more`` says whether
    others follow. An SQL error is a ``StorageError`` with SQLite's words."""
    async with read_only(path) as db:
        try:
            async with db.execute(sql, parameters) as cursor:
                rows = list(await (cursor.fetchmany(limit + 1) if limit else cursor.fetchall()))
                columns = [description[0] for description in cursor.description or ()]
        except sqlite3.Error as exc:
            raise StorageError(f"query failed: {exc}{await _what_helps(db, exc)}{damaged(exc, path)}") from None
    more = bool(limit) and len(rows) > limit
    return columns, [tuple(row) for row in (rows[:limit] if more else rows)], more


async def _what_helps(db: aiosqlite.Connection, error: sqlite3.Error) -> str:
    """For a table that does not exist, the tables that do (and the closest name); for a
    write, that the file is opened read-only. Else nothing: SQLite's words say it."""
    message = str(error)
    if message.startswith("no such table: "):
        async with db.execute(_TABLE_NAMES) as cursor:
            names = [row[0] for row in await cursor.fetchall()]
        close = difflib.get_close_matches(message.removeprefix("no such table: ").lower(), names, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        return f" (the tables: {', '.join(names) or 'none yet'}{guess})"
    if "readonly database" in message:
        return " (query opens the file read-only: it never changes a crawl's data)"
    if message in ("not authorized", "authorization denied"):  # ATTACH, VACUUM INTO (which attaches), journal_mode
        return " (query reads this file only: it changes nothing, and attaches or writes no other file)"
    return ""


async def tables_overview(path: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    """What a crawl database holds, for ``query`` without SQL: each table with its row count
    and columns, the item tables first, then the framework's."""
    async with read_only(path) as db:
        try:
            async with db.execute(_TABLE_NAMES) as cursor:
                names = [row[0] for row in await cursor.fetchall()]
            overview = []
            for name in names:
                quoted = quote(name)
                async with db.execute(f"SELECT count(*) FROM {quoted}") as cursor:
                    (count,) = await cursor.fetchone() or (0,)
                async with db.execute(f"PRAGMA table_info({quoted})") as cursor:
                    columns = ", ".join(row[1] for row in await cursor.fetchall())
                overview.append((name, count, columns))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {path}: {exc}{damaged(exc, path)}") from None
    return ["table", "rows", "columns"], overview
