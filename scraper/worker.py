"""One worker coroutine's job, layered: handle = fetch, then either park it for a retry,
follow its redirect, or run the callback, pass the items through the pipeline and the new
requests to the scheduler; then hand the outcome to storage as one commit. Every failure
becomes an ``ErrorRecord``; none escapes a page."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from scraper.deadline import DeadlinePassed, Deadlines
from scraper.errors import (
    CallbackTimeout,
    ConnectionFailed,
    DropItem,
    FetchError,
    FetchTimeout,
    Filtered,
    HostGivenUp,
    RedirectRefused,
    TryLater,
    stop_if_cancelled,
)
from scraper.fetcher import Fetcher
from scraper.frontier import Scheduled
from scraper.handoff import HandOff
from scraper.http import Request, Response
from scraper.item import DICT_TABLE, Item, cannot_store, columns_of_dict, item_row, to_row
from scraper.loop_budget import LoopBudget
from scraper.parse_pool import ParsePool
from scraper.pipeline import Pipeline, Record, StageFailed
from scraper.ratelimit import HostLimiter, Signal
from scraper.records import Commit, ErrorRecord, Outcome, StoredItem, error_record
from scraper.redirect import next_hop, to_follow
from scraper.retry import PAUSING_STATUSES, backoff_delay, is_retryable, retry_after_delay
from scraper.scheduler import Scheduler
from scraper.settings import Settings
from scraper.spider import CallbackResult, Spider, callback_of, run_callback, stray_output
from scraper.stats import Stats
from scraper.storage import Storage

logger = logging.getLogger(__name__)


def signal_of_status(status: int) -> Signal:
    """What an answer's HTTP status says about its host's health (for the adaptive rate)."""
    if status in PAUSING_STATUSES:
        return Signal.THROTTLED
    return Signal.FAILED if status >= 500 else Signal.OK


def signal_of_error(error: BaseException) -> Signal:
    """What a failed fetch says about its host's health."""
    if isinstance(error, (Filtered, TryLater, HostGivenUp)):  # nothing reached the host
        return Signal.SKIPPED
    if isinstance(error, FetchTimeout):
        return Signal.THROTTLED
    if isinstance(error, ConnectionFailed):
        return Signal.FAILED
    status = getattr(error, "status", None)
    return Signal.OK if status is None else signal_of_status(status)


def log_commit(request: Request, commit: Commit) -> None:
    """One DEBUG line for what became of a request (as Scrapy's "Crawled (200) <GET url>"),
    and one per error it recorded: what a spider's author watches while writing it."""
    outcome = commit.outcome
    state = "?" if outcome is None else outcome.state
    status = "" if outcome is None or outcome.status is None else f" ({outcome.status})"
    reason = f" ({outcome.reason})" if outcome is not None and outcome.reason and state != "done" else ""
    logger.debug(
        "%s%s <%s %s>%s: %d items, %d new requests",
        state,
        status,
        request.method,
        request.url,
        reason,
        len(commit.items),
        len(commit.requests),
    )
    for error in commit.errors:
        logger.debug("  %s error at %s: %s: %s", error.stage, error.url, error.error_type, error.message)


class Worker:
    def __init__(
        self,
        *,
        spider: Spider,
        fetcher: Fetcher,
        scheduler: Scheduler,
        limiter: HostLimiter,
        pipeline: Pipeline,
        storage: Storage,
        settings: Settings,
        stats: Stats,
        on_progress: Callable[[], None],
        parse_pool: ParsePool | None = None,
    ) -> None:
        self._spider = spider
        self._fetcher = fetcher
        self._scheduler = scheduler
        self._limiter = limiter
        self._pipeline = pipeline
        self._storage = storage
        self._settings = settings
        self._stats = stats
        self._on_progress = on_progress
        self._parse_pool = parse_pool
        self._callback_deadlines = Deadlines(settings.callback_timeout)  # shared by every worker task
        self._loop_budget = LoopBudget.for_concurrency(settings.concurrency)  # shared: what all may run in one turn

    async def run(self, queue: HandOff[Scheduled | None]) -> None:
        """Handle requests until a ``None`` arrives from ``queue``. With ``queue`` empty, a
        worker first asks the scheduler itself: the host slot its last fetch freed goes to
        it at once, where waiting for the feeder would cost a wake-up of two tasks a page."""
        scheduler = self._scheduler
        debug = logger.isEnabledFor(logging.DEBUG)  # asked once: a page's line is built only for --log-level DEBUG
        me = asyncio.current_task()
        assert me is not None, "a worker runs in a task"
        while True:
            entry = (scheduler.next_ready() or await queue.get()) if queue.empty() else queue.get_nowait()
            if entry is None:
                return
            try:
                commit = await self.handle(entry)
                if debug:
                    log_commit(entry.request, commit)
                await self._storage.submit(commit)
            finally:
                self._scheduler.done(entry)
            self._on_progress()
            if me.cancelling():  # a callback swallowed the crawl's cancellation: the crawl still stops
                raise asyncio.CancelledError

    async def handle(self, entry: Scheduled) -> Commit:
        """Fetch, parse and process one request; returns what storage must write for it."""
        try:
            try:  # the host limiter hears how the fetch went, exactly once
                # starting a fetch (a connection, a request) is a step too; inside the try, so
                # that a step cancelled while it waits for its turn still frees its host slot
                await self._loop_budget.admit()
                response = await self._fetcher.fetch(entry.request)
            except BaseException as exc:
                self._scheduler.fetched(entry, signal_of_error(exc))
                raise
        except Filtered as exc:
            self._stats.increment(f"requests/filtered/{exc.reason}")
            outcome = Outcome(entry.fingerprint, "filtered", entry.attempts, reason=exc.reason)
            return Commit(outcome=outcome, errors=() if exc.error is None else [exc.error])
        except TryLater as exc:
            return await self._park(entry, until=exc.until, reason=exc.reason, count_attempt=False)
        except FetchError as exc:
            return await self._fetch_failed(entry, exc)
        except Exception as exc:  # a bug in a middleware: this request fails, the crawl goes on
            failure = error_record("fetch", exc, entry.request.url, self._stats)
            outcome = Outcome(entry.fingerprint, "failed", entry.attempts + 1, reason=failure.message)
            return Commit(outcome=outcome, errors=[failure])
        self._scheduler.fetched(entry, signal_of_status(response.status))
        await self._loop_budget.admit()
        if to_follow(response):
            return await self._redirect(entry, response)
        commit = await self._parse(entry, response)
        self._stats.increment("pages")  # once parsed: a page abandoned mid-parse at a stop is fetched again
        return commit

    async def _fetch_failed(self, entry: Scheduled, error: FetchError) -> Commit:
        """Park a retryable failure for later, else record it as the request's end."""
        pause = retry_after_delay(error, self._settings.retry)
        if pause is not None:
            self._limiter.pause(entry.host, time.monotonic() + pause, f"Retry-After on HTTP {error.status}")
        attempt = entry.attempts + (0 if isinstance(error, HostGivenUp) else 1)  # that one failed unsent
        if is_retryable(error, self._settings.retry) and attempt <= self._settings.retry.times:
            delay = pause if pause is not None else backoff_delay(attempt, self._settings.retry)
            self._stats.increment(f"retries/{error.status or type(error).__name__}")
            return await self._park(entry, until=time.monotonic() + delay, reason=f"retry after {error}")
        failure = error_record("fetch", error, entry.request.url, self._stats)
        outcome = Outcome(entry.fingerprint, "failed", attempt, status=error.status, reason=failure.message)
        return Commit(outcome=outcome, errors=[failure])

    async def _park(self, entry: Scheduled, *, until: float, reason: str, count_attempt: bool = True) -> Commit:
        delay = max(0.0, until - time.monotonic())
        parked = await self._scheduler.retry(entry, delay=delay, count_attempt=count_attempt)
        not_before = time.time() + delay
        return Commit(
            outcome=Outcome(entry.fingerprint, "pending", parked.attempts, reason=reason, not_before=not_before)
        )

    async def _redirect(self, entry: Scheduled, response: Response) -> Commit:
        """Admit the next hop as a new request (it passes every check again)."""
        attempts = entry.attempts + 1
        try:
            hop = next_hop(response, self._settings.redirect, self._settings.links)
        except RedirectRefused as exc:
            failure = error_record("fetch", exc, response.url, self._stats)
            outcome = Outcome(entry.fingerprint, "failed", attempts, status=response.status, reason=failure.message)
            return Commit(outcome=outcome, errors=[failure])
        admission = await self._scheduler.add([hop], depth=entry.request.depth)
        self._stats.increment("redirects")
        outcome = Outcome(entry.fingerprint, "done", attempts, status=response.status, reason=f"redirect to {hop.url}")
        return Commit(outcome=outcome, requests=admission.admitted, refused=admission.refused)

    async def _parse(self, entry: Scheduled, response: Response) -> Commit:
        attempts = entry.attempts + 1
        try:
            result = await self._run_callback(entry, response)
        except BaseException as exc:  # the callback boundary: a broken page must not stop the crawl
            # whatever it raises: sys.exit() had ended the crawl with no word, a CancelledError
            # of its own its worker (with every worker gone, the crawl hung), and GeneratorExit
            # or a library's BaseException subclass the crawl, marked failed: not resumable
            stop_if_cancelled(exc)
            return self._callback_failed(entry, response, exc)
        response._forget_tree()  # the callback is done with it: not kept through the awaits below
        items, errors = await self._process_items(result, response)
        outcome = Outcome(entry.fingerprint, "done", attempts, status=response.status)
        if not result.requests:  # most pages (leaves): nothing for the scheduler
            return Commit(outcome=outcome, items=items, errors=errors)
        admission = await self._scheduler.add(self._capped(result, response), parent=entry.request)
        for _, not_storable in admission.unstorable:  # the page whose callback made it: its message names it
            errors.append(error_record("parse", not_storable, response.url, self._stats))
        return Commit(
            outcome=outcome, items=items, requests=admission.admitted, refused=admission.refused, errors=errors
        )

    def _callback_failed(self, entry: Scheduled, response: Response, exc: BaseException) -> Commit:
        error = error_record("parse", exc, response.url, self._stats)
        outcome = Outcome(
            entry.fingerprint, "failed", entry.attempts + 1, response.status, f"callback: {error.error_type}"
        )
        return Commit(outcome=outcome, errors=[error])

    async def _run_callback(self, entry: Scheduled, response: Response) -> CallbackResult:
        callback = callback_of(self._spider, entry.request)
        limit = self._settings.callback_timeout
        try:
            if self._parse_pool is not None and getattr(callback, "__self__", None) is self._spider:
                return await self._parse_pool.run(callback.__name__, response, deadlines=self._callback_deadlines)
            return await self._callback_deadlines.within(run_callback(callback, response))
        except DeadlinePassed:  # not the callback's own TimeoutError (an asyncio.wait_for of its own)
            raise CallbackTimeout(f"{getattr(callback, '__name__', 'callback')} ran past {limit:g}s") from None

    def _capped(self, result: CallbackResult, response: Response) -> list[Request]:
        cap = self._settings.links.max_per_page
        if cap and len(result.requests) > cap:
            # the first cut of the crawl is a warning: a link-heavy index lost links unheard
            first = not self._stats.get("requests/filtered/links_per_page")
            self._stats.increment("requests/filtered/links_per_page", len(result.requests) - cap)
            logger.log(
                logging.WARNING if first else logging.INFO,
                "%s yielded %d requests; keeping the first %d (links.max_per_page; 0 keeps all)",
                response.url,
                len(result.requests),
                cap,
            )
            return result.requests[:cap]
        return result.requests

    async def _process_items(
        self, result: CallbackResult, response: Response
    ) -> tuple[list[StoredItem], list[ErrorRecord]]:
        errors = [error_record("validate", error, response.url, self._stats) for _, error in result.invalid]
        if result.strays:
            errors += [error_record("parse", stray_output(name), response.url, self._stats) for name in result.strays]
        if result.unsendable:
            errors += [error_record("parse", problem, response.url, self._stats) for problem in result.unsendable]
        items: list[StoredItem] = []
        for item in result.items:
            try:
                processed = await self._pipeline.process(item, self._spider)
            except DropItem as exc:  # counted with its first reason, shown by the summary as an error kind's
                self._stats.count_error("items/dropped", f"{exc.stage}: {exc}" if exc.stage else str(exc))
                logger.debug("dropped item from %s: %s", response.url, exc)
            except StageFailed as exc:
                errors.append(error_record("pipeline", exc.error, response.url, self._stats, context=f"{exc.stage}: "))
            else:
                try:
                    items.append(stored_item(processed, response.url))
                except Exception as exc:  # a value no column can hold (a serializer that raises, binary as text)
                    context = cannot_store(processed)
                    errors.append(error_record("validate", exc, response.url, self._stats, context=context))
                    continue
                self._stats.increment("items/scraped")
        return items, errors


def stored_item(record: Record, url: str) -> StoredItem:
    if isinstance(record, Item):
        row, columns = item_row(record)
        if record.key and None in map(row.get, record.key):
            # SQLite's UNIQUE never matches a NULL: upserted on nothing, the item was added again every crawl
            empty = next(name for name in record.key if row.get(name) is None)
            raise ValueError(f"key field {empty!r} is None; a keyed item needs a value in each key field")
        return StoredItem(record.table, record.key, columns, row, url)
    return StoredItem(DICT_TABLE, (), columns_of_dict(record), to_row(record), url)
