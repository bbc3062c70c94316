"""One worker coroutine's job, layered: handle = fetch, then run the callback, then pass its
items through the pipeline and its requests to the scheduler, then hand the page's outcome to
storage as one commit. Every failure becomes an ``ErrorRecord``; none escapes a page."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable

from scraper.errors import DropItem, FetchError
from scraper.fetcher import Fetcher
from scraper.frontier import Scheduled
from scraper.http import Response
from scraper.item import Item, columns_of, columns_of_dict, key_of, table_of, to_row
from scraper.pipeline import Pipeline, Record, StageFailed
from scraper.scheduler import Scheduler
from scraper.spider import CallbackResult, Spider, callback_of, run_callback
from scraper.stats import Stats
from scraper.storage import Commit, ErrorRecord, Outcome, Storage, StoredItem

logger = logging.getLogger(__name__)


def error_record(stage: str, error: BaseException, url: str | None, stats: Stats, *, context: str = "") -> ErrorRecord:
    """Describe ``error`` for ``scraper_errors`` and count it. Expected fetch failures carry
    no traceback: the message says it all."""
    stats.increment(f"errors/{stage}/{type(error).__name__}")
    trace = None if isinstance(error, FetchError) else "".join(traceback.format_exception(error))
    message = str(error) or type(error).__name__
    return ErrorRecord(url, stage, type(error).__name__, f"{context}{message}", trace)


class Worker:
    def __init__(
        self,
        *,
        spider: Spider,
        fetcher: Fetcher,
        scheduler: Scheduler,
        pipeline: Pipeline,
        storage: Storage,
        stats: Stats,
        on_progress: Callable[[], None],
    ) -> None:
        self._spider = spider
        self._fetcher = fetcher
        self._scheduler = scheduler
        self._pipeline = pipeline
        self._storage = storage
        self._stats = stats
        self._on_progress = on_progress

    async def run(self, queue: asyncio.Queue[object]) -> None:
        """Handle requests from ``queue`` until a ``None`` arrives."""
        while (entry := await queue.get()) is not None:
            assert isinstance(entry, Scheduled)
            try:
                await self._storage.submit(await self.handle(entry))
            finally:
                self._scheduler.done(entry)
            self._on_progress()

    async def handle(self, entry: Scheduled) -> Commit:
        """Fetch, parse and process one request; returns what storage must write for it."""
        try:
            response = await self._fetcher.fetch(entry.request)
        except FetchError as exc:
            status = exc.status
            error = error_record("fetch", exc, entry.request.url, self._stats)
            return Commit(
                outcome=Outcome(entry.fingerprint, "failed", status=status, reason=error.message), errors=[error]
            )
        self._stats.increment("pages")
        return await self._parse(entry, response)

    async def _parse(self, entry: Scheduled, response: Response) -> Commit:
        try:
            result = await run_callback(callback_of(self._spider, entry.request), response)
        except Exception as exc:  # the callback boundary: a broken page must not stop the crawl
            error = error_record("parse", exc, response.url, self._stats)
            outcome = Outcome(
                entry.fingerprint, "failed", status=response.status, reason=f"callback: {error.error_type}"
            )
            return Commit(outcome=outcome, errors=[error])
        items, errors = await self._process_items(result, response)
        requests = await self._scheduler.add(result.requests, parent=entry.request)
        outcome = Outcome(entry.fingerprint, "done", status=response.status)
        return Commit(outcome=outcome, items=items, requests=requests, errors=errors)

    async def _process_items(
        self, result: CallbackResult, response: Response
    ) -> tuple[list[StoredItem], list[ErrorRecord]]:
        errors = [error_record("validate", error, response.url, self._stats) for _, error in result.invalid]
        items: list[StoredItem] = []
        for item in result.items:
            try:
                processed = await self._pipeline.process(item, self._spider)
            except DropItem as exc:
                self._stats.increment("items/dropped")
                logger.debug("dropped item from %s: %s", response.url, exc)
            except StageFailed as exc:
                errors.append(error_record("pipeline", exc.error, response.url, self._stats, context=f"{exc.stage}: "))
            else:
                items.append(stored_item(processed, response.url))
                self._stats.increment("items/scraped")
        return items, errors


def stored_item(record: Record, url: str) -> StoredItem:
    columns = columns_of(type(record)) if isinstance(record, Item) else columns_of_dict(record)
    return StoredItem(table_of(record), key_of(record), columns, to_row(record), url)
