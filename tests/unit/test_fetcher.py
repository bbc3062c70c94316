"""The fetch layer (fetcher + middleware chain + retry) against aioresponses: no sockets."""

from __future__ import annotations

import re

import pytest
from aioresponses import aioresponses

from scraper.engine import load_middlewares
from scraper.errors import (
    ConfigError,
    ConnectionFailed,
    ContentTypeRefused,
    FetchTimeout,
    HttpStatusError,
    ResponseTooLarge,
)
from scraper.fetcher import Fetcher
from scraper.http import Request, Response
from scraper.middleware import Handler, Middleware, build_chain
from scraper.ratelimit import HostLimiter
from scraper.settings import Settings
from scraper.stats import Stats
from tests.conftest import make_settings

URL = "http://shop.test/page"


def fetcher_for(settings: Settings, stats: Stats | None = None) -> Fetcher:
    stats = stats or Stats()
    return Fetcher(settings=settings, limiter=HostLimiter(settings=settings, stats=stats), middlewares=[], stats=stats)


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


async def test_a_503_raises_with_its_retry_after_and_is_not_retried_here() -> None:
    stats = Stats()
    with aioresponses() as mock:
        mock.get(URL, status=503, headers={"Retry-After": "7"})
        async with fetcher_for(make_settings(), stats) as fetcher:
            with pytest.raises(HttpStatusError) as caught:
                await fetcher.fetch(Request(URL))
    assert (caught.value.status, caught.value.retry_after) == (503, "7")
    assert stats.get("requests/sent") == 1  # retries are parked by the worker, never inline


async def test_404_raises_unless_allowed() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=404, repeat=True)
        async with fetcher_for(make_settings()) as fetcher:
            with pytest.raises(HttpStatusError):
                await fetcher.fetch(Request(URL))
            allowed = await fetcher.fetch(Request(URL, meta={"allow_statuses": [404]}))
    assert allowed.status == 404


async def test_a_redirect_is_returned_not_followed() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=302, headers={"Location": "/elsewhere"})
        async with fetcher_for(make_settings()) as fetcher:
            response = await fetcher.fetch(Request(URL))
    assert response.status == 302
    assert response.headers["Location"] == "/elsewhere"


async def test_connection_error_is_translated() -> None:
    with aioresponses() as mock:
        mock.get(URL, exception=ConnectionResetError("reset by peer"))
        async with fetcher_for(make_settings()) as fetcher:
            with pytest.raises(ConnectionFailed) as caught:
                await fetcher.fetch(Request(URL))
    assert "reset by peer" in str(caught.value)


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


async def test_content_length_over_the_cap_is_refused_before_the_body() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=200, body=b"x", headers={"Content-Length": "10000000000"})
        async with fetcher_for(make_settings()) as fetcher:
            with pytest.raises(ResponseTooLarge):
                await fetcher.fetch(Request(URL))


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_large_body_never_used_is_cut_not_refused(declared: bool) -> None:
    """A redirect's or an error page's body is not used: refused for its size, a 503 lost its
    status and Retry-After (no retry, no pause) and a redirect was not followed."""
    big = b"x" * 200_000
    length = {"Content-Length": str(len(big))} if declared else {}
    with aioresponses() as mock:
        mock.get(URL, status=503, body=big, headers={"Retry-After": "1", **length})
        mock.get(URL, status=302, body=big, headers={"Location": "/elsewhere", **length})
        mock.head(URL, status=200, headers={"Content-Length": "10000000000"})
        async with fetcher_for(make_settings(max_response_bytes=100_000)) as fetcher:
            with pytest.raises(HttpStatusError) as caught:
                await fetcher.fetch(Request(URL))
            redirect = await fetcher.fetch(Request(URL))
            head = await fetcher.fetch(Request(URL, method="HEAD"))  # no body, whatever its length says
    assert (caught.value.status, caught.value.retry_after) == (503, "1")
    assert (redirect.status, redirect.headers["Location"], len(redirect.body)) == (302, "/elsewhere", 64 * 1024)
    assert (head.status, head.body) == (200, b"")


async def test_a_head_request_is_never_refused_for_its_content_type() -> None:
    """A HEAD reads no body: probing a PDF link with one (its usual use) failed as
    ContentTypeRefused, where its size alone was let through."""
    with aioresponses() as mock:
        mock.head(URL, status=200, headers={"Content-Type": "application/pdf", "Content-Length": "5000"})
        async with fetcher_for(make_settings()) as fetcher:
            head = await fetcher.fetch(Request(URL, method="HEAD"))
    assert (head.status, head.headers["Content-Type"], head.body) == (200, "application/pdf", b"")


async def test_a_body_never_used_is_not_decoded() -> None:
    """A 503 whose body came in a coding we cannot decode failed as that coding's error: its
    status, retry and Retry-After were lost, and a redirect with such a body was not followed."""
    with aioresponses() as mock:
        mock.get(URL, status=503, body=b"\x1f\x9d junk", headers={"Retry-After": "1", "Content-Encoding": "compress"})
        mock.get(URL, status=301, body=b"junk", headers={"Location": "/moved", "Content-Encoding": "compress"})
        async with fetcher_for(make_settings()) as fetcher:
            with pytest.raises(HttpStatusError) as caught:
                await fetcher.fetch(Request(URL))
            moved = await fetcher.fetch(Request(URL))
    assert (caught.value.status, caught.value.retry_after) == (503, "1")
    assert (moved.status, moved.headers["Location"]) == (301, "/moved")


async def test_a_large_error_page_that_is_asked_for_is_still_refused() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=404, body=b"x" * 5000)
        async with fetcher_for(make_settings(max_response_bytes=1000)) as fetcher:
            with pytest.raises(ResponseTooLarge):
                await fetcher.fetch(Request(URL, meta={"allow_statuses": [404]}))


async def test_content_type_outside_the_allowlist_is_refused_on_success_only() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=200, body=b"PK..", content_type="application/zip")
        mock.get(URL, status=404, body=b"gone", content_type="application/zip")
        async with fetcher_for(make_settings()) as fetcher:
            with pytest.raises(ContentTypeRefused):
                await fetcher.fetch(Request(URL))
            error_page = await fetcher.fetch(Request(URL, meta={"allow_statuses": [404]}))
    assert error_page.body == b"gone"


async def test_proxy_comes_from_the_request_then_the_settings() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=200, body="ok", repeat=True)
        async with fetcher_for(make_settings(proxy="http://proxy.test:3128")) as fetcher:
            await fetcher.fetch(Request(URL))
            await fetcher.fetch(Request(URL, meta={"proxy": "http://other.test:8080"}))
        proxies = [call.kwargs["proxy"] for call in next(iter(mock.requests.values()))]
    assert proxies == ["http://proxy.test:3128", "http://other.test:8080"]


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


async def test_a_middleware_that_returns_no_response_is_named() -> None:
    class Forgetful:
        async def __call__(self, request: Request, handler: Handler) -> Response:
            await handler(request)
            return None  # type: ignore[return-value]

    async def send(request: Request) -> Response:
        return Response(url=request.url, status=200, request=request)

    with pytest.raises(TypeError, match=r"^middleware Forgetful returned NoneType, not a Response$"):
        await build_chain(send, [Forgetful()])(Request(URL))


def returns_none() -> Middleware:
    """A middleware factory, as config.yaml names them (module level)."""

    async def mw(request: Request, handler: Handler) -> Response:
        await handler(request)
        return None  # type: ignore[return-value]

    return mw


async def test_a_middleware_made_by_a_factory_is_named_by_its_factory() -> None:
    """A closure made by a factory (the usual way to give a middleware its settings) was named
    by the closure alone: every such middleware was "mw"."""

    async def send(request: Request) -> Response:
        return Response(url=request.url, status=200, request=request)

    with pytest.raises(TypeError, match=r"^middleware returns_none\.<locals>\.mw returned NoneType, not a Response$"):
        await build_chain(send, [returns_none()])(Request(URL))


def test_unknown_middleware_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("middlewares: cannot import 'nowhere'")):
        settings = make_settings(middlewares=["nowhere:thing"])
        load_middlewares(settings=settings, stats=Stats(), limiter=HostLimiter(settings=settings, stats=Stats()))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("json:loads", "middlewares: json:loads could not be created: TypeError: loads() missing 1 required"),
        ("json:__doc__", "middlewares: json:__doc__ did not produce a callable middleware"),
    ],
)
def test_a_middleware_path_that_makes_no_middleware_is_a_config_error(path: str, message: str) -> None:
    settings = make_settings(middlewares=[path])
    with pytest.raises(ConfigError) as raised:
        load_middlewares(settings=settings, stats=Stats(), limiter=HostLimiter(settings=settings, stats=Stats()))
    assert str(raised.value).startswith(message)
