"""Tests for link hygiene and trap detection: each rule, its boundaries, and URLs that must pass."""

from __future__ import annotations

import datetime

import pytest

from scraper.links import filter_reason, strip_session_ids
from scraper.settings import LinkPolicy

TODAY = datetime.date(2026, 3, 15)
POLICY = LinkPolicy()  # max_repeated_segments=3, max_path_segments=32, date_window_years=10


def reason(url: str, policy: LinkPolicy = POLICY) -> str | None:
    return filter_reason(url, policy, today=TODAY)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "http://example.com",
        "HTTPS://Example.COM/Path",
        "https://example.com/catalogue/page-2.html?sort=price&order=asc#top",
        "https://example.com/p/sku-20310",  # five digits: a SKU, not a year
        "https://example.com/product/1234-oak-lamp.html",  # an id, not a date
        "https://example.com/item/2999?page=1500",  # bare numbers are ids, not years
        "https://example.com/p/v2031-blue",  # glued to a letter
        "https://example.com/books/a-light-in-the-attic_1000/index.html",  # glued by "_"
        "https://example.com/archive/2031/05/",  # five years ahead: inside the window
        "https://example.com/events?date=2016-01-01",  # exactly ten years back
        "https://example.com/events?year=2036",  # exactly ten years ahead
        "https://bücher.example/katalog",  # IDN host
        "https://xn--bcher-kva.example/katalog",
        "http://example.com:8080/a",
        "http://127.0.0.1:8765/page",
        "http://[::1]:8080/a",
        "http://[2001:db8::1]/a/b",
        "https://example.com/a/b/a/b/a/b",  # each segment three times: at the limit
        "https://example.com/a//a//a///b",  # empty segments ignored
        "https://example.com/" + "/".join(f"s{i}" for i in range(32)),  # exactly max_path_segments
    ],
)
def test_admitted(url: str) -> None:
    assert reason(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("javascript:void(0)", "scheme"),
        ("JavaScript:alert(1)", "scheme"),
        ("mailto:sales@example.com", "scheme"),
        ("tel:+441234567890", "scheme"),
        ("data:text/html,<p>hi</p>", "scheme"),
        ("ftp://example.com/file.txt", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("ws://example.com/socket", "scheme"),
        ("/relative/path", "malformed"),
        ("//example.com/no-scheme", "malformed"),
        ("http://", "malformed"),
        ("http:///path-only", "malformed"),
        ("http:example.com", "malformed"),
        ("http://[::1/unclosed", "malformed"),
        ("http://example.com:99999/", "malformed"),
        ("http://example.com:http/", "malformed"),
        ("http://example.com:0/", "malformed"),
        ("https://example.com/" + "/".join(f"s{i}" for i in range(33)), "too_many_segments"),
        ("https://example.com/a/b/a/b/a/b/a/b", "repeated_segments"),
        ("https://example.com/x/a/b/c/a/b/c/a/b/c/a/b/c", "repeated_segments"),  # a run of three
        ("https://example.com/page/page/page/page", "repeated_segments"),
        ("https://example.com/a/x/a/y/a/z/a", "repeated_segments"),  # not adjacent, still a loop
        ("https://example.com/a//a//a//a/", "repeated_segments"),
        ("https://example.com/calendar/2037/01/", "date_out_of_window"),
        ("https://example.com/calendar/2015/12/", "date_out_of_window"),
        ("https://example.com/events?year=2031&month=2099-05", "date_out_of_window"),  # any token counts
        ("https://example.com/events?date=2040-05-01", "date_out_of_window"),
        ("https://example.com/events?month=1900-05", "date_out_of_window"),
        ("https://example.com/archive/2099/01", "date_out_of_window"),
        ("https://example.com/events?y=1901", "date_out_of_window"),
    ],
)
def test_filtered(url: str, expected: str) -> None:
    assert reason(url) == expected


def test_year_outside_path_and_query_is_ignored() -> None:
    assert reason("https://example.com/events#2099") is None
    assert reason("https://y2099.example.com/events") is None
    assert reason("https://2099.example.com/events") is None  # the host is not a date


@pytest.mark.parametrize("length", [50, 200, 2083])
def test_length_boundary(length: int) -> None:
    policy = LinkPolicy(max_url_length=length)
    prefix = "https://example.com/"
    exact = prefix + "x" * (length - len(prefix))
    assert len(exact) == length
    assert reason(exact, policy) is None
    assert reason(exact + "y", policy) == "url_too_long"


def test_default_length_allows_long_query() -> None:
    url = "https://example.com/search?" + "&".join(f"f{i}=value{i}" for i in range(150))
    assert 1500 < len(url) <= POLICY.max_url_length
    assert reason(url) is None


def test_segment_boundaries_follow_policy() -> None:
    policy = LinkPolicy(max_path_segments=4, max_repeated_segments=1)
    assert reason("https://example.com/a/b/c/d", policy) is None
    assert reason("https://example.com/a/b/c/d/e", policy) == "too_many_segments"
    assert reason("https://example.com/a/b/a", policy) == "repeated_segments"
    assert reason("https://example.com/a/b/c/", policy) is None


def test_date_window_follows_today() -> None:
    url = "https://example.com/calendar/2031/05/"
    assert filter_reason(url, POLICY, today=datetime.date(2026, 1, 1)) is None
    assert filter_reason(url, POLICY, today=datetime.date(2020, 1, 1)) == "date_out_of_window"
    assert filter_reason(url, POLICY, today=datetime.date(2045, 1, 1)) == "date_out_of_window"
    narrow = LinkPolicy(date_window_years=1)
    assert filter_reason("https://example.com/?year=2027", narrow, today=TODAY) is None
    assert filter_reason("https://example.com/?year=2028", narrow, today=TODAY) == "date_out_of_window"


def test_date_window_zero_disables() -> None:
    assert reason("https://example.com/calendar/2999/12/", LinkPolicy(date_window_years=0)) is None


def test_default_today_is_the_local_date() -> None:
    year = datetime.date.today().year
    assert filter_reason(f"https://example.com/{year}/01/", POLICY) is None
    assert filter_reason(f"https://example.com/{year + 11}/01/", POLICY) == "date_out_of_window"


def test_scheme_is_reported_before_length() -> None:
    assert reason("data:image/png;base64," + "A" * 5000) == "scheme"


SESSION = LinkPolicy().session_parameters


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a?jsessionid=ABC", "https://example.com/a"),
        ("https://example.com/a?JSESSIONID=ABC&page=2", "https://example.com/a?page=2"),
        ("https://example.com/a?b=2&PHPSESSID=x&a=1&sid=9", "https://example.com/a?b=2&a=1"),
        ("https://example.com/a?z=1&y=2&z=3", "https://example.com/a?z=1&y=2&z=3"),
        ("https://example.com/a?Session%5Fid=1&q=x", "https://example.com/a?q=x"),  # encoded name
        ("https://example.com/cart;jsessionid=ABC", "https://example.com/cart"),
        ("https://example.com/cart;JSessionID=ABC?item=3", "https://example.com/cart?item=3"),
        ("https://example.com/a;jsessionid=1/b;color=red", "https://example.com/a/b;color=red"),
        ("https://example.com/a?sid=1#reviews", "https://example.com/a#reviews"),
        ("https://example.com/a?sidebar=1&sids=2", "https://example.com/a?sidebar=1&sids=2"),
        ("https://example.com/a?q=jsessionid", "https://example.com/a?q=jsessionid"),
    ],
)
def test_strip_session_ids(url: str, expected: str) -> None:
    assert strip_session_ids(url, SESSION) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "https://example.com/a/b?page=2&sort=asc",
        "https://example.com/a;color=red?x=1#frag",
        "https://example.com/a?",
    ],
)
def test_strip_session_ids_leaves_clean_urls_unchanged(url: str) -> None:
    assert strip_session_ids(url, SESSION) is url


def test_strip_session_ids_uses_the_given_names() -> None:
    url = "https://example.com/a?token=1&jsessionid=2"
    assert strip_session_ids(url, {"token"}) == "https://example.com/a?jsessionid=2"
    assert strip_session_ids(url, ()) is url
