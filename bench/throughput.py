"""Pages/s and CPU per page of our framework against a hand-written asyncio loop (the ceiling).

What it measures: the bundled demo shop (``scraper.demo_site``, ``--products`` products with
``--padding`` characters of filler per product page, about 20 KB each by default) is served by
aiohttp in a separate process. Three kinds of crawler crawl it, alternating A/B/A/B in each
round, each run in a fresh Python subprocess so its CPU time and peak RSS are its own:

- ``reference``: ``bench/reference_loop.py``, aiohttp + a queue of N workers + selectolax +
  batched SQLite writes, parsing and storing every product; the practical ceiling;
- ``sqlite``: our ``Engine`` with ``DemoShopSpider``, ``frontier.backend = "sqlite"``;
- ``memory``: the same with ``frontier.backend = "memory"``.

The framework runs with robots.txt off, no pipelines, concurrency 32 and per_host.concurrency 32
(the reference uses as many workers and connections). CPU is ``getrusage(RUSAGE_SELF)``
user + system of the subprocess during the crawl only (threads included, start-up and
imports excluded); peak RSS is its ``ru_maxrss``. The site process's CPU during each run is
read from ``/proc`` (Linux): when "site busy" nears 1.0 the single-threaded server, not the
crawler, is the bottleneck and the ratios understate the gaps. Warm-up rounds come first and
are not counted (the site renders and caches each page the first time it is asked).

Every run is checked: it must finish, and its ``product`` table must hold every product
exactly once (as many rows as distinct URLs, as many as ``--products``). A failed check makes
the exit code 1; the timings are only printed, never asserted.

How to read the output: one row per run, then per kind the medians of pages/s, CPU ms/page
and peak RSS, and the ratios against the reference. The performance issue's targets:
pages/s at least 0.85x the reference with the SQLite frontier and 0.95x with the in-memory
one, CPU per page within 0.15 ms of the reference's. Compare figures from one run only.

Run from the repository root: ``python bench/throughput.py [--rounds 5] [--products 2000]
[--padding 20000]``. ``--one KIND --base-url URL`` runs a single crawl and prints one JSON line
(that is how the runs are started; it needs a site already serving).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, spiders/, bench/

from bench._common import add_shop_arguments, cpu_seconds, machine, median, peak_rss_mb, query, site_in_process, table
from bench.durability import crawl_once, crawl_settings, shop_site
from bench.shop_spider import BenchShopSpider

KINDS = ("reference", "sqlite", "memory")
TARGETS = {"sqlite": 0.85, "memory": 0.95}  # pages/s as a fraction of the reference's
CPU_MARGIN_MS = 0.15  # CPU ms per page may exceed the reference's by at most this much


@dataclass(frozen=True, slots=True)
class RunResult:
    round: str
    kind: str
    status: str
    pages: int
    products: int
    distinct: int
    seconds: float
    cpu: float
    peak_rss: float
    site_cpu: float | None

    @property
    def measured(self) -> bool:
        return not self.round.startswith("warm-up")

    @property
    def rate(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu / self.pages if self.pages else float("nan")

    @property
    def site_busy(self) -> float | None:
        return self.site_cpu / self.seconds if self.site_cpu is not None and self.seconds else None

    def problem(self, expected: int) -> str | None:
        """Why this run's output is wrong, or None."""
        if self.status != "finished":
            return f"status {self.status}"
        if not self.products == self.distinct == expected:
            return f"product rows {self.products}, distinct urls {self.distinct}, expected {expected}"
        return None


# -- one run, in its own process -------------------------------------------------------------


async def crawl_reference(args: argparse.Namespace, database: Path) -> tuple[str, int, float, float]:
    from bench.reference_loop import crawl

    cpu, started = cpu_seconds(), time.perf_counter()
    pages, errors = await crawl(args.base_url, database, workers=args.concurrency, per_host=args.per_host)
    status = "finished" if errors == 0 else f"{errors} errors"
    return status, pages, time.perf_counter() - started, cpu_seconds() - cpu


def run_one(args: argparse.Namespace) -> int:
    """``--one KIND``: crawl once, print one JSON line with the figures."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    database = Path(args.database)
    if args.one == "reference":
        status, pages, seconds, cpu = asyncio.run(crawl_reference(args, database))
    else:
        settings = crawl_settings(args, args.one)
        status, pages, seconds, cpu = asyncio.run(crawl_once(args.base_url, settings, database, BenchShopSpider))
    ((products, distinct),) = query(database, "SELECT count(*), count(DISTINCT url) FROM product")
    figures = {"status": status, "pages": pages, "products": products, "distinct": distinct}
    print(json.dumps({**figures, "seconds": seconds, "cpu": cpu, "peak_rss": peak_rss_mb()}), flush=True)
    return 0


# -- the rounds, from the parent --------------------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of another process so far (Linux ``/proc``); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_in_subprocess(args: argparse.Namespace, base_url: str, kind: str, label: str, database: Path) -> RunResult:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", kind, "--base-url", base_url]
    command += ["--database", str(database), "--concurrency", str(args.concurrency), "--per-host", str(args.per_host)]
    site_pid = args.site_pid
    site_before = process_cpu(site_pid)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        done = subprocess.CompletedProcess(command, "timeout", "", f"no result within {args.timeout} s\n")
    site_after = process_cpu(site_pid)
    site_cpu = site_after - site_before if site_before is not None and site_after is not None else None
    for path in database.parent.glob(f"{database.name}*"):
        path.unlink()
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-2000:])
        return RunResult(label, kind, f"exit {done.returncode}", 0, 0, 0, 0.0, 0.0, 0.0, site_cpu)
    figures = json.loads(lines[-1])
    return RunResult(label, kind, site_cpu=site_cpu, **figures)


def run_rounds(args: argparse.Namespace, base_url: str, workdir: Path) -> list[RunResult]:
    results: list[RunResult] = []
    for number in range(1 - args.warmup, args.rounds + 1):
        label = f"warm-up {number + args.warmup}" if number <= 0 else str(number)
        kinds = KINDS if number <= 0 or number % 2 else KINDS[::-1]  # A/B/C then C/B/A
        for kind in kinds:
            run = run_in_subprocess(args, base_url, kind, label, workdir / f"{kind}.db")
            print(f"  … round {label} {kind:<9} {run.pages:,} pages in {run.seconds:.2f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            results.append(run)
    return results


def report(args: argparse.Namespace, results: list[RunResult], site_total: tuple[int, float] | None) -> int:
    headers = ["round", "kind", "pages", "products", "distinct", "seconds", "pages/s", "CPU s", "CPU ms/page",
               "peak RSS MB", "site CPU s", "site busy", "check"]  # fmt: skip
    print(table(headers, [
        [r.round, r.kind, r.pages, r.products, r.distinct, r.seconds, r.rate, r.cpu, r.cpu_ms_per_page,
         r.peak_rss, r.site_cpu, r.site_busy, r.problem(args.products) or "ok"]
        for r in results
    ]))  # fmt: skip
    measured = {kind: [r for r in results if r.kind == kind and r.measured] for kind in KINDS}
    rate = {kind: median([r.rate for r in runs]) for kind, runs in measured.items()}
    cpu = {kind: median([r.cpu_ms_per_page for r in runs]) for kind, runs in measured.items()}
    rows = []
    for kind, runs in measured.items():
        busy = [r.site_busy for r in runs if r.site_busy is not None]
        ratio, extra = rate[kind] / rate["reference"], cpu[kind] - cpu["reference"]
        verdict = "-"
        if kind in TARGETS:
            met = ratio >= TARGETS[kind] and extra <= CPU_MARGIN_MS
            verdict = f">= {TARGETS[kind]}x, +<= {CPU_MARGIN_MS} ms: {'met' if met else 'NOT met'}"
        rows.append([kind, rate[kind], cpu[kind], median([r.peak_rss for r in runs]), median(busy) if busy else None,
                     f"{ratio:.3f}", f"{extra:+.3f}", verdict])  # fmt: skip
    print("\nmedians of the measured rounds:")
    print(table(["kind", "pages/s", "CPU ms/page", "peak RSS MB", "site busy", "x reference", "CPU ms/page vs ref",
                 "target"], rows))  # fmt: skip
    if site_total is not None:
        served, site_cpu = site_total
        print(f"site process: {served:,} requests answered, {site_cpu:.1f} CPU s in all "
              f"({1000 * site_cpu / max(served, 1):.3f} ms/request); site busy = its CPU s / run s")  # fmt: skip
    failures = [r for r in results if r.problem(args.products)]
    for failure in failures:
        print(f"error: round {failure.round} {failure.kind}: {failure.problem(args.products)}", file=sys.stderr)
    return 1 if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pages/s and CPU/page of our Engine (sqlite and memory frontiers) against a hand-written loop.",
        epilog="Run from the repository root. The site runs in a separate process, each crawl in its own.",
    )
    add_shop_arguments(parser, padding=20000)
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for one run (default 600)")
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one and not (args.base_url and args.database):
        parser.error("--one needs --base-url and --database")
    if args.rounds < 1 or args.warmup < 0 or args.products < 1:
        parser.error("--rounds and --products must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_one(args)
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    print(f"throughput: demo shop of {args.products:,} products (padding {args.padding:,}), {args.rounds} rounds "
          f"+ {args.warmup} warm-up, concurrency={args.concurrency}, per_host.concurrency={args.per_host}; "
          f"{machine()}\n")  # fmt: skip
    try:
        with site_in_process(shop_site, args.products, args.padding) as site:
            args.site_pid = site.process.pid
            results = run_rounds(args, site.base_url, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = (site.report.requests, site.report.cpu_seconds) if site.report else None
    return report(args, results, total)


if __name__ == "__main__":
    raise SystemExit(main())
