"""The hand-written ceiling for ``bench/throughput.py``: what a careful asyncio script does to
crawl the demo shop, with none of the framework. One ``aiohttp.ClientSession``, N workers over
an ``asyncio.Queue``, a set for dedup, selectolax (Lexbor) for parsing, SQLite in batched
transactions off the event loop (``asyncio.to_thread``, one ``executemany`` per batch).

Honest by construction: every page is fetched and decoded, every product page is parsed in
full (the same fields as ``spiders/demo_shop.py``: title, price and currency, rating, stock,
category, sku, description) and every product is stored. It only skips what a framework
adds: retries, robots.txt, politeness, a durable frontier, item validation, error records.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
from selectolax.lexbor import LexborHTMLParser

from bench.shop_parsing import Row, parse_product

_SCHEMA = """CREATE TABLE IF NOT EXISTS product (url TEXT NOT NULL UNIQUE, title TEXT, price REAL, currency TEXT,
    rating INTEGER, in_stock INTEGER, stock INTEGER, category TEXT, sku TEXT, description TEXT)"""
_INSERT = "INSERT INTO product VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
BATCH = 500


def links(url: str, tree: LexborHTMLParser, selector: str) -> list[str]:
    return [urljoin(url, href) for node in tree.css(selector) if (href := node.attributes.get("href"))]


class Crawl:
    """The whole crawl's state: the queue of (url, kind), the seen set, the pending batch."""

    def __init__(self, db: sqlite3.Connection, workers: int) -> None:
        self.db, self.workers = db, workers
        self.queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self.seen: set[str] = set()
        self.batch: list[Row] = []
        self.write_lock = asyncio.Lock()
        self.pages = self.errors = 0

    def add(self, url: str, kind: str) -> None:
        if url not in self.seen:
            self.seen.add(url)
            self.queue.put_nowait((url, kind))

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while (entry := await self.queue.get()) is not None:
            try:
                await self.handle(session, *entry)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                self.errors += 1
            finally:
                self.queue.task_done()

    async def handle(self, session: aiohttp.ClientSession, url: str, kind: str) -> None:
        async with session.get(url) as response:
            response.raise_for_status()
            html = await response.text()
        self.pages += 1
        tree = LexborHTMLParser(html)
        if kind == "home":
            for link in links(url, tree, "ul.categories a"):
                self.add(link, "listing")
        elif kind == "listing":
            for link in links(url, tree, "section.products article.product h3 a"):
                self.add(link, "product")
            for link in links(url, tree, "ul.pager li.next a"):
                self.add(link, "listing")
        else:
            self.batch.append(parse_product(url, tree))
            if len(self.batch) >= BATCH:
                await self.flush()

    async def flush(self) -> None:
        rows, self.batch = self.batch, []
        if rows:
            async with self.write_lock:  # one writer at a time on the one connection
                await asyncio.to_thread(_write, self.db, rows)


def _write(db: sqlite3.Connection, rows: list[Row]) -> None:
    with db:  # one transaction per batch
        db.executemany(_INSERT, rows)


async def crawl(base_url: str, database: Path, *, workers: int = 32, per_host: int = 32) -> tuple[int, int]:
    """Crawl the demo shop at ``base_url`` into ``database``; returns (pages, errors)."""
    with closing(sqlite3.connect(database, check_same_thread=False)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        state = Crawl(db, workers)
        state.add(base_url.rstrip("/") + "/", "home")
        connector = aiohttp.TCPConnector(limit=workers, limit_per_host=per_host)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(state.worker(session))
            await state.queue.join()
            for _ in range(workers):
                state.queue.put_nowait(None)
        await state.flush()
        return state.pages, state.errors
