"""Instructions a page, counted by valgrind's callgrind: a CPU cost that the machine's spells
do not move, for comparing kinds and commits when timings are too noisy to.

What it measures: the latency crawl of ``latency.py`` (its slow site, its spider) by each
kind, run under ``valgrind --tool=callgrind`` at two sizes: ``--pages`` and three times as
many, at ``--concurrency``. The difference of the two runs' instruction counts over the
difference of their pages is the cost of one page, with start-up (imports, schema) and the
end of the crawl cancelled out. Printed per kind: every thread, and the event loop's thread
alone (the SQLite writer's thread runs beside it, on another core when there is one).

How to read it: counts are user-space instructions (the kernel's work on syscalls is not
counted) and repeated runs agree within ~0.3%. Under valgrind a crawl runs ~60x slower, so
what runs on a timer (the collector's ticks, the progress of the loop budget) runs more
often per page than in a real crawl: compare kinds and commits with each other, not with
timed figures. Each run is checked like ``latency.py``'s: every page stored once.

Needs valgrind (``apt-get install valgrind``). Run from the repository root:
``python bench/instructions.py [--kinds memory,sqlite,reference] [--pages 1000]
[--concurrency 250]``; a kind runs in about a minute a thousand pages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, bench/

from bench._common import check_minimums, parse_kinds, run_main, table
from bench.latency import KINDS, RunResult, slow_site_in_process

LATENCY = Path(__file__).resolve().parent / "latency.py"
LARGER = 3  # the second run crawls this many times --pages


def counted_run(kind: str, base_url: str, pages: int, args: argparse.Namespace, workdir: Path) -> tuple[int, int]:
    """(instructions of every thread, of the event loop's thread) of one crawl of ``pages``."""
    out = workdir / f"{kind}-{pages}.callgrind"
    database = workdir / f"{kind}-{pages}.db"
    command = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
    command += [sys.executable, str(LATENCY), "--one", kind, "--base-url", base_url, "--database", str(database)]
    command += ["--pages", str(pages), "--concurrency", str(args.concurrency)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"{kind}, {pages} pages: exit {done.returncode} under valgrind")
    if problem := RunResult("counted", kind, **json.loads(lines[-1])).problem(pages):
        raise SystemExit(f"{kind}, {pages} pages: not a correct crawl under valgrind: {problem}")
    threads = [_instructions(path) for path in sorted(workdir.glob(f"{out.name}-*"))]  # -01 is the main thread
    return sum(threads), threads[0]


def _instructions(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no summary line in {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="memory,sqlite,reference", help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--pages", type=int, default=1000, help="pages of the smaller run (default 1000)")
    parser.add_argument("--concurrency", type=int, default=250, help="requests in flight (default 250)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the site waits before answering")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for one run")
    args = parser.parse_args(argv)
    kinds = parse_kinds(parser, args.kinds, KINDS)
    at_least = {"--pages": 1, "--concurrency": 1, "--delay": 0}
    check_minimums(parser, args, at_least=at_least, above={"--timeout": 0})
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    per_page: list[tuple[str, float, float]] = []  # kind, every thread, the loop's thread
    with (
        tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp,
        slow_site_in_process(args.delay, "raw") as site,
    ):
        for kind in kinds:
            small_all, small_main = counted_run(kind, site.base_url, args.pages, args, Path(tmp))
            large_all, large_main = counted_run(kind, site.base_url, LARGER * args.pages, args, Path(tmp))
            pages = (LARGER - 1) * args.pages
            per_page.append((kind, (large_all - small_all) / pages, (large_main - small_main) / pages))
            print(f"  … {kind}: {per_page[-1][1]:,.0f} instructions a page", file=sys.stderr, flush=True)
    first = per_page[0][1]
    print(f"latency crawl, {args.pages:,} and {LARGER * args.pages:,} pages at concurrency {args.concurrency}:")
    headers = ["kind", "instructions/page", "event loop thread", f"x {kinds[0]}"]
    print(table(headers, [[kind, every, loop, every / first] for kind, every, loop in per_page]))
    return 0


if __name__ == "__main__":
    run_main(main)
