"""The value objects that flow through a crawl: a ``Request`` going out, a ``Response`` back.

Both are immutable; derive new ones with ``Request.replace()`` and ``Response.follow()``.
"""

from __future__ import annotations

import dataclasses
import json as jsonlib
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

from multidict import CIMultiDict, CIMultiDictProxy
from selectolax import lexbor
from selectolax.lexbor import LexborCSSSelector, LexborHTMLParser, LexborNode
from yarl import URL

from scraper import encoding

Link = str | LexborNode
"""What ``follow()`` accepts: a URL (relative or absolute) or an element with an ``href``."""

_INT64 = 2**63
_SHOWN_OF_NOT_JSON = 60  # characters of a page that response.json() could not read, in its error
_ABSOLUTE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_Default = TypeVar("_Default")
_GET_WITH_BODY_SAID = False  # once a process: copies (replace(), a resume's rows) would say it again


def _warn_of_get_with_body(field: str) -> None:
    """Scrapy's FormRequest and JsonRequest POST: ported as ``Request(url, data=...)``, the
    form went as the body of a GET, which servers ignore, without a word."""
    global _GET_WITH_BODY_SAID
    if _GET_WITH_BODY_SAID:
        return
    _GET_WITH_BODY_SAID = True
    warnings.warn(
        f"a Request with {field}= sends it as the body of a GET, which servers ignore; "
        "give method='POST' (Scrapy's FormRequest and JsonRequest post)",
        stacklevel=4,  # the line that made the request, past __post_init__ and the dataclass's __init__
    )


class _CssEngines(threading.local):
    """One Lexbor CSS engine per thread, shared by every page's ``css()``. selectolax sets up
    an engine per document on its first query, which on a small page costs about as much as
    parsing it (~30 µs); the engine keeps nothing of a document between queries, but it is
    not thread-safe, hence one per thread."""

    def __init__(self) -> None:
        engine = LexborCSSSelector()  # type: ignore[no-untyped-call]  # the stub's __init__ is untyped
        self.find: Callable[[str, LexborNode], list[LexborNode]] = engine.find
        # stops at the first match; older selectolax (0.3.21, the oldest allowed) has only find()
        self.find_first: Callable[[str, LexborNode], list[LexborNode]] = getattr(engine, "find_first", engine.find)


_css_engines = _CssEngines()
# what Lexbor raises for a selector it cannot parse: SelectolaxError where selectolax has it
_SELECTOR_ERRORS: tuple[type[Exception], ...] = (getattr(lexbor, "SelectolaxError", ValueError), ValueError)


# keys of Scrapy's meta that change how it fetches: here each would be carried along and do
# nothing, so a ported spider's request is refused with what does the job here
_SCRAPY_META = {
    "handle_httpstatus_list": "list the statuses in meta={'allow_statuses': [404]}",
    "handle_httpstatus_all": "list the statuses in meta={'allow_statuses': [...]}",
    "dont_redirect": "list the redirect statuses in meta={'allow_statuses': [301, 302]} to get the redirect itself",
    "download_maxsize": "use meta={'max_response_bytes': N}",
    "download_timeout": "the timeout setting applies to every request",
    "dont_retry": "the retry.times setting applies to every request",
    "max_retry_times": "the retry.times setting applies to every request",
    "dont_obey_robotstxt": "the robots_txt setting applies to every request",
    "cookiejar": "a crawl keeps one cookie jar (the cookies setting)",
    "dont_merge_cookies": "a crawl keeps one cookie jar (the cookies setting)",
}


class NotALink(ValueError):
    """What ``follow()`` raises for a link no request can be made of (an element without an
    ``href``, ``None``, text that cannot be made absolute): ``follow_all()`` skips such links,
    and raises anything else (arguments no request takes)."""


def _bad_selector(selector: str) -> ValueError:
    """Lexbor says only "Can't parse CSS selector.": the error names the selector, and the
    CSS that a Scrapy user's selectors (parsel's) write differently."""
    hint = ""
    if "::text" in selector or "::attr(" in selector:
        hint = ": ::text and ::attr() are parsel's, not CSS (take node.text(), node.attributes['href'])"
    elif selector.lstrip().startswith(("/", "(")):
        hint = ": XPath is not supported, select with CSS"
    elif ":contains(" in selector or ":-soup-contains(" in selector:
        hint = ': text is matched with Lexbor\'s :lexbor-contains("text")'
    return ValueError(f"cannot parse CSS selector {selector!r}{hint}")


def check_url(url: str) -> str:
    """Return ``url`` when it is absolute (has a scheme), else raise ValueError.

    Anything more (http(s) only, a host, a sane length) is checked when the scheduler admits
    the request, so that ``mailto:`` or malformed links are filtered and counted there
    instead of failing the callback that found them."""
    if not isinstance(url, str) or not _ABSOLUTE.match(url):
        raise ValueError(f"not an absolute URL: {url!r}")
    return url


def _pairs(data: object) -> bool:
    """Whether ``data`` is form data as a list (or tuple) of ``(name, value)`` pairs, which a
    name may repeat in (Scrapy's ``formdata`` takes them too)."""
    return isinstance(data, (list, tuple)) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in data)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Request:
    """One HTTP request to make, and what to do with its response.

    ``callback`` is a spider method (``None`` means ``spider.parse``); ``meta`` travels with the
    request to its response; ``cb_kwargs`` are passed to the callback as keyword arguments.
    ``depth`` is set by the scheduler: start requests are 0, links found on them 1, and so on.
    """

    url: str
    callback: Callable[..., Any] | None = None
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    data: bytes | str | Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None
    json: Any = None
    meta: Mapping[str, Any] | None = None
    cb_kwargs: Mapping[str, Any] | None = None
    priority: int = 0
    dont_filter: bool = False
    depth: int = 0
    _parsed: URL | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        url = self.url
        if not (url.__class__ is str and _ABSOLUTE.match(url)) or url[-1] <= " ":  # the common URL: 2 tests
            # spaces around a URL are no part of it (as browsers read an href, and Scrapy a URL)
            try:
                url = check_url(url.strip() if isinstance(url, str) else url)
            except ValueError as exc:
                raise ValueError(f"{exc} (a link from a page: response.follow(url) resolves it)") from None
            object.__setattr__(self, "url", url)
        object.__setattr__(self, "method", self.method.upper())
        if self.priority.__class__ is not int and not isinstance(self.priority, int):  # else it fails far away
            raise TypeError(f"Request({url!r}): priority must be an int, not {type(self.priority).__name__}")
        if not -_INT64 <= self.priority < _INT64:  # SQLite's integers: past them, the write stopped the crawl
            raise ValueError(f"Request({url!r}): priority {self.priority} is out of range (at most 2**63 - 1)")
        if self.data is not None or self.json is not None:
            if self.data is not None and self.json is not None:
                raise ValueError(f"Request({self.url!r}) takes data or json, not both")
            if self.data is not None and not isinstance(self.data, (bytes, str, Mapping)) and not _pairs(self.data):
                raise TypeError(  # else it failed far away, where the body is made: the crawl stopped
                    f"Request({self.url!r}): data must be bytes, str, a dict or a list of (name, value) pairs, "
                    f"not {type(self.data).__name__}"
                )
            if self.method == "GET":
                _warn_of_get_with_body("data" if self.data is not None else "json")
        if self.meta and not _SCRAPY_META.keys().isdisjoint(self.meta):
            key = next(key for key in self.meta if key in _SCRAPY_META)
            raise ValueError(f"Request({self.url!r}): meta key {key!r} is Scrapy's, not read here: {_SCRAPY_META[key]}")

    def parsed_url(self) -> URL:
        """``url`` as yarl parses it, kept from the first call on (a request made by
        ``Response.follow`` starts with the URL it was resolved to), so that the scheduler's
        checks and the fetcher parse a URL once: each parse costs ~7 µs, and rendering a
        URL the fetcher did not get from here ~3 µs more (``text_of``). Kept only when
        ``url`` is the text yarl writes for it, so that ``text_of`` may answer ``url``: a URL
        written otherwise (``HTTP://Host``, ``:80``, ``%c3%a9``, a bare ``?``) is parsed anew
        each time, and its fingerprint is the canonical one (it was the text as written, and
        each spelling of one page was fetched)."""
        parsed = self._parsed
        if parsed is None:
            parsed = URL(self.url)
            if str(parsed) == self.url:
                object.__setattr__(self, "_parsed", parsed)  # a cache: the request stays as it was
        return parsed

    def text_of(self, url: URL) -> str:
        """``str(url)``, spared for this request's own parsed URL (``parsed_url``), whose text
        is ``self.url`` already (rendering it costs ~3 µs)."""
        return self.url if url is self._parsed else str(url)

    def replace(self, **changes: Any) -> Request:
        """A copy with ``changes`` applied (the request itself never changes)."""
        return dataclasses.replace(self, **changes)

    def body(self) -> bytes | None:
        """The body as bytes: form data is URL-encoded, ``json`` is serialised."""
        if self.json is not None:
            return jsonlib.dumps(self.json, sort_keys=True, separators=(",", ":")).encode()
        if self.data is None:
            return None
        if isinstance(self.data, bytes):
            return self.data
        if isinstance(self.data, str):
            return self.data.encode()
        pairs = self.data.items() if isinstance(self.data, Mapping) else self.data
        return urlencode(list(pairs), doseq=True).encode()

    def content_type(self) -> str | None:
        """The Content-Type the body implies (``headers_to_send`` adds it unless the user set one)."""
        if self.json is not None:
            return "application/json"
        if self.data is None:
            return None  # the common case, without the slower isinstance check against an ABC
        if isinstance(self.data, (bytes, str)):
            return None
        return "application/x-www-form-urlencoded"  # a dict, or (name, value) pairs

    def headers_to_send(self) -> dict[str, str]:
        """``headers`` plus the Content-Type the body implies, unless the user set one: what the
        fetcher sends and what the frontier stores, so a resumed request goes out the same."""
        headers = dict(self.headers) if self.headers else {}
        content_type = self.content_type()
        if content_type and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
        return headers

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Response:
    """A fetched page. Text is decoded and HTML parsed lazily, each at most once."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    request: Request
    # made on first use; until then these class defaults answer
    _text: str | None = None
    _encoding: str | None = None
    _parser: LexborHTMLParser | None = None
    _base: URL | None = None
    _meta: dict[str, Any] | None = None

    def __init__(
        self,
        *,
        url: str,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        request: Request,
    ) -> None:
        if not isinstance(headers, CIMultiDictProxy):
            headers = CIMultiDictProxy(CIMultiDict(headers or {}))
        # the public attributes are set once, here, past __setattr__: one dict update rather
        # than a call of object.__setattr__ each (a response is made per page)
        vars(self).update(url=url, status=status, headers=headers, body=body, request=request)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError(f"Response is immutable: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def meta(self) -> Mapping[str, Any]:
        """The request's ``meta``; for a request made without one, a dict of this response's
        own, kept: a new empty one at each read lost what a callback wrote there (Scrapy's
        ``response.meta`` is a dict that keeps it)."""
        meta = self.request.meta
        if meta is not None:
            return meta
        if self._meta is None:
            self._meta = {}
        return self._meta

    @property
    def text(self) -> str:
        if self._text is None:
            text = encoding.decode_as(self.body, self.encoding)
            object.__setattr__(self, "_text", text)
            return text
        return self._text

    @property
    def encoding(self) -> str:
        """The charset ``text`` is decoded with (found without decoding the body)."""
        if self._encoding is None:
            object.__setattr__(self, "_encoding", encoding.detect_encoding(self.body, self.headers.get("Content-Type")))
        assert self._encoding is not None
        return self._encoding

    def json(self) -> Any:
        """The body read as JSON. When it is not JSON (an API's HTML error page, a login or a
        captcha page), the error says what the page was: its Content-Type and first characters."""
        try:
            return jsonlib.loads(self.text)
        except jsonlib.JSONDecodeError as exc:
            kind = self.headers.get("Content-Type", "no Content-Type")
            start = " ".join(self.text[:_SHOWN_OF_NOT_JSON].split())
            exc.add_note(f"the page is not JSON: {kind}, starting {start!r}")
            raise

    @property
    def html(self) -> LexborHTMLParser:
        """The parsed document (selectolax Lexbor), built on first use. A UTF-8 page is
        parsed from its bytes: Lexbor reads UTF-8 itself (invalid bytes and a BOM just as
        ``text`` treats them), which spares decoding to ``str`` and encoding back."""
        if self._parser is None:
            parser = LexborHTMLParser(self.body if self.encoding == "utf-8" else self.text)
            object.__setattr__(self, "_parser", parser)
            return parser
        return self._parser

    def _forget_tree(self) -> None:
        """Drop the parsed document (built again if asked for). Lexbor holds ~1.2 MiB of C heap
        for each live document, however small the page: kept while a worker awaited the
        database after the callback, up to one a worker lived at once, and the heap kept that
        high point (+35 MB of peak RSS at 300,000 pages, concurrency 32)."""
        object.__setattr__(self, "_parser", None)

    def css(self, selector: str) -> list[LexborNode]:
        """The elements matching ``selector``, in document order (as ``html.css()``). A
        selector Lexbor cannot parse is a ValueError that names it."""
        root = self.html.root
        try:
            return [] if root is None else _css_engines.find(selector, root)
        except _SELECTOR_ERRORS:
            raise _bad_selector(selector) from None

    @overload
    def css_first(self, selector: str) -> LexborNode | None: ...

    @overload
    def css_first(self, selector: str, default: _Default) -> LexborNode | _Default: ...

    def css_first(self, selector: str, default: Any = None) -> Any:
        """The first element matching ``selector``, or ``default`` (None unless given), as
        selectolax's own ``css_first`` (whose ``default`` a Scrapy user reaches for, after
        parsel's ``get(default=...)``)."""
        root = self.html.root
        try:
            found = [] if root is None else _css_engines.find_first(selector, root)
        except _SELECTOR_ERRORS:
            raise _bad_selector(selector) from None
        return found[0] if found else default

    def urljoin(self, url: str) -> str:
        """Resolve ``url`` against this page (honouring a ``<base href>``). A URL that cannot
        be parsed (``http://[bad``, a port that is no number) is a ValueError naming it."""
        if not isinstance(url, str):  # None: attributes.get("href") of a tag with none said "no attribute 'strip'"
            raise TypeError(f"cannot resolve {url!r} against {self.url}: give a string (an href that is there)")
        try:
            return str(self._resolve(url))
        except ValueError as exc:
            raise ValueError(f"cannot resolve {url!r} against {self.url}: {exc}") from None

    def _resolve(self, url: str) -> URL:
        url = url.strip()
        if not url.isascii() and "?" in url:
            url = self._query_in_page_charset(url)
        return self._base_url().join(URL(url))

    def _query_in_page_charset(self, url: str) -> str:
        """``url`` with the non-ASCII characters of its query percent-encoded in this page's
        charset, as browsers (and Scrapy) send a legacy page's links: a character the charset
        lacks as ``&#NNNN;``. The path and fragment are left for yarl: UTF-8 on any page."""
        charset = self.encoding
        if charset.startswith("utf"):  # UTF-16 pages' links are UTF-8 too
            return url
        head, _, rest = url.partition("?")
        query, hash_, fragment = rest.partition("#")
        query = _NON_ASCII.sub(lambda run: quote(run[0], safe="", encoding=charset, errors="xmlcharrefreplace"), query)
        return f"{head}?{query}{hash_}{fragment}"

    def _base_url(self) -> URL:
        if self._base is None:
            base = self.css_first("base[href]") if b"<base" in self.body[:4096].lower() else None
            href = base.attributes.get("href") if base is not None else None
            page = URL(self.url)
            try:
                self._base = page.join(URL(href.strip())) if href else page
            except ValueError:  # a base href that cannot be parsed is ignored, as browsers do
                self._base = page
        return self._base

    def follow(self, link: Link, callback: Callable[..., Any] | None = None, **kwargs: Any) -> Request:
        """A request for ``link``, relative URLs resolved. Links the crawl will not fetch
        (``mailto:``, ``javascript:``, hrefs that cannot be parsed...) are filtered and
        counted by the scheduler, not raised here."""
        if isinstance(link, LexborNode):
            attributes = link.attributes
            if "href" not in attributes:
                raise NotALink(
                    f"cannot follow an element without href on {self.url}: select a[href], or follow_all() skips them"
                )
            href = attributes["href"] or ""  # href="" or a bare href: the page itself, as browsers read it
        elif link is None:  # most often css_first() that matched nothing: the last page has no "next"
            raise NotALink(f"cannot follow None on {self.url}: css_first() returns None when nothing matches")
        else:
            href = link
        kwargs.setdefault("depth", self.request.depth + 1)  # what the scheduler would set
        try:
            url = self._resolve(href)
        except ValueError:
            # a link that cannot be parsed ("http://[bad", a port that is no number): its
            # request is filtered as malformed and counted when the scheduler admits it, as
            # mailto: links are, so that one bad href does not cost the page the rest
            return Request(self._unparsed(href), callback=callback, **kwargs)
        request = Request(str(url), callback=callback, **kwargs)
        object.__setattr__(request, "_parsed", url)  # see parsed_url()
        return request

    def _unparsed(self, href: str) -> str:
        """An unparsable link made absolute as far as text allows (what it can fail on is its
        host or port, hence a scheme of its own or a network-path ``//host...``)."""
        text = href.strip()
        if text.startswith("//"):
            return f"{self._base_url().scheme}:{text}"
        if not _ABSOLUTE.match(text):
            raise NotALink(f"cannot resolve {href!r} against {self.url}")
        return text

    def follow_all(
        self,
        links: Iterable[Link] | None = None,
        callback: Callable[..., Any] | None = None,
        *,
        css: str | None = None,
        **kwargs: Any,
    ) -> list[Request]:
        """Requests for every link that has an ``href`` (resolved against this page); links no
        request can be made of are skipped, arguments no request takes raise."""
        if links is None:
            if css is None:
                raise TypeError("follow_all() needs links or css=")
            links = self.css(css)
        elif css is not None:  # the css was ignored, without a word
            raise TypeError("follow_all() takes links or css=, not both")
        return list(self._followable(links, callback, kwargs))

    def _followable(
        self, links: Iterable[Link], callback: Callable[..., Any] | None, kwargs: dict[str, Any]
    ) -> Iterator[Request]:
        for link in links:
            try:
                yield self.follow(link, callback, **kwargs)
            except NotALink:
                continue
