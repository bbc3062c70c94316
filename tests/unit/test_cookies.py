"""Tests for the crawl's cookie jar: public-suffix Domains refused, everything else as aiohttp."""

from __future__ import annotations

import datetime as dt
import email.utils
from http.cookies import SimpleCookie

import aiohttp
import pytest
from yarl import URL

from scraper.cookies import CrawlCookieJar, is_public_suffix

SHOP = URL("http://shop.example.co.uk/basket")


def set_cookie(header: str) -> SimpleCookie:
    """One ``Set-Cookie`` header value as aiohttp hands it to the jar."""
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie


def sent_to(jar: aiohttp.CookieJar, url: str) -> dict[str, str]:
    return {name: morsel.value for name, morsel in jar.filter_cookies(URL(url)).items()}


async def test_refuses_public_suffix_domain() -> None:
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("tracker=1; Domain=co.uk; Path=/"), SHOP)
    jar.update_cookies(set_cookie("dotted=1; Domain=.CO.UK; Path=/"), SHOP)
    assert len(jar) == 0
    assert sent_to(jar, "http://other.co.uk/") == {}
    assert sent_to(jar, "http://shop.example.co.uk/") == {}


async def test_plain_aiohttp_jar_would_have_kept_it() -> None:
    # negative control: the refusal above is ours, not aiohttp's
    jar = aiohttp.CookieJar()
    jar.update_cookies(set_cookie("tracker=1; Domain=co.uk; Path=/"), SHOP)
    assert sent_to(jar, "http://other.co.uk/") == {"tracker": "1"}


async def test_keeps_registrable_domain() -> None:
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("session=abc; Domain=example.co.uk; Path=/"), SHOP)
    assert sent_to(jar, "http://www.example.co.uk/") == {"session": "abc"}
    assert sent_to(jar, "http://example.co.uk/") == {"session": "abc"}
    assert sent_to(jar, "http://example2.co.uk/") == {}


async def test_keeps_host_only_cookie_for_its_host() -> None:
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("cart=7; Path=/"), SHOP)
    assert sent_to(jar, "http://shop.example.co.uk/checkout") == {"cart": "7"}
    assert sent_to(jar, "http://www.example.co.uk/") == {}
    assert sent_to(jar, "http://sub.shop.example.co.uk/") == {}


async def test_filters_each_cookie_of_a_response() -> None:
    jar = CrawlCookieJar()
    cookies = set_cookie("good=1; Domain=example.co.uk; Path=/")
    cookies.update(set_cookie("bad=2; Domain=uk; Path=/"))
    cookies.update(set_cookie("local=3; Path=/"))
    jar.update_cookies(cookies, SHOP)
    assert sent_to(jar, "http://shop.example.co.uk/") == {"good": "1", "local": "3"}


async def test_refuses_private_suffix_domain() -> None:
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("pages=1; Domain=github.io; Path=/"), URL("https://x.github.io/"))
    jar.update_cookies(set_cookie("mine=2; Domain=x.github.io; Path=/"), URL("https://x.github.io/"))
    assert sent_to(jar, "https://y.github.io/") == {}
    assert sent_to(jar, "https://x.github.io/") == {"mine": "2"}


async def test_public_suffix_that_is_the_host_becomes_host_only() -> None:
    jar = CrawlCookieJar()
    header = set_cookie("site=1; Domain=github.io; Path=/")
    jar.update_cookies(header, URL("https://github.io/"))
    assert sent_to(jar, "https://github.io/") == {"site": "1"}
    assert sent_to(jar, "https://x.github.io/") == {}
    assert header["site"]["domain"] == "github.io"  # the caller's morsel is left as it came


async def test_accepts_pairs_and_plain_values() -> None:
    jar = CrawlCookieJar()
    morsels = set_cookie("bad=1; Domain=com; Path=/")
    good = set_cookie("good=2; Domain=example.com; Path=/")
    jar.update_cookies([("bad", morsels["bad"]), ("good", good["good"])], URL("http://www.example.com/"))
    jar.update_cookies({"plain": "3"}, URL("http://www.example.com/"))
    assert sent_to(jar, "http://www.example.com/") == {"good": "2", "plain": "3"}
    assert sent_to(jar, "http://other.com/") == {}


async def test_ip_host_cookies_kept_when_unsafe() -> None:
    jar = CrawlCookieJar(unsafe=True)
    jar.update_cookies(set_cookie("session=ip; Path=/"), URL("http://127.0.0.1:8765/login"))
    assert sent_to(jar, "http://127.0.0.1:8765/account") == {"session": "ip"}
    assert sent_to(jar, "http://127.0.0.2:8765/account") == {}


async def test_ip_host_with_its_own_domain_attribute_kept_when_unsafe() -> None:
    jar = CrawlCookieJar(unsafe=True)
    jar.update_cookies(set_cookie("session=ip; Domain=127.0.0.1; Path=/"), URL("http://127.0.0.1:8765/"))
    assert sent_to(jar, "http://127.0.0.1:8765/") == {"session": "ip"}


async def test_ip_host_cookies_refused_by_default() -> None:
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("session=ip; Path=/"), URL("http://127.0.0.1:8765/login"))
    assert sent_to(jar, "http://127.0.0.1:8765/account") == {}


def test_punycode_suffixes_are_public_as_the_list_spells_them() -> None:
    # the list is parsed without its xn-- copies; a Domain's xn-- labels are decoded instead
    assert is_public_suffix("xn--p1ai")  # Russia's .rf
    assert is_public_suffix("xn--o1ac.xn--90a3ac")  # a second-level rule under Serbia's .srb
    assert is_public_suffix("\u0440\u0444")  # .rf as the list spells it
    assert not is_public_suffix("example.xn--p1ai")
    assert not is_public_suffix("xn--zz.example")  # not valid punycode: looked up as given


async def test_refuses_a_punycode_public_suffix_domain() -> None:
    jar = CrawlCookieJar()
    shop = URL("http://shop.xn--e1afmkfd.xn--p1ai/")  # a shop under .rf
    jar.update_cookies(set_cookie("tracker=1; Domain=xn--p1ai; Path=/"), shop)
    jar.update_cookies(set_cookie("kept=1; Domain=xn--e1afmkfd.xn--p1ai; Path=/"), shop)
    assert sent_to(jar, "http://other.xn--p1ai/") == {}
    assert sent_to(jar, "http://www.xn--e1afmkfd.xn--p1ai/") == {"kept": "1"}


def restored(jar: CrawlCookieJar) -> CrawlCookieJar:
    """A new jar started from what ``jar`` would keep with the crawl."""
    changes = jar.changes()
    again = CrawlCookieJar(unsafe=True)
    again.restore(changes.jar.values() if changes is not None else ())
    return again


async def test_a_restored_jar_sends_what_the_kept_one_sent_and_nothing_more() -> None:
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("cart=7; Path=/"), SHOP)  # host-only
    jar.update_cookies(set_cookie("session=abc; Domain=example.co.uk; Path=/; Secure; HttpOnly; SameSite=Lax"), SHOP)
    jar.update_cookies(set_cookie('note="a b"; Path=/basket'), SHOP)  # quoted, and for one path
    jar.update_cookies(set_cookie("gone=1; Expires=Thu, 01 Jan 2015 00:00:00 GMT"), SHOP)
    again = restored(jar)
    for url in (
        "http://shop.example.co.uk/",
        "https://shop.example.co.uk/basket/1",
        "https://sub.shop.example.co.uk/",
        "https://www.example.co.uk/",
    ):
        assert jar.filter_cookies(URL(url)) == again.filter_cookies(URL(url)), url
    assert sent_to(again, "https://shop.example.co.uk/basket/1") == {"cart": "7", "session": "abc", "note": "a b"}
    assert sent_to(again, "https://sub.shop.example.co.uk/") == {"session": "abc"}  # the host-only one stays home
    assert sent_to(again, "http://www.example.co.uk/") == {}  # Secure
    assert again.changes() is None  # restored is saved


async def test_a_max_age_is_kept_as_the_date_it_comes_to() -> None:
    """Kept as "Max-Age=60", a cookie resumed an hour later would live another minute."""
    jar = CrawlCookieJar()
    jar.update_cookies(set_cookie("short=1; Max-Age=60"), SHOP)
    jar.update_cookies(set_cookie("odd=1; Max-Age=soon"), SHOP)  # not a number: ignored, as aiohttp does
    changes = jar.changes()
    assert changes is not None
    expires = {cookie.name: cookie.expires for cookie in changes.written}
    assert expires["odd"] is None
    short = email.utils.parsedate_to_datetime(expires["short"] or "")
    assert 59 < (short - dt.datetime.now(dt.UTC)).total_seconds() <= 61  # rounded up to the second
    assert sent_to(restored(jar), "http://shop.example.co.uk/") == {"short": "1", "odd": "1"}


async def test_changes_are_what_was_not_saved_yet() -> None:
    jar = CrawlCookieJar()
    assert jar.changes() is None
    jar.update_cookies(set_cookie("a=1"), SHOP)
    jar.update_cookies(set_cookie("b=1"), SHOP)
    first = jar.changes()
    assert first is not None and sorted(cookie.name for cookie in first.written) == ["a", "b"]
    jar.update_cookies(set_cookie("a=2"), SHOP)  # while the first changes are being written
    jar.saved(first)
    second = jar.changes()
    assert second is not None
    assert [(cookie.name, cookie.value) for cookie in second.written] == [("a", "2")] and second.deleted == []
    jar.saved(second)
    jar.update_cookies(set_cookie("b=; Max-Age=0"), SHOP)  # deleted by the site
    third = jar.changes()
    assert third is not None and third.written == [] and third.deleted == [("shop.example.co.uk", "/", "b")]


async def test_a_cookie_that_is_not_valid_text_is_sent_but_not_kept(caplog: pytest.LogCaptureFixture) -> None:
    jar = CrawlCookieJar()
    jar.update_cookies({"bad": "caf\udce9"}, SHOP)  # undecodable bytes in its header, as aiohttp reads them
    jar.update_cookies({"good": "1"}, SHOP)
    changes = jar.changes()
    assert changes is not None and [cookie.name for cookie in changes.written] == ["good"]
    assert sent_to(jar, "http://shop.example.co.uk/") == {"bad": "caf\udce9", "good": "1"}
    jar.update_cookies({"other": "2"}, SHOP)
    assert jar.changes() is not None  # looked at again, by the next transaction
    assert caplog.text.count("cookie 'bad' of shop.example.co.uk is not kept with the crawl") == 1
