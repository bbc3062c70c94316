"""The demo shop crawled with Scrapy, doing exactly ``bench/reference_loop.py``'s work: home →
category listings (paginated through ``ul.pager li.next a``) → product pages, every product
parsed into the reference's 10 columns and stored in SQLite in batches of 500 (an item
pipeline). Run in the competitors' venv (``venv.py``)::

    bench/competitors/.venv/bin/python bench/competitors/scrapy_shop.py --base-url URL --database PATH

Tuned as an expert would for a fast local site: the asyncio reactor, CONCURRENT_REQUESTS and
CONCURRENT_REQUESTS_PER_DOMAIN = --concurrency, no delay, no robots.txt, no cookies, no telnet
console, no AutoThrottle, no HTTP cache, logging at WARNING; everything else Scrapy's defaults
(retries, redirects, the duplicate filter, the stats). Prints one JSON line on stdout:
kind, status, pages (200 responses seen by the callbacks), seconds and CPU seconds of the
crawl (from creating the crawler to the spider closing, after its pipeline wrote the last
batch), peak RSS in MB.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from _shop import ProductTable, Window, parse_args, parse_product, report
from scrapy import signals
from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.http import Response


class ShopSpider(scrapy.Spider):
    name = "demo_shop"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/") + "/"
        self.pages = 0

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.base_url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[scrapy.Request]:
        self.pages += response.status == 200
        yield from response.follow_all(css="ul.categories a", callback=self.parse_listing)

    def parse_listing(self, response: Response) -> Iterator[scrapy.Request]:
        self.pages += response.status == 200
        yield from response.follow_all(css="section.products article.product h3 a", callback=self.parse_product)
        yield from response.follow_all(css="ul.pager li.next a", callback=self.parse_listing)

    def parse_product(self, response: Response) -> Iterator[dict[str, Any]]:
        self.pages += response.status == 200
        row = parse_product(response.url, response)
        yield dict(zip(COLUMNS, row, strict=True))


COLUMNS = ("url", "title", "price", "currency", "rating", "in_stock", "stock", "category", "sku", "description")


class SQLitePipeline:
    """Rows into the ``product`` table, one transaction per 500 (``_shop.ProductTable``)."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.table: ProductTable | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SQLitePipeline:
        return cls(Path(crawler.settings["SHOP_DATABASE"]))

    def open_spider(self) -> None:
        self.table = ProductTable(self.database)

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        assert self.table is not None
        if (rows := self.table.add(tuple(item[column] for column in COLUMNS))) is not None:  # type: ignore[arg-type]
            self.table.write(rows)
        return item

    def close_spider(self) -> None:
        if self.table is not None:
            self.table.close()


def settings(database: Path, concurrency: int, concurrent_items: int) -> dict[str, Any]:
    return {
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "AUTOTHROTTLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "CONCURRENT_ITEMS": concurrent_items,
        "ITEM_PIPELINES": {SQLitePipeline: 300},
        "SHOP_DATABASE": str(database),
    }


def scrapy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrent-items",
        type=int,
        default=100,
        help="CONCURRENT_ITEMS (default 100, Scrapy's own): Scrapy starts this many asyncio tasks to process "
        "each callback's output; 1 saves much CPU here (every callback yields at most 21 objects)",
    )


def main() -> int:
    args = parse_args("Scrapy", scrapy_arguments)
    process = CrawlerProcess(settings(args.database, args.concurrency, args.concurrent_items))  # logs to stderr
    window = Window()
    window.start()
    try:
        crawler = process.create_crawler(ShopSpider)
        crawler.signals.connect(window.stop, signal=signals.spider_closed)  # bound: the dispatcher holds weakrefs
        process.crawl(crawler, base_url=args.base_url)
        process.start()
        window.stop()  # only counts if spider_closed never came
        stats = crawler.stats.get_stats() if crawler.stats else {}
        errors = stats.get("log_count/ERROR", 0) + stats.get("httperror/response_ignored_count", 0)
        reason = stats.get("finish_reason", "no finish_reason")
        status = "ok" if reason == "finished" and not errors else f"finish_reason {reason}, {errors} errors"
        pages = crawler.spider.pages
    except Exception as exc:  # still print the one line, with what went wrong
        window.stop()
        status, pages = f"{type(exc).__name__}: {exc}", 0
    report("scrapy", status, pages, window)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
