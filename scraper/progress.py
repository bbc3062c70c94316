"""The live terminal view of a running crawl (pages, items, errors, rate, queue), refreshed a
few times a second on a terminal and silent elsewhere, plus the summary printed at the end."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from scraper.invocation import command_prefix
from scraper.schema import as_typed
from scraper.stats import SEEDING_CUT_SHORT, SEEDING_CUT_SHORT_SAYS, Stats

_REFRESH_SECONDS = 0.25
_EXAMPLE_CHARS = 240  # an error's first message in the summary, at most: the rest is in scraper_errors
_LABEL_WIDTH = len("database")  # the summary's longest label, which it always shows


class CrawlView(Protocol):
    """What the live view reads of a running crawl."""

    stats: Stats

    @property
    def pending(self) -> int: ...

    @property
    def in_flight(self) -> int: ...


def status_line(crawl: CrawlView, *, rate: float | None = None) -> Text:
    """One line for an 80-column terminal; ``rate``: pages a second lately (``RecentRate``),
    else the crawl's average."""
    stats = crawl.stats
    elapsed = max(stats.elapsed, 1e-9)
    pages = stats.get("pages")
    errors = stats.total("errors")
    return Text.assemble(
        f"{_counted(pages, 'page')} · {(pages / elapsed if rate is None else rate):,.0f}/s · ",
        (_counted(stats.get("items/stored"), "item"), "green"),
        " · ",
        (_counted(errors, "error"), "red" if errors else ""),
        f" · {crawl.pending:,} queued · {crawl.in_flight:,} fetching · {_clock(elapsed)}",
    )


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _clock(seconds: float) -> str:
    """``42s``, ``4m27s``, ``2h05m``: the line's width stays put as a crawl goes on."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


class RecentRate:
    """Pages a second over the last ``window`` seconds: the whole crawl's average said 426/s
    while a crawl held up by rests did 2."""

    def __init__(self, window: float = 10.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, pages: int) -> None:
        self._samples.append((now, pages))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()

    def per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (first, before), (last, after) = self._samples[0], self._samples[-1]
        return (after - before) / (last - first) if last > first else None


@asynccontextmanager
async def live_progress(crawl: CrawlView, console: Console) -> AsyncIterator[None]:
    """Show ``status_line`` while the body runs, if ``console`` is a terminal."""
    if not console.is_terminal:
        yield
        return
    with Live(status_line(crawl), console=console, transient=True, auto_refresh=False) as live:
        async with asyncio.TaskGroup() as group:
            refresher = group.create_task(_refresh(live, crawl))
            try:
                yield
            finally:
                refresher.cancel()


async def _refresh(live: Live, crawl: CrawlView) -> None:
    rate = RecentRate()
    while True:
        rate.add(time.monotonic(), crawl.stats.get("pages"))
        live.update(status_line(crawl, rate=rate.per_second()), refresh=True)
        await asyncio.sleep(_REFRESH_SECONDS)


def summary(
    *,
    spider: str,
    status: str,
    reason: str,
    stats: Stats,
    database: Path,
    elapsed: float | None = None,
    resume: str | None = None,
) -> Group:
    """What a user wants to see when a crawl ends: counts, rates, errors, where to look, and
    the command that resumes it (``resume``) when it stopped short."""
    seconds = elapsed if elapsed is not None else stats.elapsed
    pages = stats.get("pages")
    before = stats.get("resume/pages_before")  # a resumed crawl's, fetched by the runs before this one
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    cut_short = f"; {SEEDING_CUT_SHORT_SAYS}" if stats.get(SEEDING_CUT_SHORT) else ""
    table.add_row("crawl", f"{spider}: {status} ({reason}){cut_short}")
    this_run = pages - before
    rate = f"{this_run:,} in {seconds:,.1f}s = {this_run / max(seconds, 1e-9):,.0f} pages/s"
    table.add_row("pages", f"{pages:,} ({before:,} before this run; {rate})" if before else rate)
    tables = stats.items_by_table()
    table.add_row("items", ", ".join(f"{name}: {count:,}" for name, count in tables.items()) or "none")
    if dropped := stats.get("items/dropped"):
        table.add_row("dropped", _with_first(f"{dropped:,} items (by pipeline stages)", stats, "items/dropped"))
    if filtered := stats.under("requests/filtered"):  # why pages were not fetched: robots.txt, offsite...
        table.add_row("filtered", ", ".join(f"{reason}: {count:,}" for reason, count in filtered.items()))
    errors = stats.under("errors")
    if not errors:
        table.add_row("errors", "none")
    for row, (kind, count) in enumerate(errors.items()):  # each kind with its first message, if this run saw one
        table.add_row("" if row else "errors", _with_first(f"{kind}: {count:,}", stats, f"errors/{kind}"))
    if stalls := stats.get("loop/stalls"):  # see loop_watch: code that blocked the event loop
        worst = stats.get("loop/worst_stall_ms") / 1000
        times = "once" if stalls == 1 else f"{stalls:,} times"
        table.add_row("loop", f"held {times}, the worst {worst:,.1f}s: blocking code in a callback or stage")
    table.add_row("database", str(database))
    query = f"SELECT * FROM {as_typed(next(iter(tables), 'scraper_errors'))} LIMIT 5"
    commands = {"look": f"{command_prefix()} query --db {shlex.quote(str(database))} {shlex.quote(query)}"}
    if resume:
        commands["resume"] = resume
    return Group(table, *(_command_line(label, command) for label, command in commands.items()))


def _with_first(line: str, stats: Stats, key: str) -> Text:
    """``line``, and below it the first message of ``key`` that this run saw, if it saw one."""
    text = Text(line)
    if example := stats.examples.get(key):
        text.append(f"\n  first: {one_line(example, _EXAMPLE_CHARS)}", style="dim")
    return text


def _command_line(label: str, command: str) -> Text:
    """A command to copy, in line with the table's rows but outside it: a table cell wraps a
    long command over two lines, which then does not paste (print with ``soft_wrap=True``)."""
    line = Text("  ")
    line.append(f"{label:<{_LABEL_WIDTH}}", style="bold")
    line.append(f"    {command}")  # the table pads each cell by two on either side
    return line


def one_line(message: str, limit: int) -> str:
    """``message`` on one line (a pydantic error spans several), cut to ``limit`` characters."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
