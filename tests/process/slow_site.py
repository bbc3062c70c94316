"""A deterministic, slow-ish shop for the process tests, with an access log.

``/`` links to 4 categories; each category has 5 listing pages chained by a "next" link and
each listing page links to 15 item pages; each item page links back to its listing page and
home (always known by then: the dedup's business, from memory or, after a resume, from the
database). Each new page is linked from one page only, so no two pages discover it at once
(see ``hub_site`` for that). 321 pages, 300 items. Every page is served
after a small delay that depends only on its path (5-20 ms by default), so the crawl takes a
second or so and its outcome never depends on timing. ``slow_down`` makes the pages slower
(for signals sent while requests are in flight: the first item of each listing page stays
quick, so that some items are stored early while the others are still being served) and
``speed_up`` restores the defaults.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiohttp import web

CATEGORIES, LISTING_PAGES, PER_PAGE = 4, 5, 15
ITEMS = CATEGORIES * LISTING_PAGES * PER_PAGE
PAGES = 1 + CATEGORIES * LISTING_PAGES + ITEMS


class SlowSite:
    def __init__(self, *, min_delay: float = 0.005, max_delay: float = 0.020) -> None:
        self.log: list[tuple[float, str]] = []  # (time.monotonic() at arrival, path), in order
        self.active = 0  # requests being served right now
        self._defaults = (min_delay, max_delay)
        self.min_delay, self.max_delay = min_delay, max_delay
        self.item_delay: float | None = None  # when set, item pages (but the first of each listing) take this long
        self.app = web.Application(middlewares=[self._logged])
        self.app.router.add_get("/", self._home)
        self.app.router.add_get("/cat/{category:\\d+}/page/{page:\\d+}", self._listing)
        self.app.router.add_get("/item/{category:\\d+}-{page:\\d+}-{number:\\d+}", self._item)

    def slow_down(self, *, pages: float, items: float) -> None:
        self.min_delay = self.max_delay = pages
        self.item_delay = items

    def speed_up(self) -> None:
        self.min_delay, self.max_delay = self._defaults
        self.item_delay = None

    def delay(self, path: str) -> float:
        if self.item_delay is not None and path.startswith("/item/") and not path.endswith("-0"):
            return self.item_delay  # slowed down: every item but the first of a listing page
        spread = (zlib.crc32(path.encode()) % 1000) / 999
        return self.min_delay + spread * (self.max_delay - self.min_delay)

    def requested_after(self, moment: float) -> Counter[str]:
        return Counter(path for at, path in self.log if at > moment)

    def hits(self) -> Counter[str]:
        return Counter(path for _, path in self.log)

    async def wait_for_requests(self, count: int) -> float:
        """Wait (up to 20 s) until ``count`` requests have arrived; returns the arrival time of
        the last."""
        async with asyncio.timeout(20):
            while len(self.log) < count:  # noqa: ASYNC110 - polling a list the server appends to
                await asyncio.sleep(0.002)
        return self.log[count - 1][0]

    @web.middleware
    async def _logged(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.log.append((time.monotonic(), request.path))
        self.active += 1
        try:
            await asyncio.sleep(self.delay(request.path))
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            self.active -= 1

    async def _home(self, request: web.Request) -> web.Response:
        links = "".join(f'<a class="listing" href="/cat/{c}/page/0">category {c}</a>' for c in range(CATEGORIES))
        return _html("Shop", links)

    async def _listing(self, request: web.Request) -> web.Response:
        category, page = int(request.match_info["category"]), int(request.match_info["page"])
        if category >= CATEGORIES or page >= LISTING_PAGES:
            raise web.HTTPNotFound()
        links = "".join(
            f'<a class="item" href="/item/{category}-{page}-{number}">item {number}</a>' for number in range(PER_PAGE)
        )
        if page + 1 < LISTING_PAGES:
            links += f'<a class="next" href="/cat/{category}/page/{page + 1}">next</a>'
        return _html(f"Category {category}, page {page}", links)

    async def _item(self, request: web.Request) -> web.Response:
        category, page, number = (int(request.match_info[name]) for name in ("category", "page", "number"))
        if category >= CATEGORIES or page >= LISTING_PAGES or number >= PER_PAGE:
            raise web.HTTPNotFound()
        price = (zlib.crc32(request.path.encode()) % 10_000) / 100
        body = (
            f"<h1>\n   Item  {category}-{page}-{number}\n</h1>"
            f'<span class="price">{price:.2f}</span>'
            f'<ul class="tags"><li> category-{category} </li><li>page-{page}</li></ul>'
            f'<a class="listing" href="/cat/{category}/page/{page}">back</a><a class="listing" href="/">home</a>'
        )
        return _html(f"Item {category}-{page}-{number}", body)


def hub_site(hubs: int, leaves: int) -> tuple[web.Application, Counter[str]]:
    """``/`` links to ``hubs`` hub pages that all link to the same ``leaves`` new leaf pages.
    The hubs answer together, once all of them have been asked for (or after a second), so
    that the crawler parses them at the same moment: many pages discover one new URL at once.
    Returns the app and its access log (path -> times requested)."""
    hits: Counter[str] = Counter()
    all_asked = asyncio.Event()

    @web.middleware
    async def logged(request: web.Request, handler: Any) -> web.StreamResponse:
        hits[request.path] += 1
        return await handler(request)  # type: ignore[no-any-return]

    async def home(request: web.Request) -> web.Response:
        return _html("hubs", "".join(f'<a href="/hub/{number}">hub</a>' for number in range(hubs)))

    async def hub(request: web.Request) -> web.Response:
        if sum(count for path, count in hits.items() if path.startswith("/hub/")) >= hubs:
            all_asked.set()
        with suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await all_asked.wait()
        return _html("hub", "".join(f'<a href="/leaf/{number}">leaf</a>' for number in range(leaves)))

    async def leaf(request: web.Request) -> web.Response:
        return _html("leaf", "a leaf")

    app = web.Application(middlewares=[logged])
    app.router.add_get("/", home)
    app.router.add_get("/hub/{number:\\d+}", hub)
    app.router.add_get("/leaf/{number:\\d+}", leaf)
    return app, hits


def _html(title: str, body: str) -> web.Response:
    return web.Response(
        text=f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>",
        content_type="text/html",
    )


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) and yield its base URL. Handlers still
    sleeping for a killed client do not hold up the shutdown for long."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
