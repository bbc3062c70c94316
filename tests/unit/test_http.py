"""Tests for Request (validation, body, immutability) and Response (text, selectors, links)."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from selectolax.lexbor import LexborHTMLParser, LexborNode
from yarl import URL

from scraper import http
from scraper.http import Request, Response
from scraper.links import filter_reason
from scraper.records import error_record
from scraper.settings import LinkPolicy
from scraper.stats import Stats

PAGE_URL = "https://shop.example.com/catalog/page2.html"

LINKS = """<html><body>
<a href="item-1.html">one</a>
<a href="/about">about</a>
<a href="https://other.example.org/x">other</a>
<a href="mailto:sales@example.com">mail</a>
<a href="javascript:void(0)">js</a>
<a href="tel:+15551234">call</a>
<a>no href</a>
<a href="  ../up.html  ">spaces</a>
</body></html>"""


def make_response(
    body: bytes | str = b"",
    *,
    url: str = PAGE_URL,
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> Response:
    return Response(
        url=url,
        status=200,
        headers=headers,
        body=body.encode() if isinstance(body, str) else body,
        request=request or Request(url),
    )


def callback(response: Response) -> None:
    """A stand-in spider callback."""


# Request


@pytest.mark.parametrize("url", ["/relative/path", "page.html", "//no-scheme.example.com/"])
def test_request_rejects_relative_urls(url: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        Request(url)


@pytest.mark.parametrize("url", ["javascript:void(0)", "mailto:a@example.com", "ftp://example.com/f"])
def test_request_accepts_other_schemes_for_the_scheduler_to_filter(url: str) -> None:
    assert Request(url).url == url


@pytest.mark.parametrize("url", ["  https://example.com/a ", "\nhttps://example.com/a\t"])
def test_request_drops_spaces_around_its_url(url: str) -> None:
    """As a browser reads an href: a URL taken from text or an attribute often has them."""
    assert Request(url).url == "https://example.com/a"


@pytest.mark.parametrize("priority", ["high", 1.5, None])
def test_request_priority_must_be_an_int(priority: Any) -> None:
    with pytest.raises(TypeError, match=r"^Request\('https://example.com/'\): priority must be an int, not "):
        Request("https://example.com/", priority=priority)


def test_a_relative_url_says_how_to_resolve_it() -> None:
    with pytest.raises(ValueError) as caught:
        Request("/page/2/")
    assert str(caught.value) == "not an absolute URL: '/page/2/' (a link from a page: response.follow(url) resolves it)"


def test_a_get_with_a_body_is_warned_of_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrapy's FormRequest and JsonRequest POST; ported as Request(url, data=...), the form went
    as the body of a GET, which servers ignore, without a word."""
    monkeypatch.setattr(http, "_GET_WITH_BODY_SAID", False)
    with pytest.warns(
        UserWarning,
        match=r"^a Request with data= sends it as the body of a GET, which servers ignore; give method='POST'",
    ) as caught:
        Request("https://example.com/login", data={"user": "u"})
    assert caught[0].filename == __file__  # the line that made the request
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Request("https://example.com/login", method="POST", data={"user": "u"})  # no warning
        Request("https://example.com/login")
        Request("https://example.com/login", data={"user": "v"})  # said once: not again


def test_request_rejects_data_with_json() -> None:
    with pytest.raises(ValueError, match="data or json"):
        Request("https://example.com/", data=b"x", json={"a": 1})


def test_form_data_may_be_name_value_pairs_and_nothing_else_is_taken() -> None:
    """Scrapy's formdata takes pairs (a name repeated); data=[...] failed where the body was
    made, outside any callback, and the crawl stopped."""
    pairs = Request("https://example.com/", method="POST", data=[("k", "v"), ("k", "w"), ("n", 1)])
    assert pairs.body() == b"k=v&k=w&n=1"
    assert pairs.headers_to_send() == {"Content-Type": "application/x-www-form-urlencoded"}
    assert Request("https://example.com/", method="POST", data=(("a", "b"),)).body() == b"a=b"
    for data in ([("k", "v", "extra")], ["k=v"], 5, {"k", "v"}):
        with pytest.raises(TypeError) as caught:
            Request("https://example.com/", method="POST", data=data)  # type: ignore[arg-type]
        assert str(caught.value) == (
            "Request('https://example.com/'): data must be bytes, str, a dict or a list of (name, value) pairs, "
            f"not {type(data).__name__}"
        )


@pytest.mark.parametrize(
    ("meta", "advice"),
    [
        ({"handle_httpstatus_list": [404]}, "meta={'allow_statuses': [404]}"),
        ({"note": 1, "dont_redirect": True}, "allow_statuses': [301, 302]} to get the redirect itself"),
        ({"download_timeout": 5}, "the timeout setting"),
        ({"cookiejar": 2}, "one cookie jar"),
    ],
)
def test_a_meta_key_of_scrapy_that_would_do_nothing_here_is_refused_with_ours(
    meta: dict[str, Any], advice: str
) -> None:
    key = next(key for key in meta if key != "note")
    with pytest.raises(ValueError, match=rf"^Request\('https://example.com/'\): meta key '{key}' is Scrapy's, "):
        Request("https://example.com/", meta=meta)
    with pytest.raises(ValueError, match=re.escape(advice)):
        Request("https://example.com/", meta=meta)


def test_meta_of_our_own_keys_and_the_user_s_is_taken() -> None:
    meta = {"allow_statuses": [404], "proxy": "http://127.0.0.1:3128", "category": "books", "redirect_urls": []}
    assert Request("https://example.com/", meta=meta).meta == meta


def test_request_upper_cases_method() -> None:
    assert Request("https://example.com/", method="post").method == "POST"


def test_request_defaults() -> None:
    request = Request("https://example.com/")
    assert (request.method, request.callback, request.priority, request.dont_filter) == (
        "GET",
        None,
        0,
        False,
    )


def test_replace_returns_a_new_request() -> None:
    original = Request("https://example.com/a", meta={"page": 1})
    changed = original.replace(url="https://example.com/b", priority=5)
    assert changed is not original
    assert (changed.url, changed.priority, changed.meta) == (
        "https://example.com/b",
        5,
        {"page": 1},
    )
    assert (original.url, original.priority) == ("https://example.com/a", 0)


def test_replace_validates_again() -> None:
    with pytest.raises(ValueError, match=re.escape("x/y.html")):
        Request("https://example.com/").replace(url="x/y.html")


@pytest.mark.parametrize(
    ("kwargs", "body", "content_type"),
    [
        ({}, None, None),
        ({"data": b"\x00raw"}, b"\x00raw", None),
        ({"data": "café"}, "café".encode(), None),
        (
            {"data": {"q": "a b&c", "tag": ["x", "y"]}},
            b"q=a+b%26c&tag=x&tag=y",
            "application/x-www-form-urlencoded",
        ),
        ({"json": {"b": 1, "a": [1, "é"]}}, b'{"a":[1,"\\u00e9"],"b":1}', "application/json"),
        ({"json": []}, b"[]", "application/json"),
    ],
)
def test_body_and_content_type(kwargs: dict[str, Any], body: bytes | None, content_type: str | None) -> None:
    request = Request("https://example.com/", method="POST", **kwargs)
    assert request.body() == body
    assert request.content_type() == content_type


def test_headers_to_send_add_the_implied_content_type_unless_the_user_set_one() -> None:
    form = Request("https://example.com/", method="POST", data={"q": "1"}, headers={"X-Token": "t"})
    assert form.headers_to_send() == {"X-Token": "t", "Content-Type": "application/x-www-form-urlencoded"}
    own = Request("https://example.com/", method="POST", json={}, headers={"content-type": "text/plain"})
    assert own.headers_to_send() == {"content-type": "text/plain"}
    assert Request("https://example.com/").headers_to_send() == {}


@pytest.mark.parametrize(("name", "value"), [("url", "https://example.com/x"), ("method", "PUT")])
def test_request_is_immutable(name: str, value: str) -> None:
    request = Request("https://example.com/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(request, name, value)
    assert getattr(request, name) != value


def test_request_is_slotted() -> None:
    assert not hasattr(Request("https://example.com/"), "__dict__")


# Response


def test_text_decodes_with_header_charset() -> None:
    response = make_response(
        "<p>Привет, мир</p>".encode("cp1251"),
        headers={"Content-Type": "text/html; charset=windows-1251"},
    )
    assert response.text == "<p>Привет, мир</p>"
    assert response.encoding == "cp1251"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<p>café, 😀</p>".encode(), "text/html; charset=utf-8"),
        ("<p>café, 😀</p>".encode(), "text/html"),  # found to be UTF-8 without a charset
        (b"\xef\xbb\xbf<p>after a BOM</p>", "text/html"),
        (b"<p>caf\xc3\xa9 \xff\xfe bad \xe2\x82 end \xed\xa0\x80 \xc0\xaf</p>", "text/html; charset=utf-8"),
    ],
    ids=["declared", "undeclared", "bom", "invalid-bytes"],
)
def test_utf8_page_parsed_from_bytes_reads_as_its_decoded_text(body: bytes, content_type: str) -> None:
    response = make_response(body, headers={"Content-Type": content_type})
    paragraph = response.css_first("p")
    assert response._text is None  # parsed from the bytes: no decoding was needed
    from_text = LexborHTMLParser(response.text).css_first("p")
    assert paragraph is not None and from_text is not None
    assert paragraph.text() == from_text.text()
    assert response.encoding == "utf-8"


def test_page_in_another_charset_is_parsed_from_its_text() -> None:
    response = make_response("<p>Привет</p>".encode("cp1251"), headers={"Content-Type": "text/html; charset=cp1251"})
    paragraph = response.css_first("p")
    assert paragraph is not None and paragraph.text() == "Привет"


def test_headers_are_case_insensitive() -> None:
    response = make_response(headers={"Content-Type": "text/html"})
    assert response.headers["content-type"] == "text/html"


def test_css_returns_lexbor_nodes() -> None:
    response = make_response("<ul><li class=a>one</li><li class=a>two</li></ul>")
    nodes = response.css("li.a")
    assert all(isinstance(node, LexborNode) for node in nodes)
    assert [node.text() for node in nodes] == ["one", "two"]


def test_css_first() -> None:
    response = make_response("<h1 id=t>Title</h1><h1>Second</h1>")
    first = response.css_first("h1")
    assert first is not None
    assert first.text() == "Title"
    assert response.css_first("h2") is None


def test_css_answers_each_page_from_its_own_document() -> None:
    """One CSS engine serves every page (per thread): answers must not mix documents, and the
    nodes must belong to the page that was queried."""
    pages = [make_response(f"<p class=n data-n={n}>page {n}</p><p class=n>{n}b</p>") for n in range(50)]
    for n, page in enumerate(pages):
        assert [node.text() for node in page.css("p.n")] == [f"page {n}", f"{n}b"]
        first = page.css_first("p.n")
        assert first is not None and first.attributes["data-n"] == str(n)
        assert first.parser is page.html
    assert pages[3].css("p.absent") == [] and pages[3].css_first("p.absent") is None


def test_css_from_several_threads_at_once() -> None:
    def query(n: int) -> list[str]:
        return [make_response(f"<li>{n}.{i}</li><li>{n}.x</li>").css("li")[0].text() for i in range(200)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(query, range(8)))
    assert answers == [[f"{n}.{i}" for i in range(200)] for n in range(8)]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("a::attr(href)", "cannot parse CSS selector 'a::attr(href)': ::text and ::attr() are parsel's, not CSS"),
        ("p::text", "cannot parse CSS selector 'p::text': ::text and ::attr() are parsel's"),
        ("//div[@id='x']", "cannot parse CSS selector \"//div[@id='x']\": XPath is not supported, select with CSS"),
        ("p >> b", "cannot parse CSS selector 'p >> b'"),
        (
            'a:contains("Next")',
            """cannot parse CSS selector 'a:contains("Next")': text is matched with Lexbor's :lexb""",
        ),
        ('a:-soup-contains("x")', "cannot parse CSS selector 'a:-soup-contains(\"x\")': text is matched with"),
    ],
)
def test_a_selector_lexbor_cannot_parse_is_an_error_that_names_it(selector: str, message: str) -> None:
    response = make_response("<p>x</p>")
    for select in (response.css, response.css_first):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            select(selector)


def test_document_is_parsed_once() -> None:
    response = make_response("<p>x</p>")
    parser = response.html
    response.css("p")
    response.css_first("p")
    assert response.html is parser
    assert response.text is response.text


def test_json() -> None:
    response = make_response(b'{"items": [1, 2], "name": "\xc3\xa9"}')
    assert response.json() == {"items": [1, 2], "name": "é"}


def test_json_of_a_page_that_is_not_json_says_what_the_page_was() -> None:
    """An API's HTML error page gave only "Expecting value: line 1 column 1 (char 0)"."""
    response = Response(
        url="https://api.example.com/items",
        status=200,
        headers={"Content-Type": "text/html"},
        body=b"<html>\n  <title>Please log in</title>" + b"x" * 100,
        request=Request("https://api.example.com/items"),
    )
    with pytest.raises(json.JSONDecodeError) as caught:
        response.json()
    record = error_record("parse", caught.value, response.url, Stats(), announce=False)
    shown = "<html> <title>Please log in</title>" + "x" * 23  # its first 60 characters, on one line
    assert record.message == (
        f"Expecting value: line 1 column 1 (char 0) (the page is not JSON: text/html, starting {shown!r})"
    )


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("item.html", "https://shop.example.com/catalog/item.html"),
        ("../up.html", "https://shop.example.com/up.html"),
        ("/root?q=1", "https://shop.example.com/root?q=1"),
        ("//cdn.example.net/a.png", "https://cdn.example.net/a.png"),
        ("https://other.example.org/x", "https://other.example.org/x"),
        ("?page=3", "https://shop.example.com/catalog/page2.html?page=3"),
        ("  spaced.html\n", "https://shop.example.com/catalog/spaced.html"),
    ],
)
def test_urljoin(link: str, expected: str) -> None:
    assert make_response("<p>no base</p>").urljoin(link) == expected


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://static.example.net/assets/", "https://static.example.net/assets/item.html"),
        ("/other/dir/", "https://shop.example.com/other/dir/item.html"),
    ],
)
def test_urljoin_honours_base_href(base: str, expected: str) -> None:
    response = make_response(f'<html><head><base href="{base}"></head><body></body></html>')
    assert response.urljoin("item.html") == expected


def test_urljoin_of_none_says_what_to_give() -> None:
    """An href that is not there (attributes.get("href") is None) said "'NoneType' object has
    no attribute 'strip'"."""
    response = make_response("<a>no href</a>")
    with pytest.raises(TypeError) as raised:
        response.urljoin(response.css_first("a").attributes.get("href"))  # type: ignore[arg-type, union-attr]
    assert str(raised.value) == (
        "cannot resolve None against https://shop.example.com/catalog/page2.html: give a string (an href that is there)"
    )


def test_follow_with_string() -> None:
    response = make_response("<p>x</p>")
    request = response.follow("next.html", callback, meta={"page": 3}, priority=2)
    assert request.url == "https://shop.example.com/catalog/next.html"
    assert (request.callback, request.meta, request.priority) == (callback, {"page": 3}, 2)


def test_follow_with_node() -> None:
    response = make_response('<li class="next"><a href="?page=3">next</a></li>')
    node = response.css_first("li.next a")
    assert node is not None
    request = response.follow(node)
    assert request.url == "https://shop.example.com/catalog/page2.html?page=3"
    assert request.callback is None


def test_following_a_link_without_href_says_how_to_skip_such_links() -> None:
    response = make_response('<a name="top">top</a><a href="/b">b</a>')
    anchor = response.css_first("a")
    assert anchor is not None
    with pytest.raises(ValueError, match=r"^cannot follow an element without href on https://shop\.example\.com/"):
        response.follow(anchor)
    assert [request.url for request in response.follow_all(css="a")] == ["https://shop.example.com/b"]


def test_following_none_says_that_css_first_matched_nothing() -> None:
    """``response.follow(response.css_first("li.next a"))`` on the last page: "select a[href]"
    was no help there."""
    response = make_response('<ul><li class="previous"><a href="/1">1</a></li></ul>')
    with pytest.raises(ValueError) as caught:
        response.follow(response.css_first("li.next a"))  # type: ignore[arg-type]
    assert str(caught.value) == f"cannot follow None on {PAGE_URL}: css_first() returns None when nothing matches"


@pytest.mark.parametrize(
    "href", ["next.html", "../a b/ü.html?q=x y&r=1#frag", "//cdn.example.com:8080/%7Euser/", "/path;p=1?a=%2F"]
)
def test_a_followed_request_keeps_the_url_it_was_resolved_to(href: str) -> None:
    request = make_response("<p>x</p>").follow(href)
    kept = request.parsed_url()
    assert kept is request.parsed_url()  # not parsed again by the scheduler and the fetcher
    assert kept == URL(request.url)  # the same URL as parsing its string would give
    assert str(kept) == request.url
    assert kept.raw_path_qs == URL(request.url).raw_path_qs  # what goes on the wire
    assert request.text_of(kept) is request.url  # its text is known: not rendered again
    other = URL("https://other.example.com/Path?b=1")
    assert request.text_of(other) == str(other)


def test_a_request_made_from_a_string_or_replaced_parses_its_own_url() -> None:
    followed = make_response("<p>x</p>").follow("next.html")
    moved = followed.replace(url="https://other.example.com/x")
    assert moved.parsed_url() == URL("https://other.example.com/x")
    assert Request("https://shop.example.com/a").parsed_url() == URL("https://shop.example.com/a")


def test_a_request_made_from_a_string_is_parsed_once_and_its_text_not_rendered_again() -> None:
    request = Request("https://shop.example.com/a%20b?q=1")
    kept = request.parsed_url()
    assert kept is request.parsed_url()  # the scheduler's checks parse it; the fetcher reuses that
    assert kept == URL("https://shop.example.com/a b?q=1")
    assert request.text_of(kept) is request.url


def test_a_url_written_otherwise_than_yarl_writes_it_is_rendered_as_yarl_does() -> None:
    """Its text as written was taken for its canonical form: 'HTTP://Shop' and 'http://shop'
    had two fingerprints, and each was fetched and stored."""
    request = Request("HTTP://Shop.Example.com:80/a b?")
    parsed = request.parsed_url()
    assert request.text_of(parsed) == "http://shop.example.com/a%20b"
    assert request.url == "HTTP://Shop.Example.com:80/a b?"  # the request itself stays as it was


@pytest.mark.parametrize(
    ("href", "url"),
    [
        ("http://[::1/unclosed", "http://[::1/unclosed"),
        (" //[bad/x ", "https://[bad/x"),
        ("https://shop.example.com:port/", "https://shop.example.com:port/"),
        ("http://shop.example.com:99999/", "http://shop.example.com:99999/"),
    ],
)
def test_follow_leaves_a_link_that_cannot_be_parsed_to_the_scheduler_s_malformed_filter(href: str, url: str) -> None:
    response = make_response("<p>x</p>")
    request = response.follow(href, callback, priority=1)
    assert (request.url, request.callback, request.priority, request.depth) == (url, callback, 1, 1)
    assert filter_reason(request.url, LinkPolicy()) == "malformed"
    with pytest.raises(ValueError, match=re.escape(f"cannot resolve {href!r} against {PAGE_URL}")):
        response.urljoin(href)


def test_a_base_href_that_cannot_be_parsed_is_ignored() -> None:
    response = make_response('<html><head><base href="http://[bad/"></head><body></body></html>')
    assert response.urljoin("item.html") == "https://shop.example.com/catalog/item.html"


def test_an_empty_href_is_the_page_itself_as_browsers_and_scrapy_read_it() -> None:
    """``href=""`` raised "without href", and the page's other links were lost with it."""
    page = "https://shop.example.com/catalog/page2.html"
    response = make_response('<a href="">same</a><a href>bare</a><a href="/b">b</a>')
    assert [request.url for request in response.follow_all(css="a")] == [page, page, "https://shop.example.com/b"]
    assert [response.follow(node).url for node in response.css("a")[:2]] == [page, page]
    assert response.follow("").url == page


def test_follow_all_with_css_keeps_every_link_with_an_href() -> None:
    requests = make_response(LINKS).follow_all(css="a", callback=callback)
    urls = [request.url for request in requests]
    assert urls[:3] == [
        "https://shop.example.com/catalog/item-1.html",
        "https://shop.example.com/about",
        "https://other.example.org/x",
    ]
    assert "mailto:sales@example.com" in urls and "javascript:void(0)" in urls  # filtered by the scheduler
    assert urls[-1] == "https://shop.example.com/up.html"
    assert {request.callback for request in requests} == {callback}


def test_follow_all_with_links() -> None:
    response = make_response("<p>x</p>")
    requests = response.follow_all(["a.html", "mailto:x@example.com", "/b"], meta={"k": 1})
    assert [request.url for request in requests] == [
        "https://shop.example.com/catalog/a.html",
        "mailto:x@example.com",
        "https://shop.example.com/b",
    ]
    assert all(request.meta == {"k": 1} for request in requests)


def test_follow_all_needs_links_or_css() -> None:
    with pytest.raises(TypeError):
        make_response("<p>x</p>").follow_all()


def test_meta_comes_from_the_request() -> None:
    request = Request(PAGE_URL, meta={"category": "books"})
    assert make_response(request=request).meta == {"category": "books"}
    assert make_response().meta == {}


@pytest.mark.parametrize("meta", [None, {}])
def test_what_a_callback_writes_in_response_meta_is_kept(meta: dict[str, Any] | None) -> None:
    """For a request made without meta (or with an empty one), each read was a new empty dict:
    a callback's write was gone at its next read, where Scrapy keeps it."""
    response = make_response(request=Request(PAGE_URL, meta=meta))
    response.meta["page_kind"] = "product"  # type: ignore[index]  # a dict at run time, as in Scrapy
    assert response.meta == {"page_kind": "product"}


def test_response_is_immutable() -> None:
    response = make_response("<p>x</p>")
    with pytest.raises(AttributeError):
        response.status = 500


def test_css_first_takes_a_default_as_selectolax_does() -> None:
    """``css_first(selector, default="")`` was a TypeError, though selectolax's own takes it."""
    response = make_response("<p>x</p>")
    assert response.css_first("h1", default="") == ""
    assert response.css_first("h1") is None
    found = response.css_first("p", default="")
    assert isinstance(found, LexborNode) and found.text() == "x"


@pytest.mark.parametrize(
    ("charset", "expected"),
    [
        ("iso-8859-1", "https://shop.example.com/recherche/caf%C3%A9?q=caf%E9&x=%80#%C3%A9"),  # read as cp1252
        ("windows-1251", "https://shop.example.com/recherche/caf%C3%A9?q=caf%26%23233%3B&x=%88#%C3%A9"),
        ("utf-8", "https://shop.example.com/recherche/caf%C3%A9?q=caf%C3%A9&x=%E2%82%AC#%C3%A9"),
    ],
)
def test_a_link_query_is_encoded_in_the_page_charset_as_browsers_do(charset: str, expected: str) -> None:
    """On a legacy page, search and filter links went out with their query in UTF-8, which
    the site reads as other words (q=caf%C3%A9 where it wrote q=caf%E9). Browsers and Scrapy
    encode the query in the page's charset (a character it lacks as &#NNNN;); the path and the
    fragment are UTF-8 whatever the page."""
    href = "/recherche/café?q=café&x=€#é"
    body = f'<html><body><a href="{href}">x</a></body></html>'.encode(charset, errors="xmlcharrefreplace")
    response = make_response(body, headers={"Content-Type": f"text/html; charset={charset}"})
    node = response.css_first("a")
    assert node is not None
    assert response.follow(node).url == expected
    assert response.urljoin(href) == expected


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"meta": {"dont_redirect": True}}, "meta key 'dont_redirect' is Scrapy's"),
        ({"data": b"x", "json": {"a": 1}}, "takes data or json, not both"),
        ({"priority": 2**70}, "priority .* is out of range"),
    ],
)
def test_follow_all_raises_what_its_arguments_get_wrong_instead_of_dropping_every_link(
    kwargs: dict[str, Any], said: str
) -> None:
    """It skipped each link whose request could not be made, and so returned [] for arguments no
    request can take, with no error row: only links without an href are skipped."""
    response = make_response(LINKS)
    with pytest.raises(ValueError, match=said):
        response.follow_all(css="a", **kwargs)


def test_follow_all_takes_links_or_css_not_both() -> None:
    with pytest.raises(TypeError, match=r"follow_all\(\) takes links or css=, not both"):
        make_response(LINKS).follow_all(["/x"], css="a")
