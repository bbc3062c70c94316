"""Pages/s, CPU per page and peak RSS of crawlers doing the same work on the same site: our
framework, a hand-written asyncio loop (the ceiling), Scrapy and Crawlee.

The site: the demo shop (``--products`` products, ``--padding`` characters of filler per
product page, about 20 KB each by default) written as static files by ``bench/site.py`` and
served by nginx when it is installed, else by Python server processes (``--server``). Every
crawler fetches every page, parses the same fields of every product page and stores one
``product`` row per product in SQLite. The kinds, each run in a fresh subprocess:

- ``reference``: ``bench/reference_loop.py`` (aiohttp, a queue of N workers, selectolax,
  batched SQLite writes) on asyncio's own loop, as a hand-written script runs;
  ``reference+uvloop``: the same on uvloop, for comparison; ``reference-nowrite``: the
  reference with its batches dropped instead of written, to see what its own writes cost it
  (not in the default kinds);
- ``sqlite`` / ``memory``: our ``Engine`` with ``bench/shop_spider.py`` (the reference's own
  parsing code) and the durable SQLite frontier / the in-memory one, on the loop users get
  (``event_loop: auto``: uvloop when installed);
- ``pool``: ``sqlite`` with ``parse_processes`` (``--parse-processes``, default 2);
- ``nowrite``: ``memory`` with every page's commit dropped instead of written (no SQL, no
  product stored, so its product check is skipped): the framework without its writes, to
  see what the writes cost against the reference (not in the default kinds);
- ``scrapy`` / ``crawlee``: ``bench/competitors/`` in their own venv (made on first use).

With ``--spider heavy`` our kinds crawl with the parse-heavy ``HeavyShopSpider`` instead (the
multi-core comparison: ``--kinds sqlite,pool``).

Rounds alternate the kinds' order (A/B/C then C/B/A) after uncounted warm-up rounds. CPU is the
crawler process's user + system time during the crawl (its parse processes included; module
loading before the crawl is left out for every kind, as for Scrapy and Crawlee); the
site's CPU is read from ``/proc``: "site busy" near 1.0 per server process means the server,
not the crawler, set the pace. "steal s" is the CPU time the hypervisor took from the
machine's CPUs during the run (``/proc/stat``, all CPUs): on a shared VM, a round with much
of it is a slow spell, whichever kind ran in it. Each run's ``product`` table must hold
every product exactly once, else the exit code is 1; the medians and ratios are of the correct
runs only (a kind without one shows "-"); timings are printed, never asserted. The targets
against the reference are judged with ``--spider bench`` only, the pool's speed-up over
``sqlite`` (1.6x) with ``--spider heavy`` only.

Run from the repository root: ``python bench/throughput.py [--rounds 5] [--kinds ...]``;
``bench/run.py`` runs this with the other benchmarks and prints the README table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, spiders/, bench/

from bench._common import (
    ab_rounds,
    add_shop_arguments,
    check_minimums,
    check_shop_arguments,
    machine,
    median,
    parse_kinds,
    peak_rss_mb,
    plural,
    query,
    run_main,
    steal_seconds,
    table,
)

if TYPE_CHECKING:
    from bench.site import Ceiling

THIS = Path(__file__).resolve()
OURS = ("sqlite", "memory", "pool", "nowrite")
REFERENCES = ("reference", "reference+uvloop", "reference-nowrite")
COMPETITORS = ("scrapy", "crawlee")
KINDS = (*REFERENCES, *OURS, *COMPETITORS)
DEFAULT_KINDS = ("reference", "reference+uvloop", "sqlite", "memory", "scrapy", "crawlee")
UVLOOP_KINDS = frozenset({"reference+uvloop"})  # kinds that need uvloop installed (the ``fast`` extra)
TARGETS = {"sqlite": 0.85, "memory": 0.95}  # pages/s as a fraction of the reference's
CPU_MARGIN_MS = 0.15  # CPU ms per page may exceed the reference's by at most this much
POOL_TARGET = 1.6  # the pool's pages/s over one process's (sqlite), on the parse-heavy crawl
ASYNCIO_LOOP = frozenset({"reference", "reference-nowrite"})  # kinds on asyncio's own loop
UNCHECKED = frozenset({"nowrite", "reference-nowrite"})  # kinds that store no products, by design


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
    steal: float | None = None  # CPU seconds the hypervisor took from the machine meanwhile

    @classmethod
    def failed(cls, label: str, kind: str, status: str) -> RunResult:
        """A run with no figures: it did not finish, or left no product table."""
        return cls(label, kind, status, 0, 0, 0, 0.0, 0.0, 0.0, None)

    @property
    def measured(self) -> bool:
        return not self.round.startswith("warm-up")

    @property
    def has_figures(self) -> bool:
        """False for a ``failed`` run: its zeros are no measurement, the table shows "-"."""
        return bool(self.seconds) or self.status in ("finished", "ok")

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
        if self.status not in ("finished", "ok"):
            return f"status {self.status}"
        if self.kind in UNCHECKED:
            return None
        if not self.products == self.distinct == expected:
            return f"product rows {self.products}, distinct urls {self.distinct}, expected {expected}"
        return None

    def check(self, expected: int) -> str:
        """The table's check column: the problem, else "ok", or "not checked" for the kinds
        that store no products by design (an "ok" there would claim a check never made)."""
        if problem := self.problem(expected):
            return problem
        return "not checked" if self.kind in UNCHECKED else "ok"


@dataclass(frozen=True, slots=True)
class Summary:
    """One kind's medians over its correct measured runs (None where it had none: a failed
    run's zeros would drag a median to 0 pages/s, or to nan CPU)."""

    kind: str
    rate: float | None
    cpu_ms_per_page: float | None
    peak_rss: float | None
    site_busy: float | None
    runs: int  # correct measured runs, what the medians are of
    measured: int = 0  # measured runs, correct or not


# -- one run, in its own process -------------------------------------------------------------


def _cpu_with_children() -> float:
    """This process's CPU seconds plus its finished children's (the parse processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load_modules(kind: str) -> None:
    """Import what ``kind``'s crawl needs before the clock starts: the window counts the crawl,
    not module loading, as the competitors' scripts (``Window``) count theirs."""
    ours = ["bench.durability", "bench.shop_spider", "scraper.engine"]
    for module in ["bench.reference_loop"] if kind in REFERENCES else ours:
        importlib.import_module(module)
    from scraper import runtime

    if kind not in ASYNCIO_LOOP and runtime.uvloop_available():
        importlib.import_module("uvloop")  # the other kinds run on it: its import is start-up too


async def _crawl(args: argparse.Namespace, database: Path) -> tuple[str, int]:
    if args.one in REFERENCES:
        from bench.reference_loop import crawl

        if args.one == "reference-nowrite":
            _drop_batches()
        pages, errors = await crawl(args.base_url, database, workers=args.concurrency, per_host=args.per_host)
        return ("finished" if errors == 0 else f"{errors} errors"), pages
    from bench.durability import crawl_settings
    from bench.shop_spider import BenchShopSpider, HeavyShopSpider
    from scraper.engine import Engine

    backend = "memory" if args.one in ("memory", "nowrite") else "sqlite"
    if args.one == "nowrite":
        _drop_commits()
    settings = crawl_settings(args, backend, parse_processes=args.parse_processes if args.one == "pool" else 0)
    spider = (HeavyShopSpider if args.spider == "heavy" else BenchShopSpider)(base_url=args.base_url)
    result = await Engine(spider=spider, settings=settings, database=database).run()
    return result.status, result.stats.get("pages")


def _drop_commits() -> None:
    """For ``nowrite``: every commit a page hands to storage is dropped, so nothing is
    written (the crawl's row and its end are, as usual)."""
    from scraper.records import Commit
    from scraper.storage import Storage

    async def drop(self: Storage, commit: Commit) -> None:
        return None

    Storage.submit = drop  # type: ignore[method-assign]


def _drop_batches() -> None:
    """For ``reference-nowrite``: the reference loop's batches are dropped, not written."""
    from bench import reference_loop

    def drop(db: sqlite3.Connection, rows: list[reference_loop.Row]) -> None:
        return None

    reference_loop._write = drop


def run_one(args: argparse.Namespace) -> int:
    """``--one KIND``: crawl once, print one JSON line with the figures."""
    from scraper import runtime

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    event_loop: runtime.EventLoop = (
        "asyncio" if args.one in ASYNCIO_LOOP else "uvloop" if args.one == "reference+uvloop" else "auto"
    )
    _load_modules(args.one)
    cpu, started = _cpu_with_children(), time.perf_counter()
    status, pages = runtime.run(_crawl(args, Path(args.database)), event_loop=event_loop)
    seconds, cpu = time.perf_counter() - started, _cpu_with_children() - cpu
    print(json.dumps({"status": status, "pages": pages, "seconds": seconds, "cpu": cpu, "peak_rss": peak_rss_mb()}))
    return 0


# -- the rounds, from the parent --------------------------------------------------------------


def command_for(args: argparse.Namespace, kind: str, base_url: str, database: Path) -> list[str]:
    if kind in COMPETITORS:
        from bench.competitors.venv import ensure_venv

        script = THIS.parent / "competitors" / f"{kind}_shop.py"
        return [str(ensure_venv()), str(script), "--base-url", base_url, "--database", str(database),
                "--concurrency", str(args.concurrency)]  # fmt: skip
    return [sys.executable, str(THIS), "--one", kind, "--base-url", base_url, "--database", str(database),
            "--concurrency", str(args.concurrency), "--per-host", str(args.per_host), "--spider", args.spider,
            "--parse-processes", str(args.parse_processes)]  # fmt: skip


def run_in_subprocess(
    args: argparse.Namespace, kind: str, label: str, base_url: str, database: Path, site_cpu: Callable[[], float | None]
) -> RunResult:
    command = command_for(args, kind, base_url, database)
    before, steal_before = site_cpu(), steal_seconds()
    timed_out = False
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        timed_out = True
        done = subprocess.CompletedProcess(command, -signal.SIGKILL, "", f"no result within {args.timeout} s\n")
    after, steal_after = site_cpu(), steal_seconds()
    stolen = steal_after - steal_before if steal_after is not None and steal_before is not None else None
    lines = done.stdout.strip().splitlines()
    try:
        if done.returncode != 0 or not lines:
            exit_status = "timeout" if timed_out else done.returncode
            sys.stderr.write(f"{kind}: exit {exit_status}\n{done.stderr[-2000:]}")
            return RunResult.failed(label, kind, f"exit {exit_status}")
        figures = json.loads(lines[-1])
        products = distinct = 0  # what an UNCHECKED kind stores
        try:
            if kind not in UNCHECKED:
                ((products, distinct),) = query(database, "SELECT count(*), count(DISTINCT url) FROM product")
        except sqlite3.Error as exc:
            return RunResult.failed(label, kind, f"no product table: {exc}")
    finally:
        for path in database.parent.glob(f"{database.name}*"):
            path.unlink()
    return RunResult(
        label,
        kind,
        str(figures["status"]),
        int(figures["pages"]),
        products,
        distinct,
        float(figures["seconds"]),
        float(figures["cpu"]),
        float(figures["peak_rss"]),
        after - before if after is not None and before is not None else None,
        stolen,
    )


def run_rounds(
    args: argparse.Namespace, base_url: str, workdir: Path, site_cpu: Callable[[], float | None]
) -> list[RunResult]:
    results: list[RunResult] = []
    for label, kinds in ab_rounds(args.kinds, args.rounds, args.warmup):
        for kind in kinds:
            run = run_in_subprocess(args, kind, label, base_url, workdir / f"{kind}.db", site_cpu)
            print(f"  … round {label} {kind:<16} {run.pages:,} pages in {run.seconds:.2f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            results.append(run)
    return results


def correct_runs(results: Sequence[RunResult], kind: str, expected: int) -> list[RunResult]:
    """The measured runs of ``kind`` that passed their check: what the medians are of."""
    return [r for r in results if r.kind == kind and r.measured and not r.problem(expected)]


def summarise(results: Sequence[RunResult], expected: int) -> dict[str, Summary]:
    """Each kind's medians over its correct measured runs (``expected``: products per run),
    as latency.py's are: a timed-out run counted as 0 pages/s."""
    summaries = {}
    for kind in dict.fromkeys(r.kind for r in results):
        measured = sum(1 for r in results if r.kind == kind and r.measured)
        runs = correct_runs(results, kind, expected)
        busy = [r.site_busy for r in runs if r.site_busy is not None]
        summaries[kind] = Summary(
            kind,
            median([r.rate for r in runs]) if runs else None,
            median([r.cpu_ms_per_page for r in runs]) if runs else None,
            median([r.peak_rss for r in runs]) if runs else None,
            median(busy) if busy else None,
            len(runs),
            measured,
        )
    return summaries


@dataclass(frozen=True, slots=True)
class Paired:
    """One kind against a baseline, round by round. In a round the kinds run back to back,
    so a slow or fast spell of the machine moves both sides; the median of the per-round
    ratios is steadier than the ratio of two medians, which a spell in one kind's rounds
    alone can swing by 10% or more here."""

    ratios: tuple[float, ...]  # pages/s over the baseline's, per round
    cpu_deltas: tuple[float, ...]  # CPU ms/page minus the baseline's, per round

    @property
    def ratio(self) -> float:
        return median(self.ratios)

    @property
    def cpu_delta(self) -> float:
        return median(self.cpu_deltas)


def paired(results: Sequence[RunResult], kind: str, baseline: str, *, expected: int) -> Paired | None:
    """``kind`` against ``baseline`` in the measured rounds where both ran correctly
    (``expected``: products per run); None if there are none."""
    by_round: dict[str, dict[str, RunResult]] = {}
    for run in results:
        if run.measured and not run.problem(expected):
            by_round.setdefault(run.round, {})[run.kind] = run
    pairs = [(runs[kind], runs[baseline]) for runs in by_round.values() if kind in runs and baseline in runs]
    pairs = [(ours, base) for ours, base in pairs if ours.rate and base.rate]
    if not pairs:
        return None
    return Paired(
        tuple(ours.rate / base.rate for ours, base in pairs),
        tuple(ours.cpu_ms_per_page - base.cpu_ms_per_page for ours, base in pairs),
    )


def measure(args: argparse.Namespace, *, ceiling: bool = False) -> tuple[list[RunResult], str, Ceiling | None]:
    """Write and serve the site, run the rounds; returns the runs, the server's description
    and, with ``ceiling``, the server's fetch-only ceiling (measured before the rounds)."""
    from bench.site import measure_ceiling, serve_static, write_site

    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        site = write_site(workdir / "site", products=args.products, padding=args.padding)
        with serve_static(site.directory, server=args.server) as server:
            fetch_only = measure_ceiling(server.base_url, list(site.paths), server=server) if ceiling else None
            results = run_rounds(args, server.base_url, workdir, server.cpu_seconds)
            unit = "worker" if server.kind == "nginx" else "process"
            return results, f"{server.kind} ({server.processes} {unit})", fetch_only
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def target_verdict(kind: str, against: Paired | None, spider: str) -> str:
    """The target column of ``kind``'s row: the reference's targets are for our kinds
    crawling with the same spider as the reference (``--spider bench``); with the heavy
    spider our kinds do more work than the reference, so a verdict would mean nothing."""
    if kind not in TARGETS or against is None:
        return "-"
    if spider != "bench":
        return f"does not apply (--spider {spider})"
    met = against.ratio >= TARGETS[kind] and against.cpu_delta <= CPU_MARGIN_MS
    return f">= {TARGETS[kind]}x, +<= {CPU_MARGIN_MS} ms: {'met' if met else 'NOT met'}"


def pool_speedup_line(results: Sequence[RunResult], expected: int, spider: str) -> str | None:
    """The pool's speed-up over one process (``sqlite``), median of the per-round ratios as
    run.py takes it, with the 1.6x target judged on the parse-heavy crawl only (the target is
    about that crawl); None when the rounds had no correct pool and sqlite pair."""
    speedups = paired(results, "pool", "sqlite", expected=expected)
    if speedups is None:
        return None
    rounds = ", ".join(f"{ratio:.2f}x" for ratio in speedups.ratios)
    if spider == "heavy":
        verdict = "met" if speedups.ratio >= POOL_TARGET else "NOT met"
        target = f"target >= {POOL_TARGET}x: {verdict}"
    else:
        target = f"the {POOL_TARGET}x target is for --spider heavy"
    return f"pool over one process (sqlite): {speedups.ratio:.3f}x, median of the per-round ratios ({rounds}); {target}"


def report(args: argparse.Namespace, results: list[RunResult]) -> int:
    headers = ["round", "kind", "pages", "products", "distinct", "seconds", "pages/s", "CPU ms/page",
               "peak RSS MB", "site busy", "steal s", "check"]  # fmt: skip
    print(table(headers, [
        [r.round, r.kind, r.pages, r.products, r.distinct, r.seconds, r.rate, r.cpu_ms_per_page,
         r.peak_rss, r.site_busy, r.steal, r.check(args.products)] if r.has_figures else
        [r.round, r.kind, *[None] * (len(headers) - 3), r.check(args.products)]
        for r in results
    ]))  # fmt: skip
    summaries = summarise(results, args.products)
    rows = []
    for kind, s in summaries.items():
        against = paired(results, kind, "reference", expected=args.products)
        ratio = f"{against.ratio:.3f}" if against else "-"
        extra = f"{against.cpu_delta:+.3f}" if against else "-"
        verdict = target_verdict(kind, against, args.spider)
        rows.append([kind, f"{s.runs}/{s.measured}", s.rate, s.cpu_ms_per_page, s.peak_rss, s.site_busy, ratio,
                     extra, verdict])  # fmt: skip
    print("\nmedians of the correct measured runs (against the reference: medians of the per-round ratios and "
          "differences, in the rounds where both were correct):")  # fmt: skip
    print(table(["kind", "correct runs", "pages/s", "CPU ms/page", "peak RSS MB", "site busy", "x reference",
                 "CPU ms/page vs ref", "target"], rows))  # fmt: skip
    if args.spider != "bench" and "reference" in summaries and any(kind in TARGETS for kind in summaries):
        print(f"(with --spider {args.spider} our kinds parse more than the reference does: the reference's targets "
              "do not apply)")  # fmt: skip
    if line := pool_speedup_line(results, args.products, args.spider):
        print(line)
    failures = [r for r in results if r.problem(args.products)]
    for failure in failures:
        print(f"error: round {failure.round} {failure.kind}: {failure.problem(args.products)}", file=sys.stderr)
    return 1 if failures else 0


def uvloop_installed() -> bool:
    from scraper import runtime

    return runtime.uvloop_available()


def default_kinds() -> tuple[str, ...]:
    """``DEFAULT_KINDS``, less those that need uvloop when it is not installed: in a clone set
    up by the README's quick start (no ``fast`` extra) every round of the uvloop comparison
    failed, and so did the whole command."""
    return DEFAULT_KINDS if uvloop_installed() else tuple(kind for kind in DEFAULT_KINDS if kind not in UVLOOP_KINDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shop_arguments(parser, padding=20000)
    parser.add_argument("--kinds", default=",".join(default_kinds()),
                        help=f"comma-separated, of {', '.join(KINDS)} (default: %(default)s)")  # fmt: skip
    parser.add_argument("--spider", choices=("bench", "heavy"), default="bench", help="our kinds' spider")
    parser.add_argument(
        "--parse-processes", type=int, default=2, help="parse processes of the pool kind, at least 1 (default 2)"
    )
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto", help="the static server")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed for one run (default 900)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pages/s and CPU/page of our Engine against a hand-written loop, Scrapy and Crawlee (A/B/A/B).",
        epilog="Run from the repository root. The site and every crawl run in processes of their own.",
    )
    add_arguments(parser)
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return check_arguments(parser, args)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Every option's value checked before a site is written or a crawl started."""
    args.kinds = parse_kinds(parser, args.kinds, KINDS)
    if (wanting := [kind for kind in args.kinds if kind in UVLOOP_KINDS]) and not uvloop_installed():
        parser.error(f"--kinds: {', '.join(wanting)} needs uvloop, which is not installed (pip install -e '.[fast]')")
    if getattr(args, "one", None) and not (args.base_url and args.database):
        parser.error("--one needs --base-url and --database")
    check_shop_arguments(parser, args)
    check_minimums(parser, args, above={"--timeout": 0})
    # parse_processes 0 is the one-process crawl: a "pool" row measured without a pool
    if ("pool" in args.kinds or getattr(args, "one", None) == "pool") and args.parse_processes < 1:
        parser.error(f"--parse-processes must be at least 1 for the pool kind, not {args.parse_processes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_one(args)
    results, server, _ = measure(args)
    print(f"throughput: demo shop of {args.products:,} products (padding {args.padding:,}) served by {server}; "
          f"{plural(args.rounds, 'round')} + {plural(args.warmup, 'warm-up round')}, concurrency={args.concurrency}, "
          f"per_host.concurrency={args.per_host}, spider {args.spider}; {machine()}\n")  # fmt: skip
    return report(args, results)


if __name__ == "__main__":
    run_main(main)
