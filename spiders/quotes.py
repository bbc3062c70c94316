"""Spider for https://quotes.toscrape.com/: every quote on every page, following "Next"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import Field
from selectolax.lexbor import LexborNode

from scraper import Item, Response, Spider
from scraper.spider import Output

_QUOTE_MARKS = "“”"  # the page wraps each text in typographic quotes: decoration, not content


class Quote(Item):
    key: ClassVar[tuple[str, ...]] = ("text", "author")

    text: str
    author: str
    tags: list[str] = Field(default_factory=list)
    author_url: str


class QuotesSpider(Spider):
    name = "quotes"
    start_urls = ("https://quotes.toscrape.com/",)

    async def parse(self, response: Response) -> AsyncIterator[Output]:
        for quote in response.css("div.quote"):
            yield self.quote_of(quote, response)
        if (next_link := response.css_first("ul.pager li.next a")) is not None:
            yield response.follow(next_link, callback=self.parse)

    def quote_of(self, quote: LexborNode, response: Response) -> Quote:
        """A missing part becomes None, so only this quote fails validation, not the page."""
        text = _text(quote, "span.text")
        about = quote.css_first('a[href*="/author/"]')  # "(about)", next to the name
        href = about.attributes.get("href") if about is not None else None
        fields: dict[str, Any] = {
            "text": text.strip().strip(_QUOTE_MARKS) if text is not None else None,
            "author": _text(quote, "small.author"),
            "tags": [tag.text() for tag in quote.css("div.tags a.tag")],
            "author_url": response.urljoin(href) if href else None,
        }
        return Quote(**fields)


def _text(root: LexborNode, selector: str) -> str | None:
    node = root.css_first(selector)
    return node.text() if node is not None else None
