"""Request identity for deduplication: method + canonical URL + body, hashed.

Canonical URL: lower-case scheme and host, default port dropped, fragment dropped, query
parameters sorted (order of repeated keys kept), as yarl normalises percent-encoding.
"""

from __future__ import annotations

import hashlib

from yarl import URL

from scraper.http import Request


def canonical_url(url: str) -> str:
    parsed = URL(url).with_fragment(None)
    if parsed.query_string:
        parsed = parsed.with_query(sorted(parsed.query.items(), key=lambda pair: pair[0]))
    return str(parsed)


def fingerprint(request: Request) -> str:
    """A 32-hex-digit digest; equal for requests that fetch the same thing."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(request.method.encode())
    digest.update(b" ")
    digest.update(canonical_url(request.url).encode())
    body = request.body()
    if body:
        digest.update(b"\n")
        digest.update(body)
    return digest.hexdigest()
