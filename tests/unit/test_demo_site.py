"""Tests for the offline demo shop: catalog determinism and crawlability over real HTTP."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from selectolax.lexbor import LexborHTMLParser
from yarl import URL

import scraper.demo_site
from scraper.demo_site import Catalog, Product, build_catalog, make_app, serve

HANDMADE = Catalog(
    categories=(("books", "Books"), ("home-garden", "Home & Garden")),
    products=(
        Product(
            id=1,
            slug="brass-lamp",
            title="Brass Lamp & Shade",
            price=Decimal("1234.50"),
            rating=4,
            stock=12,
            category="home-garden",
            sku="DS-00001-ABCD",
            description="A lamp. It glows.",
        ),
        Product(
            id=2,
            slug="old-book",
            title="Old Book",
            price=Decimal("7.05"),
            rating=1,
            stock=0,
            category="books",
            sku="DS-00002-0000",
            description="Dusty.",
        ),
    ),
    per_page=1,
)


def _text(html: str, selector: str) -> str:
    node = LexborHTMLParser(html).css_first(selector)
    assert node is not None, f"no {selector!r} in page"
    return " ".join(node.text().split())


async def _get(session: aiohttp.ClientSession, url: str | URL) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


@pytest.fixture
async def handmade_site() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with serve(make_app(HANDMADE)) as base, aiohttp.ClientSession() as session:
        yield base, session


def test_build_catalog_is_deterministic_and_seed_dependent() -> None:
    assert build_catalog() == build_catalog()
    assert build_catalog(seed=7) != build_catalog(seed=8)
    assert build_catalog(50).products == build_catalog(600).products[:50]


def test_build_catalog_does_not_depend_on_hash_seed() -> None:
    code = (
        "import hashlib, scraper.demo_site as d;print(hashlib.sha256(repr(d.build_catalog(300)).encode()).hexdigest())"
    )
    root = Path(scraper.demo_site.__file__).resolve().parents[1]
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert digests == {hashlib.sha256(repr(build_catalog(300)).encode()).hexdigest()}


def test_build_catalog_shape() -> None:
    catalog = build_catalog(101, categories=3, per_page=10, padding=5)
    assert [p.id for p in catalog.products] == list(range(1, 102))
    assert len(catalog.categories) == 3
    assert {p.category for p in catalog.products} == {slug for slug, _ in catalog.categories}
    assert all(1 <= p.rating <= 5 and p.stock >= 0 for p in catalog.products)
    assert all(p.price == p.price.quantize(Decimal("0.01")) > 0 for p in catalog.products)
    assert any(p.stock == 0 for p in catalog.products)
    assert (catalog.per_page, catalog.padding) == (10, 5)
    with pytest.raises(ValueError, match="per_page"):
        build_catalog(10, per_page=0)


@pytest.mark.parametrize(
    ("products", "categories", "per_page"),
    [(2000, 8, 20), (5, 8, 2), (45, 3, 15)],
)
async def test_walking_listings_from_home_finds_exactly_the_catalog(
    products: int, categories: int, per_page: int
) -> None:
    catalog = build_catalog(products, categories=categories, per_page=per_page)
    found: list[str] = []
    async with serve(make_app(catalog)) as base, aiohttp.ClientSession() as session:
        status, home = await _get(session, base + "/")
        assert status == 200
        links = LexborHTMLParser(home).css("ul.categories li a")
        assert len(links) == categories
        for link in links:
            url: URL | None = URL(base).join(URL(link.attributes["href"] or ""))
            while url is not None:
                status, page = await _get(session, url)
                assert status == 200, url
                tree = LexborHTMLParser(page)
                found += [str(url.join(URL(a.attributes["href"] or ""))) for a in tree.css("article.product h3 a")]
                assert len(tree.css("article.product p.price")) == len(tree.css("article.product"))
                nxt = tree.css_first("li.next a")
                url = url.join(URL(nxt.attributes["href"] or "")) if nxt else None
    assert len(found) == len(set(found)) == len(catalog.products)
    assert set(found) == {base + p.path for p in catalog.products}


async def test_product_page_fields(handmade_site: tuple[str, aiohttp.ClientSession]) -> None:
    base, session = handmade_site
    async with session.get(base + "/product/1-brass-lamp.html") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await response.text()
    assert '<meta charset="utf-8">' in html
    assert "<h1>\n" in html  # sloppy whitespace is deliberate
    assert _text(html, "h1") == "Brass Lamp & Shade"
    assert _text(html, "p.price") == "£1,234.50"
    rating = LexborHTMLParser(html).css_first("p.rating")
    assert rating is not None
    assert rating.attributes["data-rating"] == "4"
    assert _text(html, "p.rating").startswith("★★★★☆")
    assert _text(html, "p.stock") == "In stock (12 available)"
    assert _text(html, "td.sku") == "DS-00001-ABCD"
    assert _text(html, "p.description") == "A lamp. It glows."
    crumbs = LexborHTMLParser(html).css("ul.breadcrumb a")
    assert crumbs[-2].attributes["href"] == "/category/home-garden/"
    assert crumbs[-2].text() == "Home & Garden"

    status, html = await _get(session, base + "/product/2-old-book.html")
    assert status == 200
    assert _text(html, "p.price") == "£7.05"
    assert _text(html, "p.stock") == "Out of stock"


async def test_listing_pagination_uses_relative_next_links() -> None:
    catalog = build_catalog(45, categories=1, per_page=20)
    async with serve(make_app(catalog)) as base, aiohttp.ClientSession() as session:
        category = catalog.categories[0][0]
        status, first = await _get(session, f"{base}/category/{category}/")
        assert status == 200
        nxt = LexborHTMLParser(first).css_first("li.next a")
        assert nxt is not None
        assert nxt.attributes["href"] == "page-2.html"
        status, last = await _get(session, f"{base}/category/{category}/page-3.html")
        assert status == 200
        assert len(LexborHTMLParser(last).css("article.product")) == 5
        assert LexborHTMLParser(last).css_first("li.next") is None


@pytest.mark.parametrize(
    "path",
    [
        "/product/1-wrong-slug.html",
        "/product/3-old-book.html",
        "/product/0-brass-lamp.html",
        "/category/nope/",
        "/category/books/page-0.html",
        "/category/books/page-2.html",
        "/nowhere",
    ],
)
async def test_not_found(handmade_site: tuple[str, aiohttp.ClientSession], path: str) -> None:
    base, session = handmade_site
    status, _ = await _get(session, base + path)
    assert status == 404


async def test_robots_txt_allows_everything(
    handmade_site: tuple[str, aiohttp.ClientSession],
) -> None:
    base, session = handmade_site
    assert await _get(session, base + "/robots.txt") == (200, "User-agent: *\nAllow: /\n")


async def test_padding_makes_product_pages_larger() -> None:
    sizes = []
    for padding in (0, 20_000):
        catalog = build_catalog(3, padding=padding)
        async with serve(make_app(catalog)) as base, aiohttp.ClientSession() as session:
            status, html = await _get(session, base + catalog.products[0].path)
        assert status == 200
        filler = LexborHTMLParser(html).css("table.specifications td")
        assert sum(len(td.text()) for td in filler) == padding
        sizes.append(len(html.encode()))
    assert sizes[1] - sizes[0] >= 20_000
    assert sizes[1] < 25_000


async def test_serve_binds_loopback_on_a_free_port_and_cleans_up() -> None:
    async with serve(make_app(HANDMADE)) as base:
        url = URL(base)
        assert url.host == "127.0.0.1"
        assert url.port not in (None, 0)
        async with aiohttp.ClientSession() as session:
            assert (await _get(session, base + "/"))[0] == 200
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(session, base + "/")
