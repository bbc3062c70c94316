"""What workers hand to storage: one ``Commit`` per page, holding the page's outcome, its
items, the requests it discovered (admitted or refused) and its errors. Value objects:
named tuples, immutable like frozen dataclasses and built in a third of the time (several are
built per page; a frozen dataclass sets each field through ``object.__setattr__``); and
``error_record``, the one way any part of a crawl turns a failure into an error row."""

from __future__ import annotations

import logging
import os
import re
import sysconfig
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pydantic

from scraper import habits
from scraper.encoding import storable
from scraper.errors import CallbackTimeout, FetchError, notes_of
from scraper.frontier import Refused, Scheduled
from scraper.item import validation_message
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


logger = logging.getLogger("scraper.errors")

_QUIET_STAGES = frozenset({"fetch"})  # failures of the web, not of the project: counted, not announced
_LIBRARY_PATHS = tuple(  # folders, each ending in a separator: "scraper_project/" is the user's
    os.path.join(folder, "")
    for folder in (
        str(Path(__file__).resolve().parent),
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
    )
)


def error_record(
    stage: str, error: BaseException, url: str | None, stats: Stats, *, context: str = "", announce: bool = True
) -> ErrorRecord:
    """Describe ``error`` for ``scraper_errors`` and count it. Expected fetch failures carry
    no traceback: the message says it all. Any other error gets the hint for a Scrapy habit
    that caused it (``habits``), and the first of its kind in a run is logged as a warning,
    where the spider's author sees it at once (unless ``announce`` is off: counts that are
    merged later)."""
    expected = isinstance(error, (FetchError, CallbackTimeout))
    if not expected:
        habits.annotate(error)
    said = validation_message(error) if isinstance(error, pydantic.ValidationError) else str(error)
    if "\n" in said or "\r" in said:  # a row is one line (the summary, status): the traceback keeps the rest
        said = " ".join(said.split())
    message = f"{context}{said or type(error).__name__}{notes_of(error)}"
    # a lone surrogate, as it was, made the error row unwritable: the writer stopped the
    # crawl, and again on every resume
    url, message = url and storable(url), storable(message)
    error_type = type(error).__name__
    first = stats.count_error(f"errors/{stage}/{error_type}", message)
    if first and announce and stage not in _QUIET_STAGES:
        where = _where(error)
        logger.warning(
            "%s error%s: %s: %s%s; more of this kind are only counted (scraper_errors holds them all)",
            stage, f" on {url}" if url else "", error_type, message, f" [{where}]" if where else "",
        )  # fmt: skip
    trace = None if expected else "".join(traceback.format_exception(error))
    if trace is not None:
        trace = storable(trace)
    return ErrorRecord(url, stage, error_type, message, trace)


_FRAME_LINE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def _where(error: BaseException) -> str:
    """The innermost line of the project's own code in ``error``'s traceback, or else in the
    traceback text it carries as its cause (a parse process's); "" if none."""
    frames = [(frame.filename, frame.lineno, frame.name) for frame in traceback.extract_tb(error.__traceback__)]
    if error.__cause__ is not None:  # the remote frames are the inner ones
        frames += [(path, int(line), name) for path, line, name in _FRAME_LINE.findall(str(error.__cause__))]
    for filename, line, name in reversed(frames):
        path = str(Path(filename).resolve())
        if not path.startswith(_LIBRARY_PATHS) and not filename.startswith("<"):
            try:
                shown = str(Path(path).relative_to(Path.cwd()))
            except ValueError:
                shown = path
            return f"{shown}:{line}, in {name}"
    return ""


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
