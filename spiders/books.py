"""Spider for https://books.toscrape.com/: the paginated catalogue → one ``Book`` per product
page (price, stock count, star rating, UPC, category from the breadcrumb)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import ClassVar

from pydantic import Field
from selectolax.lexbor import LexborNode

from scraper import Item, Response, Spider
from scraper.spider import Output
from spiders._parsing import first_node, parse_amount, parse_stock, text_of

RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}


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
        main = first_node(response, "div.product_main")
        availability = text_of(main, "p.availability")
        in_stock, stock = parse_stock(availability)
        crumbs = response.css("ul.breadcrumb li a")  # Home, Books, <category>; then the title
        if len(crumbs) < 3:
            raise ValueError(f"no category in the breadcrumb of {response.url}")
        description = response.css_first("#product_description ~ p")
        yield Book(
            url=response.url,
            title=text_of(main, "h1"),
            price=parse_amount(text_of(main, "p.price_color")),
            availability=availability,
            in_stock=in_stock,
            stock=stock,
            rating=parse_rating(first_node(main, "p.star-rating")),
            upc=product_information(response)["UPC"],
            category=crumbs[-1].text(),
            description=description.text() if description is not None else "",
        )


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


def parse_rating(node: LexborNode) -> int:
    """``<p class="star-rating Three">`` → 3."""
    words = (node.attributes.get("class") or "").split()
    for word in words:
        if word in RATINGS:
            return RATINGS[word]
    raise ValueError(f"no rating word in class {' '.join(words)!r}")
