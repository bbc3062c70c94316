"""Tests for reading a crawl database with ``query``: what an SQL error says."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from scraper.errors import StorageError
from scraper.query import run_query


@pytest.fixture
def crawl_file(tmp_path: Path) -> Path:
    path = tmp_path / "crawl.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE scraper_errors (id INTEGER PRIMARY KEY, message TEXT)")
        db.execute("CREATE TABLE product (_id INTEGER PRIMARY KEY, title TEXT)")
        db.execute("INSERT INTO product (title) VALUES ('teapot')")
    return path


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT * FROM products",
            "query failed: no such table: products (the tables: product, scraper_errors; did you mean 'product'?)",
        ),
        (
            "SELECT * FROM Scraper_Error",
            "no such table: Scraper_Error (the tables: product, scraper_errors; did you mean 'scraper_errors'?)",
        ),
        ("SELECT * FROM basket", "no such table: basket (the tables: product, scraper_errors)"),
        ("DELETE FROM product", "readonly database (query opens the file read-only: it never changes a crawl's data)"),
        ("SELEC title FROM product", 'query failed: near "SELEC": syntax error'),
    ],
)
async def test_an_sql_error_says_what_the_file_holds_when_that_helps(crawl_file: Path, sql: str, expected: str) -> None:
    with pytest.raises(StorageError) as raised:
        await run_query(crawl_file, sql)
    assert str(raised.value).endswith(expected)
    assert await run_query(crawl_file, "SELECT title FROM product") == (["title"], [("teapot",)], False)


@pytest.mark.parametrize("sql", ["ATTACH '{other}' AS other", "VACUUM INTO '{other}'"])
async def test_query_writes_no_other_file(crawl_file: Path, sql: str) -> None:
    """Read-only as the crawl's file was, ATTACH created the file it named and VACUUM INTO
    wrote a copy."""
    other = crawl_file.with_name("other.db")
    with pytest.raises(StorageError) as raised:
        await run_query(crawl_file, sql.format(other=other))
    assert str(raised.value).endswith(
        "(query reads this file only: it changes nothing, and attaches or writes no other file)"
    )
    assert not other.exists()


async def test_a_change_of_journal_mode_is_refused_as_a_change(crawl_file: Path) -> None:
    """SQLite answered it with 'disk I/O error' on the read-only file."""
    with pytest.raises(StorageError, match=r"^query failed: not authorized \(query reads this file only"):
        await run_query(crawl_file, "PRAGMA journal_mode=DELETE")
    assert await run_query(crawl_file, "PRAGMA journal_mode") == (["journal_mode"], [("delete",)], False)
    assert (await run_query(crawl_file, "PRAGMA table_info(product)"))[1][0][1] == "_id"  # a PRAGMA with an argument


@pytest.fixture
def read_only_mount(crawl_file: Path, tmp_path: Path) -> Iterator[Path]:
    """``crawl_file``, in WAL mode, seen through a bind mount made read-only (root only)."""
    with closing(sqlite3.connect(crawl_file)) as db:
        db.execute("PRAGMA journal_mode = WAL")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    if subprocess.run(["mount", "--bind", str(crawl_file.parent), str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True, capture_output=True)
        yield mounted / crawl_file.name
    finally:
        subprocess.run(["umount", str(mounted)], check=True, capture_output=True)


async def test_a_crawl_file_on_a_read_only_mount_can_be_queried(read_only_mount: Path) -> None:
    """A WAL file there cannot get its shared-memory index: "unable to open database file"."""
    assert await run_query(read_only_mount, "SELECT title FROM product") == (["title"], [("teapot",)], False)


async def test_a_folder_given_as_the_database_is_named_as_one(tmp_path: Path) -> None:
    """It said there was no database there, and asked whether the spider had run."""
    with pytest.raises(StorageError, match=r" is a folder; give a database file's path$"):
        await run_query(tmp_path, "SELECT 1", limit=10)
