"""Parse tests for the project's spiders: saved pages for the toscrape sites, and pages served
by the demo shop on 127.0.0.1 for ``demo_shop`` (checked against the catalog it renders)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipelines.clean import Normalize
from scraper import Item, Request, Response, Spider
from scraper.demo_site import Catalog, build_catalog, make_app, serve
from scraper.demo_site import Product as CatalogProduct
from scraper.errors import ConfigError
from scraper.spider import CallbackResult, run_callback
from spiders import demo_shop
from spiders._parsing import attribute_of, parse_amount, parse_amount_and_symbol, parse_stock, text_of
from spiders.books import Book, BooksSpider
from spiders.demo_shop import DemoShopSpider, Product
from spiders.quotes import Quote, QuotesSpider

FIXTURES = Path(__file__).parent.parent / "fixtures"
HTML_UTF8 = {"Content-Type": "text/html; charset=utf-8"}

QUOTES_URL = "https://quotes.toscrape.com/"
BOOKS_URL = "https://books.toscrape.com/"
BOOK_URL = "https://books.toscrape.com/catalogue/creme-brulee-for-beginners_999/index.html"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def page(
    url: str,
    body: bytes,
    callback: Callable[..., Any],
    headers: dict[str, str] | None = None,
) -> Response:
    request = Request(url, callback=callback)
    return Response(url=url, status=200, headers=headers or HTML_UTF8, body=body, request=request)


async def parse(callback: Callable[..., Any], url: str, body: bytes) -> CallbackResult:
    return await run_callback(callback, page(url, body, callback))


def targets(result: CallbackResult) -> list[tuple[str, Any]]:
    """(url, callback) of each request, in order: bound methods compare equal by identity."""
    return [(request.url, request.callback) for request in result.requests]


async def normalized(item: Item | dict[str, Any]) -> Item | dict[str, Any]:
    return await Normalize().process(item, Spider())


# ---------------------------------------------------------------- quotes.toscrape.com


async def test_quotes_page_yields_each_quote_and_the_next_page() -> None:
    spider = QuotesSpider()
    result = await parse(spider.parse, QUOTES_URL, fixture("quotes_page1.html"))

    assert result.items == [
        Quote(
            text="A fixture that mirrors the page is worth ten that merely resemble it.",
            author="Ada Testwright",
            tags=["testing", "craft"],
            author_url="https://quotes.toscrape.com/author/Ada-Testwright",
        ),
        Quote(
            text="Patience is a queue that never blocks.",
            author="Bram O'Loop",
            tags=["async", "patience", "wait-for-it"],
            author_url="https://quotes.toscrape.com/author/Bram-OLoop",
        ),
        Quote(
            text="Some pages say nothing at all, and that is a fine thing to test.",
            author="Cleo Émile",
            tags=[],  # the sidebar's "Top Ten tags" links are not this quote's tags
            author_url="https://quotes.toscrape.com/author/Cleo-Emile",
        ),
    ]
    assert targets(result) == [("https://quotes.toscrape.com/page/2/", spider.parse)]
    assert result.invalid == []


async def test_quotes_last_page_has_no_next_request() -> None:
    body = re.sub(rb'<li class="next">.*?</li>', b"", fixture("quotes_page1.html"), flags=re.S)
    result = await parse(QuotesSpider().parse, "https://quotes.toscrape.com/page/10/", body)

    assert len(result.items) == 3
    assert result.requests == []


async def test_quotes_a_broken_quote_fails_alone() -> None:
    body = fixture("quotes_page1.html").replace(b'<small class="author" itemprop="author">Ada Testwright</small>', b"")
    result = await parse(QuotesSpider().parse, QUOTES_URL, body)

    assert [quote.author for quote in result.items if isinstance(quote, Quote)] == [
        "Bram O'Loop",
        "Cleo Émile",
    ]
    [(broken, error)] = result.invalid
    assert broken.text.startswith("A fixture that mirrors")  # type: ignore[attr-defined]
    assert [entry["loc"] for entry in error.errors()] == [("author",)]
    assert len(result.requests) == 1  # the rest of the page still counts


# ---------------------------------------------------------------- books.toscrape.com


async def test_books_listing_follows_each_book_once_and_the_next_page() -> None:
    spider = BooksSpider()
    result = await parse(spider.parse, BOOKS_URL, fixture("books_listing.html"))

    catalogue = "https://books.toscrape.com/catalogue/"
    assert targets(result) == [
        (f"{catalogue}the-lantern-keepers-almanac_1000/index.html", spider.parse_book),
        (f"{catalogue}creme-brulee-for-beginners_999/index.html", spider.parse_book),
        (
            f"{catalogue}a-very-long-title-about-asynchronous-crawling-and-the-art-of-waiting-politely_998/index.html",
            spider.parse_book,
        ),
        (f"{catalogue}page-2.html", spider.parse),
    ]
    assert result.items == []


async def test_books_product_page_yields_one_parsed_book() -> None:
    result = await parse(BooksSpider().parse_book, BOOK_URL, fixture("books_product.html"))

    [raw] = result.items
    assert await normalized(raw) == Book(
        url=BOOK_URL,
        title="Crème Brûlée for Beginners",
        price=Decimal("9.05"),
        availability="In stock (7 available)",
        in_stock=True,
        stock=7,
        rating=1,
        upc="f00dcafe12345678",
        category="Food and Drink",
        description=(
            "A gentle introduction to custard, flame and patience. Twelve recipes, one blowtorch, no excuses. ...more"
        ),
    )
    assert result.requests == [] and result.invalid == []


async def test_books_product_served_without_charset_decodes_by_meta() -> None:
    spider = BooksSpider()
    response = page(BOOK_URL, fixture("books_product.html"), spider.parse_book, {"Content-Type": "text/html"})
    [book] = (await run_callback(spider.parse_book, response)).items

    assert isinstance(book, Book)
    assert (book.title, book.price) == ("Crème Brûlée for Beginners", Decimal("9.05"))


async def test_books_product_without_description() -> None:
    body = re.sub(
        rb'<div id="product_description".*?</div>\s*<p>.*?</p>',
        b"",
        fixture("books_product.html"),
        flags=re.S,
    )
    assert b"product_description" not in body
    [book] = (await parse(BooksSpider().parse_book, BOOK_URL, body)).items

    assert isinstance(book, Book)
    assert book.description == ""
    assert book.upc == "f00dcafe12345678"  # the table right after is still found


@pytest.mark.parametrize(
    ("text", "expected"),
    [("£51.77", "51.77"), ("\n  £1,203.1 \n", "1203.10"), ("Â£0.5", "0.50")],
)
def test_books_parse_price(text: str, expected: str) -> None:
    price = parse_amount(text)
    assert price == Decimal(expected)
    assert str(price) == expected  # always two places


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n\n    In stock (22 available)\n", (True, 22)),
        ("In stock", (True, 0)),
        ("Out of stock", (False, 0)),
    ],
)
def test_books_parse_stock(text: str, expected: tuple[bool, int]) -> None:
    assert parse_stock(text) == expected


# ---------------------------------------------------------------- demo shop (scraper.demo_site)

HANDMADE = Catalog(
    categories=(("home-garden", "Home & Garden"), ("books", "Books")),
    products=(
        CatalogProduct(
            id=1,
            slug="brass-lamp-shade",
            title="Brass Lamp & Shade",
            price=Decimal("1234.50"),
            rating=4,
            stock=12,
            category="home-garden",
            sku="DS-00001-ABCD",
            description='A lamp. It glows. Perfect as a "just because" gift.',
        ),
        CatalogProduct(
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
        CatalogProduct(
            id=3,
            slug="creme-kettle",
            title="Crème Kettle",
            price=Decimal("0.99"),
            rating=5,
            stock=1,
            category="home-garden",
            sku="DS-00003-FFFF",
            description="Whistles.",
        ),
    ),
    per_page=1,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def fetch(session: aiohttp.ClientSession, request: Request) -> Response:
    async with session.get(request.url) as reply:
        assert reply.status == 200, request.url
        return Response(
            url=str(reply.url),
            status=reply.status,
            headers=dict(reply.headers),
            body=await reply.read(),
            request=request,
        )


def expected_product(base_url: str, catalog: Catalog, product: CatalogProduct) -> Product:
    return Product(
        url=base_url + product.path,
        title=product.title,
        price=product.price,
        currency="GBP",
        rating=product.rating,
        in_stock=product.stock > 0,
        stock=product.stock,
        category=dict(catalog.categories)[product.category],
        sku=product.sku,
        description=product.description,
    )


def test_demo_shop_without_base_url_is_a_config_error() -> None:
    """Raised by start_requests(), it came after the crawl had begun, and left a failed crawl row."""
    with pytest.raises(ConfigError, match=r"-a base_url=URL.*python -m scraper demo"):
        DemoShopSpider()


async def test_demo_shop_starts_at_the_home_page() -> None:
    spider = DemoShopSpider(base_url="http://127.0.0.1:8080/")
    requests = [request async for request in spider.start_requests()]
    assert [(r.url, r.callback) for r in requests] == [("http://127.0.0.1:8080/", spider.parse)]


async def test_demo_shop_home_and_listings(session: aiohttp.ClientSession) -> None:
    async with serve(make_app(HANDMADE)) as base_url:
        spider = DemoShopSpider(base_url=base_url)
        [start] = [request async for request in spider.start_requests()]
        home = await run_callback(spider.parse, await fetch(session, start))
        assert targets(home) == [
            (f"{base_url}/category/home-garden/", spider.parse_listing),
            (f"{base_url}/category/books/", spider.parse_listing),
        ]

        first = await run_callback(spider.parse_listing, await fetch(session, home.requests[0]))
        assert targets(first) == [
            (f"{base_url}/product/1-brass-lamp-shade.html", spider.parse_product),
            (f"{base_url}/category/home-garden/page-2.html", spider.parse_listing),
        ]
        last = await run_callback(spider.parse_listing, await fetch(session, first.requests[1]))
        assert targets(last) == [(f"{base_url}/product/3-creme-kettle.html", spider.parse_product)]
        assert first.items == last.items == []


@pytest.mark.parametrize("product", HANDMADE.products, ids=lambda p: p.slug)
async def test_demo_shop_product_page(session: aiohttp.ClientSession, product: CatalogProduct) -> None:
    async with serve(make_app(HANDMADE)) as base_url:
        spider = DemoShopSpider(base_url=base_url)
        request = Request(base_url + product.path, callback=spider.parse_product)
        result = await run_callback(spider.parse_product, await fetch(session, request))

    [raw] = result.items
    assert isinstance(raw, Product)
    assert str(raw.price) == f"{product.price:.2f}"  # parsed from "£1,234.50", two places kept
    assert await normalized(raw) == expected_product(base_url, HANDMADE, product)
    assert result.requests == [] and result.invalid == []


async def test_demo_shop_crawl_finds_every_product(session: aiohttp.ClientSession) -> None:
    """Drive the callbacks breadth-first over a generated shop, as the engine would."""
    catalog = build_catalog(45, categories=4, per_page=5)
    async with serve(make_app(catalog)) as base_url:
        spider = DemoShopSpider(base_url=base_url)
        queue = [request async for request in spider.start_requests()]
        seen: set[str] = set()
        products: list[Product] = []
        while queue:
            request = queue.pop(0)
            assert request.url not in seen, f"{request.url} requested twice"
            assert request.callback is not None
            seen.add(request.url)
            result = await run_callback(request.callback, await fetch(session, request))
            assert result.invalid == []
            queue.extend(result.requests)
            for item in result.items:
                product = await normalized(item)
                assert isinstance(product, Product)
                products.append(product)

    expected = [expected_product(base_url, catalog, p) for p in catalog.products]
    assert sorted(products, key=lambda p: p.url) == sorted(expected, key=lambda p: p.url)
    assert len(seen) == 1 + 4 * 3 + 45  # home, 4 categories of 3 listing pages, products


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n    £1,234.50  ", ("1234.50", "GBP")),
        ("€3", ("3.00", "EUR")),
        ("12.5 $", ("12.50", "USD")),
    ],
)
def test_demo_shop_parse_price(text: str, expected: tuple[str, str]) -> None:
    price, currency = demo_shop.parse_price(text)
    assert (str(price), currency) == expected


@pytest.mark.parametrize("text", ["free", "1.00", "£€1"])
def test_demo_shop_parse_price_rejects_unclear_prices(text: str) -> None:
    with pytest.raises(ValueError, match="price"):
        demo_shop.parse_price(text)


async def test_demo_shop_product_page_missing_a_part_names_the_selector() -> None:
    spider = DemoShopSpider(base_url="http://127.0.0.1:1")
    body = b"<html><body><h1>Lamp</h1><p class='stock'>Out of stock</p></body></html>"
    with pytest.raises(ValueError, match=r"no 'p.price' in http://127.0.0.1:1/product/1-x.html"):
        await parse(spider.parse_product, "http://127.0.0.1:1/product/1-x.html", body)


# ---------------------------------------------------------------- spiders._parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.234,56 €", ("1234.56", "€")), ("€1,5", ("1.50", "€")), ("$1.234.567,89", ("1234567.89", "$"))],
)
def test_parse_amount_and_symbol_reads_either_decimal_mark(text: str, expected: tuple[str, str]) -> None:
    amount, symbol = parse_amount_and_symbol(text)
    assert (str(amount), symbol) == expected


@pytest.mark.parametrize("text", ["free", "In stock", "£"])
def test_parse_amount_without_digits_names_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"no amount in price {re.escape(repr(text))}"):
        parse_amount(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("1.00", "no currency in price '1.00'"), ("£€1", "more than one currency in price '£€1'")],
)
def test_parse_amount_and_symbol_rejects_unclear_currency(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_amount_and_symbol(text)


def test_demo_shop_parse_price_rejects_an_unmapped_symbol() -> None:
    with pytest.raises(ValueError, match=r"unknown currency '¥' in price '¥500'"):
        demo_shop.parse_price("¥500")


def test_node_helpers_name_what_is_missing() -> None:
    body = b"<html><body><div class='main'><p class='rating' data-rating='4'>x</p></div></body></html>"
    response = page("https://example.com/p", body, BooksSpider().parse_book)
    [main] = response.css("div.main")

    assert attribute_of(main, "p.rating", "data-rating") == "4"
    with pytest.raises(ValueError, match=r"no 'h1' in <div>"):
        text_of(main, "h1")
    with pytest.raises(ValueError, match=r"'p.rating' has no 'title' attribute"):
        attribute_of(response, "p.rating", "title")
