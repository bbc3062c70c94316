"""The SQLite frontier end to end: bounded memory with spills and refills, resume after a
stop, exact limits, and the one-crawl-per-database lock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Request, Response, Spider, filewatch
from scraper.demo_site import build_catalog, make_app, serve
from scraper.engine import CrawlResult, Engine
from scraper.errors import StorageError
from scraper.stats import Stats
from scraper.storage import Storage
from scraper.writer import Writer
from spiders.demo_shop import DemoShopSpider
from tests.conftest import make_settings, rows
from tests.integration.test_crawl import FaultySpider


def logged_shop(products: int, delay: float = 0.0) -> tuple[web.Application, Counter[str]]:
    """The demo shop with an access log (path -> times requested) and an optional delay."""
    app = make_app(build_catalog(products))
    hits: Counter[str] = Counter()

    @web.middleware
    async def log(request: web.Request, handler: Any) -> web.StreamResponse:
        hits[request.path] += 1
        if delay:
            await asyncio.sleep(delay)
        return await handler(request)  # type: ignore[no-any-return]

    app.middlewares.append(log)
    return app, hits


def engine(base_url: str, database: Path, **settings: Any) -> Engine:
    return Engine(spider=DemoShopSpider(base_url=base_url), settings=make_settings(**settings), database=database)


async def stopped_after(crawl: Engine, *, items: int) -> CrawlResult:
    """Run ``crawl`` until it has stored ``items`` items, then stop it as Ctrl-C would."""
    task = asyncio.create_task(crawl.run())
    while crawl.stats.get("items/stored") < items:  # noqa: ASYNC110 - polling a counter, no event exists
        await asyncio.sleep(0.02)
    crawl.stop("SIGINT")
    return await task


@pytest.mark.timeout(120)
async def test_a_tiny_buffer_spills_and_refills_and_still_gets_everything(database: Path) -> None:
    app, hits = logged_shop(500)
    async with serve(app) as base_url:
        result = await engine(base_url, database, frontier={"buffer": 8, "seen_cache": 16}).run()
    assert result.status == "finished"
    assert rows(database, "SELECT count(DISTINCT url) FROM product") == [(500,)]
    assert max(hits.values()) == 1  # nothing fetched twice, though the seen cache holds 16
    assert rows(database, "SELECT DISTINCT state, leased FROM scraper_requests") == [("done", 0)]


@pytest.mark.timeout(120)
async def test_a_stopped_crawl_resumes_without_refetching(database: Path) -> None:
    app, hits = logged_shop(400, delay=0.01)
    async with serve(app) as base_url:
        stopped = await stopped_after(engine(base_url, database, concurrency=4), items=60)
        done_before = {url for (url,) in rows(database, "SELECT url FROM scraper_requests WHERE state = 'done'")}
        hits_before = Counter(hits)
        resumed = await engine(base_url, database, concurrency=4).run()
    assert (stopped.status, stopped.reason) == ("interrupted", "SIGINT")
    assert resumed.resumed and resumed.crawl_id == stopped.crawl_id and resumed.status == "finished"
    refetched = [path for path, count in hits.items() if count > hits_before[path] and hits_before[path]]
    assert refetched == [] or refetched == ["/robots.txt"]
    assert all(base_url + path not in done_before for path in refetched)
    assert rows(database, "SELECT count(*), count(DISTINCT url) FROM product") == [(400, 400)]
    assert rows(database, "SELECT count(*) FROM scraper_crawls") == [(1,)]
    assert rows(database, "SELECT count(*) FROM scraper_requests WHERE state != 'done'") == [(0,)]


@pytest.mark.timeout(60)
async def test_a_resumed_crawl_counts_its_errors_from_their_rows(database: Path) -> None:
    """The statistics a resume goes on from are saved every 2 s, so they lag behind the error
    rows a killed run committed (31 counted against 64 rows) and run ahead of them after its
    writes failed. The summary's error counts went by them."""
    app, _ = logged_shop(300, delay=0.005)

    @web.middleware
    async def some_fail(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/product/") and request.path.split("-")[0].endswith("7"):  # one in ten
            raise web.HTTPInternalServerError()
        return await handler(request)  # type: ignore[no-any-return]

    app.middlewares.append(some_fail)
    async with serve(app) as base_url:
        await stopped_after(engine(base_url, database, concurrency=4, retry={"times": 0}), items=60)
        ((saved,),) = rows(database, "SELECT stats FROM scraper_crawls")
        lagging = {key: value for key, value in json.loads(saved).items() if not key.startswith("errors/")}
        with closing(sqlite3.connect(database)) as db, db:  # as saved before those errors
            db.execute("UPDATE scraper_crawls SET stats = ?", (json.dumps(lagging),))
        resumed = await engine(base_url, database, concurrency=4, retry={"times": 0}).run()
    by_kind = dict(rows(database, "SELECT stage || '/' || error_type, count(*) FROM scraper_errors GROUP BY 1"))
    assert by_kind["fetch/HttpStatusError"] > 20
    assert resumed.stats.under("errors") == by_kind
    ((saved,),) = rows(database, "SELECT stats FROM scraper_crawls")
    assert {key: value for key, value in json.loads(saved).items() if key.startswith("errors/")} == {
        f"errors/{kind}": count for kind, count in by_kind.items()
    }


class CrawlDelaySpider(FaultySpider):
    """The index of a site, then each page it links to, stored by URL."""

    name = "crawl_delay"

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        yield {"page": response.url}


@pytest.mark.timeout(60)
async def test_a_stop_sends_no_request_still_waiting_for_its_turn_and_the_resume_does(database: Path) -> None:
    """Handed out before robots.txt's Crawl-delay was known, requests waited for their turn and
    went out after the first Ctrl-C, one a delay apart (for up to close.drain_timeout)."""
    hits: Counter[str] = Counter()

    async def page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nCrawl-delay: 0.3\n")
        links = "".join(f'<a href="/p/{n}">{n}</a>' for n in range(12)) if request.path == "/" else ""
        return web.Response(text=f"<p>{links}</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    polite = make_settings(robots_txt=True, per_host={"concurrency": 8})
    async with serve(app) as base_url:
        crawl = Engine(spider=CrawlDelaySpider(base_url), settings=polite, database=database)
        task = asyncio.create_task(crawl.run())
        # a few pages in, with one handed out and waiting for its turn (stopped between a page
        # and the next hand-out, no request waited: a flaky 1 in 3)
        while crawl.stats.get("pages") < 3 or not crawl.limiter.state("127.0.0.1").waiting:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        crawl.stop("SIGINT")
        sent_before = hits.total()
        stopped = await task
        sent_after = hits.total() - sent_before
        unsent = rows(
            database, "SELECT count(*) FROM scraper_requests WHERE reason = 'not sent: the crawl is stopping'"
        )
        resumed = await Engine(spider=CrawlDelaySpider(base_url), settings=polite, database=database).run()
    assert stopped.status == "interrupted" and resumed.status == "finished"
    assert sent_after == 0 and unsent[0][0] >= 1
    assert rows(database, "SELECT count(*), count(DISTINCT page) FROM item") == [(12, 12)]
    assert max(count for path, count in hits.items() if path != "/robots.txt") == 1


@pytest.mark.timeout(120)
async def test_a_database_deleted_during_the_crawl_is_written_back_and_resumes(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crawl wrote on to the unlinked file, reported 'finished' and exit 0, and lost it all."""
    monkeypatch.setattr(filewatch, "_EVERY", 0.0)
    app, _ = logged_shop(300, delay=0.01)
    async with serve(app) as base_url:
        crawl = engine(base_url, database, concurrency=4)
        task = asyncio.create_task(crawl.run())
        while crawl.stats.get("items/stored") < 20:  # noqa: ASYNC110 - polling a counter, no event exists
            await asyncio.sleep(0.01)
        await asyncio.to_thread(lambda: [path.unlink() for path in database.parent.glob(database.name + "*")])
        stopped = await task
        ((status, stored),) = rows(database, "SELECT status, (SELECT count(*) FROM product) FROM scraper_crawls")
        resumed = await engine(base_url, database, concurrency=4).run()
    assert (stopped.status, stopped.reason) == (
        "interrupted",
        f"{database} was deleted or replaced while the crawl ran; what it committed is written back to {database}",
    )
    assert status == "interrupted" and stored >= 20
    assert resumed.resumed and resumed.status == "finished"
    assert rows(database, "SELECT count(*), count(DISTINCT url) FROM product") == [(300, 300)]


class OneSlowPageSpider(FaultySpider):
    """Four quick pages and one whose callback takes 30 s."""

    name = "one_slow_page"

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        if response.url.endswith("/slow"):
            await asyncio.sleep(30)
        yield {"page": response.url}


@pytest.mark.timeout(60)
async def test_a_page_abandoned_at_a_stop_is_not_counted(database: Path) -> None:
    """Counted when fetched, a page whose callback the drain timeout cut short was in the
    summary's pages (34 for 6 committed), though the resume fetches it again."""

    async def page(request: web.Request) -> web.Response:
        links = "".join(f'<a href="/{name}">{name}</a>' for name in ("a", "b", "c", "d", "slow"))
        return web.Response(text=links if request.path == "/" else "<p>page</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    async with serve(app) as base_url:
        settings = make_settings(close={"drain_timeout": 0.3})
        crawl = Engine(spider=OneSlowPageSpider(base_url), settings=settings, database=database)
        task = asyncio.create_task(crawl.run())
        while crawl.stats.get("pages") < 5:  # noqa: ASYNC110 - polling a counter, no event exists
            await asyncio.sleep(0.01)
        crawl.stop("SIGINT")
        stopped = await task
    assert stopped.status == "interrupted"
    assert rows(database, "SELECT count(*) FROM scraper_requests WHERE state = 'done'") == [(5,)]
    assert stopped.stats.get("pages") == 5  # the slow page, abandoned, is not among them


class RenamedCallbackSpider(DemoShopSpider):
    """The demo spider after its ``parse_product`` was renamed between two runs."""

    parse_product = None  # type: ignore[assignment]


@pytest.mark.timeout(120)
async def test_stored_requests_whose_callback_is_gone_fail_on_resume(database: Path) -> None:
    """Left pending, they would stay so for good while the crawl reports itself finished."""
    app, _ = logged_shop(200, delay=0.01)
    async with serve(app) as base_url:
        await stopped_after(engine(base_url, database, concurrency=4), items=30)
        ((orphaned,),) = rows(
            database, "SELECT count(*) FROM scraper_requests WHERE state = 'pending' AND callback = 'parse_product'"
        )
        spider = RenamedCallbackSpider(base_url=base_url)
        resumed = await Engine(spider=spider, settings=make_settings(concurrency=4), database=database).run()

    assert orphaned > 0 and resumed.resumed and resumed.status == "finished"
    assert rows(database, "SELECT count(*) FROM scraper_requests WHERE state = 'pending' OR leased = 1") == [(0,)]
    failed = rows(
        database, "SELECT count(*) FROM scraper_requests WHERE state = 'failed' AND callback = 'parse_product'"
    )
    assert failed == [(orphaned,)]
    errors = rows(database, "SELECT stage, error_type, count(*) FROM scraper_errors GROUP BY stage, error_type")
    assert errors == [("start", "RequestNotStorable", orphaned)]
    (message,) = rows(database, "SELECT message FROM scraper_errors LIMIT 1")[0]
    assert message.startswith("RenamedCallbackSpider has no callback 'parse_product' for ")
    assert resumed.stats.get("errors/start/RequestNotStorable") == orphaned


async def test_fresh_starts_a_new_crawl_instead_of_resuming(database: Path) -> None:
    app, _ = logged_shop(40)
    async with serve(app) as base_url:
        first = engine(base_url, database)
        first.stop("SIGINT")  # stops before the first hand-out: everything stays pending
        await first.run()
        second = await Engine(
            spider=DemoShopSpider(base_url=base_url), settings=make_settings(), database=database, fresh=True
        ).run()
    assert not second.resumed and second.crawl_id == 2
    assert rows(database, "SELECT id, status FROM scraper_crawls") == [(1, "interrupted"), (2, "finished")]
    assert rows(database, "SELECT count(*) FROM product WHERE _crawl_id = 2") == [(40,)]


@pytest.mark.timeout(120)
async def test_the_in_memory_frontier_starts_anew_and_its_own_unfinished_crawl_resumes_with_the_sqlite_one(
    database: Path,
) -> None:
    """With nothing kept to resume from, it once 'resumed' a crawl by fetching it again whole,
    adding the second run's counts to the first's (7,196 pages and 6,839 items stored for a
    5,000-product shop)."""
    app, _ = logged_shop(200, delay=0.01)
    notices: list[str] = []
    async with serve(app) as base_url:
        stopped = await stopped_after(
            engine(base_url, database, concurrency=4, frontier={"backend": "memory"}), items=30
        )
        memory = Engine(
            spider=DemoShopSpider(base_url=base_url),
            settings=make_settings(frontier={"backend": "memory"}),
            database=database,
            notify=notices.append,
        )
        second = await memory.run()
        third = await stopped_after(engine(base_url, database, concurrency=4, frontier={"backend": "memory"}), items=30)
        resumed = await engine(base_url, database).run()

    assert stopped.status == "interrupted" and not second.resumed and second.crawl_id == 2
    assert notices == [
        "crawl 2 of demo_shop started; unfinished crawl 1 is given up (the memory frontier cannot resume it)"
    ]
    assert second.stats.get("items/stored") == 200 and second.stats.get("pages") == 217  # the shop once, not added to
    assert third.crawl_id == 3 and resumed.resumed and resumed.crawl_id == 3 and resumed.status == "finished"
    assert rows(database, "SELECT id, status FROM scraper_crawls") == [
        (1, "interrupted"),
        (2, "finished"),
        (3, "finished"),
    ]
    assert rows(database, "SELECT count(*), count(DISTINCT url) FROM product WHERE _crawl_id = 3") == [(200, 200)]


class OtherShopSpider(DemoShopSpider):
    name = "other_shop"


@pytest.mark.timeout(120)
async def test_another_spider_cannot_take_over_an_unfinished_crawl_s_rows_in_a_shared_file(database: Path) -> None:
    """A request has one row in the file, whatever crawl made it: the second spider's crawl
    would take over the first's pending rows that it reaches too, and the first, resumed,
    would fetch one of them only if a page it has yet to fetch links to it again."""
    app, _ = logged_shop(200, delay=0.01)
    async with serve(app) as base_url:
        stopped = await stopped_after(engine(base_url, database, concurrency=4), items=30)
        other = Engine(spider=OtherShopSpider(base_url=base_url), settings=make_settings(), database=database)
        with pytest.raises(
            StorageError, match=r"holds crawl 1 of spider 'demo_shop', unfinished: finish it first"
        ) as said:
            await other.run()
        # the file it names (the crawl may have been given it with --db, not by its spider's setting)
        assert f"(python -m scraper run demo_shop --db {database})" in str(said.value)
        resumed = await engine(base_url, database).run()
        first = rows(database, "SELECT count(*), count(DISTINCT url) FROM product WHERE _crawl_id = 1")
        after = await Engine(
            spider=OtherShopSpider(base_url=base_url), settings=make_settings(), database=database
        ).run()

    assert stopped.status == "interrupted" and resumed.resumed and resumed.status == "finished"
    assert first == [(200, 200)]  # every product, by the first spider's crawl
    assert after.crawl_id == 2 and after.status == "finished"  # once the first is finished, the file is free
    assert rows(database, "SELECT id, spider FROM scraper_crawls") == [(1, "demo_shop"), (2, "other_shop")]


class SharedAuthorSpider(Spider):
    """Each of 20 quotes passes its text to one author page that they all share, the way a
    Scrapy spider hands data on: ``dont_filter=True`` and ``cb_kwargs``."""

    name = "shared_author"
    base_url = ""  # given as an argument

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for n in range(20):
            yield Request(f"{self.base_url}/author", self.parse_author, cb_kwargs={"quote": n}, dont_filter=True)

    async def parse_author(self, response: Response, quote: int) -> AsyncIterator[Any]:
        yield {"quote": quote}


async def stopped_then_resumed(
    spider_class: type[Spider], database: Path, *, slow: str
) -> tuple[CrawlResult, CrawlResult, Counter[str]]:
    """``spider_class`` on a site with a page at every path (those starting with ``slow`` take
    50 ms, one at a time), stopped after 3 items, then resumed; and each path's hits."""
    hits: Counter[str] = Counter()

    async def page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        await asyncio.sleep(0.05 if request.path.startswith(slow) else 0)
        return web.Response(text="<p>page</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    async with serve(app) as base_url:
        settings = make_settings(per_host={"concurrency": 1})
        crawl = Engine(spider=spider_class(base_url=base_url), settings=settings, database=database)
        stopped = await stopped_after(crawl, items=3)
        resumed = await Engine(spider=spider_class(base_url=base_url), settings=settings, database=database).run()
    assert stopped.status == "interrupted" and resumed.resumed and resumed.status == "finished"
    return stopped, resumed, hits


@pytest.mark.timeout(60)
async def test_every_dont_filter_copy_of_a_request_survives_a_stop(database: Path) -> None:
    """The copies shared one row: the first done marked it done, each overwrote its cb_kwargs,
    and the copies still pending, held only in memory, were lost on resume (18 of 20 stored)."""
    await stopped_then_resumed(SharedAuthorSpider, database, slow="/author")
    assert sorted(quote for (quote,) in rows(database, "SELECT quote FROM item")) == list(range(20))
    assert rows(
        database, "SELECT count(*), count(DISTINCT cb_kwargs) FROM scraper_requests WHERE url LIKE '%/author'"
    ) == [(20, 20)]


class DontFilterSeedSpider(Spider):
    """A start page fetched with ``dont_filter=True`` (as Scrapy spiders often do), which stores
    an unkeyed item and links to 20 slow pages."""

    name = "dont_filter_seed"
    base_url = ""  # given as an argument

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/", dont_filter=True)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"seed": response.url}
        for n in range(20):
            yield Request(f"{self.base_url}/page/{n}", self.parse_page)

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        yield {"page": response.url}


@pytest.mark.timeout(60)
async def test_a_dont_filter_start_request_is_not_fetched_again_on_resume(database: Path) -> None:
    """Admitted again by every resume, the start page was fetched again, and its unkeyed items
    stored again (four rows after three kills)."""
    _, _, hits = await stopped_then_resumed(DontFilterSeedSpider, database, slow="/page/")
    assert hits["/"] == 1
    assert rows(database, "SELECT count(seed), count(page) FROM item") == [(1, 20)]


@pytest.mark.timeout(120)
async def test_max_pages_counts_the_pages_fetched_before_a_resume(database: Path) -> None:
    """Each resume had the whole quota again (1,702 pages for max_pages 1,001 after three kills)."""
    app, _ = logged_shop(300, delay=0.01)
    async with serve(app) as base_url:
        stopped = await stopped_after(engine(base_url, database, concurrency=4, close={"max_pages": 60}), items=10)
        resumed = await engine(base_url, database, concurrency=4, close={"max_pages": 60}).run()
    assert stopped.status == "interrupted" and 10 <= stopped.stats.get("pages") < 60
    assert resumed.resumed and (resumed.status, resumed.reason) == ("finished", "max_pages")
    assert rows(database, "SELECT count(*) FROM scraper_requests WHERE state IN ('done', 'failed')") == [(60,)]
    assert resumed.stats.get("pages") == 60


async def test_max_pages_counts_the_retries_made_before_a_resume(database: Path) -> None:
    """The resume counted the pages done before it, not the fetches: each retry before the
    stop was quota given back."""
    app, _ = logged_shop(300, delay=0.01)

    @web.middleware
    async def half_fail(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/product/") and int(request.path.split("/")[2].split("-")[0]) % 2:
            raise web.HTTPInternalServerError()
        return await handler(request)  # type: ignore[no-any-return]

    app.middlewares.append(half_fail)
    settings = {
        "concurrency": 4,
        "close": {"max_pages": 60},
        "retry": {"times": 1, "backoff": 0},
        "breaker": {"failures": 1000},  # half the pages fail: the host must not rest
    }
    async with serve(app) as base_url:
        await stopped_after(engine(base_url, database, **settings), items=10)
        ((before,),) = rows(database, "SELECT sum(attempts) FROM scraper_requests WHERE state != 'done'")
        resumed = await engine(base_url, database, **settings).run()
    assert before > 0  # failed or parked: their fetches count
    assert (resumed.status, resumed.reason) == ("finished", "max_pages")
    assert rows(database, "SELECT sum(attempts) FROM scraper_requests") == [(60,)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("concurrency", [1, 8, 32])
async def test_max_items_stores_exactly_that_many(database: Path, concurrency: int) -> None:
    """At concurrency 1 the crawl then slept out its whole drain_timeout with nothing in
    flight (the last request's end was missed as the queue was handed back): it would hang."""
    app, _ = logged_shop(300)
    async with serve(app) as base_url:
        crawl = engine(base_url, database, concurrency=concurrency, close={"max_items": 100, "drain_timeout": 3600})
        result = await crawl.run()
    assert (result.status, result.reason) == ("finished", "max_items")
    assert rows(database, "SELECT count(*) FROM product") == [(100,)]
    assert result.stats.get("items/stored") == 100


async def test_max_items_reached_by_the_last_commits_is_the_reason(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer slower than the crawl: every page is done before any item is committed.
    The limit is reached by the commits written at the end, and the crawl must say so."""
    write = Writer._write

    async def slow_write(self: Writer, batch: list[Any]) -> None:
        await asyncio.sleep(0.3)
        await write(self, batch)

    monkeypatch.setattr(Writer, "_write", slow_write)
    app, _ = logged_shop(150)
    async with serve(app) as base_url:
        result = await engine(base_url, database, close={"max_items": 100}).run()
    assert (result.status, result.reason) == ("finished", "max_items")
    assert rows(database, "SELECT count(*) FROM product") == [(100,)]
    assert rows(database, "SELECT status, finish_reason FROM scraper_crawls") == [("finished", "max_items")]


class MetaSpider(Spider):
    name = "meta"

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/", meta={"fine": [1, 2]})
        yield Request(f"{self.base_url}/category/books/", meta={"handle": object()})

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "fine": response.meta.get("fine")}


async def test_a_request_whose_meta_cannot_be_stored_is_an_error_naming_the_key(database: Path) -> None:
    app, hits = logged_shop(10)
    async with serve(app) as base_url:
        result = await Engine(spider=MetaSpider(base_url), settings=make_settings(), database=database).run()
    assert result.status == "finished"
    [(stage, message)] = rows(database, "SELECT stage, message FROM scraper_errors")
    assert stage == "start" and "meta['handle']" in message and "/category/books/" in message
    assert "/category/books/" not in hits
    assert rows(database, "SELECT fine FROM item") == [("[1, 2]",)]


async def test_a_second_crawl_on_a_live_database_is_refused(database: Path) -> None:
    async with Storage(database, stats=Stats()):
        with pytest.raises(StorageError, match="in use by another crawl"):
            async with Storage(database, stats=Stats()):
                pass
    async with Storage(database, stats=Stats()):  # released on close: the next one may open it
        pass


async def test_a_symlink_to_a_live_database_is_the_same_database(database: Path, tmp_path: Path) -> None:
    """The lock was named after the path given: through a symlink, a second crawl took a lock
    of its own and both wrote one crawl."""
    link = tmp_path / "link.db"
    link.symlink_to(database)
    async with Storage(database, stats=Stats()):
        with pytest.raises(StorageError, match="in use by another crawl"):
            async with Storage(link, stats=Stats()):
                pass
