"""Stops of a real ``python -m scraper run`` and the run after it: kill -9 at random moments,
one SIGINT/SIGTERM (drain), two SIGINTs (stop at once), and a second run on a live crawl.

The site is served by the test's own event loop (``tests/process/slow_site.py``) with an
access log, so we can tell which pages the resumed run asked for. Every resumed crawl must
end with exactly the items of an uninterrupted reference run, in one crawl row, with nothing
left pending, and must never ask again for a page that was done before the stop."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing, suppress
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.process.slow_site import ITEMS, PAGES, SlowSite, hub_site, serve
from tests.process.test_cli import ENV, make_project

SPIDER = """
    from typing import ClassVar

    from scraper import Item, Request, Spider


    class Product(Item):
        key: ClassVar[tuple[str, ...]] = ("url",)
        url: str
        title: str
        price: float
        category: int
        tags: list[str] = []


    class ShopSpider(Spider):
        name = "shop"

        async def start_requests(self):
            yield Request(self.base_url + "/")

        async def parse(self, response):
            for link in response.css("a.listing, a.next"):
                yield response.follow(link, callback=self.parse)
            for link in response.css("a.item"):
                yield response.follow(link, callback=self.parse_item)

        async def parse_item(self, response):
            title = response.css_first("h1").text()
            yield Product(
                url=response.url,
                title=title,
                price=float(response.css_first("span.price").text()),
                category=int(title.split()[1].split("-")[0]),
                tags=[tag.text() for tag in response.css("ul.tags li")],
            )
            for link in response.css("a.listing"):  # back and home: always known already
                yield response.follow(link, callback=self.parse)
"""

# A small frontier buffer, so that a stop finds requests both in memory (leased) and spilled.
CONFIG = """
    robots_txt: false
    concurrency: 8
    per_host: {concurrency: 4}
    retry: {times: 2, backoff: 0}
    timeout: 10
    frontier: {buffer: 40}
    write_batch: 50
    close: {drain_timeout: 10}
    pipelines: ["pipelines.clean:Normalize", "pipelines.require:RequireFields"]
"""

UNCOMPARED = {"_id", "_crawl_id", "_scraped_at"}  # differ between any two runs by design


# -- the subprocess -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ended:
    code: int | None
    stdout: str
    stderr: str


async def start(project: Path, base_url: str, *options: str, spider: str = "shop") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", "run", spider, "-a", f"base_url={base_url}", *options,
        cwd=project, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@asynccontextmanager
async def crawling(
    project: Path, base_url: str, *options: str, spider: str = "shop"
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A running crawl; whatever happens in the test, it does not outlive the block."""
    process = await start(project, base_url, *options, spider=spider)
    try:
        yield process
    finally:
        if process.returncode is None:
            with suppress(ProcessLookupError):
                process.kill()
            await process.communicate()


async def ended(process: asyncio.subprocess.Process, timeout: float = 30) -> Ended:  # noqa: ASYNC109
    """Wait for ``process`` to exit; one that hangs is killed and its output shown."""
    communicating = asyncio.ensure_future(process.communicate())
    done, _ = await asyncio.wait([communicating], timeout=timeout)
    if not done:
        process.kill()
        _, stderr = await communicating
        pytest.fail(f"the crawl did not end within {timeout:g}s; its stderr:\n{stderr.decode()}")
    stdout, stderr = communicating.result()
    return Ended(process.returncode, stdout.decode(), stderr.decode())


async def run(project: Path, base_url: str, *options: str) -> Ended:
    async with crawling(project, base_url, *options) as process:
        return await ended(process)


# -- the database, read-only --------------------------------------------------------------------


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def integrity(database: Path) -> str:
    return ", ".join(row[0] for row in query(database, "PRAGMA integrity_check"))


def item_rows(database: Path, base_url: str) -> list[tuple[tuple[str, Any], ...]]:
    """Every stored item as sorted (column, value) pairs, URLs relative to the site."""
    columns = sorted(row[1] for row in query(database, "PRAGMA table_info(product)") if row[1] not in UNCOMPARED)
    rows = query(database, f"SELECT {', '.join(columns)} FROM product")
    relative = [[value.replace(base_url, "") if isinstance(value, str) else value for value in row] for row in rows]
    return sorted(tuple(zip(columns, row, strict=True)) for row in relative)


def done_paths(database: Path, base_url: str) -> set[str]:
    return {
        url.removeprefix(base_url)
        for (url,) in query(database, "SELECT url FROM scraper_requests WHERE state = 'done'")
    }


def stored_items(database: Path) -> int:
    try:
        return int(query(database, "SELECT count(*) FROM product")[0][0])
    except sqlite3.Error:  # no database or no item table yet
        return 0


async def wait_for_items(database: Path, count: int) -> None:
    async with asyncio.timeout(20):
        while stored_items(database) < count:  # noqa: ASYNC110 - another process writes them
            await asyncio.sleep(0.01)


def assert_finished_as_one_crawl(database: Path) -> None:
    assert integrity(database) == "ok"
    assert query(database, "SELECT id, status, finish_reason FROM scraper_crawls") == [(1, "finished", "finished")]
    assert query(database, "SELECT state, leased, count(*) FROM scraper_requests GROUP BY state, leased") == [
        ("done", 0, PAGES)
    ]


# -- the reference ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reference:
    items: list[tuple[tuple[str, Any], ...]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted crawl of the site, into its own database."""
    project = make_project(tmp_path_factory.mktemp("reference"), SPIDER, CONFIG)
    database = project / "reference.db"
    site = SlowSite()
    async with serve(site.app) as base_url:
        result = await run(project, base_url, "--db", str(database))
    assert result.code == 0, result.stderr
    assert max(site.hits().values()) == 1 and len(site.hits()) == PAGES
    items = item_rows(database, base_url)
    assert len(items) == ITEMS
    assert dict(items[0])["title"] == "Item 0-0-0" and dict(items[0])["tags"] == '["category-0", "page-0"]'
    assert_finished_as_one_crawl(database)
    return Reference(items)


# -- kill -9 ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [1, 9, 5, 0])
async def test_kill_9_at_a_random_moment_then_the_next_run_resumes(
    tmp_path: Path, reference: Reference, seed: int
) -> None:
    # The moment is a share of the site's pages asked for, not of a reference run's time: a
    # crawl faster than the reference would otherwise be killed while it writes its summary.
    fraction = random.Random(seed).uniform(0.05, 0.85)  # seeds 1, 9, 5, 0: 0.16, 0.42, 0.55, 0.73
    project = make_project(tmp_path, SPIDER, CONFIG)
    database = project / "data" / "shop.db"
    site = SlowSite()
    async with serve(site.app) as base_url:
        async with crawling(project, base_url) as process:
            await site.wait_for_requests(max(1, round(fraction * PAGES)))
            process.kill()
            killed_at = time.monotonic()
            killed = await ended(process)
        assert killed.code == -signal.SIGKILL, f"the crawl ended before the kill: {killed.stderr}"
        assert integrity(database) == "ok"
        assert query(database, "SELECT id, status FROM scraper_crawls") == [(1, "running")]
        done_before = done_paths(database, base_url)
        assert len(done_before) < PAGES
        resumed = await run(project, base_url)
        items = item_rows(database, base_url)
    assert resumed.code == 0, resumed.stderr
    assert "resuming crawl 1 of shop" in resumed.stderr
    assert set(site.requested_after(killed_at)) & done_before == set()  # no finished page fetched again
    assert items == reference.items
    assert_finished_as_one_crawl(database)


# -- one signal: drain, then resume ---------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
async def test_one_signal_drains_records_interrupted_and_the_next_run_resumes(
    tmp_path: Path, reference: Reference, signum: signal.Signals, code: int
) -> None:
    project = make_project(tmp_path, SPIDER, CONFIG)
    database = project / "data" / "shop.db"
    site = SlowSite()
    async with serve(site.app) as base_url:
        async with crawling(project, base_url) as process:
            await wait_for_items(database, 20)
            process.send_signal(signum)
            stopped = await ended(process)
        assert stopped.code == code, stopped.stderr
        assert integrity(database) == "ok"
        assert query(database, "SELECT id, status, finish_reason FROM scraper_crawls") == [
            (1, "interrupted", signum.name)
        ]
        assert 20 <= stored_items(database) < ITEMS
        # the summary says how to go on: the same command
        assert f"resume python -m scraper run shop -a base_url={base_url}" in " ".join(stopped.stdout.split())
        resumed = await run(project, base_url)
        items = item_rows(database, base_url)
    assert resumed.code == 0, resumed.stderr
    assert "resume" not in resumed.stdout
    assert "resuming crawl 1 of shop" in resumed.stderr
    assert items == reference.items
    assert_finished_as_one_crawl(database)
    # a drained stop leaves no page half done: across both runs every page was fetched once
    assert max(site.hits().values()) == 1 and len(site.hits()) == PAGES
    # and the statistics (saved at the stop) continue: the crawl's counts cover both runs
    stats = json.loads(query(database, "SELECT stats FROM scraper_crawls")[0][0])
    assert (stats["pages"], stats["requests/admitted"], stats["items/stored"]) == (PAGES, PAGES, ITEMS)
    # the summary's rate is this run's: it divided the whole crawl's pages by this run's time
    before = stats["resume/pages_before"]
    assert 0 < before < PAGES
    assert re.search(
        rf"pages +{PAGES:,} \({before:,} before this run; {PAGES - before:,} in [\d.]+s = ", resumed.stdout
    )


@pytest.mark.timeout(60)
async def test_a_database_deleted_under_the_crawl_ends_it_with_a_summary_that_says_where_its_data_went(
    tmp_path: Path, reference: Reference
) -> None:
    """It printed its cause three times (when noticed, when written back, as the error) and no
    summary, so neither the counts nor the command to resume were shown."""
    project = make_project(tmp_path, SPIDER, CONFIG)
    database = project / "data" / "shop.db"
    site = SlowSite()
    site.slow_down(pages=0.01, items=0.1)  # ~8 s of item pages: the watch looks every 2 s
    async with serve(site.app) as base_url:
        async with crawling(project, base_url) as process:
            await wait_for_items(database, 20)
            await asyncio.to_thread(lambda: [path.unlink() for path in database.parent.glob("shop.db*")])
            stopped = await ended(process)
        assert stopped.code == 1, stopped.stderr
        cause = (
            f"{database} was deleted or replaced while the crawl ran; what it committed is written back to {database}"
        )
        summary = " ".join(stopped.stdout.split())
        assert f"shop: interrupted ({cause})" in summary
        assert f"resume python -m scraper run shop -a base_url={base_url}" in summary
        assert "deleted or replaced" not in stopped.stderr, stopped.stderr
        assert query(database, "SELECT status FROM scraper_crawls") == [("interrupted",)]
        resumed = await run(project, base_url)
        items = item_rows(database, base_url)
    assert resumed.code == 0, resumed.stderr
    assert items == reference.items
    assert_finished_as_one_crawl(database)


# -- two SIGINTs: stop at once ----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sigints", [2, 1], ids=["twice", "once-control"])
async def test_a_second_sigint_stops_at_once_and_the_crawl_still_resumes(
    tmp_path: Path, reference: Reference, sigints: int
) -> None:
    """With one SIGINT (the control) the crawl waits for the slow pages in flight; with a
    second one 50 ms later it must not."""
    project = make_project(tmp_path, SPIDER, CONFIG)
    database = project / "data" / "shop.db"
    site = SlowSite()
    site.slow_down(pages=0.02, items=4.0)  # a drain waits up to 4 s for the item pages in flight
    async with serve(site.app) as base_url:
        async with crawling(project, base_url, "-s", "concurrency=64", "-s", "per_host.concurrency=64") as process:
            await wait_for_items(database, 1)
            process.send_signal(signal.SIGINT)
            await asyncio.sleep(0.05)
            in_flight = site.active
            if sigints == 2:
                process.send_signal(signal.SIGINT)
            signalled_at = time.monotonic()
            stopped = await ended(process)
            took = time.monotonic() - signalled_at
        assert stopped.code == 130, stopped.stderr
        assert in_flight >= 10, "the test needs requests in flight at the second SIGINT"
        if sigints == 2:
            assert took < 2.0, f"exited {took:.2f}s after the second SIGINT: it waited for the drain"
            assert "SIGINT again: stopping at once (the database stays consistent; the next run resumes)" in " ".join(
                stopped.stderr.split()
            )  # it exited without a word
        else:
            assert took > 2.0, f"exited {took:.2f}s after one SIGINT: the control did not drain"
        assert integrity(database) == "ok"
        assert query(database, "SELECT id, status, finish_reason FROM scraper_crawls") == [(1, "interrupted", "SIGINT")]
        site.speed_up()
        resumed = await run(project, base_url)
        items = item_rows(database, base_url)
    assert resumed.code == 0, resumed.stderr
    assert "resuming crawl 1 of shop" in resumed.stderr
    assert items == reference.items
    assert_finished_as_one_crawl(database)


# -- a second run on a live crawl -------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_second_run_on_a_live_crawl_is_refused_and_the_first_finishes(
    tmp_path: Path, reference: Reference
) -> None:
    project = make_project(tmp_path, SPIDER, CONFIG)
    database = project / "data" / "shop.db"
    site = SlowSite()
    # ~16 s of crawling at this pace, so that the second run, however slow its start, meets a
    # live crawl; once it is refused the site speeds up again
    site.slow_down(pages=0.2, items=0.2)
    async with serve(site.app) as base_url:
        async with crawling(project, base_url) as first:
            await wait_for_items(database, 1)
            second = await run(project, base_url)
            served_before_refusal = len(site.log)
            site.speed_up()
            await site.wait_for_requests(served_before_refusal + 1)  # the first crawl is still going
            finished = await ended(first)
        items = item_rows(database, base_url)
    assert second.code == 2, second.stderr
    in_use = [line for line in second.stderr.splitlines() if "in use" in line]
    assert len(in_use) == 1 and in_use[0].startswith("error: ") and "shop.db" in in_use[0], second.stderr
    assert "resuming" not in second.stderr and "started" not in second.stderr
    assert finished.code == 0, finished.stderr
    assert items == reference.items
    assert_finished_as_one_crawl(database)


# -- found on the way: many pages discovering one new URL at once -------------------------------

HUB_SPIDER = """
    from scraper import Request, Spider

    class HubSpider(Spider):
        name = "hubs"

        async def start_requests(self):
            yield Request(self.base_url + "/")

        async def parse(self, response):
            for link in response.css("a"):
                yield response.follow(link)
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("buffer", [5000, 10], ids=["in-memory", "spilled"])
async def test_pages_linking_to_the_same_new_pages_at_once_fetch_each_once_and_finish(
    tmp_path: Path, buffer: int
) -> None:
    project = make_project(tmp_path, HUB_SPIDER, f"robots_txt: false\npipelines: []\nfrontier: {{buffer: {buffer}}}\n")
    app, hits = hub_site(hubs=30, leaves=30)
    async with serve(app) as base_url:
        options = ("-s", "concurrency=64", "-s", "per_host.concurrency=64")
        async with crawling(project, base_url, *options, spider="hubs") as process:
            result = await ended(process, timeout=6)  # it needs about 1.5 s
    assert result.code == 0, result.stderr
    assert len(hits) == 61 and max(hits.values()) == 1, {path: count for path, count in hits.items() if count > 1}
