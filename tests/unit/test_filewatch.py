"""The database file, watched: deleted or replaced during a crawl, its data is written back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest

from scraper import filewatch
from scraper.errors import StorageError
from scraper.filewatch import FileWatch
from tests.conftest import rows


@pytest.fixture
async def watched(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FileWatch, aiosqlite.Connection]]:
    """A database with one committed row, open in WAL mode and watched (looking every time)."""
    monkeypatch.setattr(filewatch, "_EVERY", 0.0)
    async with aiosqlite.connect(database, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("CREATE TABLE item (name TEXT)")
        await db.execute("INSERT INTO item VALUES ('kept')")
        watch = FileWatch(database)
        await watch.start()
        yield watch, db


def delete(database: Path) -> None:
    """The database and its WAL files, deleted as `rm data/x.db*` does."""
    for path in database.parent.glob(database.name + "*"):
        path.unlink()


def replace_with_another(database: Path) -> None:
    database.unlink()
    with closing(sqlite3.connect(database)) as other:
        other.execute("CREATE TABLE other (n INTEGER)")


def open_as_the_next_run_does(database: Path) -> list[str]:
    """The tables of ``database``, opened in WAL mode as a crawl opens its file."""
    with closing(sqlite3.connect(database)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        return [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


async def test_an_unchanged_file_is_left_alone(watched: tuple[FileWatch, aiosqlite.Connection], database: Path) -> None:
    watch, db = watched
    await watch.check_now_and_then()
    assert await watch.rescue(db) is None
    assert not database.with_name(database.name + ".recovered").exists()


async def test_a_deleted_file_is_noticed_and_written_back(
    watched: tuple[FileWatch, aiosqlite.Connection], database: Path
) -> None:
    """The crawl went on writing to the unlinked file, reported 'finished', and lost it all."""
    watch, db = watched
    delete(database)
    with pytest.raises(StorageError, match="was deleted or replaced while the crawl ran"):
        await watch.check_now_and_then()
    await db.execute("INSERT INTO item VALUES ('after')")  # the crawl's last commits
    assert await watch.rescue(db) == database
    assert await watch.rescue(db) is None  # once: the file now at the path is the copy, not a stranger
    assert not database.with_name(database.name + ".recovered").exists()
    assert rows(database, "SELECT name FROM item ORDER BY name") == [("after",), ("kept",)]


async def test_a_replaced_file_stays_and_the_crawls_data_goes_beside_it(
    watched: tuple[FileWatch, aiosqlite.Connection], database: Path
) -> None:
    """The crawl's -wal stayed beside the file moved in; the next run, switching that file to
    WAL, read the crawl's pages into it, and the file moved in was gone."""
    watch, db = watched
    replace_with_another(database)
    recovered = database.with_name(database.name + ".recovered")
    await asyncio.to_thread(recovered.write_bytes, b"an earlier rescue")
    async with aiosqlite.connect(database) as reader:  # a second connection, as storage has
        await reader.execute("SELECT 1")
        assert await watch.rescue(db) == database.with_name(database.name + ".recovered-2")
        await db.close()
    assert not database.with_name(database.name + "-wal").exists()
    assert not database.with_name(database.name + "-shm").exists()
    assert open_as_the_next_run_does(database) == ["other"]
    assert rows(database.with_name(database.name + ".recovered-2"), "SELECT name FROM item") == [("kept",)]
