"""Spider for the bundled offline demo shop (``scraper.demo_site``): home → category listings
(paginated) → product pages, one ``Product`` per product page.

Texts are kept as the page has them (the ``pipelines.clean:Normalize`` stage tidies
whitespace); only price, rating and stock are parsed here, into numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import ClassVar

from pydantic import Field

from scraper import Item, Request, Response, Spider
from scraper.errors import ConfigError
from scraper.spider import Output
from spiders._parsing import attribute_of, parse_amount_and_symbol, parse_stock, text_of

CURRENCIES = {"£": "GBP", "€": "EUR", "$": "USD"}


class Product(Item):
    # the SKU, not the URL: the shop gets a new port each run, so keyed by URL every run of the
    # demo added its products again
    key: ClassVar[tuple[str, ...]] = ("sku",)

    url: str
    title: str
    price: Decimal = Field(decimal_places=2)
    currency: str
    rating: int = Field(ge=1, le=5)
    in_stock: bool
    stock: int = Field(ge=0)
    category: str
    sku: str
    description: str


class DemoShopSpider(Spider):
    """Run it with ``-a base_url=http://127.0.0.1:PORT`` (``python -m scraper demo`` does)."""

    name = "demo_shop"
    base_url = ""

    def __init__(self, **arguments: str) -> None:
        super().__init__(**arguments)
        if not self.base_url:  # refused as the spider is made: no crawl is begun without it
            raise ConfigError(
                "demo_shop needs -a base_url=URL; run `python -m scraper demo` to serve and crawl the demo shop"
            )

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(self.base_url.rstrip("/") + "/", callback=self.parse)

    async def parse(self, response: Response) -> AsyncIterator[Output]:
        for request in response.follow_all(css="ul.categories a", callback=self.parse_listing):
            yield request

    async def parse_listing(self, response: Response) -> AsyncIterator[Output]:
        links = response.css("section.products article.product h3 a")
        for request in response.follow_all(links, callback=self.parse_product):
            yield request
        if (next_link := response.css_first("ul.pager li.next a")) is not None:
            yield response.follow(next_link, callback=self.parse_listing)

    async def parse_product(self, response: Response) -> AsyncIterator[Output]:
        price, currency = parse_price(text_of(response, "p.price"))
        in_stock, stock = parse_stock(text_of(response, "p.stock"))
        yield Product(
            url=response.url,
            title=text_of(response, "h1"),
            price=price,
            currency=currency,
            rating=int(attribute_of(response, "p.rating", "data-rating")),
            in_stock=in_stock,
            stock=stock,
            category=text_of(response, "table.product-info td.category"),
            sku=text_of(response, "table.product-info td.sku"),
            description=text_of(response, "p.description"),
        )


def parse_price(text: str) -> tuple[Decimal, str]:
    """``" £1,234.5 "`` → ``(Decimal("1234.50"), "GBP")``; the symbol may sit either side."""
    amount, symbol = parse_amount_and_symbol(text)
    if (code := CURRENCIES.get(symbol)) is None:
        raise ValueError(f"unknown currency {symbol!r} in price {text!r}")
    return amount, code
