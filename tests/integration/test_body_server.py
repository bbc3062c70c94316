"""A real local server streams 1 GB compression bombs and promises a 10 GB body: the client
refuses just past the limit, closes the connection, and the server sees that long before the end."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import brotli  # type: ignore[import-untyped]
import pytest
from aiohttp import web

from scraper.body import ACCEPT_ENCODING, check_headers, read_body
from scraper.demo_site import serve
from scraper.errors import ResponseTooLarge

LIMIT = 1 << 20
BLOCK = bytes(1 << 20)
BOMB_BLOCKS = 1024  # 1 GB once decoded, never held anywhere: compressed block by block
PAYLOAD = b"".join(f"<p>paragraph {i}</p>\n".encode() for i in range(20000))


@dataclass
class Transfer:
    """What one handler sent, and whether it saw the client go away."""

    sent: int = 0
    pieces: int = 0
    reset: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Site:
    base_url: str
    session: aiohttp.ClientSession
    transfers: dict[str, Transfer]

    async def transfer(self, name: str) -> Transfer:
        """The handler's record once it has returned."""
        transfer = self.transfers[name]
        await asyncio.wait_for(transfer.done.wait(), timeout=10)
        return transfer


def gzip_bomb() -> Iterator[bytes]:
    """One gzip member; each 1 MB block sync-flushed to ~1 KB on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for _ in range(BOMB_BLOCKS):
        yield compressor.compress(BLOCK) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


def brotli_bomb() -> Iterator[bytes]:
    compressor = brotli.Compressor(quality=5)
    for _ in range(BOMB_BLOCKS):
        yield compressor.process(BLOCK) + compressor.flush()
    yield compressor.finish()


async def stream(request: web.Request, transfer: Transfer, pieces: Iterator[bytes], coding: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Encoding": coding})
    await response.prepare(request)
    try:
        for piece in pieces:
            await response.write(piece)
            transfer.sent += len(piece)
            transfer.pieces += 1
            # The client shares this event loop, and writes that fit the socket buffers never
            # suspend: yield as a server on another machine would run concurrently.
            await asyncio.sleep(0)
        await response.write_eof()
    except ConnectionResetError:  # aiohttp's "Cannot write to closing transport" is one
        transfer.reset = True
    finally:
        transfer.done.set()
    return response


async def promise_ten_gigabytes(request: web.Request, transfer: Transfer) -> web.StreamResponse:
    """Send a little of a 10 GB body, then trickle a byte every 10 ms until the client leaves."""
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    response.content_length = 10_000_000_000
    await response.prepare(request)
    try:
        await response.write(b"x" * 1024)
        transfer.sent += 1024
        async with asyncio.timeout(10):
            while True:
                await asyncio.sleep(0.01)
                await response.write(b"x")
                transfer.sent += 1
    except ConnectionResetError:
        transfer.reset = True
    finally:
        transfer.done.set()
    return response


def build_app(transfers: dict[str, Transfer]) -> web.Application:
    async def gzip_handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, transfers.setdefault("gzip", Transfer()), gzip_bomb(), "gzip")

    async def brotli_handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, transfers.setdefault("br", Transfer()), brotli_bomb(), "br")

    async def huge_handler(request: web.Request) -> web.StreamResponse:
        return await promise_ten_gigabytes(request, transfers.setdefault("huge", Transfer()))

    async def small_handler(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(PAYLOAD), headers={"Content-Encoding": "gzip"}, content_type="text/html")

    app = web.Application()
    app.router.add_get("/bomb.gz", gzip_handler)
    app.router.add_get("/bomb.br", brotli_handler)
    app.router.add_get("/huge", huge_handler)
    app.router.add_get("/small.gz", small_handler)
    return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    transfers: dict[str, Transfer] = {}
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    async with (
        serve(build_app(transfers)) as base_url,
        aiohttp.ClientSession(auto_decompress=False, headers=headers) as session,
    ):
        yield Site(base_url, session, transfers)


async def fetch_body(site: Site, path: str) -> bytes:
    """What the fetcher does: refuse by headers, read under the limit, close on refusal."""
    url = site.base_url + path
    async with site.session.get(url) as response:
        try:
            check_headers(response.headers, url=url, limit=LIMIT, content_types=("text/*",))
            return await read_body(
                response.content.iter_chunked(65536),
                content_encoding=response.headers.get("Content-Encoding"),
                limit=LIMIT,
                url=url,
            )
        except ResponseTooLarge:
            response.close()  # never leave an abandoned body on a pooled connection
            raise


async def test_small_gzip_body_is_decoded(site: Site) -> None:
    """Positive control: the same client and server path delivers a real body."""
    assert await fetch_body(site, "/small.gz") == PAYLOAD


@pytest.mark.parametrize(("path", "name"), [("/bomb.gz", "gzip"), ("/bomb.br", "br")])
async def test_bomb_is_refused_and_the_server_stops_early(site: Site, path: str, name: str) -> None:
    with pytest.raises(ResponseTooLarge, match="decoded body larger") as caught:
        await fetch_body(site, path)
    assert caught.value.url == site.base_url + path
    transfer = await site.transfer(name)
    assert transfer.reset, "the server should see the client close the connection"
    assert transfer.pieces < BOMB_BLOCKS // 16, f"server sent {transfer.pieces} of {BOMB_BLOCKS} MB"


async def test_server_sends_the_whole_bomb_to_a_client_without_a_limit(site: Site) -> None:
    """Negative control: a client that drains raw bytes gets every piece, so the count is real."""
    received = 0
    async with site.session.get(site.base_url + "/bomb.br") as response:
        async for chunk in response.content.iter_chunked(65536):
            received += len(chunk)
    transfer = await site.transfer("br")
    assert not transfer.reset
    assert transfer.pieces == BOMB_BLOCKS + 1
    assert received == transfer.sent


async def test_huge_content_length_is_refused_before_reading(site: Site) -> None:
    url = site.base_url + "/huge"
    async with site.session.get(url) as response:
        with pytest.raises(ResponseTooLarge, match="Content-Length 10000000000"):
            check_headers(response.headers, url=url, limit=LIMIT, content_types=("text/*",))
        response.close()
    transfer = await site.transfer("huge")
    assert transfer.reset, "the server should see the client close the connection"
    assert transfer.sent < 64 * 1024
