"""The crawl's cookie jar (one per crawl, owned by the fetcher's ``ClientSession``).

aiohttp's jar accepts ``Domain=co.uk`` from ``shop.example.co.uk``; a crawl that visits many
sites would then send that cookie to every ``*.co.uk`` host it meets. This jar refuses
cookies whose Domain is a public suffix (RFC 6265 §5.3 step 5), by the Public Suffix List.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Mapping
from http.cookies import Morsel
from typing import Any

import aiohttp
from aiohttp.typedefs import LooseCookies
from publicsuffixlist import PublicSuffixList
from yarl import URL

logger = logging.getLogger(__name__)
_NO_URL = URL()  # aiohttp's default: no response URL, no host to check against


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
    """

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
                kept.append((name, morsel))
        super().update_cookies(kept, response_url)

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
