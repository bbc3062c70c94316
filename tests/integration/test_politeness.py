"""End-to-end politeness and safety scenarios, judged at the server: what arrived, when, with
which headers. Timing checks carry a tolerance and a negative control (the same crawl with
the feature off, or at another value, must look different)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Request, Response
from scraper.engine import CrawlResult
from tests.conftest import rows
from tests.integration.politeness_site import (
    LinkSpider,
    Page,
    Proxy,
    Site,
    crawl,
    gaps,
    html,
    item_urls,
    links,
    not_found,
    ok_page,
    redirect,
)

SLACK = 0.85
"""A wait of ``t`` seconds must show at the server as at least ``t * SLACK``: the crawler spaces
request *starts*, and an arrival can lag its start by some milliseconds (connection set-up, and
the site shares the crawler's event loop)."""

# -- 1. per-host concurrency ----------------------------------------------------------------


@pytest.mark.parametrize("limit", [2, 6])
async def test_per_host_concurrency_caps_requests_in_flight_at_the_server(database: Path, limit: int) -> None:
    site = Site(sleep=0.05)
    async with site.serve() as base:
        result = await crawl(
            LinkSpider(f"{base}/p/{n}" for n in range(30)), database, concurrency=16, per_host={"concurrency": limit}
        )
    assert result.status == "finished" and result.stats.get("pages") == 30
    assert site.peak <= limit
    # negative control: the limit is what holds the peak down (6 lets more than 2 in at once)
    assert site.peak == limit


async def test_host_override_caps_one_host_and_not_the_other(database: Path) -> None:
    slow, fast = Site(sleep=0.05), Site(sleep=0.05)
    async with slow.serve("localhost") as slow_base, fast.serve() as fast_base:
        start = [f"{slow_base}/s/{n}" for n in range(12)] + [f"{fast_base}/f/{n}" for n in range(12)]
        result = await crawl(
            LinkSpider(start), database, per_host={"concurrency": 4}, hosts={"localhost": {"concurrency": 1}}
        )
    assert result.stats.get("pages") == 24
    assert (slow.peak, fast.peak) == (1, 4)


# -- 2. per-host delay ----------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.2, 0.0])
async def test_per_host_delay_spaces_arrivals_at_the_server(database: Path, delay: float) -> None:
    site = Site()
    async with site.serve() as base:
        result = await crawl(
            LinkSpider(f"{base}/p/{n}" for n in range(6)), database, per_host={"delay": delay, "adaptive": False}
        )
    assert result.stats.get("pages") == 6
    spaces = gaps(site.times("/p/"))
    if delay:
        assert min(spaces) >= delay * SLACK
    else:  # control: without a delay the six requests arrive almost at once
        assert sum(spaces) < 0.15


async def test_a_delayed_host_does_not_slow_another_host(database: Path) -> None:
    a, b = Site(), Site()
    async with a.serve("localhost") as a_base, b.serve() as b_base:
        start = [f"{a_base}/a/{n}" for n in range(4)] + [f"{b_base}/b/{n}" for n in range(4)]
        began = time.monotonic()
        result = await crawl(LinkSpider(start), database, per_host={"delay": 0.25, "adaptive": False})
        elapsed = time.monotonic() - began
    assert result.stats.get("pages") == 8
    a_times, b_times = a.times("/a/"), b.times("/b/")
    assert min(gaps(a_times)) >= 0.25 * SLACK and min(gaps(b_times)) >= 0.25 * SLACK
    # interleaved, not one host after the other: B starts before A is done, and the whole
    # crawl takes about one host's time (~0.75 s), not both in a row (>= 1.75 s)
    assert min(b_times) < max(a_times) and min(a_times) < max(b_times)
    assert elapsed < 1.5


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_host_whose_requests_were_spilled_is_crawled_beside_the_one_filling_memory(
    database: Path, backend: str
) -> None:
    """With the durable frontier, memory holds ``frontier.buffer`` requests. A's page of 80
    links filled it, and the link to B's page was spilled behind 40 more of A's; each refill,
    waiting for the buffer to be half empty and reading the best (oldest) rows, loaded A's
    first, so B waited for most of A (30 hosts with a delay crawled at the pace of 5). A host
    with spilled rows and none in memory is now loaded into the buffer's room. The memory
    frontier, which holds everything, is the measure."""
    b = Site({"/": lambda _request, _hit: links(*(f"/b/{n}" for n in range(40)))})
    async with b.serve() as b_base:
        a = Site({"/": lambda _request, _hit: links(*(f"/a/{n}" for n in range(80)), f"{b_base}/")})
        async with a.serve("localhost") as a_base:
            result = await crawl(
                LinkSpider([f"{a_base}/"]),
                database,
                frontier={"backend": backend, "buffer": 40},
                per_host={"delay": 0.02, "adaptive": False},
            )
    assert result.stats.get("pages") == 122
    a_times, b_times = sorted(a.times("/a/")), sorted(b.times("/b/"))
    assert min(b_times) < a_times[40]  # B side by side with A, not after most of it
    assert max(b_times) < a_times[-1]


async def crawl_failing_host_then_another(
    database: Path,
    backend: str,
    *,
    a_links: int,
    b_links: int,
    failure: Callable[[], web.Response | Awaitable[web.Response]],
    b_answers_after: float = 0.0,
    b_pages: Page = ok_page,
    **settings: Any,
) -> tuple[CrawlResult, Site, Site]:
    """A's page links ``a_links`` pages of A, which all answer ``failure()``, then B's page,
    which links ``b_links`` pages of B; ``frontier.buffer`` 40 and one request at a time a
    host. A rests, and B must be crawled meanwhile."""

    async def b_page(_request: web.Request, _hit: int) -> web.Response:
        await asyncio.sleep(b_answers_after)
        return links(*(f"/b/{n}" for n in range(b_links)))

    b = Site({"/": b_page}, default=b_pages)
    async with b.serve() as b_base:
        a = Site(
            {"/": lambda _request, _hit: links(*(f"/a/{n}" for n in range(a_links)), f"{b_base}/")},
            default=lambda _request, _hit: failure(),
        )
        async with a.serve("localhost") as a_base:
            settings.setdefault("per_host", {"concurrency": 1, "delay": 0.01, "adaptive": False})
            result = await crawl(
                LinkSpider([f"{a_base}/"]), database, frontier={"backend": backend, "buffer": 40}, **settings
            )
    return result, a, b


REST_FOR_30_S: dict[str, Any] = {"breaker": {"failures": 2, "pause": 30, "max_trips": 0}, "retry": {"times": 0}}


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_resting_host_does_not_hold_the_memory_another_host_needs(database: Path, backend: str) -> None:
    """A's page of 80 links filled the durable frontier's memory, then A's pages failed and
    its breaker rested it: its requests held the buffer for the whole rest, and B, spilled
    behind them, waited it out (five dead hosts with many links stalled a crawl for their
    rests, minutes). A resting host gives its room back. The memory frontier is the measure."""
    result, a, b = await crawl_failing_host_then_another(
        database,
        backend,
        a_links=80,
        b_links=30,
        failure=lambda: html(status=503),
        close={"max_duration": 4},
        **REST_FOR_30_S,
    )
    assert result.stats.get("hosts/breaker_trips") == 1
    assert len(a.times("/a/")) == 2  # A rested after its breaker's two failures
    assert len(b.times("/b/")) == 30  # B crawled while A rests


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_host_paused_by_retry_after_with_no_retry_left_gives_its_room_back(
    database: Path, backend: str
) -> None:
    """A's pages answer 503 with Retry-After: 30 and no retry is left (``retry.times`` 0): the
    pause was set after the page's outcome and only a retry told the frontier of a rest, so A's
    requests held the buffer for the whole pause."""
    result, a, b = await crawl_failing_host_then_another(
        database,
        backend,
        a_links=80,
        b_links=30,
        failure=lambda: html(status=503, headers={"Retry-After": "30"}),
        retry={"times": 0, "max_retry_after": 60},
        close={"max_duration": 4},
    )
    assert result.stats.get("hosts/paused") == 1
    assert len(a.times("/a/")) == 1  # A paused after its first page
    assert len(b.times("/b/")) == 30  # B crawled while A pauses


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_host_resting_before_anything_spilled_gives_its_room_back_once_it_is_needed(
    database: Path, backend: str
) -> None:
    """A's 30 links fit in memory, A's breaker trips, and only then does B's page (slow to
    answer) spill 50 of its 60 links: a rest that began while nothing waited in the database
    was forgotten, and B had 10 places in memory for the whole rest."""
    result, a, b = await crawl_failing_host_then_another(
        database,
        backend,
        a_links=30,
        b_links=60,
        failure=lambda: html(status=503),
        b_answers_after=0.7,  # A trips (two failures, about 0.1 s) first
        per_host={"concurrency": 1, "delay": 0.05, "adaptive": False},
        close={"max_duration": 6},
        **REST_FOR_30_S,
    )
    assert result.stats.get("hosts/breaker_trips") == 1
    assert len(a.times("/a/")) == 2
    assert len(b.times("/b/")) == 60  # B crawled while A rests


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_hung_host_does_not_hold_the_memory_another_host_needs(database: Path, backend: str) -> None:
    """A's page of 80 links filled the durable frontier's memory, then A's pages hung, one in
    flight at a time: A's queue never drained, and B, spilled behind it, waited as long as
    A's pages took (a minute for a buffer of 50 and a hung host). Neither a rest nor a
    failure tells of it; after hungry hosts have waited a second, A keeps its share of the
    memory and gives the rest back. A's pages answer once B is crawled (or after 10 s, which
    only the defect waits for). The memory frontier is the measure."""
    b_done = asyncio.Event()

    async def hung() -> web.Response:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await b_done.wait()
        return html()

    b_served = 0

    def b_page(request: web.Request, hit: int) -> web.Response:
        nonlocal b_served
        b_served += 1
        if b_served == 30:
            b_done.set()
        return ok_page(request, hit)

    result, a, b = await crawl_failing_host_then_another(
        database,
        backend,
        a_links=80,
        b_links=30,
        failure=hung,
        b_pages=b_page,
        per_host={"concurrency": 1, "adaptive": False},
        close={"max_duration": 12},
    )
    assert b_done.is_set() and len(b.times("/b/")) == 30
    assert sorted(a.times("/a/"))[1] > max(b.times("/b/"))  # B was crawled while A's first page hung
    # once: A's 39 queued (one in flight) down to half the buffer (two hosts), for good
    assert result.stats.get("frontier/shared_out") == (39 - 40 // 2 if backend == "sqlite" else 0)


async def test_host_delay_override_leaves_other_hosts_at_full_speed(database: Path) -> None:
    slow, fast = Site(), Site()
    async with slow.serve("localhost") as slow_base, fast.serve() as fast_base:
        start = [f"{slow_base}/s/{n}" for n in range(3)] + [f"{fast_base}/f/{n}" for n in range(10)]
        await crawl(LinkSpider(start), database, hosts={"localhost": {"delay": 0.3, "adaptive": False}})
    slow_times, fast_times = slow.times("/s/"), fast.times("/f/")
    assert min(gaps(slow_times)) >= 0.3 * SLACK
    # all of the fast host is done before the slow one's 3rd start (with the delay on it, 9 gaps >= 2.7 s)
    assert max(fast_times) < sorted(slow_times)[2]
    assert sum(gaps(fast_times)) < 0.5


# -- 3. 429 and Retry-After -----------------------------------------------------------------


def http_date_in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


RETRY_AFTER_CASES = [
    # (Retry-After value, settings.retry extras, min pause, max pause)
    pytest.param(lambda: "1", {}, SLACK, 2.0, id="seconds"),
    pytest.param(lambda: http_date_in(2), {}, SLACK, 2.5, id="http-date"),  # 1-2 s: dates have whole seconds
    pytest.param(lambda: "99999", {"max_retry_after": 0.5}, 0.5 * SLACK, 1.2, id="capped"),
    pytest.param(lambda: "soon", {}, 0.0, 0.3, id="garbage-falls-back-to-backoff"),
]


@pytest.mark.parametrize(("value", "retry", "min_pause", "max_pause"), RETRY_AFTER_CASES)
async def test_retry_after_pauses_the_host_and_only_that_host(
    database: Path, value: Callable[[], str], retry: dict[str, float], min_pause: float, max_pause: float
) -> None:
    def limited(_request: web.Request, hit: int) -> web.Response:
        return html("<p>limited</p>", status=429, headers={"Retry-After": value()}) if hit == 1 else html()

    a = Site({"/limited": limited})
    b = Site(sleep=0.12)
    async with a.serve("localhost") as a_base, b.serve() as b_base:
        start = [f"{a_base}/limited"] + [f"{a_base}/a/{n}" for n in range(3)] + [f"{b_base}/b/{n}" for n in range(10)]
        result = await crawl(
            LinkSpider(start),
            database,
            per_host={"concurrency": 1, "adaptive": False},
            retry={"times": 2, "backoff": 0, "max_backoff": 0, **retry},
        )
    assert result.status == "finished"
    a_times = a.times()
    assert a.paths()[0] == "/limited"
    pause = a_times[1] - a_times[0]  # the 429, then the next request of any kind to host A
    assert min_pause <= pause < max_pause
    if min_pause:
        # host B went on during A's pause
        assert sum(a_times[0] < t < a_times[0] + min_pause for t in b.times("/b/")) >= 2
    assert rows(database, "SELECT state, attempts, last_status FROM scraper_requests WHERE url LIKE '%/limited'") == [
        ("done", 2, 200)
    ]
    assert rows(database, "SELECT count(*) FROM item WHERE url LIKE '%/limited'") == [(1,)]
    assert result.stats.get("pages") == 14


async def test_retry_after_pause_also_holds_requests_already_handed_out(database: Path) -> None:
    """One worker, many requests of one host: two sit in the engine's queue and one in the
    feeder's hand when the 429 arrives. They must wait for the pause too, not go out during it."""

    def limited(_request: web.Request, hit: int) -> web.Response:
        return html(status=429, headers={"Retry-After": "1"}) if hit == 1 else html()

    site = Site({"/limited": limited}, sleep=0.05)
    async with site.serve() as base:
        start = [f"{base}/limited"] + [f"{base}/p/{n}" for n in range(6)]
        await crawl(LinkSpider(start), database, concurrency=1, per_host={"adaptive": False})
    first = site.requested("/limited")[0].at
    during_pause = [hit.path for hit in site.hits if first < hit.at < first + SLACK]
    assert during_pause == []


# -- 4. 503 storm: AIMD slow-down and the circuit breaker -----------------------------------


def storm(failures: int) -> Callable[[web.Request, int], web.Response]:
    """A page handler for the whole host: its first ``failures`` requests get 503, then 200."""
    seen = 0

    def page(_request: web.Request, _hit: int) -> web.Response:
        nonlocal seen
        seen += 1
        return html("<p>overloaded</p>", status=503) if seen <= failures else html()

    return page


@pytest.mark.parametrize("adaptive", [True, False])
async def test_503s_make_the_adaptive_limiter_spread_the_retries(database: Path, adaptive: bool) -> None:
    site = Site(default=storm(4))
    async with site.serve() as base:
        result = await crawl(
            LinkSpider(f"{base}/p/{n}" for n in range(4)),
            database,
            per_host={"adaptive": adaptive, "max_delay": 0.3},
            breaker={"failures": 100},
            retry={"times": 3, "backoff": 0, "max_backoff": 0},
        )
    assert result.status == "finished" and result.stats.get("pages") == 4
    times = sorted(site.times("/p/"))
    first_wave, retries = times[:4], times[4:]
    assert len(retries) == 4 and max(first_wave) - min(first_wave) < 0.1  # all four at once at first
    if adaptive:  # halved concurrency, doubled delay: the retries come one by one, spread out
        assert result.stats.get("hosts/slowed_down") == 1  # once for the burst: each 503 had halved it anew
        assert max(retries) - min(retries) >= 0.4
    else:  # control: nothing slows the host; back-off is zero, so the retries come at once
        assert result.stats.get("hosts/slowed_down") == 0
        assert max(retries) - min(retries) < 0.15


@pytest.mark.timeout(30)
@pytest.mark.parametrize("breaker_failures", [3, 100])
async def test_503_storm_trips_the_breaker_for_that_host_only(database: Path, breaker_failures: int) -> None:
    a, b = Site(default=storm(5)), Site(sleep=0.1)
    async with a.serve("localhost") as a_base, b.serve() as b_base:
        start = [f"{a_base}/a/{n}" for n in range(3)] + [f"{b_base}/b/{n}" for n in range(8)]
        result = await crawl(
            LinkSpider(start),
            database,
            per_host={"max_delay": 0.2},
            hosts={"127.0.0.1": {"concurrency": 1}},
            breaker={"failures": breaker_failures, "pause": 1.0},
            retry={"times": 4, "backoff": 0, "max_backoff": 0},
        )
    assert result.status == "finished"
    assert result.stats.get("pages") == 11  # A's pages succeed in the end, B's all did
    assert rows(database, "SELECT state, count(*) FROM scraper_requests GROUP BY state") == [("done", 11)]
    assert result.stats.get("hosts/slowed_down") >= 3
    a_times = sorted(a.times("/a/"))
    spaces = gaps(a_times)
    rest = max(spaces)  # the longest silence towards host A
    rest_began = a_times[spaces.index(rest)]
    if breaker_failures == 3:
        assert result.stats.get("hosts/breaker_trips") == 1
        assert rest >= 1.0 * SLACK  # breaker.pause
        # host B is not paused with A
        assert sum(rest_began < t < rest_began + SLACK for t in b.times("/b/")) >= 3
    else:  # control: no breaker, no rest (only the adaptive delay, at most 0.2 s)
        assert result.stats.get("hosts/breaker_trips") == 0
        assert rest < 0.5


@pytest.mark.timeout(30)
async def test_a_host_that_is_down_for_good_is_given_up_and_the_crawl_ends(database: Path) -> None:
    """20 requests to a port nothing listens on rested that host for ever longer: not done
    after 5 minutes with the default settings; now its requests fail once it is given up."""
    with socket.socket() as probe:  # a free port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    up = Site()
    async with up.serve("localhost") as up_base:  # another host: it goes on
        start = [f"{dead}/p/{n}" for n in range(20)] + [f"{up_base}/fine"]
        result = await crawl(
            LinkSpider(start, follow=False),
            database,
            robots_txt=False,
            breaker={"failures": 3, "pause": 0.2, "max_trips": 3},
            retry={"times": 2, "backoff": 0, "max_backoff": 0},
        )
    assert result.status == "finished"
    assert result.stats.get("hosts/given_up") == 1
    failed = rows(database, "SELECT reason, count(*) FROM scraper_requests WHERE state = 'failed' GROUP BY reason")
    given_up = ("127.0.0.1 given up after 3 breaker trips in a row (3 failures each)",)
    assert [reason for reason, _ in failed if reason.startswith("127.0.0.1 given up")] == list(given_up)
    assert sum(count for _, count in failed) == 20  # each dead request failed, none is left waiting
    assert rows(database, "SELECT url FROM scraper_requests WHERE state = 'done'") == [(f"{up_base}/fine",)]
    # a request failed unsent counts no attempt: the attempts are the connections tried
    [(attempts,)] = rows(database, "SELECT sum(attempts) FROM scraper_requests")
    assert attempts == result.stats.get("requests/sent")


# -- 5. redirect loops, hop limits, chains --------------------------------------------------


async def test_redirect_loop_is_refused(database: Path) -> None:
    site = Site({"/a": lambda _r, _h: redirect("/b"), "/b": lambda _r, _h: redirect("/a")})
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/a"]), database)
    assert result.status == "finished"
    assert site.paths() == ["/a", "/b"]
    assert rows(database, "SELECT url, state, reason FROM scraper_requests ORDER BY id") == [
        (f"{base}/a", "done", f"redirect to {base}/b"),
        (f"{base}/b", "failed", f"redirect loop back to {base}/a"),
    ]
    assert rows(database, "SELECT url, stage, error_type FROM scraper_errors") == [
        (f"{base}/b", "fetch", "RedirectRefused")
    ]
    assert item_urls(database) == []


def chain_site(length: int) -> Site:
    """/r/0 redirects to /r/1 ... to /r/<length>, a page."""

    def hop(request: web.Request, _hit: int) -> web.Response:
        number = int(request.path.rsplit("/", 1)[-1])
        return redirect(f"/r/{number + 1}") if number < length else html()

    return Site(default=hop)


@pytest.mark.parametrize(("length", "followed"), [(15, False), (11, False), (10, True)])
async def test_redirects_beyond_max_hops_are_refused(database: Path, length: int, followed: bool) -> None:
    site = chain_site(length)
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/r/0"]), database, redirect={"max_hops": 10})
    assert result.status == "finished"
    if followed:  # exactly max_hops redirects are fine
        assert site.paths() == [f"/r/{n}" for n in range(11)]
        assert rows(database, "SELECT url FROM item") == [(f"{base}/r/10",)]
        assert rows(database, "SELECT count(*) FROM scraper_errors") == [(0,)]
    else:
        assert site.paths() == [f"/r/{n}" for n in range(11)]  # /r/11 and beyond never requested
        assert rows(database, "SELECT url, state, reason FROM scraper_requests WHERE state != 'done'") == [
            (f"{base}/r/10", "failed", "more than 10 redirects")
        ]
        assert rows(database, "SELECT url, error_type FROM scraper_errors") == [(f"{base}/r/10", "RedirectRefused")]
        assert item_urls(database) == []


async def test_redirect_chain_is_followed_and_each_hop_is_a_done_row(database: Path) -> None:
    statuses = {"/c/0": 301, "/c/1": 302, "/c/2": 307}

    def hop(request: web.Request, _hit: int) -> web.Response:
        status = statuses.get(request.path)
        return redirect(f"/c/{int(request.path[-1]) + 1}", status) if status else html()

    site = Site(default=hop)
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/c/0"]), database)
    assert result.status == "finished" and result.stats.get("redirects") == 3
    assert site.paths() == ["/c/0", "/c/1", "/c/2", "/c/3"]
    assert rows(database, "SELECT url, state, reason, last_status, attempts FROM scraper_requests ORDER BY id") == [
        (f"{base}/c/0", "done", f"redirect to {base}/c/1", 301, 1),
        (f"{base}/c/1", "done", f"redirect to {base}/c/2", 302, 1),
        (f"{base}/c/2", "done", f"redirect to {base}/c/3", 307, 1),
        (f"{base}/c/3", "done", None, 200, 1),
    ]
    assert rows(database, "SELECT url, _url FROM item") == [(f"{base}/c/3", f"{base}/c/3")]


async def test_a_redirect_status_the_request_allows_goes_to_its_callback_unfollowed(database: Path) -> None:
    """Scrapy's dont_redirect, here: the spider reads the redirect itself."""
    site = Site({"/a": lambda _r, _h: redirect("/b", 301), "/b": lambda _r, _h: html()})
    seen: list[tuple[int, str]] = []

    class ReadsRedirects(LinkSpider):
        async def parse(self, response: Response) -> AsyncIterator[Any]:
            seen.append((response.status, response.headers.get("Location", "")))
            yield {"url": response.url}

    async with site.serve() as base:
        start = [Request(f"{base}/a", meta={"allow_statuses": [301]}), f"{base}/b"]
        result = await crawl(ReadsRedirects(start), database)
    assert result.status == "finished" and result.stats.get("redirects") == 0
    assert sorted(seen) == [(200, ""), (301, "/b")]
    assert sorted(site.paths()) == ["/a", "/b"]
    assert rows(database, "SELECT url, state, last_status, reason FROM scraper_requests ORDER BY url") == [
        (f"{base}/a", "done", 301, None),
        (f"{base}/b", "done", 200, None),
    ]


# -- 6. what a redirect carries -------------------------------------------------------------

SECRETS = {
    "Authorization": "Bearer secret",
    "Cookie": "session=abc",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
    "X-Api-Key": "key-123",
    "X-Auth-Token": "token-456",
}


async def test_cross_origin_redirect_drops_credentials_same_origin_keeps_them(database: Path) -> None:
    b = Site()
    async with b.serve() as b_base:
        a = Site({"/cross": lambda _r, _h: redirect(f"{b_base}/landing"), "/same": lambda _r, _h: redirect("/kept")})
        async with a.serve() as a_base:  # another port: another origin
            headers = {**SECRETS, "X-Custom": "keep-me"}
            start = [Request(f"{a_base}/cross", headers=headers), Request(f"{a_base}/same", headers=headers)]
            result = await crawl(LinkSpider(start), database)
    assert result.status == "finished" and result.stats.get("pages") == 2
    [crossed] = b.requested("/landing")
    assert [name for name in SECRETS if name in crossed.headers] == []
    assert crossed.headers["X-Custom"] == "keep-me"
    [kept] = a.requested("/kept")
    assert {name: kept.headers.get(name) for name in SECRETS} == {
        **SECRETS,
        "Proxy-Authorization": None,  # never carried to a next hop: derived from the proxy setting
    }
    assert kept.headers["X-Custom"] == "keep-me"
    # the first hop did carry them all (the test can see a leak)
    assert a.requested("/cross")[0].headers["Authorization"] == "Bearer secret"


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [(301, "GET", b""), (302, "GET", b""), (303, "GET", b""), (307, "POST", b"q=1"), (308, "POST", b"q=1")],
)
async def test_post_redirect_method_and_body(database: Path, status: int, method: str, body: bytes) -> None:
    site = Site({"/form": lambda _r, _h: redirect("/target", status)})
    async with site.serve() as base:
        result = await crawl(LinkSpider([Request(f"{base}/form", method="POST", data={"q": "1"})]), database)
    assert result.status == "finished" and result.stats.get("pages") == 1
    assert site.requested("/form")[0].body == b"q=1"
    [target] = site.requested("/target")
    assert (target.method, target.body) == (method, body)
    content_type = "application/x-www-form-urlencoded" if body else None
    assert target.headers.get("Content-Type") == content_type
    assert rows(database, "SELECT method FROM scraper_requests WHERE url LIKE '%/target'") == [(method,)]


# -- 7. redirects to other schemes ----------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "  file:///etc/passwd",
        "file://localhost/etc/passwd",
        "data:text/html,<a href='http://127.0.0.1:9/'>x</a>",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "ftp://127.0.0.1/pub",
        "view-source:http://127.0.0.1/",
    ],
)
async def test_redirect_to_a_non_http_target_is_refused(database: Path, location: str) -> None:
    site = Site({"/go": lambda _r, _h: redirect(location)})
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/go"]), database)
    assert result.status == "finished"
    assert site.paths() == ["/go"]
    assert result.stats.get("requests/sent") == 1
    assert rows(database, "SELECT url, state FROM scraper_requests") == [(f"{base}/go", "failed")]
    [(error_type, message)] = rows(database, "SELECT error_type, message FROM scraper_errors")
    assert error_type == "RedirectRefused" and "non-http(s)" in message
    assert item_urls(database) == []


# -- 8. robots.txt --------------------------------------------------------------------------


@pytest.mark.parametrize("obey", [True, False])
async def test_robots_disallowed_paths_are_never_requested(database: Path, obey: bool) -> None:
    site = Site(
        {
            "/robots.txt": lambda _r, _h: web.Response(text="User-agent: *\nDisallow: /private\n"),
            "/": lambda _r, _h: links("/public/1", "/private/1", "/private/2/deep", "/public/jump"),
            "/public/jump": lambda _r, _h: redirect("/private/3"),
        }
    )
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/", f"{base}/private/0"]), database, robots_txt=obey)
    assert result.status == "finished"
    private = [path for path in site.paths() if path.startswith("/private")]
    filtered = rows(database, "SELECT url FROM scraper_requests WHERE state = 'filtered' AND reason = 'robots.txt'")
    if obey:
        assert private == []
        assert sorted(url for (url,) in filtered) == [
            f"{base}/private/0",
            f"{base}/private/1",
            f"{base}/private/2/deep",
            f"{base}/private/3",  # reached by a redirect: the hop is checked too
        ]
        assert len(site.requested("/robots.txt")) == 1
        assert result.stats.get("robots/disallowed") == 4
    else:  # control: the same crawl ignoring robots.txt does fetch them
        assert sorted(private) == ["/private/0", "/private/1", "/private/2/deep", "/private/3"]
        assert filtered == []
    assert {"/", "/public/1", "/public/jump"} <= set(site.paths())


@pytest.mark.parametrize("first_status", [503, 200])
async def test_unavailable_robots_txt_holds_the_pages_then_is_fetched_again(database: Path, first_status: int) -> None:
    def robots(_request: web.Request, hit: int) -> web.Response:
        return web.Response(text="User-agent: *\nAllow: /\n", status=first_status if hit == 1 else 200)

    site = Site({"/robots.txt": robots})
    async with site.serve() as base:
        result = await crawl(
            LinkSpider(f"{base}/p/{n}" for n in range(4)),
            database,
            robots_txt=True,
            robots={"unavailable_retry": 0.3},
        )
    assert result.status == "finished" and result.stats.get("pages") == 4
    robots_times, page_times = site.times("/robots.txt"), site.times("/p/")
    if first_status == 503:
        assert len(robots_times) == 2  # fetched again once the window passed
        assert min(page_times) - robots_times[0] >= 0.3 * SLACK  # no page during the window
        assert result.stats.get("robots/unavailable") == 1
    else:  # control: robots.txt answers at once, the pages follow at once
        assert len(robots_times) == 1
        assert max(page_times) - robots_times[0] < 0.2
    # waiting for robots.txt is not an attempt
    assert rows(database, "SELECT DISTINCT state, attempts FROM scraper_requests") == [("done", 1)]


@pytest.mark.parametrize("robots_txt", [True, False])
async def test_a_hung_robots_txt_holds_one_worker_not_all(database: Path, robots_txt: bool) -> None:
    """Every request of a host waits for its robots.txt, each in a worker: with eight of A's
    handed out at once, A's hung file held all four workers until the timeout, and B waited.
    A new host's first request now goes alone (it loads the file); without robots.txt
    (control), A's pages answer at once, and nothing waits."""

    async def hung(_request: web.Request, _hit: int) -> web.Response:
        await asyncio.sleep(5)
        return not_found(_request, _hit)

    a, b = Site({"/robots.txt": hung}), Site()
    async with a.serve("localhost") as a_base, b.serve() as b_base:
        start = [f"{a_base}/a/{n}" for n in range(8)] + [f"{b_base}/b/{n}" for n in range(8)]
        began = time.monotonic()
        await crawl(
            LinkSpider(start, follow=False),
            database,
            concurrency=4,
            robots_txt=robots_txt,
            timeout=1.5,
            robots={"unavailable_retry": 30},
            close={"max_duration": 2.5},
        )
    b_times = b.times("/b/")
    assert len(b_times) == 8 and max(b_times) - began < 1.0  # before A's robots.txt timed out
    if robots_txt:
        assert len(a.times("/robots.txt")) == 1 and a.times("/a/") == []
    else:
        assert len(a.times("/a/")) == 8


async def test_robots_txt_unavailable_for_good_filters_the_pages_unfetched(database: Path) -> None:
    site = Site({"/robots.txt": lambda _r, _h: html(status=503)})
    async with site.serve() as base:
        result = await crawl(
            LinkSpider(f"{base}/p/{n}" for n in range(3)), database, robots_txt=True, robots={"unavailable_retry": 0.1}
        )
    assert result.status == "finished"
    assert site.paths() == ["/robots.txt"] * 3  # three tries, a window apart, then the origin is given up
    assert gaps(site.times("/robots.txt"))[0] >= 0.1 * SLACK
    assert rows(database, "SELECT DISTINCT state, reason FROM scraper_requests") == [
        ("filtered", "robots.txt unavailable")
    ]
    # one error row says why (a host that does not resolve was once only 'filtered')
    assert rows(database, "SELECT stage, error_type, url, message FROM scraper_errors") == [
        (
            "fetch",
            "HttpStatusError",
            f"{base}/robots.txt",
            f"robots.txt unavailable 3 times in a row, {base}'s requests filtered: HTTP 503",
        )
    ]


@pytest.mark.parametrize("crawl_delay", [0.3, None])
async def test_robots_crawl_delay_spaces_arrivals(database: Path, crawl_delay: float | None) -> None:
    text = "User-agent: *\nAllow: /\n" + (f"Crawl-delay: {crawl_delay}\n" if crawl_delay else "")
    site = Site({"/robots.txt": lambda _r, _h: web.Response(text=text)})
    async with site.serve() as base:
        result = await crawl(LinkSpider(f"{base}/p/{n}" for n in range(5)), database, robots_txt=True)
    assert result.stats.get("pages") == 5
    spaces = gaps(site.times("/p/"))
    if crawl_delay:
        assert min(spaces) >= crawl_delay * SLACK
    else:  # control
        assert sum(spaces) < 0.2


@pytest.mark.parametrize(
    "max_delay",
    [
        0.2,  # a cap below the Crawl-delay must not undercut it
        30.0,  # control: a cap above the Crawl-delay keeps every gap
    ],
)
async def test_throttling_never_undercuts_the_crawl_delay(database: Path, max_delay: float) -> None:
    def flaky(_request: web.Request, hit: int) -> web.Response:
        return html(status=503) if hit == 1 else html()

    site = Site({"/robots.txt": lambda _r, _h: web.Response(text="User-agent: *\nCrawl-delay: 0.4\n"), "/p/0": flaky})
    async with site.serve() as base:
        result = await crawl(
            LinkSpider(f"{base}/p/{n}" for n in range(4)),
            database,
            robots_txt=True,
            per_host={"max_delay": max_delay},
        )
    assert result.stats.get("pages") == 4 and result.stats.get("hosts/slowed_down") == 1
    assert len(site.times("/p/")) == 5
    assert min(gaps(site.times("/p/"))) >= 0.4 * SLACK


# -- 9. crawler traps -----------------------------------------------------------------------


def calendar(request: web.Request, _hit: int) -> web.Response:
    """Every month links to the next and the previous one, forever."""
    year, month = map(int, request.query["month"].split("-"))
    index = year * 12 + month - 1
    following, previous = divmod(index + 1, 12), divmod(index - 1, 12)
    return links(
        f"/calendar?month={following[0]}-{following[1] + 1:02d}", f"/calendar?month={previous[0]}-{previous[1] + 1:02d}"
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("window", [10, 0])
async def test_calendar_trap_ends_at_the_date_window(database: Path, window: int) -> None:
    this_year = datetime.date.today().year
    site = Site({"/calendar": calendar})
    async with site.serve() as base:
        began = time.monotonic()
        result = await crawl(
            LinkSpider([f"{base}/calendar?month={this_year}-06"]),
            database,
            links={"date_window_years": window},
            close={"max_pages": 400},
        )
        elapsed = time.monotonic() - began
    years = {int(hit.path_qs.split("=")[1][:4]) for hit in site.hits if hit.path == "/calendar"}
    if window:
        assert (result.status, result.reason) == ("finished", "finished")
        assert elapsed < 8
        assert result.stats.get("requests/filtered/date_out_of_window") > 0
        assert min(years) == this_year - window and max(years) == this_year + window
    else:  # control: without the window only the page budget stops it
        assert result.reason == "max_pages"
        assert max(years) - min(years) > 2 * 10


@pytest.mark.parametrize("limit", [3, 5])
async def test_relative_link_loop_ends_by_repeated_segments(database: Path, limit: int) -> None:
    site = Site(default=lambda _r, _h: links("a/"))  # /a/ -> /a/a/ -> /a/a/a/ ...
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/a/"]), database, links={"max_repeated_segments": limit})
    assert result.status == "finished"
    assert site.paths() == ["/a" * depth + "/" for depth in range(1, limit + 1)]
    assert result.stats.get("requests/filtered/repeated_segments") == 1


@pytest.mark.parametrize("strip", [True, False])
async def test_session_ids_do_not_cause_refetching(database: Path, strip: bool) -> None:
    counter = iter(range(10**6))

    def page(_request: web.Request, _hit: int) -> web.Response:
        return links(*(f"/s/{n}?PHPSESSID={next(counter):08x}&view=full" for n in range(5)))

    site = Site(default=page)
    settings = {} if strip else {"links": {"session_parameters": []}}
    async with site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/s/0?view=full"]), database, close={"max_pages": 30}, **settings)
    if strip:
        assert (result.status, result.reason) == ("finished", "finished")
        assert sorted(site.counts.items()) == [(f"/s/{n}", 1) for n in range(5)]
        assert result.stats.get("requests/filtered/duplicate") > 0
    else:  # control: every link looks new, pages are fetched again and again until the budget
        assert result.reason == "max_pages"
        assert max(site.counts.values()) > 1


# -- 10. scope: allowed_domains -------------------------------------------------------------


class LocalhostOnly(LinkSpider):
    allowed_domains = ("localhost",)


@pytest.mark.parametrize("scoped", [True, False])
async def test_offsite_links_and_redirects_are_filtered(database: Path, scoped: bool) -> None:
    other = Site()
    async with other.serve() as other_base:  # 127.0.0.1: same address, another host name
        site = Site(
            {
                "/": lambda _r, _h: links(
                    "/inside", f"{other_base}/linked", "http://notlocalhost:1/", "http://localhost.evil.test:1/"
                ),
                "/jump": lambda _r, _h: redirect(f"{other_base}/redirected"),
            }
        )
        async with site.serve("localhost") as base:
            spider = (LocalhostOnly if scoped else LinkSpider)([f"{base}/", f"{base}/jump"])
            result = await crawl(spider, database, retry={"times": 0})
    assert result.status == "finished"
    assert {"/", "/inside", "/jump"} <= set(site.paths())
    offsite = rows(database, "SELECT url FROM scraper_requests WHERE state = 'filtered' AND reason = 'offsite'")
    if scoped:
        assert other.hits == []
        assert sorted(url for (url,) in offsite) == sorted(
            [
                f"{other_base}/linked",
                f"{other_base}/redirected",
                "http://localhost.evil.test:1/",
                "http://notlocalhost:1/",
            ]
        )
        assert result.stats.get("requests/filtered/offsite") == 4
        assert rows(database, "SELECT state, reason FROM scraper_requests WHERE url = ?", (f"{base}/jump",)) == [
            ("done", f"redirect to {other_base}/redirected")
        ]
    else:  # control: without allowed_domains the other host is crawled
        assert sorted(other.paths()) == ["/linked", "/redirected"]
        assert offsite == []


# -- 11. proxies ----------------------------------------------------------------------------


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def test_proxy_setting_sends_every_request_through_the_proxy_with_credentials(database: Path) -> None:
    proxy, site = Proxy(), Site({"/": lambda _r, _h: links("/next")})
    async with proxy.serve("user:pass") as proxy_url, site.serve() as base:
        result = await crawl(LinkSpider([f"{base}/"]), database, proxy=proxy_url, robots_txt=True)
    assert result.status == "finished" and result.stats.get("pages") == 2
    assert proxy.hits == [
        (f"{base}/robots.txt", basic("user:pass")),
        (f"{base}/", basic("user:pass")),
        (f"{base}/next", basic("user:pass")),
    ]
    assert all(hit.headers.get("Via") == "1.1 test-proxy" for hit in site.hits)  # none went direct
    assert all("Proxy-Authorization" not in hit.headers for hit in site.hits)


async def test_a_request_proxy_is_not_carried_across_origins_by_a_redirect(database: Path) -> None:
    proxy, b = Proxy(), Site()
    async with proxy.serve("meta:secret") as proxy_url, b.serve() as b_base:
        a = Site({"/jump": lambda _r, _h: redirect(f"{b_base}/landing"), "/stay": lambda _r, _h: redirect("/kept")})
        async with a.serve() as a_base:
            meta = {"proxy": proxy_url}
            start = [Request(f"{a_base}/jump", meta=meta), Request(f"{a_base}/stay", meta=meta)]
            result = await crawl(LinkSpider(start, follow=False), database)
    assert result.status == "finished" and result.stats.get("pages") == 2
    assert sorted(proxy.hits) == [
        (f"{a_base}/jump", basic("meta:secret")),
        (f"{a_base}/kept", basic("meta:secret")),  # control: a same-origin hop keeps the proxy
        (f"{a_base}/stay", basic("meta:secret")),
    ]
    [landing] = b.hits
    assert "Via" not in landing.headers and "Proxy-Authorization" not in landing.headers


async def test_robots_txt_goes_through_the_request_proxy(database: Path) -> None:
    proxy, site = Proxy(), Site()
    async with proxy.serve("meta:secret") as proxy_url, site.serve() as base:
        spider = LinkSpider([Request(f"{base}/page", meta={"proxy": proxy_url})])
        result = await crawl(spider, database, robots_txt=True)
    assert result.stats.get("pages") == 1
    assert (f"{base}/page", basic("meta:secret")) in proxy.hits  # the page itself does go through it
    assert [(hit.path, hit.headers.get("Via")) for hit in site.hits] == [
        ("/robots.txt", "1.1 test-proxy"),
        ("/page", "1.1 test-proxy"),
    ]


# -- 12. every request ends accounted for ---------------------------------------------------


class MixedSpider(LocalhostOnly):
    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if response.url.endswith("/boom"):
            raise RuntimeError("callback bug")
        async for output in super().parse(response):
            yield output


MIXED_LINKS = (
    *("/ok/1", "/ok/1#again", "/ok/2"),  # pages, one twice
    "/private/x",  # robots.txt says no
    *("/missing", "/down", "/boom"),  # 404, 500 after a retry, a callback that raises
    *("/moved", "/loop1", "/limited"),  # a redirect, a redirect loop, a 429 then 200
    *("/a/a/a/a/", "mailto:x@example.com"),  # a trap and a non-http link: filtered before admission
)


@pytest.mark.timeout(30)
async def test_every_request_of_a_mixed_crawl_ends_done_failed_or_filtered(database: Path) -> None:
    other = Site()
    async with other.serve() as other_base:
        site = Site(
            {
                "/robots.txt": lambda _r, _h: web.Response(text="User-agent: *\nDisallow: /private\n"),
                "/": lambda _r, _h: links(*MIXED_LINKS, f"{other_base}/offsite"),
                "/missing": not_found,
                "/down": lambda _r, _h: html(status=500),
                "/moved": lambda _r, _h: redirect("/ok/3"),
                "/loop1": lambda _r, _h: redirect("/loop2"),
                "/loop2": lambda _r, _h: redirect("/loop1"),
                "/limited": lambda _r, hit: html(status=429, headers={"Retry-After": "0"}) if hit == 1 else html(),
            }
        )
        async with site.serve("localhost") as base:
            result = await crawl(MixedSpider([f"{base}/"]), database, robots_txt=True, retry={"times": 1})
    assert (result.status, result.reason) == ("finished", "finished")
    states = rows(database, "SELECT url, state, reason, last_status FROM scraper_requests")
    assert {state for _, state, _, _ in states} == {"done", "failed", "filtered"}  # nothing left pending
    assert all(reason for _, state, reason, _ in states if state in ("failed", "filtered"))
    by_url = {url.removeprefix(base): (state, reason) for url, state, reason, _ in states}
    assert by_url["/private/x"] == ("filtered", "robots.txt")
    assert by_url[f"{other_base}/offsite".removeprefix(base)] == ("filtered", "offsite")
    assert {by_url[path][0] for path in ("/missing", "/down", "/loop2", "/boom")} == {"failed"}
    assert {by_url[path][0] for path in ("/", "/ok/1", "/ok/2", "/ok/3", "/moved", "/loop1", "/limited")} == {"done"}
    # every admitted request has a row; refusals at admission have rows but were never admitted
    refused = sum(1 for _, state, reason, _ in states if state == "filtered" and reason == "offsite")
    assert result.stats.get("requests/admitted") == len(states) - refused
    # every failure has its error row; every page parsed is a done row that is not a redirect hop
    failed = {url for url, state, _, _ in states if state == "failed"}
    assert failed == {url for (url,) in rows(database, "SELECT url FROM scraper_errors")}
    parsed = [url for url, state, reason, _ in states if state == "done" and reason is None]
    assert result.stats.get("pages") == len(parsed) + 1  # + /boom: fetched, its callback failed
    # everything the crawler sent arrived at a server, and nothing arrived that it did not count
    assert result.stats.get("requests/sent") == len(site.hits) + len(other.hits)
    assert other.hits == []
