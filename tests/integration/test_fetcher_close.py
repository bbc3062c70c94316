"""The end of a crawl at high concurrency: the pooled connections close a slice per loop
turn, so that closing thousands of them never holds the loop for all of them at once."""

from __future__ import annotations

import asyncio
import math

import pytest
from aiohttp import web

from scraper import fetcher as fetcher_module
from scraper.demo_site import serve
from scraper.fetcher import Fetcher
from scraper.http import Request
from scraper.ratelimit import HostLimiter
from scraper.stats import Stats
from tests.conftest import make_settings

CONNECTIONS = 300
SLICE = 32


async def test_pooled_connections_close_a_slice_per_loop_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher_module, "_CLOSE_SLICE", SLICE)
    transports: list[asyncio.BaseTransport] = []
    all_arrived = asyncio.Event()

    async def page(request: web.Request) -> web.Response:
        assert request.transport is not None
        transports.append(request.transport)
        if len(transports) == CONNECTIONS:
            all_arrived.set()
        await all_arrived.wait()  # every request holds its connection until all are open
        return web.Response(text="<p>ok</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{n}", page)
    async with serve(app) as base_url:
        settings = make_settings(concurrency=CONNECTIONS, per_host={"concurrency": CONNECTIONS})
        stats = Stats()
        limiter = HostLimiter(settings=settings, stats=stats)
        fetcher = Fetcher(settings=settings, limiter=limiter, middlewares=[], stats=stats)
        turns = 0

        async def count_turns() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        async with fetcher:
            responses = await asyncio.gather(*(fetcher.fetch(Request(f"{base_url}/{n}")) for n in range(CONNECTIONS)))
            assert {response.status for response in responses} == {200}
            ticker = asyncio.create_task(count_turns())
            await asyncio.sleep(0)
            turns = 0
        ticker.cancel()
        assert turns >= math.ceil(CONNECTIONS / SLICE)  # the loop went round between slices
        for _ in range(200):  # the server sees every connection go
            if all(transport.is_closing() for transport in transports):
                break
            await asyncio.sleep(0.01)
        assert len(transports) == CONNECTIONS and all(transport.is_closing() for transport in transports)
