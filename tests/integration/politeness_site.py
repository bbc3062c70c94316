"""A recording local site and a link-following spider for the politeness scenarios.

``Site`` is a real aiohttp app on 127.0.0.1 whose pages are plain functions; it records every
request as it arrives (path, monotonic time, method, headers, body) and how many were inside
a handler at once, so tests judge the crawler by what the server saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from scraper import Request, Response, Spider
from scraper.demo_site import serve
from scraper.engine import CrawlResult, Engine
from tests.conftest import make_settings, rows

Page = Callable[[web.Request, int], web.StreamResponse | Awaitable[web.StreamResponse]]
"""A page handler: gets the request and how many times its path was hit (1 for the first)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Hit:
    method: str
    path: str
    path_qs: str
    at: float  # time.monotonic() on arrival
    headers: CIMultiDictProxy[str]
    body: bytes


def html(body: str = "<p>ok</p>", *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


def links(*hrefs: str) -> web.Response:
    return html("".join(f'<a href="{href}">link</a>' for href in hrefs))


def redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def ok_page(_request: web.Request, _hit: int) -> web.Response:
    return html()


def not_found(_request: web.Request, _hit: int) -> web.Response:
    return web.Response(status=404, text="not here")


class Site:
    """Pages by exact path; anything else goes to ``default`` (an empty page, robots.txt 404).
    Every handler sleeps ``sleep`` seconds first, so that concurrency is visible."""

    def __init__(self, pages: Mapping[str, Page] | None = None, *, default: Page = ok_page, sleep: float = 0.0) -> None:
        self.pages = dict(pages or {})
        self.pages.setdefault("/robots.txt", not_found)
        self.default = default
        self.sleep = sleep
        self.hits: list[Hit] = []
        self.counts: dict[str, int] = {}
        self.active = 0
        self.peak = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @asynccontextmanager
    async def serve(self, hostname: str = "127.0.0.1") -> AsyncIterator[str]:
        """Serve on 127.0.0.1 and yield the base URL spelled with ``hostname`` (``localhost``
        resolves to the same address but is another host to the crawler)."""
        async with serve(self.app()) as base_url:
            yield str(URL(base_url).with_host(hostname)).rstrip("/")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(Hit(request.method, request.path, request.path_qs, time.monotonic(), request.headers, body))
        self.counts[request.path] = count = self.counts.get(request.path, 0) + 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.sleep:
                await asyncio.sleep(self.sleep)
            result = self.pages.get(request.path, self.default)(request, count)
            return await result if inspect.isawaitable(result) else result
        finally:
            self.active -= 1

    def times(self, prefix: str = "/") -> list[float]:
        """Arrival times of requests whose path starts with ``prefix`` (robots.txt excluded
        unless asked for)."""
        return [
            hit.at
            for hit in self.hits
            if hit.path.startswith(prefix) and (hit.path != "/robots.txt" or prefix == "/robots.txt")
        ]

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]

    def requested(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]


class Proxy:
    """A plain-http forward proxy: takes absolute-form requests, records them with their
    ``Proxy-Authorization``, fetches the target itself (redirects not followed, a ``Via``
    header added so that the target can tell) and relays the answer."""

    HOP_BY_HOP = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive", "host"})

    def __init__(self) -> None:
        self.hits: list[tuple[str, str | None]] = []  # (absolute URL, Proxy-Authorization)

    @asynccontextmanager
    async def serve(self, credentials: str = "") -> AsyncIterator[str]:
        """Yield the proxy's URL, with ``user:password@`` when ``credentials`` are given."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._relay)
        async with serve(app) as base_url:
            yield base_url.replace("//", f"//{credentials}@", 1) if credentials else base_url

    async def _relay(self, request: web.Request) -> web.Response:
        self.hits.append((str(request.url), request.headers.get("Proxy-Authorization")))
        headers = {name: value for name, value in request.headers.items() if name.lower() not in self.HOP_BY_HOP}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                request.url,
                headers={**headers, "Via": "1.1 test-proxy"},
                data=await request.read(),
                allow_redirects=False,
            ) as reply,
        ):
            body = await reply.read()
            kept = {name: reply.headers[name] for name in ("Content-Type", "Location") if name in reply.headers}
            return web.Response(status=reply.status, body=body, headers=kept)


def gaps(times: Sequence[float]) -> list[float]:
    ordered = sorted(times)
    return [later - earlier for earlier, later in itertools.pairwise(ordered)]


class LinkSpider(Spider):
    """Starts from ``start`` (URLs or ready-made requests); every page yields one item
    ``{"url": ...}`` and follows every ``<a href>`` on it."""

    name = "politeness"

    def __init__(self, start: Iterable[str | Request], *, follow: bool = True) -> None:
        super().__init__()
        self.start = list(start)
        self.follow = follow

    async def start_requests(self) -> AsyncIterator[Request]:
        for entry in self.start:
            yield entry if isinstance(entry, Request) else Request(entry)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        if self.follow:
            for request in response.follow_all(css="a[href]"):
                yield request


def item_urls(database: Path) -> list[str]:
    """The ``url`` of every stored item (none when the ``item`` table was never created)."""
    if not rows(database, "SELECT 1 FROM sqlite_master WHERE name = 'item'"):
        return []
    return [url for (url,) in rows(database, "SELECT url FROM item ORDER BY rowid")]


async def crawl(spider: Spider, database: Path, **settings: Any) -> CrawlResult:
    return await Engine(spider=spider, settings=make_settings(**settings), database=database).run()
