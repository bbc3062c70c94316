"""Helpers shared by the benchmark scripts: a site served from a separate process (so its
CPU and memory are not the crawler's), the crawler's own memory figures, medians and plain
text tables. Not a benchmark itself."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import sqlite3
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

AppFactory = Callable[..., web.Application]
"""A picklable top-level function that builds the site in the server process."""

_MB = 1024 * 1024


# -- the site, in its own process ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerReport:
    """What the server process says when it stops: requests answered, its CPU seconds."""

    requests: int
    cpu_seconds: float


class SiteProcess:
    """The running server process: its base URL, and the report it sends when stopped."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self._conn = conn
        self.report: ServerReport | None = None

    def stop(self) -> None:
        if not self.process.is_alive():
            return
        try:
            self._conn.send("stop")
            if self._conn.poll(10):
                requests, cpu = self._conn.recv()
                self.report = ServerReport(int(requests), float(cpu))
        except (EOFError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():  # did not stop in time: end it (it is our own child)
            self.process.terminate()
            self.process.join(5)


def start_server_process(
    target: Callable[..., None], args: tuple[Any, ...], name: str
) -> tuple[multiprocessing.process.BaseProcess, Connection, str]:
    """Spawn ``target(conn, *args)``, which must send its base URL (or an error text) on
    ``conn`` once it listens; returns the process, this side's connection and the URL."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child, *args), name=name, daemon=True)
    process.start()
    child.close()
    if not parent.poll(60):
        process.terminate()
        raise RuntimeError(f"{name} did not start within 60 s")
    message = parent.recv()
    if not isinstance(message, str) or not message.startswith("http"):
        process.join(5)
        raise RuntimeError(f"{name} failed to start: {message}")
    return process, parent, message


@contextmanager
def site_in_process(factory: AppFactory, *args: Any) -> Iterator[SiteProcess]:
    """Serve ``factory(*args)`` on 127.0.0.1 (a free port) in a spawned process; yields it
    once it listens. Its memory and CPU are not counted in this process's figures."""
    process, parent, base_url = start_server_process(_serve_main, (factory, args), "bench-site")
    site = SiteProcess(process, parent, base_url)
    try:
        yield site
    finally:
        site.stop()
        parent.close()


def _serve_main(conn: Connection, factory: AppFactory, args: tuple[Any, ...]) -> None:
    # Ctrl-C reaches the whole process group: the parent stops this process on its way out
    # (or it sees the pipe close), so no traceback of its own here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_serve(conn, factory, args))
    except BaseException as exc:  # tell the parent instead of leaving it waiting
        conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


async def _serve(conn: Connection, factory: AppFactory, args: tuple[Any, ...]) -> None:
    app = factory(*args)
    hits: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        hits["requests"] += 1
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        port = runner.addresses[0][1]
        conn.send(f"http://127.0.0.1:{port}")
        await asyncio.to_thread(_wait_for_stop, conn)
    finally:
        await runner.cleanup()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send((hits["requests"], usage.ru_utime + usage.ru_stime))


def _wait_for_stop(conn: Connection) -> None:
    with contextlib.suppress(EOFError):  # EOF: the parent went away
        conn.recv()


# -- this process's figures ------------------------------------------------------------------


def current_rss_mb() -> float | None:
    """VmRSS of this process now (Linux ``/proc/self/status``), in MB; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / _MB
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """The highest RSS this process has had (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MB if sys.platform == "darwin" else peak * 1024 / _MB


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def steal_seconds() -> float | None:
    """CPU time the hypervisor has taken from this machine's CPUs so far, summed over them
    (``steal`` in Linux's ``/proc/stat``); None where there is no such figure. On a shared
    VM it is what makes one round slower than the next for the same work."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def database_mb(path: Path) -> float:
    """The database with its WAL and shared-memory files, in MB."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            total += candidate.stat().st_size
    return total / _MB


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the crawl database after the crawl (synchronously: nothing else runs then)."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


# -- printing --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, right-aligned, that pastes cleanly into an issue."""
    cells = [[str(h) for h in headers], *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [" | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def machine() -> str:
    return f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {sys.platform}"


def ab_rounds(kinds: Sequence[str], rounds: int, warmup: int) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Each round's label and its kinds in running order: the warm-ups first ("warm-up 1"...),
    then the measured rounds ("1"...), A/B/C then C/B/A, so that no kind always runs right
    after the same other one, on a site or a machine it has just warmed."""
    for number in range(1 - warmup, rounds + 1):
        label = f"warm-up {number + warmup}" if number <= 0 else str(number)
        yield label, tuple(kinds) if number <= 0 or number % 2 else tuple(reversed(kinds))


def plural(count: int, word: str) -> str:
    """``count word`` with an s when it is not 1: "1 round", "5 rounds"."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


# -- the command line ------------------------------------------------------------------------


def add_shop_arguments(parser: argparse.ArgumentParser, *, padding: int) -> None:
    """The options every A/B benchmark on the demo shop shares (``check_shop_arguments``
    checks them)."""
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds, one run per kind each (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
    parser.add_argument("--products", type=int, default=2000, help="products in the demo shop (default 2000)")
    parser.add_argument(
        "--padding", type=int, default=padding, help=f"filler characters per product page (default {padding})"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="concurrency / workers (default 32)")
    parser.add_argument("--per-host", type=int, default=32, help="per_host.concurrency (default 32)")


SHOP_MINIMUMS: dict[str, float] = {
    "--rounds": 1,
    "--warmup": 0,
    "--products": 1,
    "--padding": 0,
    "--concurrency": 1,
    "--per-host": 1,
}
"""The least value of each option ``add_shop_arguments`` adds."""


def check_shop_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject the shared options' bad values before a site is written or a crawl started:
    a concurrency of 0 hung the reference until ``--timeout``, a negative padding was a
    traceback."""
    check_minimums(parser, args, at_least=SHOP_MINIMUMS)


def check_minimums(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    *,
    at_least: Mapping[str, float] | None = None,
    above: Mapping[str, float] | None = None,
) -> None:
    """``parser.error`` (exit 2, one line naming the option) for the first option whose value
    is below its ``at_least`` minimum or not above its ``above`` bound."""
    for option, minimum in (at_least or {}).items():
        if (value := _option_value(args, option)) < minimum:
            parser.error(f"{option} must be at least {minimum:g}, not {value:g}")
    for option, bound in (above or {}).items():
        if (value := _option_value(args, option)) <= bound:
            parser.error(f"{option} must be more than {bound:g}, not {value:g}")


def _option_value(args: argparse.Namespace, option: str) -> float:
    value: float = getattr(args, option.removeprefix("--").replace("-", "_"))
    return value


def parse_kinds(parser: argparse.ArgumentParser, text: str, known: Sequence[str], option: str = "--kinds") -> list[str]:
    """The comma-separated kinds of ``text``, each one of ``known``; ``parser.error`` for an
    unknown one or none at all (an empty list ran nothing and printed empty tables)."""
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    if not kinds:
        parser.error(f"{option}: name at least one kind, of {', '.join(known)}")
    if unknown := [kind for kind in kinds if kind not in known]:
        parser.error(f"{option}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    return kinds


# -- ending ----------------------------------------------------------------------------------


class Terminated(SystemExit):
    """Raised by the SIGTERM handler: it unwinds like Ctrl-C does, through every ``finally``
    and context manager, so servers are stopped and temporary directories removed."""


TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM
INTERRUPTED_EXIT = 128 + signal.SIGINT  # 130


def _on_sigterm(signum: int, frame: object) -> None:
    # a second SIGTERM while the first one's cleanup runs would cut it short (an nginx left
    # running, a directory left behind): ignore it; SIGKILL still ends the process
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(TERMINATED_EXIT)


def run_main(main: Callable[[], int]) -> NoReturn:
    """Run a script's ``main`` and exit with its code. By default SIGTERM ends Python at once,
    with no cleanup: nginx was left running (reparented to pid 1) and the temporary sites on
    disk. Here SIGTERM exits 143 after the cleanup, and Ctrl-C exits 130 with one line
    instead of a traceback."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = main()
    except Terminated:
        print(f"{_script()}: terminated (SIGTERM), cleaned up", file=sys.stderr)
        code = TERMINATED_EXIT
    except KeyboardInterrupt:
        print(f"{_script()}: interrupted, cleaned up", file=sys.stderr)
        code = INTERRUPTED_EXIT
    raise SystemExit(code)


def _script() -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "bench"
