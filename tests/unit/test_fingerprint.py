"""Tests for request identity: equal fingerprints for the same fetch, different otherwise."""

from __future__ import annotations

import re
from typing import Any

import pytest

from scraper.fingerprint import canonical_url, fingerprint
from scraper.http import Request, Response


def print_of(url: str, **kwargs: Any) -> str:
    return fingerprint(Request(url, **kwargs))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://EXAMPLE.com/a", "https://example.com/a"),
        ("HTTPS://example.com/a", "https://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com/a#reviews", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        ("https://example.com/café", "https://example.com/caf%C3%A9"),
        ("https://example.com/caf%c3%a9", "https://example.com/caf%C3%A9"),
        ("https://example.com/a?", "https://example.com/a"),
    ],
)
def test_same_fingerprint(first: str, second: str) -> None:
    assert print_of(first) == print_of(second)
    # as the scheduler asks, with the request's parsed URL: the text as written was taken
    # for canonical, and each spelling of a page was fetched and stored
    first_request, second_request = Request(first), Request(second)
    assert fingerprint(first_request, parsed=first_request.parsed_url()) == print_of(second)
    assert fingerprint(second_request, parsed=second_request.parsed_url()) == print_of(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://example.com/a", "https://example.com/b"),
        ("https://example.com/a", "https://example.com/A"),
        ("https://example.com/a?page=1", "https://example.com/a?page=2"),
        ("https://example.com/a?x=1&x=2", "https://example.com/a?x=2&x=1"),
        ("https://example.com/a", "http://example.com/a"),
        ("https://example.com/a", "https://example.com:8443/a"),
    ],
)
def test_different_url_different_fingerprint(first: str, second: str) -> None:
    assert print_of(first) != print_of(second)


def test_method_changes_fingerprint() -> None:
    url = "https://example.com/search"
    assert print_of(url, method="GET") != print_of(url, method="POST")
    assert print_of(url, method="get") == print_of(url, method="GET")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"data": {"q": "shoes"}}, {"data": {"q": "boots"}}),
        ({"json": {"page": 1}}, {"json": {"page": 2}}),
        ({"data": b"x"}, {}),
    ],
)
def test_body_changes_fingerprint(first: dict[str, Any], second: dict[str, Any]) -> None:
    url = "https://example.com/search"
    assert print_of(url, method="POST", **first) != print_of(url, method="POST", **second)


def test_json_key_order_does_not_matter() -> None:
    url = "https://example.com/api"
    assert print_of(url, method="POST", json={"a": 1, "b": 2}) == print_of(url, method="POST", json={"b": 2, "a": 1})


def test_callback_meta_and_priority_do_not_matter() -> None:
    url = "https://example.com/a"
    assert print_of(url) == print_of(url, meta={"x": 1}, priority=9, callback=print)


def test_fingerprint_is_32_hex_digits() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", print_of("https://example.com/"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://Example.COM:443/Path#frag", "https://example.com/Path"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/?b=1&a=2&a=1", "https://example.com/?a=2&a=1&b=1"),
        ("https://example.com/s?q=a%20b", "https://example.com/s?q=a+b"),
        ("https://example.com/café", "https://example.com/caf%C3%A9"),
        ("https://example.com/a?", "https://example.com/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_empty_path_equals_root() -> None:
    assert print_of("https://example.com") == print_of("https://example.com/")


@pytest.mark.parametrize(
    "href",
    [
        "next.html",
        "../a b/ü.html?q=x y&r=1#frag",
        "//cdn.example.com:8080/%7Euser/",
        "/p?b=2&a=1",
        "HTTP://Shop.example.com:80",
    ],
)
def test_a_followed_request_has_the_fingerprint_of_its_url_as_a_string(href: str) -> None:
    """A followed request keeps its parsed URL, and its canonical form is read from it."""
    page = Request("https://shop.example.com/catalog/list.html")
    response = Response(url=page.url, status=200, body=b"<p>x</p>", request=page)
    followed = response.follow(href)
    assert fingerprint(followed, parsed=followed.parsed_url()) == fingerprint(Request(followed.url))
