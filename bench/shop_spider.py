"""The benchmark's spider: the demo shop crawled with exactly the parsing code of
``bench/reference_loop.py``, so that a comparison with the reference measures the framework
(scheduling, politeness, validation, durability), not two ways of reading a page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from bench.reference_loop import parse_product
from scraper import Item, Request, Response, Spider
from scraper.spider import Output


class Product(Item):
    """The reference's row, validated: same columns, same types."""

    key: ClassVar[tuple[str, ...]] = ("url",)

    url: str
    title: str
    price: float
    currency: str
    rating: int
    in_stock: bool
    stock: int
    category: str
    sku: str
    description: str


_FIELDS = tuple(Product.model_fields)


class BenchShopSpider(Spider):
    name = "bench_shop"
    base_url: str = ""

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(self.base_url.rstrip("/") + "/", callback=self.parse)

    async def parse(self, response: Response) -> AsyncIterator[Output]:
        for request in response.follow_all(css="ul.categories a", callback=self.parse_listing):
            yield request

    async def parse_listing(self, response: Response) -> AsyncIterator[Output]:
        for request in response.follow_all(css="section.products article.product h3 a", callback=self.parse_product):
            yield request
        for request in response.follow_all(css="ul.pager li.next a", callback=self.parse_listing):
            yield request

    async def parse_product(self, response: Response) -> AsyncIterator[Output]:
        yield Product(**dict(zip(_FIELDS, parse_product(response.url, response.html), strict=True)))
