"""End-to-end crawls of real local aiohttp sites, checked in the SQLite file."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import pytest
from aiohttp import web
from rich.console import Console

from scraper import Item, Request, Response, Spider
from scraper.demo_site import build_catalog, make_app, serve
from scraper.engine import CrawlResult, Engine
from scraper.errors import ConfigError
from scraper.progress import summary
from spiders.demo_shop import DemoShopSpider
from tests.conftest import make_settings, rows
from tests.integration.stages import CountsLiveDocuments

DEMO_PIPELINES = ["pipelines.clean:Normalize", "pipelines.dedup:DedupByKey"]


async def crawl(spider: Spider, database: Path, **settings: Any) -> CrawlResult:
    return await Engine(spider=spider, settings=make_settings(**settings), database=database).run()


@pytest.fixture
async def shop_2000() -> AsyncIterator[tuple[str, int]]:
    catalog = build_catalog(2000)
    async with serve(make_app(catalog)) as base_url:
        yield base_url, len(catalog.products)


async def test_an_engine_runs_one_crawl(database: Path) -> None:
    """Run again, it carried the first crawl's statistics into the second (14 pages for 7 fetched),
    and the first result's statistics changed with it."""
    catalog = build_catalog(5)
    async with serve(make_app(catalog)) as base_url:
        engine = Engine(spider=DemoShopSpider(base_url=base_url), settings=make_settings(), database=database)
        first = await engine.run()
        pages = first.stats.get("pages")
        with pytest.raises(RuntimeError, match=r"^an Engine runs one crawl: make another Engine for the next$"):
            await engine.run()
    assert first.status == "finished" and first.stats.get("pages") == pages


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_2000_product_crawl_stores_every_item_once_with_types(
    shop_2000: tuple[str, int], database: Path, backend: str
) -> None:
    """Both frontiers: the in-memory one keeps its pending requests and seen-set in memory,
    but records every request's row and outcome all the same."""
    base_url, products = shop_2000
    result = await crawl(
        DemoShopSpider(base_url=base_url), database, pipelines=DEMO_PIPELINES, frontier={"backend": backend}
    )

    assert (result.status, result.reason) == ("finished", "finished")
    assert rows(database, "SELECT count(*), count(DISTINCT url) FROM product") == [(products, products)]
    assert rows(
        database,
        "SELECT DISTINCT typeof(price), typeof(rating), typeof(in_stock), typeof(stock), typeof(title) FROM product",
    ) == [("real", "integer", "integer", "integer", "text")]
    assert rows(database, "SELECT count(*) FROM product WHERE title != trim(title) OR title LIKE '%  %'") == [(0,)]
    states = dict(rows(database, "SELECT state, count(*) FROM scraper_requests GROUP BY state"))
    assert states == {"done": result.stats.get("pages")}
    assert result.stats.get("pages") > products  # product pages plus home and listings
    assert rows(database, "SELECT count(*) FROM scraper_errors") == [(0,)]


@pytest.mark.timeout(120)
async def test_hundreds_of_workers_store_every_item_once(shop_2000: tuple[str, int], database: Path) -> None:
    """Past 256 workers the loop budget is tighter and the workers' stop signals go out in
    bursts: neither may lose or repeat a page."""
    base_url, products = shop_2000
    result = await crawl(DemoShopSpider(base_url=base_url), database, concurrency=300, per_host={"concurrency": 300})

    assert (result.status, result.reason) == ("finished", "finished")
    assert rows(database, "SELECT count(*), count(DISTINCT url) FROM product") == [(products, products)]
    assert dict(rows(database, "SELECT state, count(*) FROM scraper_requests GROUP BY state")) == {
        "done": result.stats.get("pages")
    }


async def test_a_page_s_parsed_document_is_not_kept_past_its_callback(database: Path) -> None:
    """Lexbor holds ~1.2 MiB of C heap for each live document: kept while the worker awaited
    the pipeline and the database after the callback, up to one a worker lived at once, and a
    crawl's peak RSS grew by 35 MB once its seen-set asked the database for every page."""
    CountsLiveDocuments.seen.clear()
    catalog = build_catalog(20)
    async with serve(make_app(catalog)) as base_url:
        result = await crawl(
            DemoShopSpider(base_url=base_url), database, pipelines=["tests.integration.stages:CountsLiveDocuments"]
        )
    assert result.stats.get("items/stored") == len(catalog.products)
    assert CountsLiveDocuments.seen == [0] * len(catalog.products)


@pytest.mark.timeout(120)
async def test_rerun_does_not_duplicate_keyed_items(shop_2000: tuple[str, int], database: Path) -> None:
    base_url, products = shop_2000
    await crawl(DemoShopSpider(base_url=base_url), database, close={"max_pages": 300})
    second = await crawl(DemoShopSpider(base_url=base_url), database)
    assert second.status == "finished"
    assert rows(database, "SELECT count(*), count(DISTINCT url), max(_crawl_id) FROM product") == [
        (products, products, 2)
    ]
    assert rows(database, "SELECT id, status FROM scraper_crawls") == [(1, "finished"), (2, "finished")]


class Thing(Item):
    key: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    size: int


class FaultySpider(Spider):
    """Home links to good pages, a page whose callback raises, a page with one invalid item
    among valid ones, and a URL that always answers 500."""

    name = "faulty"

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for link in response.css("a"):
            yield response.follow(link, callback=self.parse_page)

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        if response.url.endswith("/boom"):
            yield Thing(name="never stored", size=1)
            raise RuntimeError("spider bug on this page")
        for node in response.css("li"):
            yield Thing(name=node.text(), size=node.attributes.get("data-size"))  # type: ignore[arg-type]


def faulty_site() -> tuple[web.Application, dict[str, int]]:
    hits: dict[str, int] = {}

    async def page(request: web.Request) -> web.Response:
        hits[request.path] = hits.get(request.path, 0) + 1
        bodies = {
            "/": '<a href="/good">g</a><a href="/boom">b</a><a href="/invalid">i</a><a href="/down">d</a>',
            "/good": '<li data-size="1">alpha</li><li data-size="2">beta</li>',
            "/boom": "<p>boom</p>",
            "/invalid": '<li data-size="3">gamma</li><li data-size="huge">delta</li><li data-size="4">eps</li>',
        }
        if request.path == "/down":
            return web.Response(status=500, text="down")
        if request.path not in bodies:
            return web.Response(status=404, text="not here")  # robots.txt too: allow all
        return web.Response(text=bodies[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app, hits


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_failures_become_error_rows_and_the_crawl_finishes(database: Path, backend: str) -> None:
    app, hits = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(
            FaultySpider(base_url), database, retry={"times": 2, "backoff": 0}, frontier={"backend": backend}
        )

    assert result.status == "finished"
    errors = rows(database, "SELECT stage, error_type, url FROM scraper_errors ORDER BY stage")
    assert errors == [
        ("fetch", "HttpStatusError", f"{base_url}/down"),
        ("parse", "RuntimeError", f"{base_url}/boom"),
        ("validate", "ValidationError", f"{base_url}/invalid"),
    ]
    # the page with one invalid item keeps its valid ones; the raising page stores nothing
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",), ("eps",), ("gamma",)]
    assert hits["/down"] == 3  # first try plus two retries
    states = dict(rows(database, "SELECT url, state FROM scraper_requests"))
    assert states[f"{base_url}/down"] == "failed" and states[f"{base_url}/boom"] == "failed"
    assert states[f"{base_url}/good"] == "done" and states[f"{base_url}/invalid"] == "done"
    assert result.stats.get("errors/fetch/HttpStatusError") == 1


async def test_debug_logging_says_what_became_of_each_request(database: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scraper.worker")
    app, _ = faulty_site()
    async with serve(app) as base_url:
        await crawl(FaultySpider(base_url), database, retry={"times": 0})

    lines = [record.getMessage() for record in caplog.records if record.name == "scraper.worker"]
    assert f"done (200) <GET {base_url}/>: 0 items, 4 new requests" in lines
    assert f"done (200) <GET {base_url}/good>: 2 items, 0 new requests" in lines
    assert f"done (200) <GET {base_url}/invalid>: 2 items, 0 new requests" in lines
    assert f"failed (500) <GET {base_url}/down> (HTTP 500): 0 items, 0 new requests" in lines
    assert f"  fetch error at {base_url}/down: HttpStatusError: HTTP 500" in lines
    assert f"  parse error at {base_url}/boom: RuntimeError: spider bug on this page" in lines


async def test_a_failing_pipeline_stage_fails_its_item_only(database: Path) -> None:
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(
            FaultySpider(base_url), database, retry={"times": 0}, pipelines=["tests.integration.stages:PickyStage"]
        )

    assert result.status == "finished"
    # /good: alpha stored, beta dropped; /invalid: gamma stored, delta invalid, eps failed in the stage
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("gamma",)]
    errors = rows(database, "SELECT stage, error_type, message, url FROM scraper_errors WHERE stage = 'pipeline'")
    assert errors == [("pipeline", "KeyError", "PickyStage: 'eps'", f"{base_url}/invalid")]
    assert result.stats.get("items/dropped") == 1
    assert result.stats.get("errors/pipeline/KeyError") == 1
    assert result.stats.get("items/stored") == 2
    console = Console(width=200, record=True)  # why items were dropped: it was said only at DEBUG
    console.print(summary(spider="faulty", status="finished", reason="finished", stats=result.stats, database=database))
    assert re.search(
        r"dropped +1 items \(by pipeline stages\) *\n +first: PickyStage: beta is not wanted", console.export_text()
    )


async def test_links_past_max_per_page_are_counted_not_followed(database: Path) -> None:
    app, hits = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(FaultySpider(base_url), database, retry={"times": 0}, links={"max_per_page": 2})

    assert result.status == "finished"
    followed = {url for (url,) in rows(database, "SELECT url FROM scraper_requests")} - {f"{base_url}/"}
    assert followed == {f"{base_url}/good", f"{base_url}/boom"}  # the home page's first two links
    assert "/invalid" not in hits and "/down" not in hits
    assert result.stats.get("requests/filtered/links_per_page") == 2


async def test_links_that_cannot_be_parsed_are_filtered_and_the_page_keeps_the_rest(database: Path) -> None:
    home = (
        '<html><head><base href="http://[unclosed/"></head><body>'  # ignored, as browsers do
        '<a href="http://[bad/x">v6</a><a href="//host:port/">port</a><a href="https://h:99999/">range</a>'
        '<a href="good">g</a></body></html>'
    )
    bodies = {"/": home, "/good": '<li data-size="1">alpha</li>'}

    async def page(request: web.Request) -> web.Response:
        if request.path not in bodies:
            return web.Response(status=404)  # robots.txt: allow all
        return web.Response(text=bodies[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    async with serve(app) as base_url:
        result = await crawl(FaultySpider(base_url), database, retry={"times": 0})

    assert result.status == "finished"
    assert rows(database, "SELECT stage, message FROM scraper_errors") == []
    assert rows(database, "SELECT name FROM thing") == [("alpha",)]  # the link after the bad ones
    assert result.stats.get("requests/filtered/malformed") == 3


class Halt(BaseException):
    """A library's own BaseException subclass, as some raise to unwind."""


class BrokenStartSpider(FaultySpider):
    """Its start generator yields one page, then breaks; its closing hook breaks too."""

    name = "broken_start"
    error: BaseException = RuntimeError("start list unreadable")

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/good", callback=self.parse_page)
        raise self.error

    async def closed(self, reason: str) -> None:
        raise RuntimeError("cannot say goodbye")


@pytest.mark.parametrize(
    "error", [RuntimeError("start list unreadable"), Halt("start list unreadable")], ids=["Exception", "BaseException"]
)
async def test_a_broken_start_generator_or_closing_hook_does_not_end_the_crawl(
    database: Path, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    """A BaseException subclass (a library's) from the start generator ended the crawl, failed."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        spider = BrokenStartSpider(base_url)
        spider.error = error
        result = await crawl(spider, database, pipelines=["tests.integration.stages:FailsToClose"])

    assert (result.status, result.reason) == ("finished", "finished")
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",)]
    errors = rows(database, "SELECT stage, error_type, message, url FROM scraper_errors ORDER BY id")
    # the closing hooks' failures are error rows too: they were only lines in the log
    assert errors == [
        ("start", type(error).__name__, "start list unreadable", None),
        ("pipeline", "StageFailed", "FailsToClose.close(): OSError: cannot flush the export file", None),
        ("parse", "RuntimeError", "BrokenStartSpider.closed() failed: cannot say goodbye", None),
    ]
    assert result.stats.get("start/raised") == 1  # what the exit code and the summary go by
    assert result.stats.get("errors/pipeline/StageFailed") == 1 and result.stats.get("errors/parse/RuntimeError") == 1
    assert "FailsToClose.close(): OSError: cannot flush" in caplog.text
    traces = rows(database, "SELECT traceback FROM scraper_errors WHERE stage = 'pipeline'")
    assert "in close" in traces[0][0] and "OSError: cannot flush" in traces[0][0]
    assert "BrokenStartSpider.closed() failed" in caplog.text


class PlainHooksSpider(FaultySpider):
    """Hooks written as in Scrapy: plain ``def``s (Scrapy's ``closed(reason)`` is one)."""

    name = "plain_hooks"

    def opened(self) -> None:  # type: ignore[override]
        self.calls = ["opened"]

    def closed(self, reason: str) -> None:  # type: ignore[override]
        self.calls.append(f"closed: {reason}")

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/good", callback=self.parse_page)


async def test_a_spider_s_hooks_may_be_plain_functions(database: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A plain ``def closed(self, reason)`` once failed the crawl before it began: opened() of
    the same kind returned None, which was awaited."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        spider = PlainHooksSpider(base_url)
        result = await crawl(spider, database)

    assert (result.status, result.reason) == ("finished", "finished")
    assert spider.calls == ["opened", "closed: finished"]
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",)]
    assert "closed() failed" not in caplog.text


class BlockingSpider(FaultySpider):
    """Its callback sleeps as a port with requests.get() or time.sleep() would."""

    name = "blocking"

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        if response.url.endswith("/good"):
            time.sleep(0.8)  # noqa: ASYNC251 - the blocking call the crawl must notice
        async for output in super().parse_page(response):
            yield output


async def test_code_that_holds_the_event_loop_is_noticed_and_summarised(
    database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(BlockingSpider(base_url), database, retry={"times": 0})

    assert result.status == "finished"
    assert result.stats.get("loop/stalls") >= 1 and result.stats.get("loop/worst_stall_ms") >= 500
    assert "the event loop was held for" in caplog.text
    console = Console(width=200, record=True)
    console.print(
        summary(spider="blocking", status="finished", reason="finished", stats=result.stats, database=database)
    )
    assert re.search(r"loop +held (once|\d+ times), the worst \d\.\ds: blocking code", console.export_text())


class PlainStartSpider(FaultySpider):
    """start_requests written as in Scrapy: a plain generator."""

    def start_requests(self) -> Iterator[Request]:  # type: ignore[override]
        yield Request(f"{self.base_url}/good", callback=self.parse_page)


class ListStartSpider(FaultySpider):
    def start_requests(self) -> list[Request]:  # type: ignore[override]
        return [Request(f"{self.base_url}/good", callback=self.parse_page)]


class AwaitedListStartSpider(FaultySpider):
    async def start_requests(self) -> list[Request]:  # type: ignore[override]
        return [Request(f"{self.base_url}/good", callback=self.parse_page)]


class NestedStartSpider(FaultySpider):
    """Requests handed on in lists, as ``yield response.follow_all(...)`` does in a callback."""

    async def start_requests(self) -> AsyncIterator[Any]:
        yield [Request(f"{self.base_url}/good", callback=self.parse_page)]


class PlainNestedStartSpider(FaultySpider):
    def start_requests(self) -> Iterator[Any]:  # type: ignore[override]
        yield (Request(f"{self.base_url}/good", callback=self.parse_page),)


class DelegatingStartSpider(FaultySpider):
    """Start requests from an async generator of the spider's own, handed on as a callback can."""

    async def start_requests(self) -> AsyncIterator[Any]:
        yield self.seeds()

    async def seeds(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/good", callback=self.parse_page)


class StrayStartSpider(FaultySpider):
    async def start_requests(self) -> AsyncIterator[Any]:
        yield Thing(name="seed", size=1)
        yield f"{self.base_url}/boom"
        yield None
        yield Request(f"{self.base_url}/good", callback=self.parse_page)


@pytest.mark.parametrize(
    "spider_class",
    [
        PlainStartSpider,
        ListStartSpider,
        AwaitedListStartSpider,
        NestedStartSpider,
        PlainNestedStartSpider,
        DelegatingStartSpider,
    ],
)
async def test_start_requests_may_be_a_plain_generator_or_return_a_list(database: Path, spider_class: type) -> None:
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(spider_class(base_url), database)

    assert result.status == "finished"
    assert rows(database, "SELECT stage, message FROM scraper_errors") == []
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",)]


async def test_a_start_output_that_is_not_a_request_is_an_error_row_and_seeding_goes_on(database: Path) -> None:
    """An item or a URL string among the start requests once ended the crawl with a traceback."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(StrayStartSpider(base_url), database)

    assert result.status == "finished"
    assert rows(database, "SELECT stage, url, message FROM scraper_errors ORDER BY id") == [
        ("start", None, "start_requests() yielded Thing, not a Request"),
        ("start", f"{base_url}/boom", "start_requests() yielded str, not a Request: yield Request(url) for a URL"),
    ]
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",)]
    assert result.stats.get("errors/start/TypeError") == 2


class UnfetchableStartSpider(FaultySpider):
    async def start_requests(self) -> AsyncIterator[Any]:
        yield Request("htp://127.0.0.1/catalog")  # a typo in the scheme
        yield Request("http://127.0.0.1:0/catalog")  # the port of a forgotten -a port=
        yield Request(f"{self.base_url}/good", callback=self.parse_page)


async def test_a_start_request_no_crawl_fetches_is_an_error_row_naming_it(database: Path) -> None:
    """Only counted as filtered, as a page's mailto: link is, it ended the crawl with 0 pages,
    "errors none" and no row anywhere naming the URL."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(UnfetchableStartSpider(base_url), database)

    assert result.status == "finished"
    assert rows(database, "SELECT stage, url, error_type, message FROM scraper_errors ORDER BY id") == [
        ("start", "htp://127.0.0.1/catalog", "ValueError",
         "'htp://127.0.0.1/catalog' is not fetched: its scheme is not http or https (filtered as 'scheme')"),
        ("start", "http://127.0.0.1:0/catalog", "ValueError",
         "'http://127.0.0.1:0/catalog' is not fetched: it has no host, or its host or port cannot be parsed "
         "(a port of 0 or past 65535) (filtered as 'malformed')"),
    ]  # fmt: skip
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",)]
    assert result.stats.get("errors/start/ValueError") == 2


class SlowSeedSpider(Spider):
    """A start generator that waits between its requests, as one reading a slow seed API does."""

    name = "slow_seed"

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.parsed_while_seeding: list[str] = []
        self.seeding = True

    async def start_requests(self) -> AsyncIterator[Request]:
        for n in range(3):
            yield Request(f"{self.base_url}/good?n={n}")
            await asyncio.sleep(0.4)
        self.seeding = False

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if self.seeding:
            self.parsed_while_seeding.append(response.url)
        yield {"url": response.url}


async def test_start_requests_are_fetched_while_a_slow_start_generator_waits(database: Path) -> None:
    """Admitted 100 at a time, none was fetched until the generator had yielded 100 or ended."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        spider = SlowSeedSpider(base_url)
        result = await crawl(spider, database)
    assert result.status == "finished" and rows(database, "SELECT count(*) FROM item") == [(3,)]
    assert spider.parsed_while_seeding == [f"{base_url}/good?n=0", f"{base_url}/good?n=1", f"{base_url}/good?n=2"]


class PollingSeedSpider(SlowSeedSpider):
    """A start generator that waits a minute for its next request, as one polling a queue."""

    name = "polling_seed"

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/good?n=0")
        await asyncio.sleep(60)
        yield Request(f"{self.base_url}/good?n=1")


@pytest.mark.timeout(30)
async def test_a_stop_does_not_wait_for_a_start_generator_that_waits(database: Path) -> None:
    """The first Ctrl-C waited for the generator's next yield, past close.drain_timeout."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        engine = Engine(spider=PollingSeedSpider(base_url), settings=make_settings(), database=database)
        task = asyncio.create_task(engine.run())
        while engine.stats.get("pages") < 1:  # noqa: ASYNC110 - polling a counter, no event exists
            await asyncio.sleep(0.01)
        engine.stop("SIGINT")
        started = time.monotonic()
        result = await task
    assert time.monotonic() - started < 5
    assert (result.status, result.reason) == ("interrupted", "SIGINT")
    assert rows(database, "SELECT count(*) FROM item") == [(1,)]
    assert rows(database, "SELECT count(*) FROM scraper_errors") == [(0,)]  # a stop, not a failure


class PausingSeedSpider(SlowSeedSpider):
    """Three requests, a pause longer than the stall timeout before each of the last two."""

    name = "pausing_seed"

    async def start_requests(self) -> AsyncIterator[Request]:
        for n in range(3):
            yield Request(f"{self.base_url}/good?n={n}")
            await asyncio.sleep(1.5)


async def test_a_pause_with_nothing_in_flight_is_not_a_stall(database: Path) -> None:
    """The stall clock ran on while nothing was in flight, so the first request after a pause
    longer than stall_timeout stopped the crawl as 'stalled' at once."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(PausingSeedSpider(base_url), database, close={"stall_timeout": 1.0})
    assert (result.status, result.reason) == ("finished", "finished")
    assert rows(database, "SELECT count(*) FROM item") == [(3,)]


class BadStartUrlSpider(Spider):
    name = "bad_start_url"
    # the first is fine: Request() drops the spaces around a URL, and so does the check
    start_urls = ["  http://127.0.0.1:1/  ", "www.example.com/no-scheme", "http://127.0.0.1:1/later"]


class OneStringSpider(Spider):
    name = "one_string"
    allowed_domains = "example.com"  # type: ignore[assignment]


def test_a_spider_s_start_urls_and_domains_are_checked_before_any_io(database: Path) -> None:
    with pytest.raises(ConfigError, match=r"^BadStartUrlSpider.start_urls\[1\]: not an absolute URL: 'www.example"):
        Engine(spider=BadStartUrlSpider(), settings=make_settings(), database=database)
    with pytest.raises(ConfigError, match=r"^OneStringSpider.allowed_domains must be a list of strings, not one"):
        Engine(spider=OneStringSpider(), settings=make_settings(), database=database)
    assert not database.exists()


class NoParseSpider(Spider):
    name = "no_parse"
    start_urls = ["http://127.0.0.1:1/"]

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}


class NothingToCrawlSpider(Spider):
    name = "nothing_to_crawl"


class OwnStartSpider(Spider):
    """No start_urls and no parse(): its start requests name their callbacks."""

    name = "own_start"

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request("http://127.0.0.1:1/", callback=self.parse_page)

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}


class UnnamedSpider(Spider):
    start_urls = ["http://127.0.0.1:1/"]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}


def test_a_spider_without_a_name_is_refused(database: Path) -> None:
    """Embedded, it crawled, its crawls recorded under the spider ''."""
    with pytest.raises(
        ConfigError, match=r"^UnnamedSpider has no name: give it name = '\.\.\.' \(it names its crawls\)$"
    ):
        Engine(spider=UnnamedSpider(), settings=make_settings(), database=database)


def test_a_spider_with_nothing_to_crawl_or_no_parse_for_its_start_urls_is_refused(database: Path) -> None:
    """Each crawled and exited 0: with 0 pages, or with one NotImplementedError per start URL."""
    with pytest.raises(ConfigError, match=r"^NoParseSpider has start_urls but no parse\(\), the callback of their"):
        Engine(spider=NoParseSpider(), settings=make_settings(), database=database)
    with pytest.raises(ConfigError, match=r"^NothingToCrawlSpider has nothing to crawl: give it start_urls or a start"):
        Engine(spider=NothingToCrawlSpider(), settings=make_settings(), database=database)
    Engine(spider=OwnStartSpider(), settings=make_settings(), database=database)  # its own start_requests()
    assert not database.exists()


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("127.0.0.1:8765", "'127.0.0.1:8765' is not a domain name: give the host alone, '127.0.0.1'"),
        ("https://shop.example.com/", "'https://shop.example.com/' is not a domain name: give the host alone, "),
        ("shop.example.com/books", "'shop.example.com/books' is not a domain name: give the host alone, 'shop"),
        ("", "'' is not a domain name"),
    ],
)
def test_an_allowed_domain_that_is_a_url_or_has_a_port_is_refused_before_any_io(
    database: Path, domain: str, message: str
) -> None:
    class Scoped(Spider):
        name = "scoped"
        allowed_domains = ["example.org", domain]

    with pytest.raises(ConfigError, match=rf"^Scoped.allowed_domains\[1\]: {re.escape(message)}"):
        Engine(spider=Scoped(), settings=make_settings(), database=database)
    assert not database.exists()


async def test_max_errors_stops_the_crawl_early(database: Path) -> None:
    app, hits = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(
            FaultySpider(base_url), database, concurrency=1, retry={"times": 0}, close={"max_errors": 1}
        )

    assert (result.status, result.reason) == ("finished", "max_errors")
    assert result.stats.get("errors/parse/RuntimeError") == 1  # /boom, the first error
    assert "/down" not in hits  # the home page's last link, not yet handed out at the first error


class Touchy(Item):
    """Its serializer refuses one value: the item cannot become a row."""

    name: str
    tags: list[str] = []

    @pydantic.field_serializer("name")
    def _name(self, name: str) -> str:
        if name == "beta":
            raise ValueError("beta cannot be written")
        return name


class TouchySpider(FaultySpider):
    name = "touchy"

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        for node in response.css("li"):
            yield Touchy(name=node.text())


async def test_an_item_that_cannot_become_a_row_fails_alone(database: Path) -> None:
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(TouchySpider(base_url), database, retry={"times": 0})

    assert result.status == "finished"
    assert rows(database, "SELECT name FROM touchy ORDER BY name") == [("alpha",), ("delta",), ("eps",), ("gamma",)]
    errors = rows(database, "SELECT stage, error_type, url FROM scraper_errors WHERE stage = 'validate'")
    assert errors == [("validate", "PydanticSerializationError", f"{base_url}/good")]


class Slugged(Item):
    """A computed field is part of the row: it needs its column too."""

    name: str

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def slug(self) -> str:
        return self.name.upper()


class Loose(Item):
    """A model that allows extra fields: each new one is a column, typed by its value."""

    model_config = pydantic.ConfigDict(extra="allow")
    name: str


class ShapesSpider(FaultySpider):
    """Items whose columns are not just their fields, and dicts whose keys SQLite reads as
    one column (in any case) or as the framework's own."""

    name = "shapes"

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        for number, node in enumerate(response.css("li")):
            yield Slugged(name=node.text())
            yield Loose(name=node.text(), size=int(node.attributes["data-size"] or 0) if number else None)
            yield {"Name": node.text()} if number else {"name": node.text(), "SIZE": 1}
        yield {"_URL": "mine"}
        yield {"a": 1, "A": 2}


async def test_items_with_computed_extra_or_differently_cased_columns_are_stored(database: Path) -> None:
    """Each of these once stopped the whole crawl at its first transaction ("table has no column
    named slug", "duplicate column name: name") and lost every page in it."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(ShapesSpider(base_url), database, retry={"times": 0})

    assert result.status == "finished"
    assert rows(database, "SELECT name, slug FROM slugged ORDER BY name") == [("alpha", "ALPHA"), ("beta", "BETA")]
    assert rows(database, "SELECT name, size, typeof(size) FROM loose ORDER BY name") == [
        ("alpha", None, "null"),
        ("beta", 2, "integer"),
    ]
    assert rows(database, "SELECT name, size FROM item ORDER BY name") == [("alpha", 1), ("beta", None)]
    errors = rows(database, "SELECT stage, message FROM scraper_errors WHERE url LIKE '%/good' ORDER BY message")
    assert errors == [
        (
            "validate",
            "dict cannot be stored: key '_URL' is a column the framework keeps (_crawl_id, _id, _scraped_at, _url)",
        ),
        ("validate", "dict cannot be stored: keys 'a' and 'A' would be one column (SQLite ignores their case)"),
    ]


class TrippingMiddleware:
    """A middleware with a bug on one URL and a missing return on another."""

    def __init__(self, **_: Any) -> None:
        pass

    async def __call__(self, request: Request, handler: Any) -> Response | None:
        if request.url.endswith("/boom"):
            raise RuntimeError("middleware bug")
        if request.url.endswith("/invalid"):
            return None
        return await handler(request)  # type: ignore[no-any-return]


async def test_a_middleware_that_fails_on_one_request_fails_only_that_request(database: Path) -> None:
    """Once, its exception ended the whole crawl with a traceback and no error row."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        result = await crawl(
            FaultySpider(base_url),
            database,
            retry={"times": 0},
            middlewares=["tests.integration.test_crawl:TrippingMiddleware"],
        )

    assert result.status == "finished"
    errors = rows(database, "SELECT error_type, url, message FROM scraper_errors WHERE stage = 'fetch' ORDER BY url")
    assert errors == [
        ("RuntimeError", f"{base_url}/boom", "middleware bug"),
        ("HttpStatusError", f"{base_url}/down", "HTTP 500"),
        ("TypeError", f"{base_url}/invalid", "middleware TrippingMiddleware returned NoneType, not a Response"),
    ]
    assert rows(database, "SELECT name FROM thing ORDER BY name") == [("alpha",), ("beta",)]
    states = dict(rows(database, "SELECT url, state FROM scraper_requests"))
    assert (states[f"{base_url}/boom"], states[f"{base_url}/invalid"]) == ("failed", "failed")


class CountingSpider(Spider):
    name = "counting"

    def __init__(self, base_url: str, pages: int) -> None:
        super().__init__()
        self.base_url, self.pages = base_url, pages

    async def start_requests(self) -> AsyncIterator[Request]:
        for number in range(self.pages):
            yield Request(f"{self.base_url}/p/{number}")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"path": response.url.rsplit("/", 1)[-1], "agent": response.request.url}


def slow_site(delay: float) -> tuple[web.Application, dict[str, Any]]:
    seen: dict[str, Any] = {"active": 0, "peak": 0, "agents": set()}

    async def page(request: web.Request) -> web.Response:
        seen["active"] += 1
        seen["peak"] = max(seen["peak"], seen["active"])
        seen["agents"].add(request.headers.get("User-Agent"))
        await asyncio.sleep(delay)
        seen["active"] -= 1
        return web.Response(text="<p>ok</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/p/{n}", page)
    return app, seen


@pytest.mark.parametrize(("per_host", "expect_peak_at_most"), [(3, 3), (20, 20)])
async def test_per_host_concurrency_is_respected_at_the_server(
    database: Path, per_host: int, expect_peak_at_most: int
) -> None:
    app, seen = slow_site(0.05)
    async with serve(app) as base_url:
        result = await crawl(
            CountingSpider(base_url, 60),
            database,
            concurrency=32,
            per_host={"concurrency": per_host},
            user_agent="testbot/9",
        )
    assert result.stats.get("pages") == 60
    assert seen["peak"] <= expect_peak_at_most
    # negative control: with a high limit the server does see more than 3 at once
    assert (seen["peak"] > 3) == (per_host > 3)
    assert seen["agents"] == {"testbot/9"}
    assert rows(database, "SELECT count(*) FROM item") == [(60,)]


async def test_max_pages_is_exact(database: Path) -> None:
    app, _ = slow_site(0.0)
    async with serve(app) as base_url:
        result = await crawl(CountingSpider(base_url, 200), database, concurrency=4, close={"max_pages": 20})
    assert (result.status, result.reason) == ("finished", "max_pages")
    assert result.stats.get("pages") == 20  # exact: no more fetches are handed out


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_max_duration_stops_the_crawl_and_its_requests_in_flight_finish(database: Path, backend: str) -> None:
    """Once stopping, the feeder stopped the crawl again on every turn, which woke it at once:
    it spun, the workers never ran, and the crawl ended 'interrupted' at drain_timeout with
    its requests still in flight (with the memory frontier, which never yields meanwhile)."""
    app, _ = slow_site(0.05)
    async with serve(app) as base_url:
        result = await crawl(
            CountingSpider(base_url, 2000),
            database,
            concurrency=8,
            frontier={"backend": backend},
            close={"max_duration": 0.5, "drain_timeout": 10},
        )
    assert (result.status, result.reason) == ("finished", "max_duration")
    pages = result.stats.get("pages")
    assert 0 < pages < 2000
    states = dict(rows(database, "SELECT state, count(*) FROM scraper_requests GROUP BY state"))
    assert states == {"done": pages, "pending": 2000 - pages}  # every request in flight finished


class SleepySpider(FaultySpider):
    """``/boom``'s callback waits far past ``callback_timeout``; the other pages parse at once."""

    name = "sleepy"

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        if response.url.endswith("/boom"):
            await asyncio.sleep(30)
        for node in response.css("li"):
            yield Thing(name=node.text(), size=node.attributes.get("data-size"))  # type: ignore[arg-type]


@pytest.mark.timeout(30)
async def test_a_callback_past_its_timeout_fails_its_page_only(database: Path) -> None:
    app, _ = faulty_site()
    started = time.monotonic()
    async with serve(app) as base_url:
        result = await crawl(SleepySpider(base_url), database, callback_timeout=0.5, retry={"times": 0})

    assert result.status == "finished"
    assert time.monotonic() - started < 10  # not the callback's 30 s
    errors = rows(database, "SELECT stage, error_type, message FROM scraper_errors WHERE url LIKE '%/boom'")
    assert errors == [("parse", "CallbackTimeout", "parse_page ran past 0.5s")]
    assert rows(database, "SELECT name FROM thing WHERE name IN ('alpha', 'beta')") == [("alpha",), ("beta",)]
    assert result.stats.get("errors/parse/CallbackTimeout") == 1


class NumberedPagesSpider(Spider):
    """``/page/0`` to ``/page/{pages - 1}`` of ``any_page_site``, each parsed with its number."""

    base_url = ""  # given as an argument
    pages = 0

    async def start_requests(self) -> AsyncIterator[Request]:
        for n in range(self.pages):
            yield Request(f"{self.base_url}/page/{n}", cb_kwargs={"n": n})


def any_page_site() -> web.Application:
    """A site with a page at every path."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<p>page</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


class AbruptSpider(NumberedPagesSpider):
    """Twelve pages; the callbacks of eight of them end abruptly, each in its own way."""

    name = "abrupt"
    pages = 12

    async def parse(self, response: Response, n: int) -> AsyncIterator[Any]:
        if n in (1, 5, 9):
            raise asyncio.CancelledError  # code of its own that cancels
        if n == 2:
            raise SystemExit(3)  # sys.exit(3)
        if n == 3:
            raise KeyboardInterrupt
        if n == 4:
            await asyncio.wait_for(asyncio.sleep(1), 0.01)  # its own TimeoutError
        if n == 6:
            raise GeneratorExit("from a generator of its own")
        if n == 7:
            raise Halt("from a library")
        yield {"n": n}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("processes", [0, 2])
async def test_a_callback_that_cancels_or_exits_fails_its_page_only(database: Path, processes: int) -> None:
    """Its worker ended quietly on a CancelledError (three of them: no worker left, the crawl
    hung), sys.exit() ended the crawl without a word, GeneratorExit and a BaseException
    subclass ended it marked failed (not resumable), and a TimeoutError of the callback's own
    was reported as the callback running past callback_timeout."""
    async with serve(any_page_site()) as base_url:
        result = await crawl(AbruptSpider(base_url=base_url), database, concurrency=3, parse_processes=processes)

    assert (result.status, result.reason) == ("finished", "finished")
    assert rows(database, "SELECT n FROM item ORDER BY n") == [(n,) for n in (0, 8, 10, 11)]
    errors = rows(database, "SELECT url, stage, error_type FROM scraper_errors ORDER BY url")
    assert [(url.rsplit("/", 1)[1], stage, kind) for url, stage, kind in errors] == [
        ("1", "parse", "CancelledError"),
        ("2", "parse", "SystemExit"),
        ("3", "parse", "KeyboardInterrupt"),
        ("4", "parse", "TimeoutError"),
        ("5", "parse", "CancelledError"),
        ("6", "parse", "GeneratorExit"),
        ("7", "parse", "Halt"),
        ("9", "parse", "CancelledError"),
    ]
    assert rows(database, "SELECT state, count(*) FROM scraper_requests GROUP BY state") == [("done", 4), ("failed", 8)]
    (message,) = rows(database, "SELECT message FROM scraper_errors WHERE error_type = 'SystemExit'")[0]
    assert message.startswith("3 (hint: sys.exit() fails this page only; to end the crawl early (Scrapy's CloseSpider)")


class CancellationEatingSpider(NumberedPagesSpider):
    """Callbacks that wait, and make something else of a cancellation: an error of their own,
    or nothing at all (they return as if done)."""

    name = "cancellation_eating"
    pages = 20
    how = "convert"
    started = 0

    async def parse(self, response: Response, n: int) -> AsyncIterator[Any]:
        type(self).started += 1
        try:
            await asyncio.sleep(30)
        except BaseException as exc:
            if self.how == "convert":
                raise Halt("cleaning up") from exc
        yield {"n": n}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["convert", "swallow"])
async def test_the_crawls_cancellation_stops_it_whatever_a_callback_makes_of_it(database: Path, how: str) -> None:
    """The second Ctrl-C cancels the crawl; a callback that turned that into its own error had
    its page failed, and one that swallowed it went on: either way the workers then waited for
    pages the cancelled feeder would never send, and the crawl hung."""
    CancellationEatingSpider.started = 0
    async with serve(any_page_site()) as base_url:
        spider = CancellationEatingSpider(base_url=base_url)
        spider.how = how
        engine = Engine(spider=spider, settings=make_settings(concurrency=4), database=database)
        task = asyncio.create_task(engine.run())
        while CancellationEatingSpider.started < 4:  # noqa: ASYNC110 - polling a counter, no event exists
            await asyncio.sleep(0.01)
        task.cancel()  # what the second Ctrl-C does
        with pytest.raises(asyncio.CancelledError):
            await task
    assert rows(database, "SELECT status FROM scraper_crawls") == [("interrupted",)]


class UnwritableSpider(NumberedPagesSpider):
    """Each page yields one request or item that SQLite cannot take as it is, and a good item."""

    name = "unwritable"
    pages = 8

    async def parse(self, response: Response, n: int) -> AsyncIterator[Any]:
        bad = "caf\udce9"  # a lone surrogate: what bytes decoded with errors="surrogateescape" hold
        follow = f"{self.base_url}/next/{n}"
        if n == 0:
            raise ValueError(f"no {bad}")
        if n == 1:
            yield Request(follow, meta={"label": bad})
        if n == 2:
            yield Request(follow, cb_kwargs={"label": bad})
        if n == 3:
            yield Request(follow, headers={"X-Label": bad})
        if n == 4:
            yield Request(f"{follow}?q={bad}")
        if n == 5:
            yield Request(follow, priority=2**70)
        if n == 6:
            yield {bad: 1}
        if n == 7:
            yield {"label": bad}
        yield {"n": n}


@pytest.mark.timeout(30)
async def test_values_sqlite_cannot_take_fail_their_page_or_item_not_the_crawl(database: Path) -> None:
    """Each of these stopped the crawl at its write ("'utf-8' codec can't encode character
    '\\udce9'", "Python int too large to convert to SQLite INTEGER"), and again on every resume."""
    async with serve(any_page_site()) as base_url:
        result = await crawl(UnwritableSpider(base_url=base_url), database)

    assert (result.status, result.reason) == ("finished", "finished")
    assert rows(database, "SELECT n FROM item WHERE n IS NOT NULL ORDER BY n") == [(n,) for n in (1, 2, 3, 4, 6, 7)]
    errors = {
        url.rsplit("/", 1)[1]: (stage, message)
        for url, stage, message in rows(database, "SELECT url, stage, message FROM scraper_errors")
    }
    assert errors["0"] == ("parse", "no caf\\udce9")
    assert errors["1"][1].endswith(
        f"meta['label'] of {base_url}/next/1 holds a lone surrogate, which is not text SQLite can store"
    )
    assert errors["2"][1].startswith(f"cb_kwargs['label'] of {base_url}/next/2 holds a lone surrogate")
    assert errors["3"][1].startswith(f"headers['X-Label'] of {base_url}/next/3 holds a lone surrogate")
    assert errors["5"] == (  # raised by Request(), in the callback: the page fails, as for any exception
        "parse",
        f"Request('{base_url}/next/5'): priority 1180591620717411303424 is out of range (at most 2**63 - 1)",
    )
    assert errors["6"] == (
        "validate",
        "dict cannot be stored: key 'caf\\udce9' holds a lone surrogate, which no SQLite name can",
    )
    assert errors["7"][0] == "validate" and errors["7"][1].endswith("surrogates not allowed (field 'label')")
    assert "4" not in errors and result.stats.get("requests/filtered/malformed") == 1  # a link no row can hold
