"""What the Scrapy and Crawlee demo-shop spiders share: the command line, the product parser
(on a parsel selector, as both frameworks give one), the batched SQLite table and the one JSON
line of figures. Runs in the competitors' venv (``venv.py``), imported by the scripts beside it.

The parser extracts exactly what ``bench/reference_loop.py``'s ``parse_product`` does, field
for field (texts kept as the page has them, whitespace included), so the tables can be
compared row for row with the reference's.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sqlite3
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

_PRICE = re.compile(r"([£€$])\s*([\d,]+(?:\.\d+)?)")
_IN_STOCK = re.compile(r"in stock\s*\(\s*(\d+)\s+available\s*\)", re.IGNORECASE)
_CURRENCIES = {"£": "GBP", "€": "EUR", "$": "USD"}
# The reference's columns, without its UNIQUE constraint: a product stored twice shows up.
_SCHEMA = """CREATE TABLE IF NOT EXISTS product (url TEXT NOT NULL, title TEXT, price REAL, currency TEXT,
    rating INTEGER, in_stock INTEGER, stock INTEGER, category TEXT, sku TEXT, description TEXT)"""
_INSERT = "INSERT INTO product VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
BATCH = 500

Row = tuple[str, str, float, str, int, int, int, str, str, str]


class Selectable(Protocol):
    """A Scrapy ``TextResponse`` or a parsel ``Selector``: anything with ``.css()``."""

    def css(self, query: str) -> Any: ...


def parse_args(kind: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=f"Crawl the demo shop with {kind} into a SQLite table; print one JSON line of figures."
    )
    parser.add_argument("--base-url", required=True, help="the shop's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--database", required=True, type=Path, help="SQLite file to write the product table to")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent requests (default 32)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


# -- parsing ---------------------------------------------------------------------------------


def _text(page: Selectable, css: str) -> str:
    text = page.css(f"{css}::text").get()
    if text is None:
        raise ValueError(f"no {css!r}")
    return str(text)


def parse_product(url: str, page: Selectable) -> Row:
    """The 10 columns of one product page, as ``reference_loop.parse_product`` makes them."""
    if (price := _PRICE.search(_text(page, "p.price"))) is None:
        raise ValueError(f"no price in {url}")
    stock_match = _IN_STOCK.search(_text(page, "p.stock"))
    stock = int(stock_match.group(1)) if stock_match else 0
    rating = page.css("p.rating::attr(data-rating)").get()
    return (
        url,
        _text(page, "h1"),
        float(Decimal(price.group(2).replace(",", "")).quantize(Decimal("0.01"))),
        _CURRENCIES[price.group(1)],
        int(rating or 0),
        int(stock > 0),
        stock,
        _text(page, "table.product-info td.category"),
        _text(page, "table.product-info td.sku"),
        _text(page, "p.description"),
    )


# -- storing ---------------------------------------------------------------------------------


class ProductTable:
    """The ``product`` table in WAL mode, synchronous=NORMAL, written in transactions of
    ``BATCH`` rows (one ``executemany`` each). ``add`` returns a full batch for the caller to
    ``write`` (directly, or from a thread: the connection allows that, one writer at a time)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)
        self.pending: list[Row] = []

    def add(self, row: Row) -> list[Row] | None:
        self.pending.append(row)
        return self.take() if len(self.pending) >= BATCH else None

    def take(self) -> list[Row]:
        rows, self.pending = self.pending, []
        return rows

    def write(self, rows: list[Row]) -> None:
        if rows:
            with self.db:  # one transaction per batch
                self.db.executemany(_INSERT, rows)

    def close(self) -> None:
        self.write(self.take())
        self.db.close()


# -- figures ---------------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


class Window:
    """Wall and CPU seconds between ``start()`` and ``stop()`` (the crawl, nothing else)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.seconds = self.cpu_seconds = 0.0

    def start(self) -> None:
        self.cpu, self.wall = cpu_seconds(), time.perf_counter()

    def stop(self) -> None:
        if not self.seconds:  # the first stop counts
            self.seconds = time.perf_counter() - self.wall
            self.cpu_seconds = cpu_seconds() - self.cpu


def report(kind: str, status: str, pages: int, window: Window) -> None:
    """The one line on stdout; everything else goes to stderr."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    figures = {"kind": kind, "status": status, "pages": pages, "seconds": window.seconds, "cpu": window.cpu_seconds,
               "peak_rss": peak_mb}  # fmt: skip
    print(json.dumps(figures), flush=True)
