"""Request identity for deduplication: method + canonical URL + body, hashed.

Canonical URL: lower-case scheme and host, default port dropped, fragment dropped, query
parameters sorted (order of repeated keys kept), empty path as ``/``; session ids
can be left out, as yarl normalises percent-encoding.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection

from yarl import URL

from scraper.http import Request
from scraper.links import strip_session_ids


def canonical_url(url: str | URL, *, text: Callable[[URL], str] = str) -> str:
    """``text`` renders a URL (``Request.text_of`` knows the text of a request's own)."""
    original = url if isinstance(url, URL) else URL(url)
    if len(original.raw_path) > 1 and not original.raw_query_string and not original.raw_fragment:
        return text(original)  # already canonical: most links (the rebuild below costs ~3 µs)
    # with_path drops query and fragment, and spells an empty path as "/"
    canonical = original.with_path(original.raw_path or "/", encoded=True)
    if original.query_string:
        canonical = canonical.with_query(sorted(original.query.items(), key=lambda pair: pair[0]))
    return str(canonical)


def fingerprint(request: Request, session_parameters: Collection[str] = (), *, parsed: URL | None = None) -> str:
    """A 32-hex-digit digest; equal for requests that fetch the same thing. Session ids named
    in ``session_parameters`` are ignored, so they do not make every URL look new. ``parsed``
    is ``request.url`` already parsed, if the caller has it."""
    url = strip_session_ids(request.url, session_parameters) if session_parameters else request.url
    canonical = canonical_url(parsed if parsed is not None and url is request.url else url, text=request.text_of)
    digest = hashlib.blake2b(f"{request.method} {canonical}".encode(), digest_size=16)
    body = request.body() if request.data is not None or request.json is not None else None
    if body:
        digest.update(b"\n")
        digest.update(body)
    return digest.hexdigest()


def copy_key(key: str) -> str:
    """The row key of a ``dont_filter`` copy of a request already seen (``key``): a key of its
    own, so that each copy is a row of ``scraper_requests`` and survives a stop. Sharing one
    row, the copies overwrote each other's ``cb_kwargs``, the first done marked it done, and
    the rest, kept only in memory, were lost on resume."""
    return f"{key}+{secrets.token_hex(8)}"
