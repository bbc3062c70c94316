"""Wires one crawl together and runs it: start requests → scheduler → queue → workers
(fetch → callback → pipeline) → storage. The engine decides nothing about a page itself;
``Worker`` in ``scraper/worker.py`` handles one request end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from contextlib import AsyncExitStack
from pathlib import Path

from scraper.errors import ConfigError
from scraper.fetcher import Fetcher
from scraper.frontier import MemoryFrontier, Scheduled
from scraper.http import Request
from scraper.loading import load_object
from scraper.middleware import Middleware
from scraper.pipeline import Pipeline
from scraper.ratelimit import HostLimiter
from scraper.robots import RobotsTxt
from scraper.scheduler import Scheduler
from scraper.settings import Settings
from scraper.spider import Spider
from scraper.stats import Stats
from scraper.storage import Commit, Storage
from scraper.worker import Worker, error_record

logger = logging.getLogger(__name__)

_START_BATCH = 100


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlResult:
    crawl_id: int
    status: str  # finished / interrupted / failed
    reason: str
    stats: Stats
    database: Path


class Engine:
    """Builds the parts of a crawl; every configuration error surfaces here, before any I/O."""

    def __init__(self, *, spider: Spider, settings: Settings, database: Path) -> None:
        self.spider = spider
        self.settings = settings
        self.database = database
        self.stats = Stats()
        self.limiter = HostLimiter(settings=settings, stats=self.stats)
        self.scheduler = Scheduler(
            frontier=MemoryFrontier(),
            limiter=self.limiter,
            settings=settings,
            stats=self.stats,
            allowed_domains=spider.allowed_domains,
        )
        self._pipeline = Pipeline.from_settings(settings.pipelines)
        self._middlewares = load_middlewares(settings=settings, stats=self.stats, limiter=self.limiter)
        self._stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        """Take no new work; requests in flight finish, then ``run`` returns."""
        if self._stop_reason is None:
            self._stop_reason = reason
            logger.info("stopping (%s): finishing %d requests in flight", reason, self.scheduler.in_flight)
        self.scheduler.close()

    async def run(self) -> CrawlResult:
        async with AsyncExitStack() as stack:
            storage = await stack.enter_async_context(
                Storage(self.database, stats=self.stats, batch_size=self.settings.write_batch)
            )
            fetcher = await stack.enter_async_context(
                Fetcher(settings=self.settings, limiter=self.limiter, middlewares=self._middlewares, stats=self.stats)
            )
            crawl_id = await storage.begin_crawl(self.spider.name)
            status, reason = "failed", "error"
            try:
                await self.spider.opened()
                await self._pipeline.open(self.spider)
                worker = Worker(
                    spider=self.spider,
                    fetcher=fetcher,
                    scheduler=self.scheduler,
                    limiter=self.limiter,
                    pipeline=self._pipeline,
                    storage=storage,
                    settings=self.settings,
                    stats=self.stats,
                    on_progress=self._check_limits,
                )
                await self._crawl(worker, storage)
                reason = self._stop_reason or "finished"
                status = "finished" if reason in {"finished", *_LIMIT_REASONS} else "interrupted"
            except BaseException as exc:
                reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, asyncio.CancelledError) else "cancelled"
                status = "interrupted" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else "failed"
                raise
            finally:
                await self._close(storage, status, reason)
        return CrawlResult(crawl_id, status, reason, self.stats, self.database)

    async def _crawl(self, worker: Worker, storage: Storage) -> None:
        queue: asyncio.Queue[Scheduled | None] = asyncio.Queue(maxsize=self.settings.concurrency * 2)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._seed(storage), name="start-requests")
                for number in range(self.settings.concurrency):
                    group.create_task(worker.run(queue), name=f"worker-{number}")
                group.create_task(self._feed(queue), name="feeder")
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None  # the first cause; the rest were cancelled by it

    async def _seed(self, storage: Storage) -> None:
        """Admit the spider's start requests in batches while the crawl already runs."""
        with self.scheduler.producing():
            batch = []
            try:
                async for request in self.spider.start_requests():
                    if self.scheduler.closed:
                        break
                    batch.append(request)
                    if len(batch) >= _START_BATCH:
                        await self._admit_start(batch, storage)
                        batch = []
            except ConfigError:
                raise  # the spider says it cannot run as configured: end the crawl, loudly
            except Exception as exc:  # the callback boundary: a bad start generator ends seeding only
                await storage.submit(Commit(errors=[error_record("start", exc, None, self.stats)]))
            await self._admit_start(batch, storage)

    async def _admit_start(self, batch: list[Request], storage: Storage) -> None:
        admission = await self.scheduler.add(batch)
        await storage.submit(Commit(requests=admission.admitted, refused=admission.refused))

    async def _feed(self, queue: asyncio.Queue[Scheduled | None]) -> None:
        """Keep the bounded queue topped up until nothing is pending, parked or in flight;
        between hand-outs, sleep until the next host is ready or something changes."""
        limit = self.settings.close.max_duration
        deadline = time.monotonic() + limit if limit else math.inf
        while not self.scheduler.finished:
            if time.monotonic() >= deadline:
                self.stop("max_duration")
            entry = await self.scheduler.next()
            if entry is not None:
                await queue.put(entry)
                continue
            wake = min(self.scheduler.wake_time() or math.inf, deadline)
            await self.scheduler.wait_for_change(until=None if wake == math.inf else wake)
        for _ in range(self.settings.concurrency):
            await queue.put(None)  # one stop signal per worker

    def _check_limits(self) -> None:
        limits, stats = self.settings.close, self.stats
        if limits.max_pages and stats.get("pages") >= limits.max_pages:
            self.stop("max_pages")
        elif limits.max_items and stats.get("items/scraped") >= limits.max_items:
            self.stop("max_items")
        elif limits.max_errors and stats.total("errors") >= limits.max_errors:
            self.stop("max_errors")

    async def _close(self, storage: Storage, status: str, reason: str) -> None:
        """Run the closing hooks (a failing hook is logged, not fatal), then seal the crawl row."""
        try:
            await self._pipeline.close(self.spider)
        except Exception:
            logger.exception("a pipeline stage failed to close")
        try:
            await self.spider.closed(reason)
        except Exception:
            logger.exception("%s.closed() failed", type(self.spider).__name__)
        await storage.finish_crawl(status=status, reason=reason)


_LIMIT_REASONS = frozenset({"max_pages", "max_items", "max_errors", "max_duration"})


def load_middlewares(*, settings: Settings, stats: Stats, limiter: HostLimiter) -> list[Middleware]:
    """The built-ins the settings ask for (robots.txt first), then ``settings.middlewares``,
    each made by ``factory(settings=..., stats=..., limiter=...)``. A wrong path or a factory
    that does not return a callable is a ``ConfigError``."""
    middlewares: list[Middleware] = []
    if settings.robots_txt:
        middlewares.append(RobotsTxt(settings=settings, stats=stats, limiter=limiter))
    for path in settings.middlewares:
        factory = load_object(path, setting="middlewares")
        middleware = factory(settings=settings, stats=stats, limiter=limiter)
        if not callable(middleware):
            raise ConfigError(f"middlewares: {path} did not produce a callable middleware")
        middlewares.append(middleware)
    return middlewares
