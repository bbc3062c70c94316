"""The one exception hierarchy of the framework.

Expected failures (a page, a callback, an item) are recorded in ``scraper_errors`` and counted;
configuration errors stop the run before any request is made::

    ScraperError
    ├── ConfigError            bad config.yaml, spider settings or -s value; fails fast
    │   ├── SettingsError      a setting has an unknown key or a wrong type
    │   └── SpiderNotFound     no spider has the requested name
    ├── StorageError           the database cannot be opened or read
    ├── FetchError             one request failed; recorded with stage "fetch"
    │   ├── FetchTimeout       no complete response within the timeout
    │   ├── ConnectionFailed   DNS, refused, reset, TLS: the transport failed
    │   ├── HttpStatusError    a non-2xx status that retries did not cure
    │   └── ResponseTooLarge   the body passed max_response_bytes
    └── DropItem               raised by a pipeline stage to drop an item (counted, not an error)
"""

from __future__ import annotations


class ScraperError(Exception):
    """Base of every exception the framework raises on purpose."""


class ConfigError(ScraperError):
    """The crawl cannot start as configured; the message names the culprit."""


class SettingsError(ConfigError):
    """A setting is unknown or has the wrong type."""


class SpiderNotFound(ConfigError):
    """No spider with the requested name exists in the configured modules."""


class StorageError(ScraperError):
    """The SQLite file cannot be opened, created or read."""


class FetchError(ScraperError):
    """A request could not be turned into a usable response."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class FetchTimeout(FetchError):
    """The attempt did not complete (connect, headers and body) within the timeout."""


class ConnectionFailed(FetchError):
    """The transport failed: refused, reset, DNS, TLS or a malformed reply."""


class HttpStatusError(FetchError):
    """The server answered with a status that counts as failure after all retries."""


class ResponseTooLarge(FetchError):
    """The (decompressed) body grew past ``max_response_bytes``; reading stopped there."""


class DropItem(ScraperError):
    """Raised by a pipeline stage to discard an item on purpose."""
