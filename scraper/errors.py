"""The one exception hierarchy of the framework.

Expected failures (a page, a callback, an item) are recorded in ``scraper_errors`` and counted;
configuration errors stop the run before any request is made::

    ScraperError
    ├── ConfigError            bad config.yaml, spider settings or -s value; fails fast
    │   ├── SettingsError      a setting has an unknown key or a wrong type
    │   └── SpiderNotFound     no spider has the requested name
    ├── StorageError           the database cannot be opened or read
    │   └── WriteFailed        it stopped taking writes mid-crawl (disk full): interrupted
    ├── FetchError             one request failed; recorded with stage "fetch"
    │   ├── FetchTimeout       no complete response within the timeout
    │   ├── ConnectionFailed   DNS, refused, reset, TLS: the transport failed
    │   │   └── IncompleteBody the body ended early
    │   ├── UndecodableBody    the body is not in the Content-Encoding it claims
    │   ├── HttpStatusError    a non-2xx status that retries did not cure
    │   ├── ResponseTooLarge   the (decompressed) body passed max_response_bytes
    │   ├── ContentTypeRefused the Content-Type is not in the content_types setting
    │   └── RedirectRefused    too many hops, a loop, or a target that is not http(s)
    ├── Filtered               a request not to fetch (robots.txt, scope, traps); not an error
    ├── TryLater               a request to park until a time (host paused, robots.txt down)
    ├── CallbackTimeout        a callback ran past callback_timeout; recorded with stage "parse"
    ├── OpenFailed             spider.opened() or a pipeline stage's open() raised: no crawl
    └── DropItem               raised by a pipeline stage to drop an item (counted, not an error)
"""

from __future__ import annotations

import asyncio
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # records imports this module: the type only, for annotations
    from scraper.records import ErrorRecord


def describe(error: BaseException) -> str:
    """An error as messages quote it: its type, then what it says."""
    return f"{type(error).__name__}: {error}"


def stop_if_cancelled(error: BaseException) -> None:
    """At a boundary around user code (a callback, a stage, ``start_requests()``), where
    whatever the code raised fails its page, item or seeding only (``sys.exit()``,
    ``GeneratorExit``, a library's ``BaseException`` subclass, a ``CancelledError`` of its
    own): raise the crawl's cancellation instead when the current task is being cancelled,
    whatever the code made of it. A callback that turned it into an error of its own had its
    page failed, and the crawl, its feeder gone, hung at the second Ctrl-C."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        if isinstance(error, asyncio.CancelledError):
            raise error
        raise asyncio.CancelledError from error


def notes_of(error: BaseException) -> str:
    """The notes ``error`` carries (``add_note``: a hint for a Scrapy habit, what a page was),
    as a message ends with them: `` (note; note)``, or nothing."""
    notes = getattr(error, "__notes__", None)
    return f" ({'; '.join(map(str, notes))})" if notes else ""


def damaged(error: BaseException | None, path: object) -> str:
    """What to do about a file SQLite finds damaged, as an error message ends with it (else nothing)."""
    said = str(error)
    if "malformed" not in said and "not a database" not in said:
        return ""
    return (
        f" (the file is damaged: copy out what SQLite can still read with sqlite3 {shlex.quote(str(path))} "
        "'.recover' | sqlite3 NEW.db, or crawl into a new file with --db)"
    )


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


class WriteFailed(StorageError):
    """The database stopped taking writes during a crawl (disk full, an I/O error): the
    crawl stops and is marked interrupted, so that the next run resumes what was committed."""


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
    """The server answered with a status that counts as failure; ``retry_after`` is the raw
    ``Retry-After`` header, if any."""

    def __init__(self, message: str, *, url: str, status: int, retry_after: str | None = None) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class IncompleteBody(ConnectionFailed):
    """The body was cut short (connection reset, truncated chunked encoding, a compressed
    stream that ended before its end). Retried like other transport failures."""


class UndecodableBody(FetchError):
    """The body is not in the Content-Encoding it claims (plain text said to be gzip): the
    server sends it so every time, so it is not retried."""


class UnsupportedEncoding(FetchError):
    """The body comes in a Content-Encoding the framework cannot decode (or too many stacked):
    the same server answers the same way again, so it is not retried."""


class HostGivenUp(FetchError):
    """The request's host was rested ``breaker.max_trips`` times in a row without one success:
    its requests fail unsent, instead of waiting ever longer for a host that is down."""


class ResponseTooLarge(FetchError):
    """The (decompressed) body grew past ``max_response_bytes``, or ``Content-Length`` said it
    would; reading stopped there and the connection was closed."""


class ContentTypeRefused(FetchError):
    """The response's ``Content-Type`` is not one the ``content_types`` setting allows."""


class RedirectRefused(FetchError):
    """A redirect that is not followed: too many hops, a loop, or a target that is not http(s)."""


class Filtered(ScraperError):
    """A request the crawl decided not to fetch; ``reason`` goes to ``scraper_requests``.
    ``error``: a failure behind the decision, to record once in ``scraper_errors``."""

    def __init__(self, reason: str, *, error: ErrorRecord | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class TryLater(ScraperError):
    """Park the request until ``until`` (``time.monotonic()`` seconds) without counting an attempt."""

    def __init__(self, reason: str, *, until: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.until = until


class CallbackTimeout(ScraperError):
    """A callback did not finish within ``callback_timeout`` seconds."""


class OpenFailed(ScraperError):
    """An opening hook (the spider's ``opened()``, a pipeline stage's ``open()``) raised, so
    the crawl cannot start; its row is closed 'failed'. The message names the hook."""


class DropItem(ScraperError):
    """Raised by a pipeline stage to discard an item on purpose."""

    stage = ""  # the stage that raised it, set by the pipeline: the summary names it
