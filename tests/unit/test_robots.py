"""The robots.txt middleware against a fake inner handler: no sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from scraper import robots as robots_module
from scraper.errors import ConnectionFailed, FetchError, FetchTimeout, Filtered, TryLater
from scraper.http import Request, Response
from scraper.ratelimit import HostLimiter, Signal
from scraper.records import ErrorRecord
from scraper.robots import RobotsTxt
from scraper.settings import Settings
from scraper.stats import Stats
from tests.conftest import make_settings

Route = tuple[int, dict[str, str], bytes] | FetchError


class FakeSite:
    """The inner chain: canned answers by URL (anything else is a 200 page); records every URL."""

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes: dict[str, Route] = routes or {}
        self.requests: list[Request] = []

    @property
    def fetched(self) -> list[str]:
        return [request.url for request in self.requests]

    def robots_fetches(self) -> list[str]:
        return [request.url for request in self.requests if (request.meta or {}).get("robots_txt")]

    def pages(self) -> list[str]:
        return [request.url for request in self.requests if not (request.meta or {}).get("robots_txt")]

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        await asyncio.sleep(0)  # a real fetch yields: let concurrent callers pile up
        route = self.routes.get(request.url, (200, {}, b"page"))
        if isinstance(route, FetchError):
            raise route
        status, headers, body = route
        return Response(url=request.url, status=status, headers=headers, body=body, request=request)


class FakeLimiter:
    def __init__(self) -> None:
        self.delays: list[tuple[str, float]] = []

    def set_crawl_delay(self, host: str, seconds: float) -> None:
        self.delays.append((host, seconds))


def robots(text: str, status: int = 200) -> Route:
    return (status, {"Content-Type": "text/plain"}, text.encode())


def middleware(settings: Settings | None = None) -> tuple[RobotsTxt, Stats, FakeLimiter]:
    stats, limiter = Stats(), FakeLimiter()
    settings = settings or make_settings(user_agent="testbot/1.0", robots_txt=True)
    return RobotsTxt(settings=settings, stats=stats, limiter=limiter), stats, limiter


async def get(robots_txt: RobotsTxt, site: FakeSite, url: str, **kwargs: Any) -> Response:
    return await robots_txt(Request(url, **kwargs), site)


async def test_allows_and_disallows_by_path() -> None:
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nDisallow: /private\nAllow: /private/ok\n")})
    robots_txt, stats, _ = middleware()
    assert (await get(robots_txt, site, "http://a.test/public")).body == b"page"
    assert (await get(robots_txt, site, "http://a.test/private/ok")).status == 200
    with pytest.raises(Filtered) as caught:
        await get(robots_txt, site, "http://a.test/private/secret")
    assert caught.value.reason == "robots.txt"
    assert site.pages() == ["http://a.test/public", "http://a.test/private/ok"]
    assert site.robots_fetches() == ["http://a.test/robots.txt"]
    assert stats.get("robots/fetched") == 1
    assert stats.get("robots/disallowed") == 1


async def test_robots_request_goes_through_handler_with_its_meta() -> None:
    settings = make_settings(user_agent="testbot/1.0", robots={"max_bytes": 1234})
    site = FakeSite({"https://a.test:8443/robots.txt": robots("User-agent: *\nAllow: /\n")})
    robots_txt, _, _ = middleware(settings)
    await get(robots_txt, site, "https://a.test:8443/page?q=1")
    meta = site.requests[0].meta or {}
    assert site.requests[0].url == "https://a.test:8443/robots.txt"
    assert meta["robots_txt"] is True
    assert meta["max_response_bytes"] == 1234
    assert all(status in meta["allow_statuses"] for status in (200, 301, 404, 503))


@pytest.mark.parametrize(("user_agent", "allowed"), [("scraper/2.0", True), ("testbot/1.0", False)])
async def test_group_for_product_token_else_star(user_agent: str, allowed: bool) -> None:
    text = "User-agent: scraper\nAllow: /\n\nUser-agent: *\nDisallow: /\n"
    site = FakeSite({"http://a.test/robots.txt": robots(text)})
    robots_txt, _, _ = middleware(make_settings(user_agent=user_agent))
    if allowed:
        assert (await get(robots_txt, site, "http://a.test/page")).status == 200
    else:
        with pytest.raises(Filtered):
            await get(robots_txt, site, "http://a.test/page")
    assert site.pages() == (["http://a.test/page"] if allowed else [])


async def test_own_group_replaces_star_group() -> None:
    text = (
        "User-agent: scraper\nDisallow: /\n\nUser-agent: testbot\nDisallow: /secret\n\nUser-agent: *\nDisallow: /all\n"
    )
    site = FakeSite({"http://a.test/robots.txt": robots(text)})
    robots_txt, _, _ = middleware()
    assert (await get(robots_txt, site, "http://a.test/all")).status == 200
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/secret/x")


async def test_only_product_token_matches_groups() -> None:
    # protego would find "otherbot" inside the full UA's comment; RFC 9309 matches the token only
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: otherbot\nDisallow: /\n")})
    robots_txt, _, _ = middleware(make_settings(user_agent="testbot/1.0 (+http://otherbot.example/)"))
    assert (await get(robots_txt, site, "http://a.test/page")).status == 200


@pytest.mark.parametrize("status", [404, 401, 403, 410])
async def test_client_error_allows_everything(status: int) -> None:
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nDisallow: /\n", status=status)})
    robots_txt, stats, _ = middleware()
    assert (await get(robots_txt, site, "http://a.test/anything")).status == 200
    assert (await get(robots_txt, site, "http://a.test/else")).status == 200
    assert site.robots_fetches() == ["http://a.test/robots.txt"]
    assert stats.get("robots/allow_all") == 1
    assert stats.get("robots/fetched") == 0


async def test_server_error_parks_requests_until_window_ends() -> None:
    site = FakeSite({"http://a.test/robots.txt": robots("oops", status=503)})
    robots_txt, stats, _ = middleware(make_settings(user_agent="testbot/1.0", robots={"unavailable_retry": 30}))
    with pytest.raises(TryLater) as caught:
        await get(robots_txt, site, "http://a.test/page")
    assert caught.value.until == pytest.approx(time.monotonic() + 30, abs=0.5)
    assert "HTTP 503" in caught.value.reason
    with pytest.raises(TryLater):  # within the window: parked again, no second fetch
        await get(robots_txt, site, "http://a.test/other")
    assert site.fetched == ["http://a.test/robots.txt"]
    assert stats.get("robots/unavailable") == 1


async def test_server_error_then_fresh_fetch_after_window_is_obeyed() -> None:
    site = FakeSite({"http://a.test/robots.txt": robots("", status=500)})
    robots_txt, stats, _ = middleware(make_settings(user_agent="testbot/1.0", robots={"unavailable_retry": 0.05}))
    with pytest.raises(TryLater):
        await get(robots_txt, site, "http://a.test/public")
    site.routes["http://a.test/robots.txt"] = robots("User-agent: *\nDisallow: /private\n")
    await asyncio.sleep(0.07)
    assert (await get(robots_txt, site, "http://a.test/public")).status == 200
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/private")
    assert site.robots_fetches() == ["http://a.test/robots.txt"] * 2
    assert (stats.get("robots/unavailable"), stats.get("robots/fetched")) == (1, 1)


@pytest.mark.parametrize("error", [ConnectionFailed, FetchTimeout])
async def test_unreachable_robots_parks_requests(error: type[FetchError]) -> None:
    site = FakeSite({"http://a.test/robots.txt": error("down", url="http://a.test/robots.txt")})
    robots_txt, stats, _ = middleware()
    with pytest.raises(TryLater) as caught:
        await get(robots_txt, site, "http://a.test/page")
    assert error.__name__ in caught.value.reason
    assert site.pages() == []
    assert stats.get("robots/unavailable") == 1


@pytest.mark.parametrize(
    ("route", "error_type", "cause"),
    [
        (robots("", status=502), "HttpStatusError", "HTTP 502"),
        (ConnectionFailed("Name or service not known", url="http://a.test/robots.txt"), "ConnectionFailed", "Name or"),
    ],
)
async def test_three_unavailable_outcomes_filter_the_origin_and_say_why_once(
    route: Route, error_type: str, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    site = FakeSite({"http://a.test/robots.txt": route})
    robots_txt, stats, _ = middleware(make_settings(user_agent="testbot/1.0", robots={"unavailable_retry": 0}))
    for _ in range(2):
        with pytest.raises(TryLater):
            await get(robots_txt, site, "http://a.test/page")
    reported = []
    for _ in range(3):  # the third outcome gives up; later requests do not fetch again
        with pytest.raises(Filtered) as caught:
            await get(robots_txt, site, "http://a.test/page")
        assert caught.value.reason == "robots.txt unavailable"
        reported.append(caught.value.error)
    assert site.fetched == ["http://a.test/robots.txt"] * 3
    assert stats.get("robots/unavailable") == 3
    assert stats.get("robots/disallowed") == 3
    first, *rest = reported  # the first filtered request carries the error row, once per origin
    assert rest == [None, None] and isinstance(first, ErrorRecord)
    assert (first.url, first.stage, first.error_type) == ("http://a.test/robots.txt", "fetch", error_type)
    assert first.message.startswith(
        f"robots.txt unavailable 3 times in a row, http://a.test's requests filtered: {cause}"
    )
    assert stats.get(f"errors/fetch/{error_type}") == 1
    # the wait is said once, at the first failure: a crawl held minutes by it said nothing
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"robots.txt of http://a.test unavailable ({cause}")
    assert "its requests wait 0s, then it is asked again (given up after 3 failures in a row" in warnings[0]


async def test_redirect_followed_to_other_origin() -> None:
    site = FakeSite(
        {
            "http://a.test/robots.txt": (301, {"Location": "https://cdn.test/a/robots.txt"}, b""),
            "https://cdn.test/a/robots.txt": (302, {"Location": "rules.txt"}, b""),
            "https://cdn.test/a/rules.txt": robots("User-agent: *\nDisallow: /private\n"),
        }
    )
    robots_txt, _, _ = middleware()
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/private")
    assert (await get(robots_txt, site, "http://a.test/public")).status == 200
    assert site.robots_fetches() == [
        "http://a.test/robots.txt",
        "https://cdn.test/a/robots.txt",
        "https://cdn.test/a/rules.txt",
    ]


async def test_five_redirects_are_followed() -> None:
    routes: dict[str, Route] = {"http://a.test/robots.txt": (301, {"Location": "/r1"}, b"")}
    routes |= {f"http://a.test/r{hop}": (301, {"Location": f"/r{hop + 1}"}, b"") for hop in range(1, 5)}
    routes["http://a.test/r5"] = robots("User-agent: *\nDisallow: /\n")
    site = FakeSite(routes)
    robots_txt, _, _ = middleware()
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/page")
    assert len(site.robots_fetches()) == 6


async def test_redirect_loop_allows_everything() -> None:
    site = FakeSite(
        {
            "http://a.test/robots.txt": (301, {"Location": "/loop"}, b""),
            "http://a.test/loop": (302, {"Location": "http://a.test/robots.txt"}, b""),
        }
    )
    robots_txt, stats, _ = middleware()
    assert (await get(robots_txt, site, "http://a.test/page")).status == 200
    assert len(site.robots_fetches()) == 6  # the first fetch and five hops, then give up
    assert stats.get("robots/allow_all") == 1


async def test_redirect_to_unfetchable_target_allows_everything() -> None:
    site = FakeSite({"http://a.test/robots.txt": (301, {"Location": "ftp://a.test/robots.txt"}, b"")})
    robots_txt, stats, _ = middleware()
    assert (await get(robots_txt, site, "http://a.test/page")).status == 200
    assert site.robots_fetches() == ["http://a.test/robots.txt"]
    assert stats.get("robots/allow_all") == 1


async def test_huge_body_is_cut_at_max_bytes_and_obeyed() -> None:
    body = b"User-agent: *\nDisallow: /private\n" + b"\n" * (2 * 1024 * 1024) + b"Disallow: /tail\n"
    site = FakeSite({"http://a.test/robots.txt": (200, {}, body)})
    robots_txt, _, _ = middleware()
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/private/x")
    assert (await get(robots_txt, site, "http://a.test/tail")).status == 200  # past the cut


async def test_line_cut_at_max_bytes_is_dropped() -> None:
    body = b"User-agent: *\nDisallow: /private-area\n"
    site = FakeSite({"http://a.test/robots.txt": (200, {}, body)})
    # the cut falls inside the rule: "Disallow: /" must not survive it
    settings = make_settings(user_agent="testbot/1.0", robots={"max_bytes": body.index(b"private")})
    robots_txt, _, _ = middleware(settings)
    assert (await get(robots_txt, site, "http://a.test/page")).status == 200


@pytest.mark.parametrize(("declared", "applied"), [("2.5", 2.5), ("500", 60.0)])
async def test_crawl_delay_capped_and_told_with_each_request(declared: str, applied: float) -> None:
    text = f"User-agent: testbot\nCrawl-delay: {declared}\nDisallow: /x\n\nUser-agent: *\nCrawl-delay: 9\n"
    site = FakeSite({"http://a.test:8080/robots.txt": robots(text)})
    settings = make_settings(user_agent="testbot/1.0", robots={"max_crawl_delay": 60})
    robots_txt, _, limiter = middleware(settings)
    for path in ("/a", "/b", "/c"):
        await get(robots_txt, site, "http://a.test:8080" + path)
    assert limiter.delays == [("a.test", applied)] * 3
    assert site.robots_fetches() == ["http://a.test:8080/robots.txt"]


async def test_a_host_the_limiter_forgot_gets_its_crawl_delay_back_with_its_next_request() -> None:
    """The limiter forgets idle hosts so that memory stays flat over many hosts, but it kept
    every host with a Crawl-delay (told once, when robots.txt was read, it would have been
    lost): on a broad crawl those hosts' states piled up for good."""
    settings = make_settings(user_agent="testbot/1.0", robots_txt=True)
    limiter = HostLimiter(settings=settings, stats=Stats())
    robots_txt = RobotsTxt(settings=settings, stats=Stats(), limiter=limiter)
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nCrawl-delay: 2\n")})
    await get(robots_txt, site, "http://a.test/1")
    assert limiter.state("a.test").delay == 2.0
    limiter.begin("a.test", time.monotonic())  # its page, fetched
    limiter.end("a.test", Signal.OK)
    assert limiter.evict_idle(time.monotonic() + 1, busy=lambda host: False) == 0  # its delay is not past
    assert limiter.evict_idle(time.monotonic() + 3, busy=lambda host: False) == 1
    await get(robots_txt, site, "http://a.test/2")
    assert limiter.state("a.test").delay == 2.0  # from the cached file: not fetched again
    assert site.robots_fetches() == ["http://a.test/robots.txt"]


async def test_star_crawl_delay_and_none_without_one() -> None:
    site = FakeSite(
        {
            "http://a.test/robots.txt": robots("User-agent: *\nCrawl-delay: 3\n"),
            "http://b.test/robots.txt": robots("User-agent: *\nDisallow: /x\n"),
        }
    )
    robots_txt, _, limiter = middleware()
    await get(robots_txt, site, "http://a.test/")
    await get(robots_txt, site, "http://b.test/")
    assert limiter.delays == [("a.test", 3.0)]


async def test_one_fetch_for_many_concurrent_requests() -> None:
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nDisallow: /private\n")})
    robots_txt, stats, _ = middleware()
    responses = await asyncio.gather(*(get(robots_txt, site, f"http://a.test/p{n}") for n in range(50)))
    assert [response.status for response in responses] == [200] * 50
    assert site.robots_fetches() == ["http://a.test/robots.txt"]
    assert len(site.pages()) == 50
    assert stats.get("robots/fetched") == 1


async def test_requests_that_find_robots_txt_still_loading_after_a_moment_are_parked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host's first request loads its robots.txt alone, but another origin of the host (a port,
    https) had none of that: its other requests waited on the load, each in a worker, and a hung
    robots.txt there held all 8 workers for 8 s while other hosts' pages waited."""
    monkeypatch.setattr(robots_module, "_LATECOMER_WAIT", 0.05)
    loaded = asyncio.Event()

    class Hanging(FakeSite):
        async def __call__(self, request: Request) -> Response:
            if (request.meta or {}).get("robots_txt"):
                await loaded.wait()
            return await super().__call__(request)

    site = Hanging()
    robots_txt, _, _ = middleware()
    first = asyncio.create_task(get(robots_txt, site, "http://a.test:8080/p0"))
    await asyncio.sleep(0)  # it loads robots.txt
    asked = time.monotonic()
    with pytest.raises(TryLater, match=r"^robots\.txt of http://a\.test:8080 is still loading$") as parked:
        await get(robots_txt, site, "http://a.test:8080/p1")
    assert time.monotonic() - asked < 0.5  # a moment in the worker, not the whole load
    assert parked.value.until >= time.monotonic() + 0.04
    loaded.set()
    assert (await first).status == 200
    assert (await get(robots_txt, site, "http://a.test:8080/p1")).status == 200  # at once, the file known
    assert site.robots_fetches() == ["http://a.test:8080/robots.txt"]


async def test_one_fetch_per_origin() -> None:
    site = FakeSite()
    robots_txt, _, _ = middleware()
    urls = [f"{origin}/p{n}" for origin in ("http://a.test", "https://b.test", "http://a.test:8080") for n in range(5)]
    await asyncio.gather(*(get(robots_txt, site, url) for url in urls))
    assert sorted(site.robots_fetches()) == [
        "http://a.test/robots.txt",
        "http://a.test:8080/robots.txt",
        "https://b.test/robots.txt",
    ]


async def test_robots_requests_pass_straight_through() -> None:
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nDisallow: /\n")})
    robots_txt, stats, _ = middleware()
    response = await get(robots_txt, site, "http://a.test/robots.txt", meta={"robots_txt": True})
    assert response.status == 200
    assert site.fetched == ["http://a.test/robots.txt"]
    assert stats.get("robots/fetched") == 0


def test_the_engine_adds_the_middleware_only_when_robots_txt_is_on() -> None:
    from scraper.engine import load_middlewares
    from scraper.ratelimit import HostLimiter

    for enabled in (True, False):
        settings = make_settings(robots_txt=enabled)
        chain = load_middlewares(
            settings=settings, stats=Stats(), limiter=HostLimiter(settings=settings, stats=Stats())
        )
        assert [type(middleware) for middleware in chain] == ([RobotsTxt] if enabled else [])


async def test_a_file_is_fetched_again_once_a_day_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scraper.robots.MAX_AGE", 0.05)  # RFC 9309 2.4: at most 24 hours
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nDisallow: /old\n")})
    robots_txt, stats, _ = middleware()
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/old")
    site.routes["http://a.test/robots.txt"] = robots("User-agent: *\nDisallow: /new\n")
    assert (await get(robots_txt, site, "http://a.test/new")).status == 200  # still the cached file
    await asyncio.sleep(0.07)
    assert (await get(robots_txt, site, "http://a.test/old")).status == 200
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/new")
    assert site.robots_fetches() == ["http://a.test/robots.txt"] * 2
    assert stats.get("robots/fetched") == 2


@pytest.mark.parametrize("outage", [robots("", status=503), ConnectionFailed("down", url="http://a.test/robots.txt")])
async def test_a_known_file_that_cannot_be_fetched_again_keeps_its_rules(
    outage: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scraper.robots.MAX_AGE", 0.05)
    site = FakeSite({"http://a.test/robots.txt": robots("User-agent: *\nDisallow: /private\n")})
    robots_txt, stats, _ = middleware(make_settings(user_agent="testbot/1.0", robots={"unavailable_retry": 30}))
    await get(robots_txt, site, "http://a.test/public")
    site.routes["http://a.test/robots.txt"] = outage
    await asyncio.sleep(0.07)
    # not parked as a host never known would be: the rules kept are obeyed, and not asked for again meanwhile
    assert (await get(robots_txt, site, "http://a.test/public")).status == 200
    with pytest.raises(Filtered):
        await get(robots_txt, site, "http://a.test/private")
    assert site.robots_fetches() == ["http://a.test/robots.txt"] * 2
    assert (stats.get("robots/fetched"), stats.get("robots/unavailable")) == (1, 1)


async def test_the_cache_forgets_the_origin_unused_longest_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scraper.robots.MAX_ORIGINS", 2)
    site = FakeSite()
    robots_txt, stats, _ = middleware()
    for origin in (
        "http://a.test",
        "http://b.test",
        "http://a.test",
        "http://c.test",
        "http://a.test",
        "http://b.test",
    ):
        await get(robots_txt, site, f"{origin}/page")
    # a and b are kept; a is used again, so c pushes b out (unused longest), not a; b comes back
    assert site.robots_fetches() == [f"http://{host}.test/robots.txt" for host in "abcb"]
    assert stats.get("robots/forgotten") == 2
    assert not robots_txt._locks  # one lock per origin while its file loads, none kept after
