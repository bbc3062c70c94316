"""What workers hand to storage: one ``Commit`` per page, holding the page's outcome, its
items, the requests it discovered (admitted or refused) and its errors. Value objects:
named tuples, immutable like frozen dataclasses and built in a third of the time (several are
built per page; a frozen dataclass sets each field through ``object.__setattr__``); and
``error_record``, the one way any part of a crawl turns a failure into an error row."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from scraper.errors import CallbackTimeout, FetchError
from scraper.frontier import Refused, Scheduled
from scraper.stats import Stats


class StoredItem(NamedTuple):
    """An item ready for its table: ``row`` maps column names to SQLite values."""

    table: str
    key: tuple[str, ...]
    columns: Mapping[str, str]
    row: Mapping[str, Any]
    url: str


class ErrorRecord(NamedTuple):
    url: str | None
    stage: str
    error_type: str
    message: str
    traceback: str | None


def error_record(stage: str, error: BaseException, url: str | None, stats: Stats, *, context: str = "") -> ErrorRecord:
    """Describe ``error`` for ``scraper_errors`` and count it. Expected fetch failures carry
    no traceback: the message says it all."""
    stats.increment(f"errors/{stage}/{type(error).__name__}")
    trace = None if isinstance(error, (FetchError, CallbackTimeout)) else "".join(traceback.format_exception(error))
    message = str(error) or type(error).__name__
    return ErrorRecord(url, stage, type(error).__name__, f"{context}{message}", trace)


class Outcome(NamedTuple):
    """Where a handed-out request stands: ``done``, ``failed`` or ``filtered`` (with a reason),
    or ``pending`` again when parked for a retry until ``not_before`` (unix time)."""

    fingerprint: str
    state: str
    attempts: int = 1
    status: int | None = None
    reason: str | None = None
    not_before: float | None = None


class Commit(NamedTuple):
    """Everything one page produced, written in the same transaction."""

    outcome: Outcome | None = None
    items: Sequence[StoredItem] = ()
    requests: Sequence[Scheduled] = ()
    refused: Sequence[Refused] = ()
    errors: Sequence[ErrorRecord] = ()
