"""What the durable (SQLite) frontier costs against the in-memory one, in pages per second.

What it measures: the bundled demo shop (``scraper.demo_site``, ``--products`` products with
``--padding`` characters of filler per product page) is served by aiohttp in a separate
process, so its CPU is not the crawler's. ``spiders.demo_shop.DemoShopSpider`` crawls it with
our ``Engine`` in this process (not a subprocess per crawl), once per backend per round, the
order alternating A/B then B/A (``frontier.backend = "sqlite"`` and ``"memory"``), with the same settings otherwise
(concurrency 32, per_host.concurrency 32, robots.txt off, no pipelines) and a fresh temporary
database for every run. Warm-up rounds come first and are not counted (the site renders and
caches each page the first time it is asked).

Every run is checked: it must finish, and the ``product`` table must hold every product
exactly once (as many rows as distinct URLs, as many as ``--products``). A failed check
makes the exit code 1; the timings are only printed, never asserted.

How to read the output: one row per run (pages, seconds of ``Engine.run()``, pages/s), then
the median pages/s of each backend and the ratio sqlite / memory: the median of the per-round
ratios (both runs of a round back to back, so a slow spell of the machine moves both), over
the rounds where both runs were correct. The durability issue's target is a ratio of at
least 0.85. Compare figures from one run of this script only.

Run from the repository root: ``python bench/durability.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, spiders/, bench/

from aiohttp import web

from bench._common import (
    ab_rounds,
    add_shop_arguments,
    check_shop_arguments,
    cpu_seconds,
    machine,
    median,
    plural,
    query,
    run_main,
    site_in_process,
    table,
)
from scraper.demo_site import build_catalog, make_app
from scraper.engine import Engine
from scraper.settings import Settings, load_settings
from scraper.spider import Spider
from spiders.demo_shop import DemoShopSpider

BACKENDS = ("sqlite", "memory")
TARGET = 0.85  # sqlite's pages/s over memory's


def shop_site(products: int, padding: int) -> web.Application:
    """The demo shop (runs in the server process)."""
    return make_app(build_catalog(products, padding=padding))


@dataclass(frozen=True, slots=True)
class RunResult:
    round: str
    backend: str
    pages: int
    products: int
    distinct: int
    errors: int
    status: str
    seconds: float
    cpu: float

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
        if not self.products == self.distinct == expected:
            return f"product rows {self.products}, distinct urls {self.distinct}, expected {expected}"
        return None


def crawl_settings(args: argparse.Namespace, backend: str, *, parse_processes: int = 0) -> Settings:
    """The benchmarks' settings: robots.txt and pipelines off, ``--concurrency`` and
    ``--per-host`` from the command line."""
    return load_settings(
        config={
            "robots_txt": False,
            "pipelines": [],
            "concurrency": args.concurrency,
            "per_host": {"concurrency": args.per_host},
            "frontier": {"backend": backend},
            "parse_processes": parse_processes,
        }
    )


async def crawl_once(
    base_url: str, settings: Settings, database: Path, spider: type[Spider] = DemoShopSpider
) -> tuple[str, int, float, float]:
    engine = Engine(spider=spider(base_url=base_url), settings=settings, database=database)
    cpu, started = cpu_seconds(), time.perf_counter()
    result = await engine.run()
    return result.status, result.stats.get("pages"), time.perf_counter() - started, cpu_seconds() - cpu


def run_once(args: argparse.Namespace, base_url: str, backend: str, label: str, workdir: Path) -> RunResult:
    database = workdir / f"{label}-{backend}.db"
    gc.collect()
    status, pages, seconds, cpu = asyncio.run(crawl_once(base_url, crawl_settings(args, backend), database))
    ((products, distinct),) = query(database, "SELECT count(*), count(DISTINCT url) FROM product")
    ((errors,),) = query(database, "SELECT count(*) FROM scraper_errors")
    if not args.keep:
        for path in workdir.glob(f"{database.name}*"):
            path.unlink()
    return RunResult(label, backend, pages, products, distinct, errors, status, seconds, cpu)


def correct(results: list[RunResult], expected: int) -> list[RunResult]:
    """The measured (not warm-up) runs that passed their check."""
    return [r for r in results if r.measured and not r.problem(expected)]


def summarise(results: list[RunResult], expected: int) -> dict[str, float]:
    """Median pages/s of each backend over its correct measured runs (nan without one)."""
    runs = correct(results, expected)
    return {backend: median([r.rate for r in runs if r.backend == backend]) for backend in BACKENDS}


def per_round_ratios(results: list[RunResult], expected: int) -> list[float]:
    """sqlite's pages/s over memory's in each measured round where both were correct."""
    by_round: dict[str, dict[str, RunResult]] = {}
    for run in correct(results, expected):
        by_round.setdefault(run.round, {})[run.backend] = run
    return [runs["sqlite"].rate / runs["memory"].rate for runs in by_round.values() if len(runs) == len(BACKENDS)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pages/s of the SQLite frontier against the in-memory one on the demo shop (A/B/A/B).",
        epilog="Run from the repository root. The site runs in a separate process.",
    )
    add_shop_arguments(parser, padding=5000)
    parser.add_argument("--keep", action="store_true", help="keep the databases (their folder is printed)")
    args = parser.parse_args(argv)
    check_shop_arguments(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    print(f"durability: demo shop of {args.products:,} products (padding {args.padding:,}), "
          f"{plural(args.rounds, 'round')} + {plural(args.warmup, 'warm-up round')}, "
          f"concurrency={args.concurrency}, per_host.concurrency={args.per_host}; "
          f"{machine()}\n")  # fmt: skip
    results: list[RunResult] = []
    try:
        with site_in_process(shop_site, args.products, args.padding) as site:
            for label, backends in ab_rounds(BACKENDS, args.rounds, args.warmup):
                for backend in backends:
                    run = run_once(args, site.base_url, backend, label, workdir)
                    print(f"  … round {label} {backend:<6} {run.pages:,} pages in {run.seconds:.2f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
                    results.append(run)
    finally:
        if args.keep:
            print(f"databases kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report(args, results, site.report.requests if site.report else None)


def report(args: argparse.Namespace, results: list[RunResult], served: int | None) -> int:
    headers = ["round", "backend", "pages", "products", "distinct", "errors", "seconds", "CPU s", "pages/s", "check"]
    print(table(headers, [
        [r.round, r.backend, r.pages, r.products, r.distinct, r.errors, r.seconds, r.cpu, r.rate,
         r.problem(args.products) or "ok"]
        for r in results
    ]))  # fmt: skip
    medians = summarise(results, args.products)
    per_round = per_round_ratios(results, args.products)
    print()
    print("median pages/s   " + "   ".join(f"{b} {_rate(medians[b])}" for b in BACKENDS))
    print(ratio_line(per_round))
    print(f"ratio per round: {', '.join(f'{value:.3f}' for value in per_round) or '-'}")
    if served is not None:
        print(f"site process answered {served:,} requests")
    failures = [r for r in results if r.problem(args.products)]
    for failure in failures:
        print(f"error: round {failure.round} {failure.backend}: {failure.problem(args.products)}", file=sys.stderr)
    return 1 if failures else 0


def _rate(value: float) -> str:
    """A median pages/s, or "-" for a backend without a correct run (not "nan")."""
    return "-" if math.isnan(value) else f"{value:,.1f}"


def ratio_line(per_round: list[float]) -> str:
    """The verdict: the median of the per-round ratios (as throughput.py judges), which a
    slow spell in one backend's rounds alone cannot swing as it can a ratio of two medians."""
    if not per_round:
        return f"ratio sqlite / memory: - (no round with both runs correct; target >= {TARGET})"
    ratio = median(per_round)
    verdict = "met" if ratio >= TARGET else "NOT met"
    return f"ratio sqlite / memory (median of the per-round ratios): {ratio:.3f}   (target >= {TARGET}: {verdict})"


if __name__ == "__main__":
    run_main(main)
