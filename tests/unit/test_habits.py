"""Tests for the hints added to errors that a Scrapy habit causes, and for how a recorded
error carries its hint and is announced once."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import sys
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from rich.console import Console

import scraper
from scraper import Item, Request, Response, Spider
from scraper.habits import annotate, hint_for
from scraper.parse_pool import _quoted
from scraper.progress import summary
from scraper.records import error_record
from scraper.stats import Stats

URL = "https://example.com/quotes"


class Quote(Item):
    text: str


@dataclasses.dataclass(frozen=True)
class Point:
    x: int


def page() -> Response:
    body = b'<div class="quote"><span class="text">A</span><a href="/next">next</a></div>'
    return Response(url=URL, status=200, body=body, request=Request(URL))


def raised(action: Callable[[], Any]) -> BaseException:
    """The error ``action`` raises, raised for real (so it carries what Python attaches)."""
    try:
        action()
    except (Exception, SystemExit) as exc:
        return exc
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (lambda: page().xpath("//div"), "XPath is not available here"),  # type: ignore[attr-defined]
        (lambda: page().css("span.text").get(), "css() returns a list of selectolax nodes"),  # type: ignore[attr-defined]
        (lambda: page().css("a").getall(), "css() returns a list of selectolax nodes"),  # type: ignore[attr-defined]
        (lambda: page().css("span").extract_first(), "css() returns a list of selectolax nodes"),  # type: ignore[attr-defined]
        (lambda: page().css_first("span").get(), "a selectolax node, not parsel's"),  # type: ignore[union-attr]
        (lambda: page().css_first("a").attrib["href"], "a node's attributes are node.attributes"),  # type: ignore[union-attr]
        (lambda: page().css_first("h1").text(), "css_first() returns None when nothing matches"),  # type: ignore[union-attr]
        (lambda: Quote(text="a")["text"], "an Item is a pydantic model, not a dict"),  # type: ignore[index]
        (lambda: page().meta["depth"], "a request's depth is response.request.depth here"),
        (lambda: Quote(text=page().css_first("span")), "a field was given a selectolax node, not its text"),  # type: ignore[arg-type]
        (lambda: Request(URL, errback=print), "errback= is Scrapy's: there is no errback"),  # type: ignore[call-arg]
        (lambda: Request(URL, method="POST", body=b"{}"), "body= is Scrapy's: the body is data="),  # type: ignore[call-arg]
        (lambda: Request(URL, formdata={"q": "x"}), 'a form is Request(url, method="POST", data={...})'),  # type: ignore[call-arg]
        (lambda: page().headers.get("Content-Type", "").decode(), "str here, not bytes as in Scrapy"),  # type: ignore[attr-defined]
        (lambda: page().headers.getlist("Set-Cookie"), "headers.getall(name) gives every value"),  # type: ignore[attr-defined]
        (lambda: Request(URL).copy(), "a Request is immutable: request.replace(...)"),  # type: ignore[attr-defined]
        (lambda: setattr(Request(URL), "url", URL + "/2"), "request.replace(url=...) makes the changed copy"),
        (lambda: Spider().log("hello"), "a spider logs with self.logger.info(...)"),  # type: ignore[attr-defined]
        (lambda: Spider().crawler.stats, "there is no crawler object here"),  # type: ignore[attr-defined]
        (lambda: Spider.settings.getfloat("DOWNLOAD_DELAY"), "a dict has no getfloat(): there is no crawler"),  # type: ignore[attr-defined]
        (lambda: Quote(text="x").get("text"), "read its fields as attributes (item.price, or getattr("),  # type: ignore[attr-defined]
        (lambda: sys.exit(2), "sys.exit() fails this page only; to end the crawl early (Scrapy's CloseSpider)"),
    ],
)
def test_a_scrapy_habit_gets_a_hint_that_says_what_to_write(action: Callable[[], Any], expected: str) -> None:
    assert expected in (hint_for(raised(action)) or "")


@pytest.mark.parametrize(
    "action",
    [
        lambda: page().no_such_thing,  # type: ignore[attr-defined]
        lambda: Spider().no_such_thing,  # type: ignore[attr-defined]
        lambda: [].append.missing,  # type: ignore[attr-defined]
        lambda: {}.get("missing")["key"],  # type: ignore[index]
        lambda: (1).text,  # type: ignore[attr-defined]
        lambda: int("x"),
        lambda: setattr(Point(1), "x", 2),
        lambda: page().meta["price"],
        lambda: Request(URL, callbak=print),  # type: ignore[call-arg]
    ],
)
def test_other_errors_get_no_hint(action: Callable[[], Any]) -> None:
    error = raised(action)
    assert hint_for(error) is None
    annotate(error)
    assert not getattr(error, "__notes__", None)


def test_a_node_in_an_invalid_item_is_named_after_a_parse_process_quoted_it() -> None:
    error = raised(lambda: Quote(text=page().css_first("span")))  # type: ignore[arg-type]
    assert isinstance(error, pydantic.ValidationError)
    sent = pickle.loads(pickle.dumps(_quoted(error)))  # a node does not pickle: its repr() travels

    assert "input_value='<LexborNode span>'" in str(sent)
    assert "a field was given a selectolax node" in (hint_for(sent) or "")
    assert hint_for(raised(lambda: Quote(text=None))) is None  # type: ignore[arg-type]


def test_the_hint_is_a_note_added_once_that_survives_pickling() -> None:
    error = raised(lambda: page().css("a").get())  # type: ignore[attr-defined]
    annotate(error)
    annotate(error)
    assert len(error.__notes__) == 1 and error.__notes__[0].startswith("hint: css() returns")
    copy = pickle.loads(pickle.dumps(error))  # as a parse process sends it back: without its obj
    assert hint_for(copy) is None and copy.__notes__ == error.__notes__


def test_an_error_row_carries_the_hint_and_only_the_first_of_a_kind_is_announced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scraper.errors")
    stats = Stats()
    records = [error_record("parse", raised(lambda: page().xpath("//a")), URL, stats) for _ in range(3)]  # type: ignore[attr-defined]
    fetch = error_record("fetch", ConnectionError("refused"), URL, stats)

    assert {record.message for record in records} == {
        "'Response' object has no attribute 'xpath' (hint: XPath is not available here (selectolax's Lexbor "
        "reads CSS selectors): take response.css_first(selector).text(), or node.attributes['href'] of each "
        "node in response.css(selector))"
    }
    assert "hint: XPath" in (records[0].traceback or "")
    assert stats.get("errors/parse/AttributeError") == 3
    assert stats.examples["errors/parse/AttributeError"] == records[0].message
    assert stats.examples["errors/fetch/ConnectionError"] == fetch.message == "refused"
    warnings = [record.getMessage() for record in caplog.records if record.name == "scraper.errors"]
    assert len(warnings) == 1  # the first parse error; the next two and the fetch error are counted only
    assert warnings[0].startswith(f"parse error on {URL}: AttributeError: 'Response' object has no attribute 'xpath'")
    assert "[tests/unit/test_habits.py:" in warnings[0] and ", in <lambda>]" in warnings[0]


def test_the_summary_shows_each_error_kind_with_its_first_message() -> None:
    stats = Stats()
    error_record("parse", raised(lambda: page().css("a").get()), URL, stats)  # type: ignore[attr-defined]
    error_record("parse", raised(lambda: page().css("a").get()), URL, stats)  # type: ignore[attr-defined]
    stats.increment("errors/fetch/FetchTimeout")  # counted in an earlier run: no example in this one
    console = Console(width=400, record=True)
    console.print(summary(spider="quotes", status="finished", reason="finished", stats=stats, database=URL))  # type: ignore[arg-type]
    lines = [line.strip() for line in console.export_text().splitlines()]

    kinds = lines.index("errors      fetch/FetchTimeout: 1")
    assert lines[kinds + 1] == "parse/AttributeError: 2"
    assert lines[kinds + 2].startswith("first: 'list' object has no attribute 'get' (hint: css() returns a list")
    assert lines[kinds + 3].startswith("database")


def test_the_line_announced_is_the_project_s_even_in_a_folder_named_like_the_framework() -> None:
    from pathlib import Path

    import scraper
    from scraper.records import _where

    beside = Path(scraper.__file__).resolve().parent.with_name("scraper_project") / "spider.py"
    namespace: dict[str, Any] = {}
    exec(compile("def parse(response):\n    return response.xpath('//a')\n", str(beside), "exec"), namespace)
    error = raised(lambda: namespace["parse"](page()))
    assert _where(error).endswith("scraper_project/spider.py:2, in parse")


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("FormRequest", 'Request(url, method="POST", data={...}) sends a form'),
        ("CloseSpider", "to end a crawl early, set close.max_items, close.max_pages or close.max_duration"),
    ],
)
def test_importing_a_scrapy_name_from_scraper_says_what_to_use(name: str, advice: str) -> None:
    """It said only "cannot import name 'FormRequest' from 'scraper'"."""
    with pytest.raises(ImportError) as raised:
        exec(f"from scraper import {name}")
    assert str(raised.value) == f"cannot import name {name!r} from 'scraper': Scrapy's; {advice}"
    with pytest.raises(AttributeError):
        scraper.no_such_name  # type: ignore[attr-defined]  # noqa: B018 - other names fail as before
