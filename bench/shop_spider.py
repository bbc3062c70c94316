"""The benchmark's spider: the demo shop crawled with exactly the parsing code of
``bench/reference_loop.py``, so that a comparison with the reference measures the framework
(scheduling, politeness, validation, durability), not two ways of reading a page."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from bench.shop_parsing import parse_product
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


def product_fields(response: Response) -> dict[str, Any]:
    """The reference's row as ``Product``'s keyword arguments (pydantic checks the types)."""
    return dict(zip(_FIELDS, parse_product(response.url, response.html), strict=True))


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
        yield Product(**product_fields(response))


_WORD = re.compile(r"[a-z]+")


class HeavyProduct(Product):
    """A product plus what a text-analysis crawl derives from the whole page."""

    table: ClassVar[str] = "product"  # the harness checks every kind's product table

    spec_rows: int
    words: int
    distinct_words: int
    top_words: str
    top_bigrams: str


class HeavyShopSpider(BenchShopSpider):
    """The parse-heavy crawl of the all-cores benchmark (``bench/run.py``, section 3):
    besides the product's fields, every page's specification table is read row by row and
    its text is counted into word and word-pair frequencies (a few ms of CPU per page, all
    in the callback)."""

    name = "bench_shop_heavy"

    async def parse_product(self, response: Response) -> AsyncIterator[Output]:
        fields = product_fields(response)
        cells = [row.css_first("td") for row in response.css("table.specifications tr")]
        texts = [cell.text(deep=True).lower() for cell in cells if cell is not None]
        words = [word for text in texts for word in _WORD.findall(text)]
        counts = Counter(words)
        pairs = Counter(itertools.pairwise(words))
        yield HeavyProduct(
            **fields,
            spec_rows=len(texts),
            words=len(words),
            distinct_words=len(counts),
            top_words=" ".join(word for word, _ in counts.most_common(5)),
            top_bigrams=" ".join(f"{a}_{b}" for (a, b), _ in pairs.most_common(5)),
        )
