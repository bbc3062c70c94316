"""Helpers for hostile-web scenario crawls: raw socket servers that misbehave on purpose, a good
site on another host, a spider that fetches a fixed list of URLs, and memory probes.

Every server here listens on 127.0.0.1 and stops by itself: each connection's behaviour is
cancelled when the client goes away and bounded by ``CONNECTION_LIFETIME`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from scraper import Request, Response, Spider
from scraper.demo_site import serve
from scraper.engine import CrawlResult, Engine
from tests.conftest import make_settings

CONNECTION_LIFETIME = 20.0  # no raw connection outlives this, whatever the client does
GOOD_TEXT = "a well-behaved page"

Behaviour = Callable[[asyncio.StreamWriter], Coroutine[Any, Any, None]]


@dataclass
class Connection:
    """One accepted connection, seen from the server."""

    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None  # when the client went away (EOF or reset), if it did
    request_line: bytes = b""

    @property
    def held(self) -> float:
        """Seconds the client kept the connection open (up to now if it still does)."""
        return (self.closed or time.monotonic()) - self.opened


@dataclass
class RawServer:
    url: str
    connections: list[Connection] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)  # notified when a client leaves

    def disconnected(self) -> list[Connection]:
        return [connection for connection in self.connections if connection.closed is not None]

    async def wait_disconnected(self, count: int, within: float = 5.0) -> list[Connection]:
        """The connections the client left, once there are ``count`` (or ``within`` seconds passed)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within), self.changed:
                await self.changed.wait_for(lambda: len(self.disconnected()) >= count)
        return self.disconnected()

    async def client_left(self, connection: Connection) -> None:
        async with self.changed:
            connection.closed = time.monotonic()
            self.changed.notify_all()


async def _until_client_leaves(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(behaviour: Behaviour, path: str = "/") -> AsyncIterator[RawServer]:
    """A TCP server on 127.0.0.1:0 that reads one request head, then runs ``behaviour`` until it
    returns, the client leaves, or ``CONNECTION_LIFETIME`` passes; whichever comes first."""
    handlers: set[asyncio.Task[Any]] = set()
    server_record = RawServer(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        connection = Connection()
        server_record.connections.append(connection)
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                request_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECTION_LIFETIME)
                connection.request_line = request_head.split(b"\r\n", 1)[0]
                await _run_until_client_leaves(behaviour, reader, writer, connection, server_record)
        finally:
            await _close(writer)
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server_record.url = f"http://127.0.0.1:{port}{path}"
    async with server:
        try:
            yield server_record
        finally:  # before the server's own exit, which (3.12+) waits for every connection to end
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)


async def _run_until_client_leaves(
    behaviour: Behaviour,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    connection: Connection,
    server: RawServer,
) -> None:
    """Run ``behaviour`` while watching for the client's EOF or reset; note when it left."""
    acting = asyncio.create_task(behaviour(writer))
    watching = asyncio.create_task(_until_client_leaves(reader))
    try:
        done, _ = await asyncio.wait(
            {acting, watching}, timeout=CONNECTION_LIFETIME, return_when=asyncio.FIRST_COMPLETED
        )
        write_failed = acting in done and isinstance(acting.exception(), ConnectionError)
        if watching in done or write_failed:
            await server.client_left(connection)
    finally:
        for task in (acting, watching):
            task.cancel()
        await asyncio.gather(acting, watching, return_exceptions=True)


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: SO_LINGER on, linger time 0."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def refused_url() -> str:
    """A URL nobody listens on: a port bound, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def head(status: str = "200 OK", /, **headers: str | int) -> bytes:
    """A response head; keyword names use ``_`` for ``-`` (``Content_Type``)."""
    lines = [f"HTTP/1.1 {status}"] + [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@contextlib.asynccontextmanager
async def good_site(routes: dict[str, tuple[bytes, str]] | None = None) -> AsyncIterator[str]:
    """A well-behaved aiohttp site reached as ``localhost`` (another host than 127.0.0.1 for the
    crawl's per-host limiter). ``routes`` maps a path to (body, Content-Type); ``/good`` is
    always there."""
    pages = {"/good": (f"<html><body><p>{GOOD_TEXT}</p></body></html>".encode(), "text/html; charset=utf-8")}
    pages.update(routes or {})

    async def page(request: web.Request) -> web.Response:
        if request.path not in pages:
            return web.Response(status=404, text="not here")
        body, content_type = pages[request.path]
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    async with serve(app) as base_url:
        yield base_url.replace("127.0.0.1", "localhost")


class ListSpider(Spider):
    """Fetches the given URLs; each parsed page yields one item with its first <p>'s text."""

    name = "hostile"

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__()
        self.urls = list(urls)

    async def start_requests(self) -> AsyncIterator[Request]:
        for url in self.urls:
            yield Request(url)

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        paragraph = response.css_first("p")
        yield {
            "url": response.url,
            "text": paragraph.text() if paragraph is not None else "",
            "encoding": response.encoding,
        }


@dataclass
class Crawl:
    result: CrawlResult
    elapsed: float


async def crawl(urls: Sequence[str], database: Path, **settings: Any) -> Crawl:
    """Crawl ``urls`` with test settings (``retry.times`` 1, no back-off unless overridden)."""
    settings.setdefault("retry", {"times": 1, "backoff": 0, "max_backoff": 0})
    engine = Engine(spider=ListSpider(urls), settings=make_settings(**settings), database=database)
    started = time.monotonic()
    result = await engine.run()
    return Crawl(result, time.monotonic() - started)


def resident_bytes() -> int:
    """The process's current resident set size (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak_rss() -> bool:
    """Forget the process's RSS high-water mark (Linux 4.0+), so that ``ru_maxrss`` measures
    from now on; without that an earlier test's peak could hide this one's. False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
