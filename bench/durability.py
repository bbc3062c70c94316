"""What the durable (SQLite) frontier costs against the in-memory one, in pages per second.

What it measures: the bundled demo shop (``scraper.demo_site``, ``--products`` products with
``--padding`` characters of filler per product page) is served by aiohttp in a separate
process, so its CPU is not the crawler's. ``spiders.demo_shop.DemoShopSpider`` crawls it with
our ``Engine`` in this process, once per backend per round, alternating A/B/A/B
(``frontier.backend = "sqlite"`` then ``"memory"``), with the same settings otherwise
(concurrency 32, per_host.concurrency 32, robots.txt off, no pipelines) and a fresh temporary
database for every run. Warm-up rounds come first and are not counted (the site renders and
caches each page the first time it is asked).

Every run is checked: it must finish, and the ``product`` table must hold every product
exactly once (as many rows as distinct URLs, as many as ``--products``). A failed check
makes the exit code 1; the timings are only printed, never asserted.

How to read the output: one row per run (pages, seconds of ``Engine.run()``, pages/s), then
the median pages/s of each backend and the ratio sqlite / memory. The durability issue's
target is a ratio of at least 0.85. Compare figures from one run of this script only.

Run from the repository root: ``python bench/durability.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, spiders/, bench/

from aiohttp import web

from bench._common import add_shop_arguments, cpu_seconds, machine, median, query, site_in_process, table
from scraper.demo_site import build_catalog, make_app
from scraper.engine import Engine
from scraper.settings import Settings, load_settings
from scraper.spider import Spider
from spiders.demo_shop import DemoShopSpider

BACKENDS = ("sqlite", "memory")


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
        return self.pages / self.seconds

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


def summarise(results: list[RunResult]) -> dict[str, float]:
    """Median pages/s of each backend over the measured (not warm-up) runs."""
    return {backend: median([r.rate for r in results if r.backend == backend and r.measured]) for backend in BACKENDS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pages/s of the SQLite frontier against the in-memory one on the demo shop (A/B/A/B).",
        epilog="Run from the repository root. The site runs in a separate process.",
    )
    add_shop_arguments(parser, padding=5000)
    parser.add_argument("--keep", action="store_true", help="keep the databases (their folder is printed)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.products < 1:
        parser.error("--rounds and --products must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    print(f"durability: demo shop of {args.products:,} products (padding {args.padding:,}), {args.rounds} rounds "
          f"+ {args.warmup} warm-up, concurrency={args.concurrency}, per_host.concurrency={args.per_host}; "
          f"{machine()}\n")  # fmt: skip
    results: list[RunResult] = []
    try:
        with site_in_process(shop_site, args.products, args.padding) as site:
            for number in range(1 - args.warmup, args.rounds + 1):
                label = f"warm-up {number + args.warmup}" if number <= 0 else str(number)
                for backend in BACKENDS:
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
    medians = summarise(results)
    ratio = medians["sqlite"] / medians["memory"]
    per_round = [
        s.rate / m.rate
        for s in results
        for m in results
        if s.backend == "sqlite" and m.backend == "memory" and s.round == m.round and s.measured
    ]
    print()
    print(f"median pages/s   sqlite {medians['sqlite']:,.1f}   memory {medians['memory']:,.1f}")
    verdict = "met" if ratio >= 0.85 else "NOT met"
    print(f"ratio sqlite / memory (of the medians): {ratio:.3f}   (target >= 0.85: {verdict})")
    print(f"ratio per round: {', '.join(f'{value:.3f}' for value in per_round)}")
    if served is not None:
        print(f"site process answered {served:,} requests")
    failures = [r for r in results if r.problem(args.products)]
    for failure in failures:
        print(f"error: round {failure.round} {failure.backend}: {failure.problem(args.products)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
