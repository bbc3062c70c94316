"""Tests for reading a crawl database with ``query``: what an SQL error says."""

from __future__ import annotations

import sqlite3
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
