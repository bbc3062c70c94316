"""The live line a terminal shows while a crawl runs."""

from __future__ import annotations

import shlex
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from scraper import schema
from scraper.progress import RecentRate, status_line, summary
from scraper.stats import Stats


@dataclass
class Crawl:
    stats: Stats = field(default_factory=Stats)
    pending: int = 1
    in_flight: int = 0


def test_the_line_fits_an_80_column_terminal_and_counts_in_words() -> None:
    """It was ~100 characters ('... items stored · 3 errors · 1 pending · 0 handed out · 267.4s'),
    two lines in any terminal of 80, broken mid-phrase; and it said '1 errors'."""
    crawl = Crawl()
    crawl.stats.counts.update({"pages": 50_800, "items/stored": 50_800, "errors/fetch/X": 1})
    crawl.stats.started -= 267.4
    line = status_line(crawl, rate=190.0).plain
    assert line == "50,800 pages · 190/s · 50,800 items · 1 error · 1 queued · 0 fetching · 4m27s"
    assert len(line) <= 80


def test_the_rate_is_the_last_seconds_not_the_whole_crawl() -> None:
    """The line said 426/s while the crawl did ~2 pages a second (status: 2.3 pages/s over the
    last minute): the whole crawl's average hid a stall of minutes."""
    rate = RecentRate(window=10.0)
    rate.add(0.0, 0)
    rate.add(100.0, 40_000)  # a fast start...
    rate.add(105.0, 40_010)
    rate.add(110.0, 40_020)  # ...then 2 pages a second
    assert rate.per_second() == 2.0
    assert RecentRate(window=10.0).per_second() is None  # nothing yet: the line shows the average


@pytest.mark.parametrize(
    ("table", "written"), [("product", "product"), ("order", '"order"'), ("my-products", '"my-products"')]
)
def test_the_summarys_query_names_its_table_as_sqlite_reads_it(tmp_path: Path, table: str, written: str) -> None:
    """An ``Order`` item's table is ``order``, a keyword: pasted bare, the summary's query
    failed with 'near "order": syntax error' (and so did a table named with a hyphen)."""
    database = tmp_path / "crawl.db"
    with closing(sqlite3.connect(database)) as db:
        db.execute(f"CREATE TABLE {schema.quote(table)} (x)")
    stats = Stats()
    stats.set_items_by_table({table: 1})
    console = Console(record=True, width=300)
    console.print(summary(spider="s", status="finished", reason="finished", stats=stats, database=database))
    look = next(line for line in console.export_text().splitlines() if line.lstrip().startswith("look"))
    sql = f"SELECT * FROM {written} LIMIT 5"
    assert look.rstrip().endswith(shlex.quote(sql))
    with closing(sqlite3.connect(database)) as db:
        assert db.execute(sql).fetchall() == []
