"""Calls or bytecodes per page: a deterministic view of the hot path, for changes too small
for the timings to show (they move 10-25% between runs here, while one call costs some
50-100 ns and one bytecode some 20 ns).

Each kind crawls the static shop once, in a subprocess of its own, with every Python call
and every call into C counted (``sys.setprofile``), or with ``--count bytecodes`` every
bytecode the event loop's thread executes (``sys.settrace`` with opcode events; ~20x
slower). Printed: counts per page by module, the kinds side by side, then the functions
whose counts differ most between the first two kinds. A call into C is charged to the
module that made it. All kinds run on asyncio's own loop by default, so that the loop's
Python code counts alike on every side. Nothing is timed.

Why bytecodes as well as calls: sampled in a real crawl (``perf`` at 2 kHz), the
interpreter's loop took ~60% more time per page in our crawl than in the reference, in
step with its bytecodes per page, while callgrind's instruction counts differed by only ~5%:
under callgrind a crawl runs ~50x slower, so its batches, loop turns and timed collections
are not those of a real crawl.

    python bench/calls.py                                # reference, then sqlite
    python bench/calls.py --kinds sqlite,memory --top 40
    python bench/calls.py --count bytecodes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: scraper/, spiders/, bench/

from bench._common import check_minimums, parse_kinds, run_main, table

THIS = Path(__file__).resolve()
ROOT = THIS.parent.parent


def module_of(filename: str) -> str:
    """A short name for the module a code object comes from: a package in site-packages, a
    path in this repository, or a module of the standard library. site-packages first: the
    venv is often inside the repository (``.venv/``), and its packages are one row each, not
    one row per file."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename.startswith(str(ROOT) + "/"):
        return filename[len(str(ROOT)) + 1 :]
    if filename.startswith("<"):
        return filename  # generated code: dataclass __init__s are "<string>"
    return "stdlib " + Path(filename).stem


def count_one(args: argparse.Namespace) -> dict[str, float]:
    """Crawl once as ``args.one`` with every call counted; returns calls per page, keyed
    ``module:function`` (Python) or ``module -> C name`` (calls into C)."""
    from bench import throughput
    from scraper import runtime

    crawl_args = throughput.parse_args(["--one", args.one, "--base-url", args.base_url, "--database", args.database])
    throughput._load_modules(args.one)
    counts: Counter[tuple[str, str]] = Counter()
    names: dict[str, str] = {}  # filename -> module, computed once per file

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            filename = code.co_filename
            counts[(names.get(filename) or names.setdefault(filename, module_of(filename)), code.co_name)] += 1
        elif event == "c_call":
            filename = frame.f_code.co_filename
            module = names.get(filename) or names.setdefault(filename, module_of(filename))
            counts[(module, "-> " + getattr(arg, "__qualname__", repr(arg)))] += 1

    def trace(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        """A new frame: count its bytecodes under its function's key."""
        frame.f_trace_opcodes = True
        filename = frame.f_code.co_filename
        key = (names.get(filename) or names.setdefault(filename, module_of(filename)), frame.f_code.co_name)

        def count_opcode(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
            if event == "opcode":
                counts[key] += 1
            return count_opcode

        return count_opcode

    async def crawl() -> tuple[str, int]:
        if args.count == "bytecodes":
            sys.settrace(trace)
        else:
            sys.setprofile(profile)
        try:
            return await throughput._crawl(crawl_args, Path(args.database))
        finally:
            sys.settrace(None)
            sys.setprofile(None)

    status, pages = runtime.run(crawl(), event_loop=args.event_loop)
    if status not in ("finished", "ok") or not pages:
        raise SystemExit(f"{args.one}: the crawl ended {status!r} after {pages} pages")
    return {f"{module}:{function}": count / pages for (module, function), count in counts.items()}


def run_kind(args: argparse.Namespace, kind: str, base_url: str, workdir: Path) -> dict[str, float]:
    command = [sys.executable, str(THIS), "--one", kind, "--base-url", base_url, "--count", args.count,
               "--database", str(workdir / f"{kind}.db"), "--event-loop", args.event_loop]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind}: exit {done.returncode}\n{done.stderr[-2000:]}")
    counts: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


def by_module(counts: dict[str, float]) -> defaultdict[str, float]:
    modules: defaultdict[str, float] = defaultdict(float)
    for key, per_page in counts.items():
        modules[key.split(":", 1)[0]] += per_page
    return modules


def report(kinds: list[str], results: dict[str, dict[str, float]], top: int, unit: str = "calls") -> None:
    totals = [sum(results[kind].values()) for kind in kinds]
    print(f"{unit} per page: " + ", ".join(f"{kind} {total:,.0f}" for kind, total in zip(kinds, totals, strict=True)))
    modules = {kind: by_module(results[kind]) for kind in kinds}
    names = sorted(set().union(*modules.values()), key=lambda name: -max(modules[kind][name] for kind in kinds))
    rows = [[name, *(modules[kind][name] for kind in kinds)] for name in names[:top]]
    heading = "module (calls into C charged to their caller)" if unit == "calls" else "module"
    print(table([heading, *kinds], rows))
    if len(kinds) < 2:
        return
    first, second = kinds[0], kinds[1]
    keys = set(results[first]) | set(results[second])
    difference = {key: results[second].get(key, 0.0) - results[first].get(key, 0.0) for key in keys}
    largest = sorted(keys, key=lambda key: -abs(difference[key]))[:top]
    print(f"\nlargest differences, {second} minus {first} ({unit} per page):")
    print(table(["function", first, second, "difference"],
                [[key, results[first].get(key, 0.0), results[second].get(key, 0.0), difference[key]]
                 for key in largest]))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kinds", default="reference,sqlite", help="comma-separated (default: %(default)s)")
    parser.add_argument("--products", type=int, default=2000, help="products in the demo shop (default 2000)")
    parser.add_argument("--padding", type=int, default=20000, help="filler characters per product page")
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto", help="the static server")
    parser.add_argument("--event-loop", choices=("asyncio", "auto"), default="asyncio",
                        help="asyncio for every kind (default), or auto: each kind on the loop it runs on")  # fmt: skip
    parser.add_argument("--top", type=int, default=25, help="rows of each table (default 25)")
    parser.add_argument("--count", choices=("calls", "bytecodes"), default="calls", help="calls (default) or bytecodes")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(count_one(args)))
        return 0

    from bench.site import serve_static, write_site
    from bench.throughput import COMPETITORS, KINDS

    # ours and the reference's only: the competitors run in a venv of their own
    kinds = parse_kinds(parser, args.kinds, [kind for kind in KINDS if kind not in COMPETITORS])
    check_minimums(parser, args, at_least={"--products": 1, "--padding": 0, "--top": 1})
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as directory:
        workdir = Path(directory)
        site = write_site(workdir / "site", products=args.products, padding=args.padding)
        with serve_static(site.directory, server=args.server) as server:
            results = {kind: run_kind(args, kind, server.base_url, workdir) for kind in kinds}
    report(kinds, results, args.top, args.count)
    return 0


if __name__ == "__main__":
    run_main(main)
