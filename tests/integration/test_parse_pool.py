"""Callbacks in parse processes (``parse_processes``): the same rows as parsing on the event
loop, and every way a callback can fail in a child becomes one error record, never a dead
crawl. The spiders live at module level so that the children can import them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web

from scraper import Item, Request, Response, Spider
from scraper.deadline import Deadlines
from scraper.demo_site import build_catalog, make_app, serve
from scraper.engine import CrawlResult, Engine
from scraper.errors import ConfigError
from scraper.parse_pool import _HEADER, ParsePool
from spiders.demo_shop import DemoShopSpider
from tests.conftest import make_settings, rows


async def crawl(spider: Spider, database: Path, **settings: Any) -> CrawlResult:
    return await Engine(spider=spider, settings=make_settings(**settings), database=database).run()


class Page(Item):
    key: ClassVar[tuple[str, ...]] = ("url",)

    url: str
    n: int
    pid: int


class TroubleSpider(Spider):
    """``/page/N`` for N in 0..19, each yielding one ``Page``; some pages misbehave."""

    name = "trouble"
    base_url = ""

    async def start_requests(self) -> AsyncIterator[Request]:
        for n in range(20):
            yield Request(f"{self.base_url}/page/{n}", callback=self.parse_page, cb_kwargs={"n": n})

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        print(f"noise on stdout for page {n}")  # must not disturb the pipe to the parent
        if n == 3:
            raise ValueError(f"page {n} is broken")
        if n == 5:
            yield Page(url=response.url, n=-1, pid="not a number")  # type: ignore[arg-type]
            return
        if n == 7 and os.environ.get("SCRAPER_TEST_KILL_CHILD"):
            os._exit(3)  # the child dies mid-page
        if n == 9 and os.environ.get("SCRAPER_TEST_HANG_CHILD"):
            time.sleep(30)  # noqa: ASYNC251 - a CPU-bound callback that never returns in time
        yield Page(url=response.url, n=n, pid=os.getpid())


class Birthplace(Item):
    key: ClassVar[tuple[str, ...]] = ("url",)

    url: str
    pid: int
    main: str  # the module the process was started to run


class BirthplaceSpider(TroubleSpider):
    """Each page says which process parsed it and how that process began: a fork of the crawl
    runs the crawl's own ``__main__``; a fresh interpreter runs ``scraper.parse_pool``."""

    name = "birthplace"

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        yield Birthplace(url=response.url, pid=os.getpid(), main=spec.name if spec else "")


class UnpicklableSpider(TroubleSpider):
    name = "unpicklable"

    async def opened(self) -> None:
        self.lock = threading.Lock()


class StraySpider(TroubleSpider):
    """Page 11 yields a string among its outputs, page 12 a None (skipped, as in Scrapy)."""

    name = "stray"

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        if n in (11, 12):
            yield "a string" if n == 11 else None
        yield Page(url=response.url, n=n, pid=os.getpid())


class PortedSpider(TroubleSpider):
    """Pages 13 and 14 use parsel's API, as a spider ported from Scrapy does at first."""

    name = "ported"

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        if n == 13:
            response.css("p").get()  # type: ignore[attr-defined]
        if n == 14:
            response.xpath("//p/text()")  # type: ignore[attr-defined]
        yield Page(url=response.url, n=n, pid=os.getpid())


class NodeSpider(TroubleSpider):
    """Page 15 yields a node where its text belongs: in a dict, and in an item's field."""

    name = "nodes"

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        if n == 15:
            yield {"text": response.css_first("p")}
            yield Page(url=response.url, n=response.css_first("p"), pid=os.getpid())  # type: ignore[arg-type]
        yield Page(url=response.url, n=n, pid=os.getpid())


class Rejected(Exception):
    """An exception whose ``__init__`` takes arguments of its own: pickle cannot rebuild it."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"code {code}: {why}")


class OwnErrorsSpider(TroubleSpider):
    """Page 16 raises an exception of the spider's own, page 17 reads a page as JSON."""

    name = "own_errors"

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        if n == 16:
            raise Rejected(n, "not for us")
        if n == 17:
            response.json()
        yield Page(url=response.url, n=n, pid=os.getpid())


class NamelessCallbackSpider(TroubleSpider):
    """Page 18 follows a link with a lambda for its callback, which no row can name."""

    name = "nameless_callback"

    async def parse_page(self, response: Response, n: int) -> AsyncIterator[Any]:
        if n == 18:
            yield Request(f"{self.base_url}/page/18?more", callback=lambda response: None)
        yield Page(url=response.url, n=n, pid=os.getpid())


@pytest.fixture
async def pages_site() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        text = f"<html><body><p>{request.match_info['n']}</p></body></html>"
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/page/{n}", page)
    async with serve(app) as base_url:
        yield base_url


async def test_parse_processes_store_the_same_rows_as_the_event_loop(tmp_path: Path) -> None:
    catalog = build_catalog(120)
    async with serve(make_app(catalog)) as base_url:
        local = await crawl(DemoShopSpider(base_url=base_url), tmp_path / "local.db")
        pooled = await crawl(DemoShopSpider(base_url=base_url), tmp_path / "pooled.db", parse_processes=2)

    assert (local.status, pooled.status) == ("finished", "finished")
    columns = "url, title, price, currency, rating, in_stock, stock, category, sku, description"
    query = f"SELECT {columns} FROM product ORDER BY url"
    assert rows(tmp_path / "pooled.db", query) == rows(tmp_path / "local.db", query)
    assert len(rows(tmp_path / "pooled.db", query)) == 120
    assert pooled.stats.get("pages") == local.stats.get("pages")
    assert rows(tmp_path / "pooled.db", "SELECT count(*) FROM scraper_errors") == [(0,)]


async def test_callbacks_run_in_other_processes_and_failures_become_records(pages_site: str, database: Path) -> None:
    result = await crawl(TroubleSpider(base_url=pages_site), database, parse_processes=2)

    assert result.status == "finished"
    pids = {pid for (pid,) in rows(database, "SELECT DISTINCT pid FROM page")}
    assert pids and os.getpid() not in pids
    assert rows(database, "SELECT count(*) FROM page") == [(18,)]  # 20 pages, minus the raising and the invalid
    errors = rows(database, "SELECT url, stage, error_type, message, traceback FROM scraper_errors ORDER BY url")
    by_url = {url.rsplit("/", 1)[1]: (stage, kind, message, trace) for url, stage, kind, message, trace in errors}
    assert set(by_url) == {"3", "5"}
    stage, kind, message, trace = by_url["3"]
    assert (stage, kind, message) == ("parse", "ValueError", "page 3 is broken")
    assert "parse_page" in trace and 'raise ValueError(f"page {n} is broken")' in trace  # the child's traceback
    assert by_url["5"][:2] == ("validate", "ValidationError")


@pytest.mark.parametrize("processes", [0, 2])
async def test_a_stray_output_is_an_error_row_and_the_page_keeps_the_rest(
    pages_site: str, database: Path, processes: int
) -> None:
    result = await crawl(StraySpider(base_url=pages_site), database, parse_processes=processes)

    assert result.status == "finished"
    assert rows(database, "SELECT count(*) FROM page") == [(20,)]
    errors = rows(database, "SELECT url, stage, error_type, message FROM scraper_errors")
    assert errors == [
        (
            f"{pages_site}/page/11",
            "parse",
            "TypeError",
            "callback yielded str (a URL? yield response.follow(url)); expected Request, Item or dict",
        )
    ]
    assert rows(database, "SELECT count(*) FROM scraper_requests WHERE state != 'done'") == [(0,)]


@pytest.mark.parametrize("processes", [0, 2])
async def test_a_scrapy_habit_s_error_row_says_what_to_write_instead(
    pages_site: str, database: Path, processes: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scraper.errors")
    result = await crawl(PortedSpider(base_url=pages_site), database, parse_processes=processes)

    assert result.status == "finished"
    assert rows(database, "SELECT count(*) FROM page") == [(18,)]
    errors = dict(rows(database, "SELECT url, message FROM scraper_errors WHERE stage = 'parse'"))
    assert errors.keys() == {f"{pages_site}/page/13", f"{pages_site}/page/14"}
    assert errors[f"{pages_site}/page/13"].startswith(
        "'list' object has no attribute 'get' (hint: css() returns a list of selectolax nodes"
    )  # in a parse process too, where the error's object stays behind
    assert "(hint: XPath is not available here" in errors[f"{pages_site}/page/14"]
    assert result.stats.examples["errors/parse/AttributeError"] in errors.values()
    (announced,) = [record.getMessage() for record in caplog.records if record.name == "scraper.errors"]
    assert "[tests/integration/test_parse_pool.py:" in announced  # the spider's line, from a child's traceback too
    assert ", in parse_page]" in announced


@pytest.mark.parametrize("processes", [0, 2])
async def test_an_error_row_is_the_same_from_a_parse_process(pages_site: str, database: Path, processes: int) -> None:
    """From a child, an exception pickle could not rebuild became "TypeError: __init__() missing
    1 required positional argument", and the note response.json() adds was lost."""
    result = await crawl(OwnErrorsSpider(base_url=pages_site), database, parse_processes=processes)

    assert result.status == "finished"
    assert rows(database, "SELECT count(*) FROM page") == [(18,)]
    assert rows(database, "SELECT url, error_type, message FROM scraper_errors ORDER BY url") == [
        (f"{pages_site}/page/16", "Rejected", "code 16: not for us"),
        (
            f"{pages_site}/page/17",
            "JSONDecodeError",
            "Expecting value: line 1 column 1 (char 0) "
            "(the page is not JSON: text/html; charset=utf-8, starting '<html><body><p>17</p></body></html>')",
        ),
    ]


@pytest.mark.parametrize("processes", [0, 2])
async def test_a_request_that_cannot_be_stored_fails_alone(pages_site: str, database: Path, processes: int) -> None:
    """From a parse process, it failed its whole page: the page's item was lost."""
    result = await crawl(NamelessCallbackSpider(base_url=pages_site), database, parse_processes=processes)

    assert result.status == "finished"
    assert rows(database, "SELECT count(*) FROM page") == [(20,)]
    ((url, stage, message),) = rows(database, "SELECT url, stage, message FROM scraper_errors")
    assert (url, stage) == (f"{pages_site}/page/18", "parse")
    assert message.startswith(f"callback of {pages_site}/page/18?more must be a method of the spider")


@pytest.mark.parametrize("processes", [0, 2])
async def test_a_node_where_its_text_belongs_fails_its_item_only(
    pages_site: str, database: Path, processes: int
) -> None:
    """The dict's node was stored as the text '<LexborNode p>'; from a parse process, which
    cannot send a node back, the whole page failed."""
    result = await crawl(NodeSpider(base_url=pages_site), database, parse_processes=processes)

    assert result.status == "finished"
    assert rows(database, "SELECT count(*) FROM page") == [(20,)]  # page 15's good item too
    assert rows(database, "SELECT count(*) FROM sqlite_master WHERE name = 'item'") == [(0,)]
    errors = rows(database, "SELECT url, stage, error_type, message FROM scraper_errors ORDER BY error_type")
    assert [(url, stage, kind) for url, stage, kind, _ in errors] == [
        (f"{pages_site}/page/15", "validate", "ValidationError"),
        (f"{pages_site}/page/15", "validate", "ValueError"),
    ]
    assert "(hint: a field was given a selectolax node, not its text" in errors[0][3]
    assert errors[1][3] == (
        "dict cannot be stored: 'text' holds a selectolax node (p), not its text: "
        "take node.text() or node.attributes[...]"
    )


async def test_a_child_that_dies_fails_only_its_page(
    pages_site: str, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRAPER_TEST_KILL_CHILD", "1")
    result = await crawl(TroubleSpider(base_url=pages_site), database, parse_processes=2)

    assert result.status == "finished"
    assert rows(database, "SELECT count(*) FROM page") == [(17,)]
    failed = rows(database, "SELECT url, error_type FROM scraper_errors WHERE url LIKE '%/page/7'")
    assert failed == [(f"{pages_site}/page/7", "ParseProcessFailed")]


@pytest.mark.timeout(30)
async def test_a_callback_past_its_timeout_is_stopped_and_its_child_replaced(
    pages_site: str, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRAPER_TEST_HANG_CHILD", "1")
    started = time.monotonic()
    result = await crawl(TroubleSpider(base_url=pages_site), database, parse_processes=1, callback_timeout=1)

    assert result.status == "finished"
    assert time.monotonic() - started < 20  # the hung child did not hold the crawl for its 30 s
    assert rows(database, "SELECT count(*) FROM page") == [(17,)]
    failed = rows(database, "SELECT error_type FROM scraper_errors WHERE url LIKE '%/page/9'")
    assert failed == [("CallbackTimeout",)]


async def test_a_spider_that_cannot_be_copied_is_a_clear_error(pages_site: str, database: Path) -> None:
    with pytest.raises(ConfigError, match=r"parse_processes: spider 'unpicklable' cannot be copied.*lock"):
        await crawl(UnpicklableSpider(base_url=pages_site), database, parse_processes=2)


class ScriptSpider(TroubleSpider):
    name = "script"


async def test_a_spider_a_fresh_interpreter_cannot_import_says_where_to_define_it(
    pages_site: str, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spider defined in the script that embeds the crawl, with another thread running (its
    parse processes are fresh interpreters): "Can't get attribute 'S' on <module
    'scraper.parse_pool'>", which named the wrong module and not the remedy."""
    monkeypatch.setattr(ScriptSpider, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "ScriptSpider", ScriptSpider, raising=False)
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)  # no forks while another thread runs
    bystander.start()
    try:
        with pytest.raises(ConfigError, match=r"could not load the spider: .*ScriptSpider") as caught:
            await crawl(ScriptSpider(base_url=pages_site), database, parse_processes=2)
    finally:
        release.set()
        bystander.join()
    assert str(caught.value).endswith(
        "(a fresh interpreter finds ScriptSpider by its module, '__main__': define the spider in a module "
        "it can import, not in the script that runs the crawl)"
    )


async def _alone() -> None:
    """Wait (up to 5 s) until this process runs no other thread: an earlier test's (an
    executor's worker, a closed connection's) may still be ending, and the pool forks only a
    process alone."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            while len(os.listdir("/proc/self/task")) > 1:  # noqa: ASYNC110 - no event says a thread ended
                await asyncio.sleep(0.01)


async def test_children_are_forks_of_the_crawl_unless_another_thread_runs(pages_site: str, tmp_path: Path) -> None:
    await _alone()
    forked = await crawl(BirthplaceSpider(base_url=pages_site), tmp_path / "forked.db", parse_processes=2)
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)  # a fork would copy whatever locks it holds
    bystander.start()
    try:
        fresh = await crawl(BirthplaceSpider(base_url=pages_site), tmp_path / "fresh.db", parse_processes=2)
    finally:
        release.set()
        bystander.join()

    assert (forked.status, fresh.status) == ("finished", "finished")
    for database, expected in ((tmp_path / "forked.db", "fork"), (tmp_path / "fresh.db", "fresh")):
        found = rows(database, "SELECT pid, main FROM birthplace")
        assert len(found) == 20
        assert os.getpid() not in {pid for pid, _ in found}
        mains = {main for _, main in found}
        if expected == "fork":
            assert "scraper.parse_pool" not in mains
        else:
            assert mains == {"scraper.parse_pool"}


def page_for(spider: TroubleSpider, n: int) -> Response:
    request = Request(f"{spider.base_url}/page/{n}", callback=spider.parse_page, cb_kwargs={"n": n})
    return Response(url=request.url, status=200, headers={}, body=b"<p>page</p>", request=request)


@pytest.mark.timeout(30)
async def test_a_forked_child_ends_with_its_input_though_a_sibling_was_forked_after_it() -> None:
    """The later fork must not hold the earlier child's input open: when the crawl's process
    dies, its children have to see their input end, and exit."""
    async with ParsePool(TroubleSpider(), 2) as pool:
        await pool.start()
        first = min(pool._children, key=lambda child: child.pid)
        assert first.transport is not None
        first.transport.get_pipe_transport(0).close()  # type: ignore[union-attr]
        await asyncio.wait_for(asyncio.shield(first.exited), timeout=10)


@pytest.fixture(params=["forked", "fresh"])
def how_started(request: pytest.FixtureRequest) -> Iterator[str]:
    """Children as forks of this process, or (while another thread runs) fresh interpreters."""
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)
    if request.param == "fresh":
        bystander.start()
    yield request.param
    release.set()
    if bystander.is_alive():
        bystander.join()


@pytest.mark.timeout(30)
async def test_stop_signals_are_the_crawls_to_handle_not_the_parse_processes(how_started: str) -> None:
    """A terminal's Ctrl-C reaches every process of the group. The children must neither die
    of it nor pass it on to the crawl's loop (three signals would turn "drain" into "stop")."""
    loop = asyncio.get_running_loop()
    seen_by_crawl: list[int] = []
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # as the CLI does
        loop.add_signal_handler(stop_signal, seen_by_crawl.append, stop_signal)
    spider = TroubleSpider(base_url="http://127.0.0.1:9")  # nothing is fetched: pages are made here
    try:
        async with ParsePool(spider, 2) as pool:
            await pool.start()
            pids = {child.pid for child in pool._children}
            for pid in pids:
                os.kill(pid, signal.SIGINT)
                os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.3)
            results = [await pool.run("parse_page", page_for(spider, n), deadlines=Deadlines(10)) for n in (0, 1, 2, 4)]
            assert {child.pid for child in pool._children} == pids  # none died and was replaced
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stop_signal)

    assert seen_by_crawl == []
    parsed_by = {item.pid for result in results for item in result.items}  # type: ignore[union-attr]
    assert len(parsed_by) >= 1 and parsed_by <= pids


def test_a_parse_process_whose_crawl_died_ends_without_a_traceback() -> None:
    """After a kill -9 of the crawl, each parse process printed ~20 lines of traceback ending
    in BrokenPipeError when it answered its page."""

    def message(value: Any) -> bytes:
        body = pickle.dumps(value)
        return _HEADER.pack(len(body)) + body

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-m", "scraper.parse_pool"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    spider = pickle.dumps(DemoShopSpider(base_url="http://127.0.0.1:1"))
    child.stdin.write(message((spider, (logging.WARNING, logging.INFO))))
    child.stdin.flush()
    (size,) = _HEADER.unpack(child.stdout.read(_HEADER.size))
    assert pickle.loads(child.stdout.read(size)) == ("ok", None)
    child.stdout.close()  # the crawl is gone: nobody reads the answers
    child.stdin.write(message("a page"))
    child.stdin.close()
    with child.stderr:
        said = child.stderr.read()
    assert child.wait(timeout=30) == 0 and said == b""
