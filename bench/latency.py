"""Latency-bound scale: many slow pages at once, and whether the event loop stays responsive.

What it measures: a slow site is served in a separate process: ``GET /page/{n}`` waits
``--delay`` seconds (default 1.0) and then returns a small HTML page naming ``n``. The server
is a bare asyncio protocol (``--site raw``, the default) or an aiohttp app (``--site aiohttp``).
The bare protocol takes about half the aiohttp app's CPU per request (1.4-1.5 s against
2.0-2.2 s a run here), so that on a small machine the crawler, not the server, is what
competes for the CPUs. Four kinds of crawler fetch ``/page/0`` .. ``/page/{--pages - 1}`` (default
10,000) with ``--concurrency`` requests in flight (default 5,000), each run in a fresh Python
subprocess so its peak RSS is its own:

- ``reference``: a hand-written loop, one ``aiohttp.ClientSession`` with
  ``TCPConnector(limit=N, limit_per_host=N)``, N workers over an ``asyncio.Queue``, selectolax
  parsing and batched SQLite writes off the loop; the practical ceiling;
- ``sqlite``: our ``Engine`` with ``LatencySpider`` (start_requests yields every URL, each page
  becomes one ``LatencyPage`` item), ``frontier.backend = "sqlite"``;
- ``memory``: the same with ``frontier.backend = "memory"``;
- ``fetch``: the floor of this machine: the reference's session and workers fetching each
  page and reading its body, with nothing else (no parsing, no storage) and Python's
  automatic garbage collection off during the crawl (with it on, at this concurrency, its
  collections cost more than all the parsing and storing; our crawler manages them, see
  ``scraper/runtime.py``). Its check is that every body names the page asked for.

The framework runs with concurrency = per_host.concurrency = N, per_host.delay 0, robots.txt
off, no retries, timeout 30 s and no pipelines. In every crawler process a sampler task
sleeps 10 ms at a time and records how late it wakes up (loop lag): "max lag" is the longest
the event loop was blocked during the crawl, "p99 lag" its 99th percentile (a stalled loop is
sampled rarely, so with few samples p99 is close to max). The site process
samples its own loop the same way ("site lag") so that a slow server is not blamed on the
crawler; "site CPU s" is its CPU time during the run. Both processes raise ``RLIMIT_NOFILE``
to its hard limit; the site listens with a backlog of 8,192 (the kernel caps it at
``net.core.somaxconn``).

Every run is checked: the ``page`` table (no unique key, so a duplicate would show) must hold
exactly one row per page: as many rows as distinct page numbers, as many as ``--pages``.
A failed check makes the exit code 1; the timings are only printed, never asserted.

How to read the output: one row per run (seconds of the whole crawl including opening and
closing the database, pages/s, max and p99 loop lag, lag samples, peak RSS, the site's own
max lag), then per kind the medians and the worst max lag. The ideal is
``ceil(pages / concurrency) * delay`` seconds (2 s by default). The performance issue's
target: 10,000 pages at concurrency 5,000 in under 6 s, and no loop stall over 100 ms (the
worst max lag of the measured runs). Compare figures from one run of this script only.

Run from the repository root: ``python bench/latency.py [--pages 10000] [--concurrency 5000]
[--delay 1.0] [--rounds 3]``. ``--one KIND --base-url URL --database PATH`` runs a single
crawl and prints one JSON line (that is how runs are started; it needs a site serving);
``--spikes K`` prints each run's K longest stalls, with when they happened, to stderr.
The CPU s column is the crawler's user + system time during the crawl: when it nears the
seconds column, the crawler is CPU-bound and no scheduling change can make it faster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import multiprocessing
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, bench/

import aiohttp
from aiohttp import web
from selectolax.lexbor import LexborHTMLParser

from bench._common import (
    ab_rounds,
    check_minimums,
    cpu_seconds,
    machine,
    median,
    peak_rss_mb,
    plural,
    query,
    run_main,
    start_server_process,
    table,
)
from scraper import Item, Request, Response, Spider
from scraper.engine import Engine
from scraper.settings import Settings, load_settings
from scraper.spider import Output

KINDS = ("reference", "fetch", "sqlite", "memory")
TARGET_KINDS = ("sqlite", "memory")  # the targets are our crawler's; the others are for scale
TARGET_SECONDS = 6.0
TARGET_LAG_MS = 100.0
SAMPLE_INTERVAL = 0.01  # seconds between loop-lag samples
BACKLOG = 8192  # listen backlog of the site (the kernel caps it at net.core.somaxconn)
WRITE_BATCH = 500  # rows per transaction in the reference loop


def raise_file_limit() -> int:
    """Lift the soft open-files limit to the hard one: thousands of sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- loop lag ------------------------------------------------------------------------------------


@dataclass(slots=True)
class LagSampler:
    """How late a 10 ms sleep wakes up, sampled for as long as it runs: a late wake-up is time
    the loop spent running something else without yielding. ``spikes`` keeps the worst ones
    with when they began (seconds since the sampler started), to line them up with a profile."""

    interval: float = SAMPLE_INTERVAL
    keep: int = 20
    lags: list[float] = field(default_factory=list)
    spikes: list[tuple[float, float]] = field(default_factory=list)  # (lag, at), worst first
    started: float = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            lag = max(0.0, now - expected)
            self.lags.append(lag)
            if len(self.spikes) < self.keep or lag > self.spikes[-1][0]:
                self.spikes.append((lag, now - self.started - lag))
                self.spikes.sort(reverse=True)
                del self.spikes[self.keep :]

    def reset(self) -> None:
        self.lags.clear()
        self.spikes.clear()

    @property
    def max_ms(self) -> float:
        return 1000 * max(self.lags, default=0.0)

    @property
    def p99_ms(self) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return 1000 * ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@contextlib.asynccontextmanager
async def sampling(sampler: LagSampler) -> AsyncIterator[LagSampler]:
    """Run ``sampler`` in the background for the duration of the block."""
    task = asyncio.create_task(sampler.run(), name="lag-sampler")
    await asyncio.sleep(0)  # let it take its first reading before the work starts
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the slow site, in its own process -------------------------------------------------------------


def page_html(n: int) -> bytes:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Page {n}</title></head><body>'
        f'<h1>Page {n}</h1><p class="value" data-n="{n}">value {n * 7 % 1000}</p></body></html>'
    ).encode()


def slow_app(delay: float, counter: list[int]) -> web.Application:
    """Every page answers after ``delay`` seconds; the wait costs the server no CPU."""

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        await asyncio.sleep(delay)
        counter[0] += 1
        return web.Response(body=page_html(n), content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/page/{n:\\d+}", page)
    return app


class RawSlowPage(asyncio.Protocol):
    """The same site as ``slow_app`` in a bare HTTP/1.1 keep-alive protocol: about half of
    aiohttp's server CPU per request (the rest is the kernel's), so that the server is not what
    a run measures. It serves only ``GET /page/{n}`` without a body, all the crawlers send."""

    def __init__(self, delay: float, counter: list[int]) -> None:
        self._delay = delay
        self._counter = counter
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            target = head.split(b"\r\n", 1)[0].split(b" ")
            number = target[1].removeprefix(b"/page/") if len(target) == 3 and target[0] == b"GET" else b""
            self._loop.call_later(self._delay, self._answer, int(number) if number.isdigit() else -1)

    def _answer(self, n: int) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if n < 0:
            self._transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        body = page_html(n)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
        self._transport.write(head.encode() + body)
        self._counter[0] += 1


@dataclass(frozen=True, slots=True)
class SiteFigures:
    """What the site says about one run: requests answered, its CPU seconds, its worst lag."""

    requests: int
    cpu_seconds: float
    max_lag_ms: float


class SlowSite:
    """The slow site's process; ``figures()`` reads (and resets) its counters between runs."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self._conn = conn

    def figures(self) -> SiteFigures | None:
        try:
            self._conn.send("report")
            if self._conn.poll(10):
                return SiteFigures(*self._conn.recv())
        except (EOFError, OSError):
            pass
        return None

    def stop(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            self._conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():  # our own child, stuck: end it
            self.process.terminate()
            self.process.join(5)


@contextmanager
def slow_site_in_process(delay: float, server: str) -> Iterator[SlowSite]:
    """Serve the slow site (``server``: "aiohttp" or "raw") on 127.0.0.1, a free port, in a
    spawned process. Not ``_common.site_in_process``: this site needs a deep backlog, more
    open files, and a lag sampler of its own."""
    process, parent, base_url = start_server_process(_serve_main, (delay, server), "bench-slow-site")
    site = SlowSite(process, parent, base_url)
    try:
        yield site
    finally:
        site.stop()
        parent.close()


def _serve_main(conn: Connection, delay: float, server: str) -> None:
    # Ctrl-C reaches the whole process group: the parent stops this process on its way out
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        raise_file_limit()
        asyncio.run(_serve(conn, delay, server))
    except BaseException as exc:  # tell the parent instead of leaving it waiting
        with contextlib.suppress(OSError):
            conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


async def _serve(conn: Connection, delay: float, server: str) -> None:
    answered = [0]
    async with contextlib.AsyncExitStack() as stack:
        if server == "raw":
            loop = asyncio.get_running_loop()
            listener = await loop.create_server(lambda: RawSlowPage(delay, answered), "127.0.0.1", 0, backlog=BACKLOG)
            stack.push_async_callback(listener.wait_closed)
            stack.callback(listener.close)
            port = listener.sockets[0].getsockname()[1]
        else:
            runner = web.AppRunner(slow_app(delay, answered), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0, backlog=BACKLOG).start()
            port = runner.addresses[0][1]
        conn.send(f"http://127.0.0.1:{port}")
        sampler = await stack.enter_async_context(sampling(LagSampler()))
        cpu = cpu_seconds()
        while await asyncio.to_thread(_next_command, conn) == "report":
            now = cpu_seconds()
            conn.send((answered[0], now - cpu, sampler.max_ms))
            answered[0], cpu = 0, now
            sampler.reset()


def _next_command(conn: Connection) -> str:
    try:
        return str(conn.recv())
    except EOFError:  # the parent went away
        return "stop"


# -- the framework's crawl -----------------------------------------------------------------------


class LatencyPage(Item):
    """One row per page; no key, so a page stored twice shows as two rows."""

    table: ClassVar[str] = "page"

    n: int
    url: str
    title: str


class LatencySpider(Spider):
    """Yields every page URL up front and turns each page into one item."""

    name = "bench_latency"
    base_url: str = ""
    pages: str = "0"

    async def start_requests(self) -> AsyncIterator[Request]:
        for n in range(int(self.pages)):
            yield Request(f"{self.base_url}/page/{n}")

    async def parse(self, response: Response) -> AsyncIterator[Output]:
        value, heading = response.css_first("p.value"), response.css_first("h1")
        if value is None or heading is None:
            raise ValueError(f"not a bench page: {response.url}")
        yield LatencyPage(n=int(value.attributes["data-n"] or -1), url=response.url, title=heading.text())


def crawl_settings(concurrency: int, backend: str) -> Settings:
    return load_settings(
        config={
            "robots_txt": False,
            "pipelines": [],
            "concurrency": concurrency,
            "per_host": {"concurrency": concurrency, "delay": 0.0},
            "retry": {"times": 0},
            "timeout": 30.0,
            "frontier": {"backend": backend},
        }
    )


async def crawl_engine(args: argparse.Namespace) -> tuple[str, int, int]:
    """(status, pages, errors) of one ``Engine`` crawl."""
    spider = LatencySpider(base_url=args.base_url, pages=str(args.pages))
    engine = Engine(spider=spider, settings=crawl_settings(args.concurrency, args.one), database=Path(args.database))
    result = await engine.run()
    return result.status, result.stats.get("pages"), result.stats.total("errors")


# -- the hand-written reference ------------------------------------------------------------------


class ReferenceCrawl:
    """N workers over a queue of URLs, one session; rows written in batches off the loop."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.batch: list[tuple[int, str, str]] = []
        self.write_lock = asyncio.Lock()
        self.pages = self.errors = 0

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while not self.queue.empty():
            url = self.queue.get_nowait()
            try:
                await self.handle(session, url)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                self.errors += 1

    async def handle(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url) as response:
            response.raise_for_status()
            html = await response.text()
        self.pages += 1
        tree = LexborHTMLParser(html)
        value, heading = tree.css_first("p.value"), tree.css_first("h1")
        if value is None or heading is None:
            raise ValueError(f"not a bench page: {url}")
        self.batch.append((int(value.attributes["data-n"] or -1), url, heading.text()))
        if len(self.batch) >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        rows, self.batch = self.batch, []
        if rows:
            async with self.write_lock:
                await asyncio.to_thread(_write_rows, self.db, rows)


def _write_rows(db: sqlite3.Connection, rows: list[tuple[int, str, str]]) -> None:
    with db:
        db.executemany("INSERT INTO page (n, url, title) VALUES (?, ?, ?)", rows)


async def run_workers(
    args: argparse.Namespace, worker: Callable[[aiohttp.ClientSession], Coroutine[Any, Any, None]]
) -> None:
    """``args.concurrency`` copies of ``worker`` sharing one session, set up as a hand-written
    loop would: a connector for that many connections, a total timeout of 30 s."""
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, asyncio.TaskGroup() as group:
        for _ in range(args.concurrency):
            group.create_task(worker(session))


async def crawl_fetch(args: argparse.Namespace) -> tuple[str, int, int]:
    """(status, pages, errors) of fetching every page with nothing done to it. The numbers of
    the pages whose bodies were right go into a ``page`` table once the fetching is over (one
    transaction, ~10 ms of the run), so that the same check as the other kinds' applies."""
    queue = list(range(args.pages - 1, -1, -1))  # popped from the end: page 0 first
    fetched: list[int] = []
    errors = 0

    async def fetch(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while queue:
            n = queue.pop()
            try:
                async with session.get(f"{args.base_url}/page/{n}") as response:
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            if response.status == 200 and f'data-n="{n}"'.encode() in body:
                fetched.append(n)
            else:
                errors += 1

    collecting = gc.isenabled()
    gc.disable()
    try:
        await run_workers(args, fetch)
    finally:
        if collecting:
            gc.enable()
    with closing(sqlite3.connect(args.database)) as db, db:
        db.execute("CREATE TABLE page (n INTEGER)")
        db.executemany("INSERT INTO page (n) VALUES (?)", [(n,) for n in fetched])
    return "finished", len(fetched), errors


async def crawl_reference(args: argparse.Namespace) -> tuple[str, int, int]:
    """(status, pages, errors) of one hand-written crawl."""
    with closing(sqlite3.connect(args.database, check_same_thread=False)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE page (n INTEGER, url TEXT, title TEXT)")
        state = ReferenceCrawl(db)
        for n in range(args.pages):
            state.queue.put_nowait(f"{args.base_url}/page/{n}")
        await run_workers(args, state.worker)
        await state.flush()
    return "finished", state.pages, state.errors


# -- one run, in its own process -------------------------------------------------------------------


async def measured(args: argparse.Namespace) -> dict[str, Any]:
    crawls: dict[str, Callable[[argparse.Namespace], Any]] = {"reference": crawl_reference, "fetch": crawl_fetch}
    crawl = crawls.get(args.one, crawl_engine)
    sampler = LagSampler()
    async with sampling(sampler):
        started, cpu = time.perf_counter(), cpu_seconds()
        status, pages, errors = await crawl(args)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    if args.spikes:
        print(f"{args.one}: the {args.spikes} longest stalls (lag ms @ seconds into the crawl):", file=sys.stderr)
        for lag, at in sampler.spikes[: args.spikes]:
            print(f"  {1000 * lag:8.1f} ms @ {at:7.3f} s", file=sys.stderr)
    return {
        "status": status,
        "pages": pages,
        "errors": errors,
        "seconds": seconds,
        "cpu": cpu,
        "max_lag": sampler.max_ms,
        "p99_lag": sampler.p99_ms,
        "samples": len(sampler.lags),
    }


def run_one(args: argparse.Namespace) -> int:
    """``--one KIND``: crawl once, print one JSON line with the figures."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    files = raise_file_limit()
    if files < args.concurrency + 100:
        print(f"warning: only {files} open files allowed for {args.concurrency} connections", file=sys.stderr)
    from scraper import runtime

    # the reference runs as a hand-written script does; ours, and the floor, on the loop users
    # get (uvloop when installed)
    figures = runtime.run(measured(args), event_loop="asyncio" if args.one == "reference" else "auto")
    ((rows, distinct, low, high),) = query(
        Path(args.database), "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM page"
    )
    figures.update(rows=rows, distinct=distinct, low=low, high=high, peak_rss=peak_rss_mb())
    print(json.dumps(figures), flush=True)
    return 0


# -- the rounds, from the parent ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    round: str
    kind: str
    status: str
    pages: int = 0
    errors: int = 0
    rows: int = 0
    distinct: int = 0
    low: int | None = None
    high: int | None = None
    seconds: float = 0.0
    cpu: float = 0.0
    max_lag: float = 0.0
    p99_lag: float = 0.0
    samples: int = 0
    peak_rss: float = 0.0
    site: SiteFigures | None = None

    @property
    def measured(self) -> bool:
        return not self.round.startswith("warm-up")

    @property
    def rate(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def problem(self, expected: int) -> str | None:
        """Why this run's output is wrong, or None."""
        if self.status != "finished":
            return f"status {self.status}"
        if not (self.rows == self.distinct == expected and self.low == 0 and self.high == expected - 1):
            return f"page rows {self.rows}, distinct pages {self.distinct}, expected {expected} (0..{expected - 1})"
        return None


def run_in_subprocess(args: argparse.Namespace, site: SlowSite, kind: str, label: str, database: Path) -> RunResult:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", kind, "--base-url", site.base_url]
    command += ["--database", str(database), "--pages", str(args.pages), "--concurrency", str(args.concurrency)]
    if args.spikes:  # each run prints its own to stderr, which is passed on below
        command += ["--spikes", str(args.spikes)]
    site.figures()  # reset the site's counters: what follows is this run's
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        done = subprocess.CompletedProcess(command, -1, "", f"no result within {args.timeout:g} s\n")
    served = site.figures()
    for path in database.parent.glob(f"{database.name}*"):
        path.unlink()
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-3000:])
        status = "timeout" if done.returncode == -1 else f"exit {done.returncode}"
        return RunResult(label, kind, status, site=served)
    if done.stderr.strip():
        sys.stderr.write(done.stderr[-3000:])
    return RunResult(label, kind, site=served, **json.loads(lines[-1]))


def run_rounds(args: argparse.Namespace, site: SlowSite, workdir: Path) -> list[RunResult]:
    results: list[RunResult] = []
    for label, kinds in ab_rounds(KINDS, args.rounds, args.warmup):
        for kind in kinds:
            run = run_in_subprocess(args, site, kind, label, workdir / f"{kind}.db")
            print(f"  … round {label} {kind:<9} {run.pages:,} pages in {run.seconds:.2f} s, "
                  f"max lag {run.max_lag:.1f} ms", file=sys.stderr, flush=True)  # fmt: skip
            results.append(run)
    return results


def correct_runs(results: list[RunResult], kind: str, pages: int) -> list[RunResult]:
    """The measured runs of ``kind`` that passed their check: what the medians are of."""
    return [r for r in results if r.kind == kind and r.measured and not r.problem(pages)]


def verdict(kind: str, seconds: float, worst_lag_ms: float) -> str:
    """The target column: the targets are about our crawler, so the reference's and the
    floor's rows get "-" rather than a "NOT met" that no change of ours could turn."""
    if kind not in TARGET_KINDS:
        return "-"
    return "met" if seconds < TARGET_SECONDS and worst_lag_ms < TARGET_LAG_MS else "NOT met"


def times_ideal(seconds: float, ideal: float) -> str:
    """The "x ideal" cell; "-" when the ideal is 0 s (``--delay 0``: nothing to divide by)."""
    return f"{seconds / ideal:.2f}x" if ideal > 0 else "-"


def report(args: argparse.Namespace, results: list[RunResult]) -> int:
    ideal = math.ceil(args.pages / args.concurrency) * args.delay
    headers = ["round", "kind", "pages", "errors", "rows", "seconds", "pages/s", "CPU s", "max lag ms", "p99 lag ms",
               "samples", "peak RSS MB", "site max lag ms", "site CPU s", "check"]  # fmt: skip
    print(table(headers, [
        [r.round, r.kind, r.pages, r.errors, r.rows, r.seconds, r.rate, r.cpu, r.max_lag, r.p99_lag, r.samples,
         r.peak_rss, r.site.max_lag_ms if r.site else None, r.site.cpu_seconds if r.site else None,
         r.problem(args.pages) or "ok"]
        for r in results
    ]))  # fmt: skip
    rows: list[list[object]] = []
    for kind in KINDS:
        runs = correct_runs(results, kind, args.pages)
        if not runs:
            rows.append([kind, None, None, None, None, None, None, None, "no correct run"])
            continue
        seconds, worst = median([r.seconds for r in runs]), max(r.max_lag for r in runs)
        rows.append([kind, seconds, median([r.rate for r in runs]), median([r.max_lag for r in runs]), worst,
                     median([r.p99_lag for r in runs]), median([r.peak_rss for r in runs]),
                     times_ideal(seconds, ideal), verdict(kind, seconds, worst)])  # fmt: skip
    print(f"\nmedians of the correct measured runs (ideal {ideal:g} s = ceil(pages / concurrency) x delay):")
    print(table(["kind", "seconds", "pages/s", "max lag ms", "worst max lag ms", "p99 lag ms", "peak RSS MB",
                 "x ideal", f"target ({', '.join(TARGET_KINDS)}) < {TARGET_SECONDS:g} s, "
                 f"lag < {TARGET_LAG_MS:g} ms"], rows))  # fmt: skip
    failures = [r for r in results if r.problem(args.pages)]
    for failure in failures:
        print(f"error: round {failure.round} {failure.kind}: {failure.problem(args.pages)}", file=sys.stderr)
    return 1 if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Seconds and event-loop lag crawling many slow pages at high concurrency: our Engine "
        "(sqlite and memory frontiers) against a hand-written aiohttp loop and aiohttp fetching alone.",
        epilog="Run from the repository root. The site runs in a separate process, each crawl in its own.",
    )
    parser.add_argument("--pages", type=int, default=10_000, help="pages to crawl (default 10000)")
    parser.add_argument("--concurrency", type=int, default=5000, help="requests in flight (default 5000)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the site waits per page (default 1.0)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds, one run per kind each (default 3)")
    parser.add_argument("--warmup", type=int, default=0, help="uncounted rounds first (default 0)")
    parser.add_argument(
        "--site",
        choices=("aiohttp", "raw"),
        default="raw",
        help="the slow site's server: aiohttp, an aiohttp app (about twice the server CPU), or raw, a bare "
        "asyncio protocol (default)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed for one run (default 300)")
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--spikes", type=int, default=0, help="print each run's K longest stalls to stderr")
    args = parser.parse_args(argv)
    if args.one and not (args.base_url and args.database):
        parser.error("--one needs --base-url and --database")
    # --delay 0 is allowed: a site that answers at once (its "x ideal" is then "-")
    at_least = {"--rounds": 1, "--warmup": 0, "--pages": 1, "--concurrency": 1, "--delay": 0, "--spikes": 0}
    check_minimums(parser, args, at_least=at_least, above={"--timeout": 0})
    return args


def measure(args: argparse.Namespace) -> list[RunResult]:
    """Serve the slow site and run the rounds (what ``main`` does, minus the report)."""
    files = raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    print(f"latency: {args.pages:,} pages answered after {args.delay:g} s each by the {args.site} site, "
          f"concurrency {args.concurrency:,}, {plural(args.rounds, 'round')} + {plural(args.warmup, 'warm-up round')}; "
          f"open files {files:,}; {machine()}\n")  # fmt: skip
    try:
        with slow_site_in_process(args.delay, args.site) as site:
            return run_rounds(args, site, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_one(args)
    return report(args, measure(args))


if __name__ == "__main__":
    run_main(main)
