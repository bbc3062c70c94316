"""Cookies live for one crawl: a cookie set by one page is sent with the next request, and
after a resume too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Request, Response, Spider
from scraper.demo_site import serve
from scraper.engine import Engine
from tests.conftest import make_settings, rows
from tests.integration.test_durable import stopped_after


def cookie_site() -> web.Application:
    async def login(request: web.Request) -> web.Response:
        response = web.Response(text='<a href="/account">account</a>', content_type="text/html")
        response.set_cookie("session", "s3cret", path="/")
        return response

    async def account(request: web.Request) -> web.Response:
        return web.Response(text=f"<p>{request.cookies.get('session', 'none')}</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/login", login)
    app.router.add_get("/account", account)
    return app


class LoginSpider(Spider):
    name = "login"

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/login")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for request in response.follow_all(css="a", callback=self.parse_account):
            yield request

    async def parse_account(self, response: Response) -> AsyncIterator[Any]:
        node = response.css_first("p")
        yield {"session": node.text() if node is not None else ""}


@pytest.mark.parametrize(("cookies", "expected"), [(True, "s3cret"), (False, "none")])
async def test_a_cookie_set_by_one_page_is_sent_with_the_next(tmp_path: Path, cookies: bool, expected: str) -> None:
    async with serve(cookie_site()) as base_url:
        result = await Engine(
            spider=LoginSpider(base_url), settings=make_settings(cookies=cookies), database=tmp_path / "c.db"
        ).run()
    assert result.status == "finished"
    assert rows(tmp_path / "c.db", "SELECT session FROM item") == [(expected,)]


def members_site(hits: Counter[str]) -> web.Application:
    """A login page that sets a session (and a preference for a day), and 30 members' pages,
    slow, that show who asks: only a logged-in visitor sees the member."""

    async def login(request: web.Request) -> web.Response:
        hits["login"] += 1
        links = "".join(f'<a href="/member/{n}">{n}</a>' for n in range(30))
        response = web.Response(text=links, content_type="text/html")
        response.set_cookie("session", "s3cret")
        response.set_cookie("theme", "dark", max_age=86400)
        return response

    async def member(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)
        who = request.cookies.get("session", "logged out")
        return web.Response(text=f"<p>{who} {request.cookies.get('theme')}</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/login", login)
    app.router.add_get("/member/{n}", member)
    return app


class MembersSpider(LoginSpider):
    name = "members"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("first_frontier", ["sqlite", "memory"])  # interrupted, a memory crawl resumes with sqlite
async def test_a_resumed_crawl_is_still_logged_in_and_a_finished_one_keeps_no_cookie(
    tmp_path: Path, first_frontier: str
) -> None:
    """The jar was not kept: every page fetched after the resume was fetched logged out."""
    database, hits = tmp_path / "c.db", Counter[str]()
    async with serve(members_site(hits)) as base_url:
        settings = make_settings(per_host={"concurrency": 1})
        first = make_settings(per_host={"concurrency": 1}, frontier={"backend": first_frontier})
        stopped = await stopped_after(
            Engine(spider=MembersSpider(base_url), settings=first, database=database), items=3
        )
        kept = rows(database, "SELECT name, value, host_only, expires IS NOT NULL FROM scraper_cookies ORDER BY name")
        resumed = await Engine(spider=MembersSpider(base_url), settings=settings, database=database).run()
    assert stopped.status == "interrupted" and resumed.resumed and resumed.status == "finished"
    assert hits["login"] == 1
    assert kept == [("session", "s3cret", 1, 0), ("theme", "dark", 1, 1)]  # Max-Age kept as the date it comes to
    assert rows(database, "SELECT session, count(*) FROM item GROUP BY session") == [("s3cret dark", 30)]
    assert rows(database, "SELECT count(*) FROM scraper_cookies") == [(0,)]
