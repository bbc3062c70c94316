"""Tests for ``static_pages``: the demo shop as (path, body) pairs must be exactly what the
aiohttp app serves, so a static copy of it (benchmarks) crawls to the same results."""

from __future__ import annotations

import math
from urllib.parse import urljoin, urlsplit

import aiohttp
from selectolax.lexbor import LexborHTMLParser

from scraper.demo_site import build_catalog, make_app, serve, static_pages


def test_paths_are_exactly_what_a_crawl_needs() -> None:
    catalog = build_catalog(products=45, per_page=20, categories=3)
    pages = dict(static_pages(catalog))
    listings = sum(max(1, math.ceil(len(catalog.in_category(slug)) / 20)) for slug, _ in catalog.categories)
    assert len(pages) == 1 + 1 + listings + 45  # home, robots.txt, listings, products
    assert set(pages) == {
        "/",
        "/robots.txt",
        *(f"/category/{slug}/" for slug, _ in catalog.categories),
        *(p.path for p in catalog.products),
    }


def test_paginated_listings_start_at_page_two() -> None:
    catalog = build_catalog(products=45, per_page=4, categories=3)  # 15 per category: 4 pages each
    paths = [path for path, _ in static_pages(catalog) if path.startswith("/category/")]
    assert len(paths) == 3 * 4
    slug = catalog.categories[0][0]
    assert paths[:4] == [f"/category/{slug}/", *(f"/category/{slug}/page-{n}.html" for n in (2, 3, 4))]


def test_static_pages_is_deterministic() -> None:
    assert list(static_pages(build_catalog(30, padding=500))) == list(static_pages(build_catalog(30, padding=500)))


async def test_bodies_equal_what_the_app_serves_and_a_crawl_reaches_every_page() -> None:
    """Follow every link from the home page on the live app; the pages reached (plus
    robots.txt) must be exactly the static set, with identical bytes."""
    catalog = build_catalog(products=45, per_page=4, categories=3, padding=450)
    expected = dict(static_pages(catalog))
    served: dict[str, bytes] = {}
    async with serve(make_app(catalog)) as base, aiohttp.ClientSession() as session:
        async with session.get(f"{base}/robots.txt") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            served["/robots.txt"] = await response.read()
        queue, seen = [f"{base}/"], {f"{base}/"}
        while queue:
            url = queue.pop()
            async with session.get(url) as response:
                assert response.status == 200, url
                assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                body = await response.read()
            served[urlsplit(url).path] = body
            for node in LexborHTMLParser(body).css("a[href]"):
                link = urljoin(url, node.attributes["href"] or "")
                if link not in seen:
                    seen.add(link)
                    queue.append(link)
    assert served.keys() == expected.keys()
    for path, body in expected.items():
        assert served[path] == body, path
