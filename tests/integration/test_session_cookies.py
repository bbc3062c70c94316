"""Cookies live for one crawl: a cookie set by one page is sent with the next request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Request, Response, Spider
from scraper.demo_site import serve
from scraper.engine import Engine
from tests.conftest import make_settings, rows


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
