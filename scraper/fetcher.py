"""Turns a ``Request`` into a ``Response``: owns the crawl's one ``aiohttp.ClientSession`` and
runs the middleware chain around one attempt on the wire.

One attempt = wait for the host's turn, send (no automatic redirects), refuse by headers
(Content-Length, Content-Type), then read and decompress the body under a size cap, all within
one deadline. aiohttp's exceptions stop here: callers only see ``FetchError`` subclasses.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Sequence
from types import TracebackType

import aiohttp
from yarl import URL

from scraper.body import ACCEPT_ENCODING, check_headers, read_body, readable_whole
from scraper.cookies import CrawlCookieJar, StoredCookie
from scraper.deadline import Deadlines
from scraper.errors import ConnectionFailed, FetchError, FetchTimeout, HttpStatusError
from scraper.http import Request, Response
from scraper.middleware import Handler, Middleware, build_chain
from scraper.ratelimit import HostLimiter
from scraper.redirect import is_redirect
from scraper.settings import Settings
from scraper.stats import Stats

_READ_CHUNK = 64 * 1024
_UNUSED_BODY_LIMIT = 64 * 1024  # of a body read but never used (a redirect's, an error page's)
_CLOSE_SLICE = 256  # pooled connections closed per loop turn at the end of a crawl
_KEEP_ALIVE = 2.0  # seconds an idle connection is kept for reuse (see __aenter__)


class Fetcher:
    def __init__(
        self,
        *,
        settings: Settings,
        limiter: HostLimiter,
        middlewares: Sequence[Middleware],
        stats: Stats,
        cookies: Iterable[StoredCookie] = (),
    ) -> None:
        """``cookies``: the jar's content to start from (what a resumed crawl kept)."""
        self._settings = settings
        self._kept_cookies = cookies
        self.cookie_jar: CrawlCookieJar | None = None  # None: the crawl keeps no cookies (or not yet open)
        self._limiter = limiter
        self._stats = stats
        self._session: aiohttp.ClientSession | None = None
        self._content_types = tuple(settings.content_types)  # hashable: the media type check is cached
        # the total deadline of every attempt: one shared check a second, where aiohttp's own
        # would arm and cancel a loop timer per request
        self._deadlines = Deadlines(settings.timeout)
        self._handle: Handler = build_chain(self._send, middlewares)

    async def __aenter__(self) -> Fetcher:
        # limit counts connections in use only; an idle one is kept keepalive_timeout seconds
        # (15 by default), one per host: over 20,000 hosts at concurrency 32 that was 18,100
        # open sockets and 110 MB. A busy host reuses its connections well within 2 s.
        connector = aiohttp.TCPConnector(
            limit=self._settings.concurrency, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=_KEEP_ALIVE
        )
        jar: aiohttp.abc.AbstractCookieJar = aiohttp.DummyCookieJar()
        if self._settings.cookies:
            jar = self.cookie_jar = CrawlCookieJar(unsafe=True)
            self.cookie_jar.restore(self._kept_cookies)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(),  # none: _send's deadline covers the whole attempt
            headers={
                "User-Agent": self._settings.user_agent,
                "Accept-Encoding": ACCEPT_ENCODING,
                **self._settings.default_headers,
            },
            cookie_jar=jar,
            auto_decompress=False,
        )
        # aiohttp sends an idempotent request again, at once, when its connection closes before
        # any answer (RFC 9112 9.3.1): outside the host's delay, and unseen by the counts (a
        # server that reset each connection saw 7 requests for 5 sent, 1 ms apart at delay 1).
        # Our retry does it, spaced and counted. (Private, as aiohttp's own test client sets it;
        # in a version without it, aiohttp resends.)
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await close_pooled_connections(self._session.connector)
            await self._session.close()
            self._session = None

    async def fetch(self, request: Request) -> Response:
        """The response to ``request`` after middlewares. A redirect is returned as it is (the
        worker follows it); another non-2xx status raises ``HttpStatusError`` unless
        ``request.meta["allow_statuses"]`` lists it."""
        response = await self._handle(request)
        status = response.status
        if 200 <= status < 300 or is_redirect(response) or status in response.meta.get("allow_statuses", ()):
            return response
        retry_after = response.headers.get("Retry-After")
        raise HttpStatusError(f"HTTP {status}", url=response.url, status=status, retry_after=retry_after)

    async def _send(self, request: Request) -> Response:
        """One attempt on the wire, within the request's total deadline."""
        url = request.parsed_url()  # parsed once: aiohttp takes the URL as it is
        await self._limiter.wait_turn(url.host or "", request.url)
        self._stats.increment("requests/sent")
        try:
            return await self._deadlines.within(self._exchange(request, url))
        except TimeoutError:  # the deadline (aiohttp's own timeout errors are TimeoutErrors too)
            raise FetchTimeout(f"no complete response within {self._settings.timeout:g}s", url=request.url) from None
        except aiohttp.ClientHttpProxyError as exc:  # the proxy's own answer: its status is real
            raise ConnectionFailed(f"{type(exc).__name__}: {exc}", url=request.url) from exc
        except aiohttp.ClientResponseError as exc:  # aiohttp's parser refused what the server sent
            # said as it is: aiohttp words it "400, message=...", which read as the server's HTTP 400
            said = f"the response is not valid HTTP: {exc.message}"
            raise ConnectionFailed(f"{type(exc).__name__}: {said}", url=request.url) from exc
        except (aiohttp.ClientError, OSError) as exc:  # OSError: resets aiohttp does not wrap
            raise ConnectionFailed(f"{type(exc).__name__}: {exc or 'connection failed'}", url=request.url) from exc

    async def _exchange(self, request: Request, url: URL) -> Response:
        """Connect (or reuse a connection), send, and read the whole body."""
        session = self._session
        assert session is not None, "Fetcher used outside 'async with'"
        headers: dict[str, str] | None = None  # most requests: a plain GET, nothing to add
        data: bytes | None = None
        if request.headers or request.data is not None or request.json is not None:
            headers, data = request.headers_to_send(), request.body()
        proxy = (request.meta.get("proxy") if request.meta else None) or self._settings.proxy
        async with session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False, proxy=proxy
        ) as reply:
            self._stats.increment(f"responses/{reply.status}")
            try:
                body = await self._read(reply, request)
            except FetchError:
                reply.close()  # never leave an abandoned body on a pooled connection
                raise
            url_text = request.text_of(reply.url)  # the URL sent: redirects are not followed here
            return Response(url=url_text, status=reply.status, headers=reply.headers, body=body, request=request)

    async def _read(self, reply: aiohttp.ClientResponse, request: Request) -> bytes:
        """The body, refused by its headers first. Error pages and redirects are read whatever
        their type; a request's ``meta["content_types"]`` replaces the setting (``[]``: any)."""
        meta = request.meta
        if meta:
            limit = int(meta.get("max_response_bytes", self._settings.max_response_bytes))
            truncate = bool(meta.get("truncate_body"))
            content_types: Sequence[str] = meta.get("content_types", self._content_types)
        else:  # most requests: the settings as they are, without three lookups
            limit, truncate, content_types = self._settings.max_response_bytes, False, self._content_types
        status = reply.status
        headers = reply.headers
        coding = headers.get("Content-Encoding")
        if not 200 <= status < 300:
            content_types = ()
            if not (meta and status in meta.get("allow_statuses", ())) or request.method == "HEAD":
                # a body never used (a redirect's, an error's: what counts is the status, its
                # Location or Retry-After) is read up to a cap as it came, neither refused nor
                # decoded: refused for its size or its coding, a 503 lost its status, its retry
                # and its Retry-After, and a redirect was not followed
                limit, truncate, coding = min(limit, _UNUSED_BODY_LIMIT), True, None
        elif request.method == "HEAD":  # no body, whatever Content-Length or Content-Type says
            truncate, content_types = True, ()
        length_cap = sys.maxsize if truncate else limit  # a truncated read never needs the whole body
        length = check_headers(headers, url=request.url, limit=length_cap, content_types=content_types)
        if readable_whole(headers, length) and (not truncate or (length is not None and length <= limit)):
            body = await reply.read()
            self._stats.increment("bytes/received", len(body))
            return body
        body = await read_body(
            reply.content.iter_chunked(_READ_CHUNK),
            content_encoding=coding,
            limit=limit,
            url=request.url,
            truncate=truncate,
        )
        if truncate and not reply.content.at_eof():
            reply.close()  # the rest of the body is not wanted (one read whole keeps its connection)
        self._stats.increment("bytes/received", len(body))
        return body


async def close_pooled_connections(connector: aiohttp.BaseConnector | None) -> None:
    """Close the pool's idle connections a slice per loop turn. aiohttp's own close takes
    them all in one call, and the loop then runs every one's ``connection_lost`` in one
    turn: after a crawl at concurrency 5,000 the loop served no timer for 90-130 ms.

    The pool is aiohttp's private ``_conns`` (the same from 3.10 to 3.13, the versions this
    project allows); should it be missing, the session's own close does all the work."""
    pool = getattr(connector, "_conns", None)
    if not isinstance(pool, dict):
        return
    idle = [protocol for entries in pool.values() for protocol, _ in entries]
    pool.clear()
    for start in range(0, len(idle), _CLOSE_SLICE):
        for protocol in idle[start : start + _CLOSE_SLICE]:
            protocol.close()
        await asyncio.sleep(0)  # those connections' connection_lost run before the next slice
