"""Spider for https://books.toscrape.com/: the paginated catalogue → one ``Book`` per product
page (price, stock count, star rating, UPC, category from the breadcrumb)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import ClassVar

from pydantic import Field
from selectolax.lexbor import LexborNode

from scraper import Item, Response, Spider
from scraper.spider import Output

RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}
_AMOUNT = re.compile(r"\d[\d,]*(?:\.\d+)?")
_IN_STOCK = re.compile(r"in stock\s*\(\s*(\d+)\s+available\s*\)", re.IGNORECASE)
_CENTS = Decimal("0.01")


class Book(Item):
    key: ClassVar[tuple[str, ...]] = ("url",)

    url: str
    title: str
    price: Decimal = Field(decimal_places=2)
    availability: str
    in_stock: bool
    stock: int = Field(ge=0)
    rating: int = Field(ge=1, le=5)
    upc: str
    category: str
    description: str = ""  # some books have none


class BooksSpider(Spider):
    name = "books"
    start_urls = ("https://books.toscrape.com/",)

    async def parse(self, response: Response) -> AsyncIterator[Output]:
        """A catalogue page (the home page is page 1): its books, then the next page."""
        books = response.css("article.product_pod h3 a")  # the image links go to the same pages
        for request in response.follow_all(books, callback=self.parse_book):
            yield request
        if (next_link := response.css_first("ul.pager li.next a")) is not None:
            yield response.follow(next_link, callback=self.parse)

    async def parse_book(self, response: Response) -> AsyncIterator[Output]:
        main = _first(response, "div.product_main")
        availability = _first(main, "p.availability").text()
        in_stock, stock = parse_stock(availability)
        crumbs = response.css("ul.breadcrumb li a")  # Home, Books, <category>; then the title
        if len(crumbs) < 3:
            raise ValueError(f"no category in the breadcrumb of {response.url}")
        description = response.css_first("#product_description ~ p")
        yield Book(
            url=response.url,
            title=_first(main, "h1").text(),
            price=parse_price(_first(main, "p.price_color").text()),
            availability=availability,
            in_stock=in_stock,
            stock=stock,
            rating=parse_rating(_first(main, "p.star-rating")),
            upc=product_information(response)["UPC"],
            category=crumbs[-1].text(),
            description=description.text() if description is not None else "",
        )


def _first(root: Response | LexborNode, selector: str) -> LexborNode:
    node = root.css_first(selector)
    if node is None:
        where = root.url if isinstance(root, Response) else f"<{root.tag}>"
        raise ValueError(f"no {selector!r} in {where}")
    return node


def product_information(response: Response) -> dict[str, str]:
    """The "Product Information" table as header → value (UPC, Product Type, Tax, ...)."""
    rows = {}
    for row in response.css("table.table-striped tr"):
        header, value = row.css_first("th"), row.css_first("td")
        if header is not None and value is not None:
            rows[header.text(strip=True)] = value.text(strip=True)
    if "UPC" not in rows:
        raise ValueError(f"no UPC in the product information of {response.url}")
    return rows


def parse_price(text: str) -> Decimal:
    """``"£51.77"`` → ``Decimal("51.77")``; tolerates whitespace and a mis-decoded ``Â£``."""
    match = _AMOUNT.search(text)
    if match is None:
        raise ValueError(f"no amount in price {text!r}")
    return Decimal(match.group().replace(",", "")).quantize(_CENTS)


def parse_stock(text: str) -> tuple[bool, int]:
    """``"In stock (22 available)"`` → ``(True, 22)``; "In stock" alone → ``(True, 0)``."""
    if (match := _IN_STOCK.search(text)) is not None:
        count = int(match.group(1))
        return count > 0, count
    return text.strip().lower().startswith("in stock"), 0


def parse_rating(node: LexborNode) -> int:
    """``<p class="star-rating Three">`` → 3."""
    words = (node.attributes.get("class") or "").split()
    for word in words:
        if word in RATINGS:
            return RATINGS[word]
    raise ValueError(f"no rating word in class {' '.join(words)!r}")
