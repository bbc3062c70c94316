"""The fetch layer (fetcher + middleware chain + retry) against aioresponses: no sockets."""

from __future__ import annotations

import re

import pytest
from aioresponses import aioresponses

from scraper.errors import ConnectionFailed, FetchTimeout, HttpStatusError, ResponseTooLarge
from scraper.fetcher import Fetcher
from scraper.http import Request, Response
from scraper.middleware import Handler, Retry, build_chain, load_middlewares
from scraper.ratelimit import HostLimiter
from scraper.settings import Settings
from scraper.stats import Stats
from tests.conftest import make_settings

URL = "http://shop.test/page"


def fetcher_for(settings: Settings, stats: Stats | None = None) -> Fetcher:
    stats = stats or Stats()
    return Fetcher(
        settings=settings,
        limiter=HostLimiter(settings=settings),
        middlewares=load_middlewares(settings=settings, stats=stats),
        stats=stats,
    )


async def test_fetch_returns_response_with_body_headers_and_request() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=200, body="<p>hi</p>", headers={"Content-Type": "text/html; charset=utf-8"})
        async with fetcher_for(make_settings()) as fetcher:
            request = Request(URL, meta={"page": 1})
            response = await fetcher.fetch(request)
    assert response.status == 200
    assert response.body == b"<p>hi</p>"
    assert response.headers["content-type"].startswith("text/html")
    assert response.request is request
    assert response.meta == {"page": 1}


async def test_request_headers_are_sent() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=200, body="ok")
        async with fetcher_for(make_settings()) as fetcher:
            await fetcher.fetch(Request(URL, headers={"X-Token": "abc"}))
        sent = next(iter(mock.requests.values()))[0].kwargs["headers"]
    assert sent["X-Token"] == "abc"


async def test_retry_cures_a_503_then_succeeds() -> None:
    stats = Stats()
    with aioresponses() as mock:
        mock.get(URL, status=503)
        mock.get(URL, status=503)
        mock.get(URL, status=200, body="finally")
        async with fetcher_for(make_settings(retry={"times": 2, "backoff": 0}), stats) as fetcher:
            response = await fetcher.fetch(Request(URL))
    assert response.body == b"finally"
    assert stats.get("retries/503") == 2


async def test_status_error_after_retries_are_exhausted() -> None:
    with aioresponses() as mock:
        for _ in range(3):
            mock.get(URL, status=500)
        async with fetcher_for(make_settings(retry={"times": 2, "backoff": 0})) as fetcher:
            with pytest.raises(HttpStatusError) as caught:
                await fetcher.fetch(Request(URL))
    assert caught.value.status == 500
    assert caught.value.url == URL


async def test_404_is_not_retried_and_raises_unless_allowed() -> None:
    stats = Stats()
    with aioresponses() as mock:
        mock.get(URL, status=404, repeat=True)
        async with fetcher_for(make_settings(), stats) as fetcher:
            with pytest.raises(HttpStatusError):
                await fetcher.fetch(Request(URL))
            allowed = await fetcher.fetch(Request(URL, meta={"allow_statuses": [404]}))
    assert allowed.status == 404
    assert stats.total("retries") == 0


async def test_connection_error_is_retried_then_translated() -> None:
    stats = Stats()
    with aioresponses() as mock:
        mock.get(URL, exception=ConnectionResetError("reset by peer"), repeat=True)
        async with fetcher_for(make_settings(retry={"times": 1, "backoff": 0}), stats) as fetcher:
            with pytest.raises(ConnectionFailed) as caught:
                await fetcher.fetch(Request(URL))
    assert "reset by peer" in str(caught.value)
    assert stats.get("retries/ConnectionFailed") == 1
    assert stats.get("requests/sent") == 2


async def test_timeout_is_translated_to_fetch_timeout() -> None:
    with aioresponses() as mock:
        mock.get(URL, exception=TimeoutError(), repeat=True)
        async with fetcher_for(make_settings(retry={"times": 0})) as fetcher:
            with pytest.raises(FetchTimeout):
                await fetcher.fetch(Request(URL))


async def test_body_over_the_cap_is_refused() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=200, body=b"x" * 5000)
        async with fetcher_for(make_settings(max_response_bytes=1000)) as fetcher:
            with pytest.raises(ResponseTooLarge):
                await fetcher.fetch(Request(URL))


async def test_post_sends_json_body() -> None:
    with aioresponses() as mock:
        mock.post(URL, status=200, body="{}")
        async with fetcher_for(make_settings()) as fetcher:
            await fetcher.fetch(Request(URL, method="POST", json={"q": 1}))
        call = next(iter(mock.requests.values()))[0]
    assert call.kwargs["data"] == b'{"q":1}'
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


async def test_chain_runs_middlewares_outermost_first() -> None:
    calls: list[str] = []

    def tagging(tag: str):  # type: ignore[no-untyped-def]
        async def middleware(request: Request, handler: Handler) -> Response:
            calls.append(f"{tag}>")
            response = await handler(request.replace(headers={**(request.headers or {}), tag: "1"}))
            calls.append(f"<{tag}")
            return response

        return middleware

    async def send(request: Request) -> Response:
        calls.append("send " + ",".join(sorted(request.headers or {})))
        return Response(url=request.url, status=200, request=request)

    handler = build_chain(send, [tagging("a"), tagging("b")])
    await handler(Request(URL))
    assert calls == ["a>", "b>", "send a,b", "<b", "<a"]


async def test_retry_middleware_gives_up_after_times() -> None:
    attempts = 0

    async def flaky(request: Request) -> Response:
        nonlocal attempts
        attempts += 1
        return Response(url=request.url, status=502, request=request)

    retry = Retry(settings=make_settings(retry={"times": 3, "backoff": 0}), stats=Stats())
    response = await retry(Request(URL), flaky)
    assert response.status == 502
    assert attempts == 4


def test_unknown_middleware_path_is_a_config_error() -> None:
    from scraper.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape("middlewares: cannot import 'nowhere'")):
        load_middlewares(settings=make_settings(middlewares=["nowhere:thing"]), stats=Stats())
