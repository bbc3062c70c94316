"""The crawl's cookie jar (one per crawl, owned by the fetcher's ``ClientSession``).

aiohttp's jar accepts ``Domain=co.uk`` from ``shop.example.co.uk``; a crawl that visits many
sites would then send that cookie to every ``*.co.uk`` host it meets. This jar refuses
cookies whose Domain is a public suffix (RFC 6265 §5.3 step 5), by the Public Suffix List.

It is also kept with the crawl (``scraper_cookies``), so that a crawl that logged in is still
logged in when it resumes: storage writes the jar's changes in its transactions
(``changes`` / ``saved``), and a resumed crawl's jar starts from them (``restore``).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import math
import time
from collections.abc import Iterable, Mapping
from http.cookies import Morsel
from typing import Any, NamedTuple

import aiohttp
from aiohttp.typedefs import LooseCookies
from publicsuffixlist import PublicSuffixList
from yarl import URL

from scraper.encoding import is_unicode

logger = logging.getLogger(__name__)
_NO_URL = URL()  # aiohttp's default: no response URL, no host to check against
_LAST_DATE = 253402300799  # 9999-12-31 23:59:59 UTC: the latest date an Expires attribute can say


class StoredCookie(NamedTuple):
    """One cookie as ``scraper_cookies`` keeps it: what the jar needs to send it again."""

    domain: str  # the host of a host-only cookie
    path: str
    name: str
    value: str
    coded_value: str  # as it goes in the Cookie header
    host_only: bool  # sent to ``domain`` alone, not to its subdomains
    expires: str | None  # an HTTP date (a Max-Age is kept as the date it comes to); None: a session cookie
    secure: bool
    http_only: bool
    same_site: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.domain, self.path, self.name


class CookieChanges(NamedTuple):
    """What brings ``scraper_cookies`` up to the jar: cookies to write, and keys to delete."""

    version: int
    jar: dict[tuple[str, str, str], StoredCookie]  # the jar as these changes leave it
    written: list[StoredCookie]
    deleted: list[tuple[str, str, str]]


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The list, parsed on first use: when a crawl meets its first cookie with a Domain,
    not before (crawls that never meet one never pay), once per process.

    Parsed without the punycode copy of its IDN rules (~16 ms instead of ~80: that copy was
    4/5 of the work); ``is_public_suffix`` decodes a Domain's ``xn--`` labels instead. The
    parse runs on the event loop, once: in a thread at crawl start it held the GIL against
    the crawl's first requests, and waiting for it there delayed every crawl by ~0.1 s."""
    return PublicSuffixList(accept_encoded_idn=False)


def is_public_suffix(domain: str) -> bool:
    """Whether ``domain`` (lower case, ASCII as in a Set-Cookie header) is a public suffix:
    ``co.uk``, ``github.io``, ``xn--p1ai`` (the Russian .rf)."""
    if "xn--" in domain:
        with contextlib.suppress(UnicodeError):  # not valid punycode: looked up as it is
            domain = ".".join(
                label.encode("ascii").decode("idna") if label.startswith("xn--") else label
                for label in domain.split(".")
            )
    return public_suffixes().is_public(domain)


class CrawlCookieJar(aiohttp.CookieJar):
    """An ``aiohttp.CookieJar`` that refuses cookies scoped to a public suffix.

    ``Domain=com``, ``Domain=co.uk`` and ``Domain=github.io`` are dropped; ``Domain=example.co.uk``
    and host-only cookies (no Domain) are kept as aiohttp keeps them. As browsers do, a public
    suffix Domain that *is* the response host (a site served at ``github.io`` itself, or
    ``localhost``) makes a host-only cookie instead.

    ``unsafe``: aiohttp refuses every cookie from an IP-address host unless it is true. The
    framework passes ``unsafe=True`` (tests and local crawls talk to 127.0.0.1); such cookies
    stay scoped to that one address. Must be created inside a running event loop.

    A Max-Age is stored as the Expires date it comes to, so that a cookie kept with the crawl
    expires when it would have, not that long after the resume.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._version = 0  # one more at every change; what was saved is that of ``_saved_version``
        self._saved_version = 0
        self._saved: dict[tuple[str, str, str], StoredCookie] = {}
        self._unkept: set[tuple[str, str, str]] = set()  # cookies not valid text, warned of

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NO_URL) -> None:
        """Store ``cookies`` set by ``response_url``, less those scoped to a public suffix."""
        host = (response_url.raw_host or "").lower()
        pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
        kept: list[tuple[str, Any]] = []
        for name, cookie in pairs:
            if not isinstance(cookie, Morsel):
                kept.append((name, cookie))  # a bare value: no Domain, host-only
                continue
            morsel = self._screen(cookie, host)
            if morsel is not None:
                kept.append((name, _max_age_as_expires(morsel)))
        if kept:
            self._version += 1
        super().update_cookies(kept, response_url)

    def clear(self, predicate: Any = None) -> None:
        self._version += 1
        super().clear(predicate)

    def clear_domain(self, domain: str) -> None:
        self._version += 1
        super().clear_domain(domain)

    def changes(self) -> CookieChanges | None:
        """What changed since the jar was last ``saved`` (None: nothing)."""
        if self._version == self._saved_version:
            return None
        jar = self._snapshot()
        written = [cookie for key, cookie in jar.items() if self._saved.get(key) != cookie]
        deleted = [key for key in self._saved if key not in jar]
        return CookieChanges(self._version, jar, written, deleted)

    def saved(self, changes: CookieChanges) -> None:
        """``changes`` are committed: later ones are counted from them."""
        self._saved = changes.jar
        self._saved_version = max(self._saved_version, changes.version)

    def restore(self, cookies: Iterable[StoredCookie]) -> None:
        """Put back the cookies a crawl kept (taken as saved: nothing to write again)."""
        for cookie in cookies:
            morsel: Morsel[str] = Morsel()
            morsel.set(cookie.name, cookie.value, cookie.coded_value)
            morsel["path"] = cookie.path
            if not cookie.host_only:  # given no Domain, aiohttp makes it host-only for the URL's host
                morsel["domain"] = cookie.domain
            for attribute, value in (
                ("expires", cookie.expires),
                ("secure", cookie.secure),
                ("httponly", cookie.http_only),
                ("samesite", cookie.same_site),
            ):
                if value:
                    morsel[attribute] = value
            super().update_cookies([(cookie.name, morsel)], URL.build(scheme="http", host=cookie.domain))
        self._saved = self._snapshot()
        self._saved_version = self._version

    def _snapshot(self) -> dict[tuple[str, str, str], StoredCookie]:
        """The jar as the crawl keeps it, by key."""
        return {cookie.key: cookie for cookie in map(self._stored, self) if cookie is not None}

    def _stored(self, morsel: Morsel[str]) -> StoredCookie | None:
        """``morsel`` as the crawl keeps it; None for one SQLite cannot take (a lone surrogate,
        from bytes that are not UTF-8 in its header): sent for this run, not kept."""
        domain = morsel["domain"]
        cookie = StoredCookie(
            domain=domain,
            path=morsel["path"],
            name=morsel.key,
            value=morsel.value,
            coded_value=morsel.coded_value,
            host_only=(domain, morsel.key) in self._host_only_cookies,  # aiohttp's own record of it
            expires=morsel["expires"] or None,
            secure=bool(morsel["secure"]),
            http_only=bool(morsel["httponly"]),
            same_site=morsel["samesite"] or None,
        )
        texts = (cookie.domain, cookie.path, cookie.name, cookie.value, cookie.coded_value, cookie.expires or "")
        if all(map(is_unicode, texts)):
            return cookie
        if cookie.key not in self._unkept:  # said once: the jar is looked at every transaction
            self._unkept.add(cookie.key)
            logger.warning("cookie %r of %s is not kept with the crawl: it is not valid text", morsel.key, domain)
        return None

    def _screen(self, morsel: Morsel[str], host: str) -> Morsel[str] | None:
        """``morsel`` as it may be stored, or None when its Domain is a public suffix."""
        domain = morsel["domain"].lower().lstrip(".")
        # aiohttp ignores a Domain with a trailing dot (host-only): nothing to refuse then
        if not domain or domain.endswith(".") or not is_public_suffix(domain):
            return morsel
        if domain == host:
            host_only = morsel.copy()  # the caller's morsel stays as it came
            host_only["domain"] = ""
            return host_only
        logger.debug("refused cookie %s with public-suffix Domain=%s from %s", morsel.key, domain, host)
        return None


def _max_age_as_expires(morsel: Morsel[str]) -> Morsel[str]:
    """``morsel`` with its Max-Age (which counts from now) given as the Expires date it comes
    to; as it is without one, or with one that is not a number (aiohttp ignores those)."""
    try:
        seconds = int(morsel["max-age"])
    except ValueError:
        return morsel
    # rounded up, as an HTTP date has whole seconds: rounded down, the cookie went up to 1 s
    # early. A Max-Age of 0 or less deletes it now (the date 1970-01-01 00:00:01).
    when = 1 if seconds <= 0 else min(math.ceil(time.time() + seconds), _LAST_DATE)
    absolute = morsel.copy()  # the caller's morsel stays as it came
    absolute["max-age"] = ""
    absolute["expires"] = email.utils.formatdate(when, usegmt=True)
    return absolute
