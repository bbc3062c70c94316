"""Memory of the crawler while its frontier grows to a million pending requests.

What it measures: a generated site where every page links to FANOUT new, unique pages
(``/p/{n}`` links to ``/p/{n*FANOUT+1}`` ... ``/p/{n*FANOUT+FANOUT}``) is served by aiohttp in a
separate process, so its memory and CPU are not counted. Our ``Engine`` crawls it in this
process until the frontier holds ``--pending`` requests: ``close.max_pages`` is set to the
number of pages that yields exactly that many (each page adds FANOUT and removes itself), and
a watcher stops the engine if the target is reached some other way. While it runs, the
watcher samples ``engine.pending``, the pages fetched and this process's RSS (VmRSS from
``/proc/self/status``) and records a row at each checkpoint.

How to read the output: the checkpoint table gives, for each frontier size, the first sample
at or past it (its "pending" column is that sample's, which a page of FANOUT links can take
past the next checkpoint too), the RSS at that moment, the peak RSS so far and the time it
took. The peak is the highest of ``ru_maxrss`` and every VmRSS sampled: Linux raises
``ru_maxrss`` lazily, and it was read 0.1-0.3 MB under the RSS sampled in the same row. With the durable frontier
(``--backend sqlite``, the default) RSS should stay roughly flat as pending grows: only
``frontier.buffer`` requests are kept in memory and the rest wait in SQLite. The issue's
target is a peak RSS under 300 MB at 1,000,000 pending. ``--backend memory`` keeps every
pending request (and the seen-set) in memory, for comparison. "baseline" is the RSS before
the crawl started (interpreter and imports). Nothing is asserted on the figures; the exit
code is 1 only if the crawl did not reach the target or failed.

Run from the repository root: ``python bench/frontier_memory.py [--pending 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import logging
import math
import pstats
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, bench/

from aiohttp import web

from bench._common import (
    ServerReport,
    check_minimums,
    cpu_seconds,
    current_rss_mb,
    database_mb,
    machine,
    peak_rss_mb,
    query,
    run_main,
    site_in_process,
    table,
)
from scraper import Request, Response, Spider
from scraper.engine import CrawlResult, Engine
from scraper.settings import Settings, load_settings
from scraper.spider import Output

DEFAULT_CHECKPOINTS = (10_000, 100_000, 250_000, 500_000)


# -- the site (runs in the server process) ---------------------------------------------------


def fanout_site(fanout: int) -> web.Application:
    """Every page links to ``fanout`` pages nobody else links to: the frontier only grows."""

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        first = n * fanout + 1
        links = "".join(f'<li><a href="/p/{k}">{k}</a></li>\n' for k in range(first, first + fanout))
        body = f"<!doctype html>\n<html><head><title>page {n}</title></head><body><ul>\n{links}</ul></body></html>\n"
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get(r"/p/{n:\d+}", page)
    return app


class FanOutSpider(Spider):
    name = "bench_fanout"
    base_url: str = ""

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/p/0")

    async def parse(self, response: Response) -> AsyncIterator[Output]:
        for request in response.follow_all(css="a"):
            yield request


# -- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    label: str
    pending: int
    pages: int
    rss_mb: float | None
    peak_mb: float
    elapsed: float
    objects: str = ""  # live framework objects by type (with --internals)


@dataclass(slots=True)
class Run:
    result: CrawlResult
    samples: list[Sample]
    elapsed: float
    max_sampled_rss: float
    engine_pending: int  # engine.pending once the run returned


def pages_needed(pending: int, fanout: int) -> int:
    """Pages to fetch so that 1 + (fanout - 1) * pages >= pending."""
    return max(1, math.ceil((pending - 1) / (fanout - 1)))


def crawl_settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        config={
            "robots_txt": False,
            "pipelines": [],
            "concurrency": args.concurrency,
            "per_host": {"concurrency": args.per_host},
            "frontier": {"backend": args.backend, "buffer": args.buffer},
            "close": {"max_pages": pages_needed(args.pending, args.fanout), "max_duration": args.max_seconds},
        }
    )


def framework_objects(top: int = 6) -> str:
    """The most numerous live objects of framework classes (a full gc walk: seconds at 1M)."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        if str(getattr(kind, "__module__", "")).startswith("scraper."):
            counts[kind.__name__] += 1
    return ", ".join(f"{name} {count:,}" for name, count in counts.most_common(top))


async def crawl(engine: Engine, args: argparse.Namespace) -> Run:
    """Run the engine while sampling it; rows at each checkpoint, progress on stderr."""
    checkpoints = [c for c in sorted(set(args.checkpoints)) if c < args.pending] + [args.pending]
    samples: list[Sample] = []
    started = time.monotonic()
    last_report = started
    max_rss = 0.0
    task = asyncio.create_task(engine.run(), name="engine")
    while not task.done():
        await asyncio.wait({task}, timeout=args.interval)
        now, pending, pages = time.monotonic(), engine.pending, engine.stats.get("pages")
        rss = current_rss_mb()
        max_rss = max(max_rss, rss or 0.0)
        while checkpoints and pending >= checkpoints[0]:
            objects = framework_objects() if args.internals else ""
            label = f"{checkpoints.pop(0):,}"
            samples.append(Sample(label, pending, pages, rss, max(peak_rss_mb(), max_rss), now - started, objects))
        if pending >= args.pending:
            engine.stop("bench: target reached")  # a backstop; close.max_pages normally ends it
        if now - last_report >= 10:
            last_report = now
            print(
                f"  … {now - started:6.1f}s  pending {pending:>9,}  pages {pages:>7,}  RSS {rss or 0:6.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    result = task.result()
    return Run(result, samples, time.monotonic() - started, max_rss, engine.pending)


async def measure(args: argparse.Namespace, base_url: str, database: Path) -> Run:
    engine = Engine(spider=FanOutSpider(base_url=base_url), settings=crawl_settings(args), database=database)
    return await crawl(engine, args)


# -- reporting -------------------------------------------------------------------------------


def report(args: argparse.Namespace, run: Run, database: Path, baseline: float | None, cpu: float) -> bool:
    """Print the tables; True when the frontier reached the target."""
    ((stored_pending,),) = query(database, "SELECT count(*) FROM scraper_requests WHERE state = 'pending'")
    ((rows,),) = query(database, "SELECT count(*) FROM scraper_requests")
    stats = run.result.stats
    pages = stats.get("pages")
    rss_end = current_rss_mb()
    peak = max(peak_rss_mb(), run.max_sampled_rss, rss_end or 0.0)  # ru_maxrss lags: see the docstring
    end = Sample("end", stored_pending, pages, rss_end, peak, run.elapsed)
    headers = ["pending (target)", "pending", "pages", "RSS MB", "peak RSS MB", "elapsed s"]
    rows_out = [[s.label, s.pending, s.pages, s.rss_mb, s.peak_mb, s.elapsed] for s in [*run.samples, end]]
    print(table(headers, rows_out))
    if args.internals:
        print("\nlive framework objects at each checkpoint:")
        for sample in run.samples:
            print(f"  {sample.label:>10} pending: {sample.objects}")
    print()
    figures = [
        ("backend", args.backend),
        ("frontier.buffer", f"{args.buffer:,}"),
        ("status / reason", f"{run.result.status} / {run.result.reason}"),
        ("pending at the end (rows in scraper_requests)", f"{stored_pending:,}"),
        ("engine.pending at the end", f"{run.engine_pending:,}"),
        ("pages crawled", f"{pages:,}"),
        ("requests admitted", f"{stats.get('requests/admitted'):,}"),
        ("request rows in the database", f"{rows:,}"),
        ("errors", f"{stats.total('errors'):,}"),
        ("baseline RSS before the crawl", f"{baseline or 0:.1f} MB"),
        ("peak RSS (the highest of ru_maxrss and the samples)", f"{peak:.1f} MB"),
        ("highest sampled VmRSS", f"{run.max_sampled_rss:.1f} MB"),
        ("RSS after the crawl", f"{rss_end or 0:.1f} MB"),
        ("elapsed", f"{run.elapsed:.1f} s ({pages / run.elapsed:,.0f} pages/s, {rows / run.elapsed:,.0f} requests/s)"),
        ("crawler CPU", f"{cpu:.1f} s ({100 * cpu / run.elapsed:.0f}% of one core)"),
        ("database size", f"{database_mb(database):.1f} MB"),
    ]
    width = max(len(name) for name, _ in figures)
    for name, value in figures:
        print(f"{name:<{width}}  {value}")
    reached = stored_pending >= args.pending and run.result.status == "finished"
    target = "met" if peak < 300 else "NOT met"
    print(f"\ntarget: peak RSS < 300 MB at {args.pending:,} pending: {target} ({peak:.1f} MB)")
    if not reached:
        print(f"error: the frontier did not reach {args.pending:,} pending ({stored_pending:,})", file=sys.stderr)
    return reached


def print_server(server: ServerReport | None) -> None:
    if server is not None:
        print(f"site process: {server.requests:,} requests answered, {server.cpu_seconds:.1f} s CPU")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Peak RSS of the crawler while its frontier grows to N pending requests.",
        epilog="Run from the repository root. The site runs in a separate process; only the crawler is measured.",
    )
    parser.add_argument("--pending", type=int, default=1_000_000, help="frontier size to reach (default 1,000,000)")
    parser.add_argument(
        "--checkpoints",
        type=int,
        nargs="*",
        default=list(DEFAULT_CHECKPOINTS),
        help="pending counts at which to record RSS (default 10k 100k 250k 500k; the target is always one)",
    )
    parser.add_argument("--backend", choices=["sqlite", "memory"], default="sqlite", help="frontier.backend")
    parser.add_argument("--buffer", type=int, default=5000, help="frontier.buffer (default 5000)")
    parser.add_argument("--fanout", type=int, default=200, help="links on every page (default 200)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrency (default 32)")
    parser.add_argument("--per-host", type=int, default=32, help="per_host.concurrency (default 32)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples (default 0.25)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="close.max_duration safety net (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its path is printed)")
    parser.add_argument(
        "--internals", action="store_true", help="count live framework objects at each checkpoint (slow)"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="print the top allocation sites at the end (slow)")
    parser.add_argument("--profile", action="store_true", help="print where the crawler's CPU time goes (cProfile)")
    args = parser.parse_args(argv)
    at_least = {"--pending": 1, "--fanout": 2, "--buffer": 1, "--concurrency": 1, "--per-host": 1}
    check_minimums(parser, args, at_least=at_least, above={"--interval": 0, "--max-seconds": 0})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="bench-frontier-"))
    database = workdir / "crawl.db"
    print(f"frontier_memory: {args.pending:,} pending, backend={args.backend}, fanout={args.fanout}; {machine()}")
    print(f"max_pages={pages_needed(args.pending, args.fanout):,}, concurrency={args.concurrency}, "
          f"per_host.concurrency={args.per_host}, database {database}\n")  # fmt: skip
    profiler = cProfile.Profile() if args.profile else None
    if args.tracemalloc:
        tracemalloc.start(10)
    try:
        with site_in_process(fanout_site, args.fanout) as site:
            gc.collect()
            baseline, cpu_before = current_rss_mb(), cpu_seconds()
            if profiler is not None:
                profiler.enable()
            run = asyncio.run(measure(args, site.base_url, database))
            if profiler is not None:
                profiler.disable()
            cpu = cpu_seconds() - cpu_before
        reached = report(args, run, database, baseline, cpu)
        print_server(site.report)
        if profiler is not None:
            print_profile(profiler)
        if args.tracemalloc:
            print_allocations()
    finally:
        if args.keep:
            print(f"database kept: {database}")
        else:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()
    return 0 if reached else 1


def print_profile(profiler: cProfile.Profile) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print("\nwhere the crawler's CPU time goes (main thread; SQLite runs in aiosqlite's thread):")
    print(out.getvalue())


def print_allocations() -> None:
    snapshot = tracemalloc.take_snapshot()
    print("\nlargest live allocations at the end (tracemalloc, by line):")
    for stat in snapshot.statistics("lineno")[:15]:
        print(f"  {stat.size / 1024 / 1024:8.1f} MB  {stat.count:>9,} blocks  {stat.traceback[0]}")


if __name__ == "__main__":
    run_main(main)
