"""Read-only access to a crawl database, for ``query`` and the other inspecting commands.

The file is opened with ``mode=ro``: a query can never change or lock a crawl's data."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from scraper.errors import StorageError


@asynccontextmanager
async def read_only(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    if not await asyncio.to_thread(path.is_file):
        raise StorageError(f"no database at {path} (has the spider run yet?)")
    uri = (await asyncio.to_thread(path.resolve)).as_uri()
    try:
        db = await aiosqlite.connect(f"{uri}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from None
    try:
        yield db
    finally:
        await db.close()


async def run_query(path: Path, sql: str, parameters: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``(column names, rows)`` of ``sql``; an SQL error is a ``StorageError`` with SQLite's words."""
    async with read_only(path) as db:
        try:
            async with db.execute(sql, parameters) as cursor:
                rows = await cursor.fetchall()
                columns = [description[0] for description in cursor.description or ()]
        except sqlite3.Error as exc:
            raise StorageError(f"query failed: {exc}") from None
    return columns, [tuple(row) for row in rows]
