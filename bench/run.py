"""Every performance benchmark in one command, and the table for the README.

``python bench/run.py`` (from the repository root, after ``pip install -e .``; with ``'.[fast]'``
our crawls and one row of the reference run on uvloop) runs, in this order, each part
printing its own per-run table:

1. the static site's ceiling: a fetch-only aiohttp client, no parsing (``bench/site.py``),
   measured before the throughput rounds; its table opens the throughput section's output;
2. throughput, A/B/A/B: the hand-written reference loop (on asyncio's loop, and on uvloop when installed),
   our framework with the SQLite and the in-memory frontier, Scrapy and Crawlee, all storing
   every product of the same static shop (``bench/throughput.py``; Scrapy and Crawlee are
   installed into ``bench/competitors/.venv`` on first use);
3. all cores: the parse-heavy spider on one core against ``parse_processes`` (same file);
4. memory on a big crawl: a 20,000-product crawl with the SQLite frontier, its peak RSS;
5. latency-bound scale: 10,000 pages answered after 1 s each, at concurrency 5,000, with
   the event loop's lag sampled (``bench/latency.py``).

Then one Markdown summary: the crawlers' medians and ratios, and each target of the
performance issue with the figure measured in this run. Exit code 1 when any run stored
something wrong (a product missing or twice); timings never fail the command.
``--quick`` runs one round on smaller sites (a smoke test of the harness, not figures); with
``--rounds N`` as well, N rounds on the small sites.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, spiders/, bench/

from bench import latency, throughput
from bench._common import check_minimums, machine, median, plural, run_main, table
from bench.site import CEILING_HEADERS, Ceiling, ceiling_row

LABELS = {
    "reference": "hand-written aiohttp + selectolax + SQLite loop",
    "reference+uvloop": "the same loop on uvloop",
    "sqlite": "**scraper**, durable SQLite frontier",
    "memory": "**scraper**, in-memory frontier",
    "scrapy": "Scrapy 2.19 (asyncio reactor)",
    "crawlee": "Crawlee for Python 1.11 (parsel, memory storage)",
}
BIG_CRAWL_PRODUCTS = 20_000
HEAVY_PRODUCTS = 5_000  # long enough that starting the parse processes (~1 s of CPU) is not the story
RSS_TARGET_MB = 100.0
MULTICORE_TARGET = throughput.POOL_TARGET
DEFAULT_ROUNDS = 9


def section(title: str) -> None:
    print(f"\n{'=' * 100}\n{title}\n{'=' * 100}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and print the README's performance table.")
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"measured rounds of each A/B comparison, at least 1 (default {DEFAULT_ROUNDS}, 1 with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sites and one round (unless --rounds): checks the harness only"
    )
    parser.add_argument("--no-competitors", action="store_true", help="skip Scrapy and Crawlee (no bench venv)")
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto", help="the static server")
    parser.add_argument("--markdown", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)
    # checked here, before anything runs: left to throughput.py's parser, a bad value printed
    # a section header, then that parser's usage under run.py's name
    if args.rounds is not None:
        check_minimums(parser, args, at_least={"--rounds": 1})
    # an explicit --rounds wins over --quick's one round: asking for both is asking for small
    # sites with a few rounds, to see the ratios' spread quickly, not for a contradiction
    rounds = str(args.rounds if args.rounds is not None else 1 if args.quick else DEFAULT_ROUNDS)
    products = "300" if args.quick else "2000"
    skipped = throughput.COMPETITORS if args.no_competitors else ()
    kinds = [kind for kind in throughput.default_kinds() if kind not in skipped]
    common = ["--server", args.server, "--products", products]
    failures = 0

    section("1-2. fetch-only ceiling, then throughput: same shop, same work, A/B/A/B")
    main_args = throughput.parse_args([*common, "--rounds", rounds, "--kinds", ",".join(kinds)])
    runs, server, ceiling = throughput.measure(main_args, ceiling=True)
    if ceiling is not None:
        print(f"the static site's ceiling, measured before the rounds ({server}):")
        print(table(CEILING_HEADERS, [ceiling_row(server, ceiling)]) + "\n")
    failures += throughput.report(main_args, runs)
    crawlers = throughput.summarise(runs, int(products))

    section("3. all cores: the parse-heavy spider, on the event loop vs parse_processes=2")
    heavy_products = "1000" if args.quick else str(HEAVY_PRODUCTS)
    heavy_args = throughput.parse_args(["--server", args.server, "--products", heavy_products, "--rounds", rounds,
                                        "--kinds", "sqlite,pool", "--spider", "heavy"])  # fmt: skip
    heavy_runs, _, _ = throughput.measure(heavy_args)
    failures += throughput.report(heavy_args, heavy_runs)
    heavy = throughput.summarise(heavy_runs, int(heavy_products))

    big = "2000" if args.quick else str(BIG_CRAWL_PRODUCTS)
    section(f"4. memory: one {int(big):,}-product crawl with the SQLite frontier")
    big_args = throughput.parse_args(["--server", args.server, "--products", big, "--rounds", "1", "--warmup", "0",
                                      "--kinds", "sqlite"])  # fmt: skip
    big_runs, _, _ = throughput.measure(big_args)
    failures += throughput.report(big_args, big_runs)

    section("5. latency-bound: pages answered after 1 s each, at high concurrency")
    latency_options = ["--rounds", rounds] + (["--pages", "2000", "--concurrency", "1000"] if args.quick else [])
    latency_args = latency.parse_args(latency_options)
    latency_runs = latency.measure(latency_args)
    failures += latency.report(latency_args, latency_runs)

    summary = render_summary(
        server=server,
        ceiling=ceiling,
        crawlers=crawlers,
        crawler_runs=runs,
        heavy=heavy,
        heavy_runs=heavy_runs,
        heavy_products=int(heavy_products),
        big=big_runs,
        big_products=int(big),
        latency_args=latency_args,
        latency_runs=latency_runs,
        rounds=int(rounds),
        products=int(products),
    )
    section("summary (Markdown, for the README)")
    print(summary)
    if args.markdown:
        args.markdown.write_text(summary + "\n", encoding="utf-8")
    return 1 if failures else 0


def render_summary(
    *,
    server: str,
    ceiling: Ceiling | None,
    crawlers: dict[str, throughput.Summary],
    crawler_runs: list[throughput.RunResult],
    heavy: dict[str, throughput.Summary],
    heavy_runs: list[throughput.RunResult],
    heavy_products: int,
    big: list[throughput.RunResult],
    big_products: int,
    latency_args: argparse.Namespace,
    latency_runs: list[latency.RunResult],
    rounds: int,
    products: int,
) -> str:
    with_scrapy = any(r.kind == "scrapy" for r in crawler_runs)  # no "x Scrapy" column of dashes without it
    lines = [
        f"Measured by `python bench/run.py` on {machine()}, our crawls on {_event_loop()}; the shop "
        f"({products:,} products, ~20 KB pages) served by {server}; medians of the correct runs of "
        f"{plural(rounds, 'A/B round')} (the x columns: medians of the per-round ratios).",
        "",
        "| crawler | pages/s | CPU ms/page | peak RSS MB | x reference |" + (" x Scrapy |" if with_scrapy else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if with_scrapy else ""),
    ]
    if ceiling is not None:
        lines.append(
            f"| fetch only, no parse (aiohttp; the server's ceiling) | {ceiling.rate:,.0f} | "
            f"{ceiling.client_ms_per_request:.2f} | - | - |" + (" - |" if with_scrapy else "")
        )
    for kind, label in LABELS.items():
        s = crawlers.get(kind)
        if s is None:
            continue
        cells = [_number(s.rate, "{:,.0f}"), _number(s.cpu_ms_per_page, "{:.2f}"), _number(s.peak_rss, "{:.0f}")]
        against = throughput.paired(crawler_runs, kind, "reference", expected=products)
        cells.append(f"{against.ratio:.2f}" if against else "-")
        if with_scrapy:
            against = throughput.paired(crawler_runs, kind, "scrapy", expected=products)
            cells.append(f"{against.ratio:.1f}" if against else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]

    def target(name: str, measured: str, met: bool | None) -> None:
        lines.append(f"| {name} | {measured} | {'yes' if met else 'no' if met is not None else '-'} |")

    spreads = []
    for kind, wanted in throughput.TARGETS.items():
        against = throughput.paired(crawler_runs, kind, "reference", expected=products)
        if against:
            ratio, extra = against.ratio, against.cpu_delta
            target(
                f"{kind} frontier: pages/s >= {wanted}x the reference",
                _figure(ratio, wanted, "{:.2f}x"),
                ratio >= wanted,
            )
            margin = throughput.CPU_MARGIN_MS
            target(
                f"{kind} frontier: CPU/page <= reference + {margin} ms",
                _figure(extra, margin, "{:+.2f} ms"),
                extra <= margin,
            )
            spreads.append(f"{kind} frontier {_rounds(against.ratios)} the reference")
    big_correct = throughput.correct_runs(big, "sqlite", big_products)
    peak = max((r.peak_rss for r in big_correct), default=0.0)
    target(
        f"peak RSS on a {big_products:,}-product crawl < {RSS_TARGET_MB:.0f} MB",
        f"{peak:.0f} MB" if big_correct else "no correct run",
        peak < RSS_TARGET_MB if big_correct else None,
    )
    if floor := latency.correct_runs(latency_runs, "fetch", latency_args.pages):
        target(
            f"for scale: aiohttp fetching the same {latency_args.pages:,} pages alone here "
            "(no parsing, no storage, automatic GC off)",
            f"{median([r.seconds for r in floor]):.2f} s",
            None,
        )
    for kind in ("sqlite", "memory"):
        if runs := latency.correct_runs(latency_runs, kind, latency_args.pages):
            seconds = median([r.seconds for r in runs])
            worst = max(r.max_lag for r in runs)
            target(
                f"{latency_args.pages:,} pages x 1 s at concurrency {latency_args.concurrency:,} ({kind}): "
                f"< {latency.TARGET_SECONDS:g} s, loop lag < {latency.TARGET_LAG_MS:g} ms",
                f"{seconds:.2f} s, worst lag {worst:.0f} ms",
                seconds < latency.TARGET_SECONDS and worst < latency.TARGET_LAG_MS,
            )
    single, pooled = heavy.get("sqlite"), heavy.get("pool")
    speedups = throughput.paired(heavy_runs, "pool", "sqlite", expected=heavy_products)
    # paired found a correct round of each, so both summaries have figures
    if single and pooled and speedups and single.rate and pooled.rate and single.cpu_ms_per_page is not None:
        speedup = speedups.ratio
        spreads.append(f"parse_processes=2 {_rounds(speedups.ratios)} one process")
        target(
            f"parse-heavy crawl ({heavy_products:,} products, {single.cpu_ms_per_page:.1f} CPU ms/page), "
            f"parse_processes=2 vs one process: >= {MULTICORE_TARGET}x",
            _figure(speedup, MULTICORE_TARGET, "{:.2f}x") + f" ({single.rate:,.0f} -> {pooled.rate:,.0f} pages/s)",
            speedup >= MULTICORE_TARGET,
        )
    if spreads:
        lines += ["", "Round by round: " + "; ".join(spreads) + "."]
    return "\n".join(lines)


def _event_loop() -> str:
    """The loop our crawls ran on (``event_loop: auto``): where uvloop is missing, the table
    says so, as it has no uvloop row then."""
    if throughput.uvloop_installed():
        return "uvloop"
    return "asyncio's loop (uvloop is not installed: pip install -e '.[fast]')"


def _figure(value: float, limit: float, template: str) -> str:
    """``value`` in ``template`` (two decimals), with three when it rounds to its target's
    ``limit`` without being it: "1.60x" beside "no" (a 1.597x) reads as a mistake."""
    if round(value, 2) == limit and value != limit:
        template = template.replace(".2f", ".3f")
    return template.format(value)


def _number(value: float | None, template: str) -> str:
    """A summary cell: "-" for a kind without a correct run, not a 0 or nan."""
    return "-" if value is None else template.format(value)


def _rounds(ratios: tuple[float, ...]) -> str:
    return "at " + ", ".join(f"{ratio:.2f}x" for ratio in ratios)


if __name__ == "__main__":
    run_main(main)
