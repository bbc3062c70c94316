"""Redirects, followed by the framework rather than aiohttp so that every hop is a new request
that passes admission, robots.txt and the host limits again.

``next_hop`` builds that request: http(s) targets only, at most ``max_hops``, no loops;
credentials and secret headers dropped when scheme, host or port change; 301/302/303 turn a
POST into a body-less GET (303: anything but HEAD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from yarl import URL

from scraper.encoding import is_unicode
from scraper.errors import RedirectRefused
from scraper.fingerprint import canonical_url
from scraper.http import Request, Response
from scraper.links import inspect_link
from scraper.settings import LinkPolicy, RedirectPolicy

_URL_CHARACTERS = "!#$%&'()*+,/:;=?@[]~"  # kept as they are when a Location is percent-encoded

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHAIN_KEY = "redirect_urls"  # meta: the URLs this request was redirected from, oldest first
_ALWAYS_SECRET = frozenset({"authorization", "cookie", "proxy-authorization"})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})


def is_redirect(response: Response) -> bool:
    return response.status in REDIRECT_STATUSES and "Location" in response.headers


def to_follow(response: Response) -> bool:
    """A redirect the crawl follows: every one, but those whose status the request lists in
    ``meta["allow_statuses"]``, which go to its callback as they are (Scrapy's
    ``dont_redirect``, for a spider that reads the ``Location`` itself)."""
    return is_redirect(response) and response.status not in response.meta.get("allow_statuses", ())


def next_hop(response: Response, policy: RedirectPolicy, links: LinkPolicy) -> Request:
    """The request that follows ``response``'s redirect; ``RedirectRefused`` when it must not,
    among others when its target is a URL the crawl does not fetch (``links``: too long, a
    trap): as a link, it was counted and dropped, and the page was lost with no word."""
    request = response.request
    chain = [*request.meta.get(CHAIN_KEY, ()), request.url] if request.meta else [request.url]
    target = _target(response)
    unfetched, _ = inspect_link(target, links)
    if unfetched is not None:
        raise RedirectRefused(
            f"redirect to a URL not fetched ({unfetched}): {target}", url=request.url, status=response.status
        )
    if len(chain) > policy.max_hops:
        raise RedirectRefused(f"more than {policy.max_hops} redirects", url=request.url, status=response.status)
    if canonical_url(target) in {canonical_url(url) for url in chain}:
        raise RedirectRefused(f"redirect loop back to {target}", url=request.url, status=response.status)
    same_origin = _origin(URL(target)) == _origin(URL(request.url))
    method, body_kept = _method_after(request.method, response.status)
    meta: dict[str, Any] = {**(request.meta or {}), CHAIN_KEY: chain}
    if not same_origin:
        meta.pop("proxy", None)  # a per-request proxy (and its credentials) stays with its origin
    return request.replace(
        url=target,
        method=method,
        headers=_headers_for_hop(request.headers, same_origin=same_origin, body_kept=body_kept, policy=policy),
        data=request.data if body_kept else None,
        json=request.json if body_kept else None,
        meta=meta,
        dont_filter=False,
    )


def _target(response: Response) -> str:
    location = response.headers["Location"].strip()
    if not is_unicode(location):
        # bytes that are not UTF-8 (aiohttp keeps each as a lone surrogate, which yarl dropped:
        # /caf\xe9 led to /caf) are percent-encoded, as browsers do
        location = quote(location.encode("utf-8", "surrogateescape"), safe=_URL_CHARACTERS)
    try:
        target = str(URL(response.url).join(URL(location)).with_fragment(None))
    except ValueError:
        raise RedirectRefused(f"malformed redirect target {location!r}", url=response.url) from None
    parsed = URL(target)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RedirectRefused(f"redirect to a non-http(s) target {location!r}", url=response.url)
    return target


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


def _method_after(method: str, status: int) -> tuple[str, bool]:
    """The next hop's method and whether the body travels with it (RFC 9110 15.4)."""
    if status == 303 and method != "HEAD":
        return "GET", False
    if status in (301, 302) and method == "POST":
        return "GET", False
    return method, True


def _headers_for_hop(
    headers: Mapping[str, str] | None, *, same_origin: bool, body_kept: bool, policy: RedirectPolicy
) -> dict[str, str] | None:
    if not headers:
        return None
    secret = _ALWAYS_SECRET | {name.lower() for name in policy.secret_headers}
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "proxy-authorization":
            continue  # re-derived from the proxy setting on every hop, never carried
        if not same_origin and lowered in secret:
            continue
        if not body_kept and lowered in _BODY_HEADERS:
            continue
        kept[name] = value
    return kept or None
