"""Wires one crawl together and runs it: start requests → scheduler → queue → workers
(fetch → callback → pipeline) → storage. The engine decides nothing about a page itself:
``Worker`` handles one request end to end, ``Feeder`` keeps the workers supplied and
watches the limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from pathlib import Path
from typing import Any

from yarl import URL

from scraper.crawls import CrawlStart
from scraper.errors import ConfigError, OpenFailed, StorageError, WriteFailed, describe, stop_if_cancelled
from scraper.feeder import DrainTimeout, Feeder
from scraper.fetcher import Fetcher
from scraper.frontier import Frontier, MemoryFrontier, Scheduled
from scraper.handoff import HandOff
from scraper.http import Request, check_url
from scraper.links import unfollowable_reason
from scraper.loading import build_object
from scraper.loop_watch import LoopWatch
from scraper.middleware import Middleware
from scraper.parse_pool import ParsePool
from scraper.pipeline import Pipeline
from scraper.ratelimit import HostLimiter
from scraper.records import Commit, error_record
from scraper.robots import RobotsTxt
from scraper.runtime import CrawlCollector, allow_open_files, keep_freed_heap
from scraper.scheduler import Scheduler
from scraper.seen import MemorySeen, SeenSet, StoredSeen
from scraper.settings import Settings
from scraper.spider import Spider, run_hook, start_requests_of, stray_start
from scraper.sqlite_frontier import SQLiteFrontier
from scraper.stats import SEEDING_CUT_SHORT, Stats
from scraper.storage import Storage
from scraper.worker import Worker

logger = logging.getLogger(__name__)

_START_BATCH = 100
_START_LINGER = 0.05  # seconds a start request waits for its batch to fill before it is admitted
_FINISHED_REASONS = frozenset({"finished", "max_pages", "max_items", "max_errors", "max_duration"})


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlResult:
    crawl_id: int
    status: str  # finished / interrupted / failed
    reason: str
    stats: Stats
    database: Path
    resumed: bool = False


class Engine:
    """Builds the parts of a crawl; every configuration error surfaces here, before any I/O."""

    def __init__(
        self,
        *,
        spider: Spider,
        settings: Settings,
        database: Path,
        fresh: bool = False,
        arguments: Mapping[str, str] | None = None,
        notify: Callable[[str], None] = logger.info,
    ) -> None:
        """``arguments``: the ``-a`` values the spider was made with; a crawl resumes only with
        the same ones."""
        self.spider = spider
        self.settings = settings
        self.database = database
        self.stats = Stats()
        self.limiter = HostLimiter(settings=settings, stats=self.stats)
        self.scheduler: Scheduler | None = None  # built once the database is open
        self._fresh = fresh
        self._arguments = dict(arguments or {})
        self._notify = notify
        check_spider(spider)
        self._pipeline = Pipeline.from_settings(settings.pipelines)
        self._middlewares = load_middlewares(settings=settings, stats=self.stats, limiter=self.limiter)
        self._stop_reason: str | None = None
        self._seed_waiting: asyncio.Task[Any] | None = None  # the start requests' task, while the generator waits
        self._seed_stopped = False  # stop() cancelled that wait
        self._resumed = False
        self._ran = False  # its limiter, middlewares and statistics are one crawl's

    @property
    def pending(self) -> int:
        return self.scheduler.pending if self.scheduler else 0

    @property
    def in_flight(self) -> int:
        return self.scheduler.in_flight if self.scheduler else 0

    def stop(self, reason: str) -> None:
        """Take no new work; requests already sent finish (within ``close.drain_timeout``), and
        those handed out but still waiting for their host's turn stay pending, unsent."""
        if self._stop_reason is None:
            self._stop_reason = reason
            logger.info("stopping (%s): finishing %d requests in flight", reason, self.in_flight)
        if self.scheduler is not None:
            self.scheduler.close()
        self.limiter.stop()  # what waits for its host's turn is parked, not sent
        if self._seed_waiting is not None and not self._seed_stopped:  # start_requests() waits: no more of it
            self._seed_stopped = True
            self._seed_waiting.cancel()

    async def run(self) -> CrawlResult:
        """Crawl, once: run again, an engine carried its first crawl's statistics into the second."""
        if self._ran:
            raise RuntimeError("an Engine runs one crawl: make another Engine for the next")
        self._ran = True
        keep_freed_heap()  # process-wide and idempotent: parsing stops faulting its memory back in
        allow_open_files()  # likewise: a socket kept alive per host, over thousands of hosts
        async with AsyncExitStack() as stack:
            collector = stack.enter_context(CrawlCollector.for_concurrency(self.settings.concurrency))
            stack.enter_context(LoopWatch(self.stats, own_pauses=lambda: collector.paused))
            parse_pool = await stack.enter_async_context(self._parse_pool())  # before any file or thread
            storage = await stack.enter_async_context(
                Storage(
                    self.database,
                    stats=self.stats,
                    batch_size=self.settings.write_batch,
                    max_items=self.settings.close.max_items,
                    answers_known=self.settings.frontier.backend == "sqlite",  # what StoredSeen asks
                )
            )
            # the in-memory frontier has no pending requests or seen-set to resume from: resumed,
            # a crawl was fetched again whole, its counts added to the first run's
            resume = self.settings.frontier.backend == "sqlite"
            start = await storage.begin_crawl(
                self.spider.name, fresh=self._fresh, resume=resume, arguments=self._arguments
            )
            self._continue_from(start)
            self.scheduler = self._scheduler(storage, start)
            if self._stop_reason is not None:  # a signal arrived while the database opened
                self.scheduler.close()
            fetcher = await stack.enter_async_context(
                Fetcher(
                    settings=self.settings,
                    limiter=self.limiter,
                    middlewares=self._middlewares,
                    stats=self.stats,
                    cookies=start.cookies,
                )
            )
            # kept with the memory frontier too: its crawl, interrupted, resumes with the sqlite one
            if fetcher.cookie_jar is not None:
                storage.keep_cookies(fetcher.cookie_jar)
            try:
                status, reason = await self._run_crawl(self.scheduler, fetcher, storage, parse_pool)
            except WriteFailed as exc:  # the file stopped taking writes: stopped, as by a signal, and resumable
                status, reason = "interrupted", str(exc)
        return CrawlResult(start.crawl_id, status, reason, self.stats, self.database, start.resumed)

    async def _run_crawl(
        self, scheduler: Scheduler, fetcher: Fetcher, storage: Storage, parse_pool: ParsePool | None
    ) -> tuple[str, str]:
        status, reason = "failed", "error"
        try:
            await self._open_spider()
            await self._pipeline.open(self.spider)
            if parse_pool is not None:
                await parse_pool.start()
            status, reason = await self._crawl_with(scheduler, fetcher, storage, parse_pool)
        except DrainTimeout as exc:
            status, reason = "interrupted", f"{self._stop_reason}: {exc}"
        except BaseException as exc:
            cancelled = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
            status = "interrupted" if cancelled else "failed"
            reason = self._stop_reason or "cancelled" if cancelled else describe(exc)
            raise
        finally:
            await self._close(storage, status, reason)
        return status, reason

    async def _open_spider(self) -> None:
        try:
            await run_hook(self.spider.opened)
        except Exception as exc:
            raise OpenFailed(f"{type(self.spider).__name__}.opened() failed: {describe(exc)}") from exc

    async def _crawl_with(
        self, scheduler: Scheduler, fetcher: Fetcher, storage: Storage, parse_pool: ParsePool | None
    ) -> tuple[str, str]:
        queue: HandOff[Scheduled | None] = HandOff(maxsize=self.settings.concurrency * 2)
        feeder = Feeder(scheduler=scheduler, queue=queue, settings=self.settings, stop=self.stop)

        def progress_and_limits() -> None:
            feeder.progress()
            self._check_limits(storage)

        # a call per page: the limits are checked only when there are limits
        has_limits = bool(self.settings.close.max_items or self.settings.close.max_errors)
        on_progress = progress_and_limits if has_limits else feeder.progress

        worker = Worker(
            spider=self.spider,
            fetcher=fetcher,
            scheduler=scheduler,
            limiter=self.limiter,
            pipeline=self._pipeline,
            storage=storage,
            settings=self.settings,
            stats=self.stats,
            on_progress=on_progress,
            parse_pool=parse_pool,
        )
        await self._crawl(scheduler, queue, worker, feeder, storage)
        if self.settings.close.max_items:
            await storage.flush()  # items count once committed: the last commits may reach the limit
        self._check_limits(storage)
        reason = scheduler.limit_reached or self._stop_reason or "finished"
        status = "finished" if reason in _FINISHED_REASONS else "interrupted"
        return status, reason

    def _parse_pool(self) -> AbstractAsyncContextManager[ParsePool | None]:
        """Callbacks run in worker processes when ``parse_processes`` asks for them."""
        if not self.settings.parse_processes:
            return nullcontext()
        return ParsePool(self.spider, self.settings.parse_processes)

    def _continue_from(self, start: CrawlStart) -> None:
        """A resumed crawl keeps counting from where it stopped (the statistics saved last);
        what the database knows exactly, pages, stored items and errors, is recounted from
        it. (Saved every 2 s, the statistics lag behind what a killed run committed, and run
        ahead of it when its writes failed: the errors had drifted from their rows both ways.)"""
        message = start.describe(self.spider.name)
        if start.unfinished is not None:
            message += f"; unfinished crawl {start.unfinished} is given up (the memory frontier cannot resume it)"
        self._notify(message)
        self._resumed = start.resumed
        if not start.resumed:
            return
        for key, value in start.stats.items():
            # this run's start_requests() runs anew; the errors are recounted below
            if isinstance(value, int) and key != SEEDING_CUT_SHORT and not key.startswith("errors/"):
                self.stats.counts[key] = value
        self.stats.counts.update(start.errors)
        self.stats.set_items_by_table(start.items)
        self.stats.counts["pages"] = start.pages
        self.stats.counts["resume/pages_before"] = start.pages  # this run's rate leaves them out

    def _scheduler(self, storage: Storage, start: CrawlStart) -> Scheduler:
        policy = self.settings.frontier
        frontier: Frontier
        seen: SeenSet
        if policy.backend == "sqlite":
            frontier = SQLiteFrontier(
                storage=storage,
                spider=self.spider,
                stats=self.stats,
                buffer=policy.buffer,
                spilled=start.states.get("pending", 0),
                spilled_by_host=start.spilled_by_host,
            )
            seen = StoredSeen(storage, cache_size=policy.seen_cache, complete=not start.resumed)
        else:
            frontier, seen = MemoryFrontier(), MemorySeen()
        return Scheduler(
            frontier=frontier,
            seen=seen,
            limiter=self.limiter,
            settings=self.settings,
            stats=self.stats,
            allowed_domains=self.spider.allowed_domains,
            handed_out=start.fetches if start.resumed else 0,
        )

    async def _crawl(
        self,
        scheduler: Scheduler,
        queue: HandOff[Scheduled | None],
        worker: Worker,
        feeder: Feeder,
        storage: Storage,
    ) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._seed(scheduler, storage), name="start-requests")
                for number in range(self.settings.concurrency):
                    group.create_task(worker.run(queue), name=f"worker-{number}")
                group.create_task(feeder.run(), name="feeder")
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None  # the first cause; the rest were cancelled by it

    async def _seed(self, scheduler: Scheduler, storage: Storage) -> None:
        """Admit the spider's start requests while the crawl already runs, in batches (on
        resume, those already seen are duplicates and cost nothing)."""

        async def admit(batch: list[Request]) -> None:
            await self._admit_start(scheduler, batch, storage)

        with scheduler.producing():
            async with _StartBatches(admit) as batches:
                outputs = aiter(start_requests_of(self.spider))
                try:
                    while not scheduler.closed:
                        try:
                            output = await self._next_start(outputs)
                        except StopAsyncIteration:
                            break
                        if not isinstance(output, Request):  # None is skipped, as from a callback
                            if output is not None:
                                url = output if isinstance(output, str) else None
                                error = error_record("start", stray_start(output), url, self.stats)
                                await storage.submit(Commit(errors=[error]))
                            continue
                        await batches.add(output)
                except ConfigError:
                    raise  # the spider says it cannot run as configured: end the crawl, loudly
                except BaseException as exc:  # the callback boundary: a bad start generator ends seeding only
                    stop_if_cancelled(exc)
                    self.stats.increment(SEEDING_CUT_SHORT)  # the crawl goes on; its exit code says so
                    await storage.submit(Commit(errors=[error_record("start", exc, None, self.stats)]))

    async def _next_start(self, outputs: AsyncIterator[Any]) -> Any:
        """The generator's next output; ``StopAsyncIteration`` when it ends, or when the crawl
        stops while the generator waits (``stop`` cancels that wait: a generator that polled
        a queue, or slept between its requests, held the first Ctrl-C until it yielded again,
        past ``close.drain_timeout``)."""
        seeding = asyncio.current_task()
        self._seed_waiting = seeding
        try:
            return await anext(outputs)
        except asyncio.CancelledError:
            if not self._seed_stopped or seeding is None or seeding.uncancel() > 0:
                raise  # the crawl's own cancellation (a second Ctrl-C), not the stop's
            raise StopAsyncIteration from None
        finally:
            self._seed_waiting = None

    async def _admit_start(self, scheduler: Scheduler, batch: list[Request], storage: Storage) -> None:
        # resumed, a start request seen before was the interrupted run's, dont_filter or not: its
        # row resumes it (admitted again, each resume fetched it again and duplicated its items)
        admission = await scheduler.add(batch, copies=not self._resumed)
        errors = [error_record("start", error, request.url, self.stats) for request, error in admission.unstorable]
        # a start URL with a typo in its scheme, or the port 0 of a forgotten -a port=, was only
        # counted as filtered: the crawl ended with 0 pages and "errors none"
        errors += [
            error_record("start", ValueError(f"{request.url!r} is not fetched: {unfollowable_reason(reason)}"),
                         request.url, self.stats)
            for request, reason in admission.unfollowable
        ]  # fmt: skip
        await storage.submit(Commit(requests=admission.admitted, refused=admission.refused, errors=errors))
        await asyncio.sleep(0)  # a long start_requests must not hold the loop: fetches go on meanwhile

    def _check_limits(self, storage: Storage) -> None:
        limits, stats = self.settings.close, self.stats
        if limits.max_items and storage.items_stored >= limits.max_items:
            self.stop("max_items")
        elif limits.max_errors and stats.total("errors") >= limits.max_errors:
            self.stop("max_errors")

    async def _close(self, storage: Storage, status: str, reason: str) -> None:
        """Run the closing hooks, then seal the crawl row. A failing hook is not fatal: it is
        an error row (the stages' ``pipeline``, the spider's ``parse``), as any other failure."""
        failures = [
            error_record("pipeline", failure, None, self.stats) for failure in await self._pipeline.close(self.spider)
        ]
        try:
            await run_hook(self.spider.closed, reason)
        except Exception as exc:
            context = f"{type(self.spider).__name__}.closed() failed: "
            failures.append(error_record("parse", exc, None, self.stats, context=context))
        if failures:
            with contextlib.suppress(StorageError):  # the writer failed: finish_crawl says why
                await storage.submit(Commit(errors=failures))
        await storage.finish_crawl(status=status, reason=reason)


class _StartBatches:
    """Start requests yielded and not yet admitted. A batch is admitted when it is full, and
    every ``_START_LINGER`` while it is not: a generator that waits between its requests (a
    slow seed API, a queue it polls) had its first ones fetched only once it had yielded 100
    or ended. Batches are admitted one at a time, in the order yielded; the rest when the
    generator ends."""

    def __init__(self, admit: Callable[[list[Request]], Awaitable[None]]) -> None:
        self._admit = admit
        self._waiting: list[Request] = []
        self._admitting = asyncio.Lock()
        self._ended = asyncio.Event()
        self._lingering: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _StartBatches:
        self._lingering = asyncio.create_task(self._now_and_then(), name="start-requests-linger")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._ended.set()  # the task ends, never cancelled: a batch it took and lost had been lost
        if self._lingering is not None:
            await self._lingering
        if exc_type is None:
            await self.flush()

    async def add(self, request: Request) -> None:
        self._waiting.append(request)
        if len(self._waiting) >= _START_BATCH:
            await self.flush()

    async def flush(self) -> None:
        taken, self._waiting = self._waiting, []  # before any await: a request is in one batch only
        async with self._admitting:
            await self._admit(taken)

    async def _now_and_then(self) -> None:
        while not self._ended.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_START_LINGER):
                    await self._ended.wait()
            if self._waiting:
                await self.flush()


def check_spider(spider: Spider) -> None:
    """A spider's ``start_urls`` and ``allowed_domains`` are configuration, checked before the
    crawl starts: each must be a list (a string there was read one character at a time: every
    host offsite), and each start URL absolute (found by the default ``start_requests``
    instead, a bad one ended that generator, and no start URL after it was crawled). With the
    default ``start_requests()``, no start URL or no ``parse()`` made a crawl of 0 pages, or of
    one error per start URL, that exited 0."""
    name = type(spider).__name__
    if not spider.name:  # the command line finds spiders by name; an embedded one was recorded as ''
        raise ConfigError(f"{name} has no name: give it name = '...' (it names its crawls)")
    for attribute in ("start_urls", "allowed_domains"):
        if isinstance(getattr(spider, attribute), str):
            raise ConfigError(f"{name}.{attribute} must be a list of strings, not one string")
    for index, url in enumerate(spider.start_urls):
        try:
            check_url(url.strip() if isinstance(url, str) else url)  # as Request() takes it
        except ValueError as exc:
            raise ConfigError(f"{name}.start_urls[{index}]: {exc}") from None
    for index, domain in enumerate(spider.allowed_domains):
        if problem := _domain_problem(domain):
            raise ConfigError(f"{name}.allowed_domains[{index}]: {domain!r} {problem}")
    if type(spider).start_requests is Spider.start_requests:  # the default: start_urls, each to parse()
        if not spider.start_urls:
            raise ConfigError(f"{name} has nothing to crawl: give it start_urls or a start_requests()")
        if type(spider).parse is Spider.parse:
            raise ConfigError(
                f"{name} has start_urls but no parse(), the callback of their responses: "
                "define parse(), or a start_requests() whose requests name their callbacks"
            )


def _domain_problem(domain: object) -> str | None:
    """Why ``domain`` cannot be an ``allowed_domains`` entry, or None. Entries are compared
    with a URL's host, so a URL or a port there matched no host: every request, the start
    URLs too, was filtered as offsite, and the crawl ended at once with 0 pages."""
    if not isinstance(domain, str) or not domain.strip("."):
        return "is not a domain name"
    if "/" not in domain and ":" not in domain:
        return None
    with contextlib.suppress(ValueError):
        ipaddress.IPv6Address(domain)
        return None  # "::1": an IPv6 host, as a URL's host gives it
    try:
        host = URL(domain if "//" in domain else f"//{domain}").host
    except ValueError:
        host = None
    return "is not a domain name" + (f": give the host alone, {host!r}" if host else "")


def load_middlewares(*, settings: Settings, stats: Stats, limiter: HostLimiter) -> list[Middleware]:
    """The built-ins the settings ask for (robots.txt first), then ``settings.middlewares``,
    each made by ``factory(settings=..., stats=..., limiter=...)``. A wrong path or a factory
    that does not return a callable is a ``ConfigError``."""
    middlewares: list[Middleware] = []
    if settings.robots_txt:
        middlewares.append(RobotsTxt(settings=settings, stats=stats, limiter=limiter))
    for path in settings.middlewares:
        middleware = build_object(path, setting="middlewares", settings=settings, stats=stats, limiter=limiter)
        if not callable(middleware):
            raise ConfigError(f"middlewares: {path} did not produce a callable middleware")
        middlewares.append(middleware)
    return middlewares
