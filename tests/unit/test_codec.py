"""Requests as rows for the SQLite frontier: callback by name, JSON fields, no pickle."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import math
from decimal import Decimal
from typing import Any

import pytest

from scraper.codec import RequestNotStorable, decode, encode
from scraper.http import Request
from scraper.item import Item
from scraper.spider import Spider

URL = "https://example.com/page"


class ShopSpider(Spider):
    name = "shop"

    async def parse_detail(self, response: Any) -> None:
        return None


def row_of(request: Request) -> dict[str, Any]:
    encoded = encode(request)
    return {
        "url": request.url,
        "method": request.method,
        "headers": encoded.headers,
        "body": encoded.body,
        "meta": encoded.meta,
        "cb_kwargs": encoded.cb_kwargs,
        "callback": encoded.callback,
        "priority": request.priority,
        "dont_filter": int(request.dont_filter),
        "depth": request.depth,
    }


def test_callback_is_stored_by_name() -> None:
    spider = ShopSpider()
    assert encode(Request(URL)).callback == "parse"
    assert encode(Request(URL, callback=spider.parse_detail)).callback == "parse_detail"


def test_a_request_survives_the_round_trip() -> None:
    spider = ShopSpider()
    original = Request(
        URL, callback=spider.parse_detail, method="POST", json={"q": 1}, meta={"page": [1, 2]},
        cb_kwargs={"kind": "lamp"}, priority=3, dont_filter=True, depth=2,
    )  # fmt: skip
    restored = decode(row_of(original), spider)
    assert restored.callback == spider.parse_detail
    assert (restored.url, restored.method, restored.body(), restored.meta, restored.cb_kwargs) == (
        URL, "POST", b'{"q":1}', {"page": [1, 2]}, {"kind": "lamp"}
    )  # fmt: skip
    assert (restored.priority, restored.dont_filter, restored.depth) == (3, True, 2)
    assert restored.headers == {"Content-Type": "application/json"}


def test_meta_that_is_not_json_names_the_key() -> None:
    with pytest.raises(RequestNotStorable, match=r"meta\['when'\] of https://example.com/page"):
        encode(Request(URL, meta={"fine": 1, "when": dt.datetime(2026, 1, 1)}))


def test_a_callback_that_is_not_a_spider_method_is_refused() -> None:
    async def loose(response: Any) -> None:
        return None

    with pytest.raises(RequestNotStorable, match="method of the spider") as raised:
        encode(Request(URL, callback=loose))
    assert str(raised.value).endswith(f"not {loose!r}")  # no hint where none is clear


def test_a_method_of_another_object_than_a_spider_is_refused() -> None:
    """Stored by its name and looked up on the spider, callback=self.helper.parse_detail ran the
    spider's own parse_detail once the request had waited in the database (9 pages of 10)."""

    class Helper:
        async def parse_detail(self, response: Any) -> None:
            return None

    with pytest.raises(RequestNotStorable, match=r"must be a method of the spider .*: it is Helper's") as raised:
        encode(Request(URL, callback=Helper().parse_detail))
    assert "delegate from a method of the spider" in str(raised.value)


def test_a_callback_by_name_or_a_partial_is_refused_saying_what_to_pass() -> None:
    spider = ShopSpider()
    with pytest.raises(
        RequestNotStorable, match=r"not 'parse_detail': pass the method itself, callback=self.parse_detail$"
    ):
        encode(Request(URL, callback="parse_detail"))  # type: ignore[arg-type]
    with pytest.raises(RequestNotStorable, match=r"pass the method, and its other arguments as cb_kwargs=\{\.\.\.\}$"):
        encode(Request(URL, callback=functools.partial(spider.parse_detail, page=2)))


def test_a_stored_callback_the_spider_no_longer_has_is_an_error() -> None:
    row = row_of(Request(URL, callback=ShopSpider().parse_detail))
    row["callback"] = "parse_gone"
    with pytest.raises(RequestNotStorable, match="parse_gone"):
        decode(row, ShopSpider())


def test_an_item_handed_on_in_cb_kwargs_says_how_to_pass_it() -> None:
    class Quote(Item):
        text: str

    request = Request("http://a.test/author", cb_kwargs={"quote": Quote(text="x")})
    with pytest.raises(RequestNotStorable) as raised:
        encode(request)
    assert str(raised.value).endswith(
        "is not JSON serializable (pass cb_kwargs['quote'].model_dump(mode='json'), and rebuild it in the callback)"
    )


def test_an_items_dump_with_a_decimal_says_how_to_make_it_json() -> None:
    """README had said to pass an item as model_dump(): with a Decimal or a date, every such
    request failed, and the message did not say what would do."""

    class Listing(Item):
        price: Decimal
        seen_at: dt.datetime

    listing = Listing(price=Decimal("54.99"), seen_at=dt.datetime(2026, 11, 24, 4, 0))
    with pytest.raises(RequestNotStorable) as raised:
        encode(Request("http://a.test/p/1", meta={"item": listing.model_dump()}))
    assert str(raised.value) == (
        "meta['item'] of http://a.test/p/1 cannot be stored as JSON: Object of type Decimal is not JSON serializable"
        " (an item's model_dump(mode='json') gives dates and decimals as JSON values)"
    )
    encoded = encode(Request("http://a.test/p/1", meta={"item": listing.model_dump(mode="json")}))
    assert encoded.meta == '{"item":{"price":"54.99","seen_at":"2026-11-24T04:00:00"}}'


BACK = "which comes back from the crawl's file as"


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    ONE = 1


@pytest.mark.parametrize(
    ("meta", "cb_kwargs", "message"),
    [
        ({"map": {1: "a"}}, None, f"meta['map'] of http://a.test/ has the key 1, {BACK} \"1\": use strings"),
        (None, {"ids": [7, (2, 3)]}, f"cb_kwargs['ids'][1] of http://a.test/ is a tuple, {BACK} a list: pass a list"),
        ({2.5: "x"}, None, f'meta of http://a.test/ has the key 2.5, {BACK} "2.5": use strings'),
        (
            {(1, 2): "x"},
            None,
            "meta of http://a.test/ has the key (1, 2), which the crawl's file cannot keep as a key: use strings",
        ),
        (
            None,
            {"colour": [Colour.RED]},
            f"cb_kwargs['colour'][0] of http://a.test/ is a Colour (<Colour.RED: 'red'>), {BACK} a plain str: "
            "pass the plain value (an Enum's .value)",
        ),
        (
            {"n": Size.ONE},
            None,
            f"meta['n'] of http://a.test/ is a Size (<Size.ONE: 1>), {BACK} a plain int: "
            "pass the plain value (an Enum's .value)",
        ),
    ],
)
def test_a_value_that_json_would_give_back_changed_is_refused(
    meta: dict[Any, Any] | None, cb_kwargs: dict[str, Any] | None, message: str
) -> None:
    """Held in memory, the callback got {1: 'a'} and a tuple; read back from the file (past the
    frontier's buffer, or after a resume), {'1': 'a'} and a list: response.meta['map'][1] then
    raised KeyError on a big crawl only."""
    with pytest.raises(RequestNotStorable) as raised:
        encode(Request("http://a.test/", meta=meta, cb_kwargs=cb_kwargs))
    assert str(raised.value) == message


def test_values_json_gives_back_as_they_were_are_stored() -> None:
    meta = {"ok": [1, {"a": None, "b": [True, 2.5]}], "nan": math.nan, "big": 2**70}
    request = Request("http://a.test/", meta=meta)
    decoded = decode(row_of(request), ShopSpider())
    assert decoded.meta["ok"] == meta["ok"] and math.isnan(decoded.meta["nan"]) and decoded.meta["big"] == 2**70
