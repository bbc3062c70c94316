"""The demo shop crawled with Crawlee's ``ParselCrawler``, doing exactly ``bench/reference_loop.py``'s
work: home → category listings (paginated through ``ul.pager li.next a``) → product pages, every
product parsed into the reference's 10 columns and stored in SQLite in batches of 500 (rows
collected in a list, written from a thread; Crawlee's dataset is not used). Run in the
competitors' venv (``venv.py``)::

    bench/competitors/.venv/bin/python bench/competitors/crawlee_shop.py --base-url URL --database PATH

Tuned as an expert would for a fast local site: storage in memory only (``MemoryStorageClient``:
nothing written to ``./storage``), concurrency fixed at --concurrency (min = desired = max, so the
autoscaled pool neither ramps up nor backs off), no session pool (cookies) and no blocked-page
detection (the site never blocks), robots.txt off (Crawlee's default), logging at WARNING (no
statistics tables); a router with one handler per label and ``enqueue_links`` with a selector
and a label. Everything else Crawlee's defaults: its default HTTP client (impit), retries
(``max_request_retries`` 3), the request queue's deduplication. Prints one JSON line on stdout:
kind, status, pages (200 responses seen by the handlers), seconds and CPU seconds of the crawl
(from creating the crawler to the last batch written), peak RSS in MB.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from _shop import ProductTable, Row, Window, parse_args, parse_product, report
from crawlee import ConcurrencySettings, service_locator
from crawlee.configuration import Configuration
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext
from crawlee.router import Router
from crawlee.storage_clients import MemoryStorageClient


class Shop:
    """The handlers, the page count and the pending rows of one crawl."""

    def __init__(self, database: Path) -> None:
        self.table = ProductTable(database)
        self.write_lock = asyncio.Lock()  # one writer at a time on the one connection
        self.pages = 0
        self.router = Router[ParselCrawlingContext]()
        self.router.default_handler(self.home)
        self.router.handler("LISTING")(self.listing)
        self.router.handler("PRODUCT")(self.product)

    def count(self, context: ParselCrawlingContext) -> None:
        self.pages += context.http_response.status_code == 200

    async def home(self, context: ParselCrawlingContext) -> None:
        self.count(context)
        await context.enqueue_links(selector="ul.categories a", label="LISTING")

    async def listing(self, context: ParselCrawlingContext) -> None:
        self.count(context)
        await context.enqueue_links(selector="section.products article.product h3 a", label="PRODUCT")
        await context.enqueue_links(selector="ul.pager li.next a", label="LISTING")

    async def product(self, context: ParselCrawlingContext) -> None:
        self.count(context)
        if (rows := self.table.add(parse_product(context.request.url, context.selector))) is not None:
            await self.write(rows)

    async def write(self, rows: list[Row]) -> None:
        async with self.write_lock:
            await asyncio.to_thread(self.table.write, rows)


async def crawl(base_url: str, database: Path, concurrency: int, window: Window) -> tuple[str, int]:
    """Crawl the shop; returns (status, pages)."""
    service_locator.set_configuration(Configuration(log_level="WARNING"))
    service_locator.set_storage_client(MemoryStorageClient())
    window.start()
    shop = Shop(database)
    try:
        crawler = ParselCrawler(
            request_handler=shop.router,
            concurrency_settings=ConcurrencySettings(
                min_concurrency=concurrency, desired_concurrency=concurrency, max_concurrency=concurrency
            ),
            use_session_pool=False,
            retry_on_blocked=False,
        )
        statistics = await crawler.run([base_url.rstrip("/") + "/"])
        await shop.write(shop.table.take())
        window.stop()
    finally:
        shop.table.db.close()
    failed = statistics.requests_failed
    return ("ok" if failed == 0 else f"{failed} requests failed"), shop.pages


def main() -> int:
    args = parse_args("Crawlee")
    window = Window()
    try:
        status, pages = asyncio.run(crawl(args.base_url, args.database, args.concurrency, window))
    except Exception as exc:  # still print the one line, with what went wrong
        window.stop()
        status, pages = f"{type(exc).__name__}: {exc}", 0
    report("crawlee", status, pages, window)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
