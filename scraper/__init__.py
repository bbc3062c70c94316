"""An asyncio-native web-scraping framework: typed spiders, one SQLite file per crawl."""

__version__ = "0.1.0"

from scraper.errors import DropItem
from scraper.http import Request, Response
from scraper.item import Item
from scraper.settings import Settings
from scraper.spider import Spider

__all__ = ["DropItem", "Item", "Request", "Response", "Settings", "Spider", "__version__"]

_SCRAPY_NAMES = {
    "FormRequest": 'Request(url, method="POST", data={...}) sends a form',
    "JsonRequest": 'Request(url, method="POST", json={...}) sends JSON',
    "Field": "an Item is a pydantic model: declare typed fields (title: str), not Field()",
    "Selector": "response.css() and css_first() give selectolax nodes; no Selector class",
    "ItemLoader": "build the Item from the page's values yourself; a pipeline stage can clean them",
    "CloseSpider": "to end a crawl early, set close.max_items, close.max_pages or close.max_duration",
    "CrawlSpider": "subclass Spider and follow links in parse() with response.follow_all(css=...)",
}
"""Scrapy's names a port imports from here, and what to use instead."""


def __getattr__(name: str) -> object:
    """``from scraper import FormRequest`` and the like: what to use instead (an ImportError,
    as the import statement would raise; it gave only "cannot import name")."""
    if name in _SCRAPY_NAMES:
        raise ImportError(f"cannot import name {name!r} from 'scraper': Scrapy's; {_SCRAPY_NAMES[name]}")
    raise AttributeError(f"module 'scraper' has no attribute {name!r}")
