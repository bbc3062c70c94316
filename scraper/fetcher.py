"""Turns a ``Request`` into a ``Response``: owns the crawl's one ``aiohttp.ClientSession``,
applies per-host limits, and runs the middleware chain around the actual send.

aiohttp's exceptions stop here: callers only see ``FetchError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import aiohttp
from yarl import URL

from scraper.errors import ConnectionFailed, FetchTimeout, HttpStatusError, ResponseTooLarge
from scraper.http import Request, Response
from scraper.middleware import Handler, Middleware, build_chain
from scraper.ratelimit import HostLimiter
from scraper.settings import Settings
from scraper.stats import Stats

_READ_CHUNK = 64 * 1024


class Fetcher:
    def __init__(
        self,
        *,
        settings: Settings,
        limiter: HostLimiter,
        middlewares: Sequence[Middleware],
        stats: Stats,
    ) -> None:
        self._settings = settings
        self._limiter = limiter
        self._stats = stats
        self._session: aiohttp.ClientSession | None = None
        self._handle: Handler = build_chain(self._send, middlewares)

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(limit=self._settings.concurrency, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            headers={"User-Agent": self._settings.user_agent, **self._settings.default_headers},
            cookie_jar=aiohttp.CookieJar(),
            auto_decompress=True,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, request: Request) -> Response:
        """The response to ``request`` after middlewares; a non-2xx status raises
        ``HttpStatusError`` unless ``request.meta["allow_statuses"]`` lists it."""
        response = await self._handle(request)
        if not 200 <= response.status < 300 and response.status not in response.meta.get("allow_statuses", ()):
            raise HttpStatusError(f"HTTP {response.status}", url=response.url, status=response.status)
        return response

    async def _send(self, request: Request) -> Response:
        """One attempt on the wire, inside the host's slot."""
        assert self._session is not None, "Fetcher used outside 'async with'"
        host = URL(request.url).host or ""
        self._stats.increment("requests/sent")
        async with self._limiter.acquire(host):
            try:
                return await self._exchange(self._session, request)
            except TimeoutError:
                raise FetchTimeout(f"no complete response within {self._settings.timeout}s", url=request.url) from None
            except (aiohttp.ClientError, OSError) as exc:  # OSError: resets aiohttp does not wrap
                message = str(exc) or type(exc).__name__
                raise ConnectionFailed(f"{type(exc).__name__}: {message}", url=request.url) from exc

    async def _exchange(self, session: aiohttp.ClientSession, request: Request) -> Response:
        headers = dict(request.headers or {})
        content_type = request.content_type()
        if content_type and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
        async with session.request(
            request.method, request.url, headers=headers, data=request.body(), max_redirects=10
        ) as reply:
            body = await self._read_body(reply, request)
            self._stats.increment(f"responses/{reply.status}")
            return Response(url=str(reply.url), status=reply.status, headers=reply.headers, body=body, request=request)

    async def _read_body(self, reply: aiohttp.ClientResponse, request: Request) -> bytes:
        """The decompressed body, refused once it grows past ``max_response_bytes``."""
        limit = self._settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in reply.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(f"body larger than max_response_bytes={limit}", url=request.url)
            chunks.append(chunk)
        self._stats.increment("bytes/received", size)
        return b"".join(chunks)
