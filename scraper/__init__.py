"""An asyncio-native web-scraping framework: typed spiders, one SQLite file per crawl."""

__version__ = "0.1.0"

from scraper.errors import DropItem
from scraper.http import Request, Response
from scraper.item import Item
from scraper.settings import Settings
from scraper.spider import Spider

__all__ = ["DropItem", "Item", "Request", "Response", "Settings", "Spider", "__version__"]
