"""An asyncio-native web-scraping framework: typed spiders, one SQLite file per crawl."""

__version__ = "0.1.0"

from scraper.errors import DropItem  # noqa: E402
from scraper.http import Request, Response  # noqa: E402
from scraper.item import Item  # noqa: E402
from scraper.settings import Settings  # noqa: E402
from scraper.spider import Spider  # noqa: E402

__all__ = ["DropItem", "Item", "Request", "Response", "Settings", "Spider", "__version__"]
