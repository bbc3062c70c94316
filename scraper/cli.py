"""The ``scraper`` command line: parses arguments, sets up logging, runs one command inside
one ``asyncio.run``, and turns expected errors into one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console, Group, RenderableType
from rich.logging import RichHandler
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from scraper import __version__, runtime
from scraper.crawls import RESUMABLE
from scraper.demo_site import build_catalog, make_app, serve
from scraper.engine import CrawlResult, Engine
from scraper.errors import ConfigError, OpenFailed, ScraperError, SpiderNotFound, WriteFailed
from scraper.invocation import command_prefix
from scraper.output import Output
from scraper.progress import live_progress, summary
from scraper.project import Project
from scraper.query import run_query, tables_overview
from scraper.ratelimit import describe_policy
from scraper.schema import as_typed
from scraper.settings import Settings
from scraper.spider import SPIDER_LOGGERS, Spider
from scraper.stats import SEEDING_CUT_SHORT
from scraper.status import read_status
from scraper.status import render as render_status

logger = logging.getLogger(__name__)
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# SIGHUP: the terminal closed under the crawl (an ssh session dropped); it had killed the crawl
# outright. Under nohup it stays ignored.
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
QUERY_ROWS = 1_000  # rows ``query`` shows unless told otherwise: a look, not an export
_CHATTY_LIBRARIES = ("aiosqlite", "filelock")
_BLOB_SHOWN = 16  # bytes of a BLOB ``query`` shows
_READABLE_CELL = 24  # characters each column needs for ``query`` to show a table, not records
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# No markup: what is printed holds the crawl's data (scraped text, URLs, spider names, error
# messages), in which "[/b]" is text, not a tag for rich to apply or to fail on.
out = Console(file=Output("stdout"), markup=False)  # type: ignore[arg-type]  # a text stream by its methods
err = Console(file=Output("stderr"), stderr=True, markup=False)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        code: int = args.command(args)
        return code
    except KeyboardInterrupt:  # Ctrl-C before a crawl takes the signals over (its spiders importing)
        return _SIGNAL_EXIT[signal.SIGINT]
    except OpenFailed as exc:  # the user's own hook: its traceback is theirs to read, on request
        logger.debug("the traceback of %s", exc, exc_info=exc.__cause__)
        _print_error(f"{exc} (--log-level DEBUG shows the traceback)")
        return EXIT_FAILED
    except WriteFailed as exc:  # not bad input: the crawl failed (its row says so)
        _print_error(f"{exc}; what was committed before is kept")
        return EXIT_FAILED
    except ScraperError as exc:
        _print_error(str(exc))
        return EXIT_USAGE


def _print_error(message: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(message), highlight=False, soft_wrap=True)


_NOT_BUILT = "not built yet"
_SCRAPY_COMMANDS = {
    "crawl": "Scrapy's 'crawl' is 'run' here: python -m scraper run NAME",
    "runspider": "put the spider in spiders/ and run it by name: python -m scraper run NAME",
    "startproject": f"a project is a folder with spiders/ and config.yaml (the README's tutorial); {_NOT_BUILT}",
    "genspider": f"a spider is a module in spiders/ (the README's tutorial); {_NOT_BUILT}",
    # what to use meanwhile: a page saved to a file and a Response made of it (the tutorial's
    # check_quotes.py) tries selectors and callbacks with nothing stored
    "shell": "try selectors on a saved page: Response(url=..., body=...).css(...) (the README's tutorial); "
    + _NOT_BUILT,
    "fetch": f"save the page (curl -o page.html URL) and try selectors on it (the README's tutorial); {_NOT_BUILT}",
    "parse": f"run_callback runs one callback on a saved page, storing nothing (the README's tutorial); {_NOT_BUILT}",
    "view": f"save the page (curl -o page.html URL) and open the file in a browser; {_NOT_BUILT}",
    "version": "python -m scraper --version",
    # this project's own, planned: the README lists them as not built yet
    "export": f'the items are in the crawl\'s SQLite file: python -m scraper query SPIDER "SELECT ..."; {_NOT_BUILT}',
    "new": f"a spider is a module in spiders/ (the README's tutorial); {_NOT_BUILT}",
    "report": f"python -m scraper status SPIDER shows a crawl's progress; {_NOT_BUILT}",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with what to type instead when the command is one of Scrapy's."""

    def error(self, message: str) -> NoReturn:
        if message == "the following arguments are required: COMMAND":  # no command: which there are
            self.print_help(sys.stderr)
            self.exit(EXIT_USAGE)
        for name, hint in _SCRAPY_COMMANDS.items():
            if message.startswith(f"argument COMMAND: invalid choice: {name!r}"):
                message = f"{message}: {hint}"
        if message.startswith("unrecognized arguments:") and {"-o", "-O"} & set(message.split()):
            message += " (Scrapy's feed output: the items are in the crawl's SQLite file, read with 'query')"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scraper", description="An asyncio-native scraping framework.")
    parser.add_argument("--version", action="version", version=f"scraper {__version__}")
    _add_global_options(parser, config=None, log_level=None)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        subparser = commands.add_parser(name, help=help)
        # after the command too; set only when given there, so one given before it stands
        _add_global_options(subparser, config=argparse.SUPPRESS, log_level=argparse.SUPPRESS)
        return subparser

    run = command("run", help="crawl with a spider and store what it finds")
    run.add_argument("spider", help="the spider's name (python -m scraper list shows them)")
    _add_crawl_options(run)
    run.add_argument(
        "-a", dest="arguments", action="append", default=[], metavar="K=V",
        help="a spider argument, given to the spider as an attribute (repeatable)",
    )  # fmt: skip
    run.set_defaults(command=command_run)

    listing = command("list", help="spiders with their start URLs")
    listing.set_defaults(command=command_list)

    query = command("query", help="read-only SQL on a crawl database, printed as a table")
    query.add_argument(
        "target",
        nargs="*",
        metavar="SPIDER [SQL] | --db PATH [SQL]",
        help="the spider whose database to read (or --db PATH), and one SQL statement; without SQL, the tables",
    )
    query.add_argument("--db", type=Path, help="database file (instead of a spider name)")
    query.add_argument(
        "--rows",
        type=whole_number,
        default=QUERY_ROWS,
        metavar="N",
        help=f"rows shown at most (default {QUERY_ROWS:,}; 0: all)",
    )
    query.set_defaults(command=command_query)

    status = command("status", help="a live or the last crawl: requests per host, items, errors, rate")
    status.add_argument("spider", nargs="?", help="spider name (or --db PATH)")
    status.add_argument("--db", type=Path, help="database file (instead of a spider name)")
    status.add_argument("--crawl", type=int, metavar="ID", help="crawl id (default: the latest)")
    status.set_defaults(command=command_status)

    demo = command("demo", help="serve the bundled demo shop offline and crawl it")
    _add_crawl_options(demo, fresh=False)  # each demo serves a new shop: always a new crawl
    demo.add_argument("--products", type=demo_size, default=600, help="size of the demo shop (default 600)")
    demo.set_defaults(command=command_demo)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, config: object, log_level: object) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=config,
        help="project config file (default: config.yaml here or in the nearest folder above)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=log_level,
        help="for everything (default: WARNING, and INFO for the spiders' self.logger)",
    )


def whole_number(text: str) -> int:
    """A count given on the command line: 0 or more (argparse reports a ValueError itself)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is below 0")
    return value


DEMO_MOST = 100_000  # products the demo shop holds at most: it is built in memory (~5 s and 60 MB at this size)


def demo_size(text: str) -> int:
    """``--products``: 100,000,000 grew the demo's memory ~50 MB a second before any word."""
    value = whole_number(text)
    if value > DEMO_MOST:
        raise argparse.ArgumentTypeError(f"the demo shop holds at most {DEMO_MOST:,} products, not {value:,}")
    return value


def _add_crawl_options(parser: argparse.ArgumentParser, *, fresh: bool = True) -> None:
    parser.add_argument(
        "-s", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="a setting, over config.yaml and the spider's (repeatable; e.g. -s per_host.delay=1)",
    )  # fmt: skip
    parser.add_argument("--db", type=Path, help="database file (default: setting 'database')")
    if fresh:
        parser.add_argument(
            "--fresh", action="store_true", help="start a new crawl instead of resuming an unfinished one"
        )


def _configure_logging(level: str | None) -> None:
    """``level`` for every logger; none given, WARNING, but INFO for the spiders' own
    ``self.logger`` (a Scrapy user's ``self.logger.info(...)`` lines were silently dropped)."""
    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
        line = "%(name)s: %(message)s"
    else:  # a file or a pipe (cron, CI): one line a record, as rich wrapped them at 80 columns
        handler = logging.StreamHandler(sys.stderr)
        line = "%(levelname)-8s %(name)s: %(message)s"
    logging.basicConfig(level=level or "WARNING", format=line, handlers=[handler], force=True)
    logging.getLogger(SPIDER_LOGGERS).setLevel(logging.NOTSET if level else logging.INFO)
    for chatty in _CHATTY_LIBRARIES:  # at DEBUG they log every SQL statement, every lock taken
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLogger().level))


def _parse_arguments(pairs: Sequence[str]) -> dict[str, str]:
    arguments = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ScraperError(f"-a {pair!r}: expected KEY=VALUE")
        arguments[key] = value
    return arguments


def _make_spider(spider_class: type[Spider], arguments: dict[str, str]) -> Spider:
    """The spider, given its ``-a`` arguments; a constructor that refuses them (a missing or
    misspelt argument, a bad value) is a one-line error naming the spider."""
    try:
        return spider_class(**arguments)
    except ConfigError:
        raise
    except Exception as exc:
        given = " ".join(f"-a {key}=..." for key in arguments) or "no -a arguments"
        raise ConfigError(f"spider {spider_class.name!r} could not be created with {given}: {exc}") from None


def command_run(args: argparse.Namespace) -> int:
    project = Project.load(args.config, args.settings)
    spider_class = project.spider_class(args.spider)
    settings = project.settings(spider_class)
    arguments = _parse_arguments(args.arguments)
    spider = _make_spider(spider_class, arguments)
    database = args.db or project.database(spider_class)
    engine = Engine(
        spider=spider,
        settings=settings,
        database=database,
        fresh=args.fresh,
        arguments=arguments,
        notify=_notifier(settings),
    )
    result, code = runtime.run(_crawl(engine), event_loop=settings.event_loop)
    resumable = result.status in RESUMABLE and settings.frontier.backend == "sqlite"
    _report(result, spider.name, resume=_resume_command(args) if resumable else None)
    return code


def _resume_command(args: argparse.Namespace) -> str:
    """The ``run`` command as it was given, less ``--fresh``: what resumes the crawl."""
    words = []
    if args.config is not None:
        words += ["--config", str(args.config)]
    words += ["run", args.spider]
    words += [word for pair in args.arguments for word in ("-a", pair)]
    words += [word for pair in args.settings for word in ("-s", pair)]
    if args.db:
        words += ["--db", str(args.db)]
    return f"{command_prefix()} {shlex.join(words)}"


def command_demo(args: argparse.Namespace) -> int:
    project = Project.load(args.config, args.settings)
    try:
        spider_class = project.spider_class("demo_shop")
    except SpiderNotFound as exc:
        raise SpiderNotFound(f"{exc}: demo runs in the framework's repository, whose spiders/ holds it") from None
    settings = project.settings(spider_class)
    database = args.db or project.database(spider_class)

    async def serve_and_crawl() -> tuple[tuple[CrawlResult, int], int]:
        catalog = build_catalog(args.products)
        async with serve(make_app(catalog)) as base_url:
            err.print(f"demo shop with {len(catalog.products):,} products at {base_url}", highlight=False)
            spider = spider_class(base_url=base_url)
            # the shop gets a new port each time, so an old demo crawl cannot be resumed
            engine = Engine(spider=spider, settings=settings, database=database, fresh=True, notify=_notifier(settings))
            return await _crawl(engine), len(catalog.products)

    (result, code), expected = runtime.run(serve_and_crawl(), event_loop=settings.event_loop)
    _report(result, "demo_shop")
    stored = result.stats.get("items/product")
    out.print(f"stored {stored:,} of the shop's {expected:,} products", highlight=False)
    return code


async def _crawl(engine: Engine) -> tuple[CrawlResult, int]:
    """Run the engine with live progress; the first SIGINT/SIGTERM drains, the second cancels.

    Returns the result and the exit code (130/143 after a signal)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        if len(received) == 1:
            engine.stop(signum.name)  # first: the terminal may be gone (SIGHUP), and printing with it
            err.print(f"\n{signum.name}: finishing requests in flight (again to stop at once)")
        elif task is not None:
            err.print(f"{signum.name} again: stopping at once (the database stays consistent; the next run resumes)")
            task.cancel()

    handled = [signum for signum in _SIGNAL_EXIT if signal.getsignal(signum) is not signal.SIG_IGN]
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with live_progress(engine, err):
            result = await engine.run()
    except asyncio.CancelledError:
        raise SystemExit(_SIGNAL_EXIT[received[-1]] if received else EXIT_FAILED) from None
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    if received:
        return result, _SIGNAL_EXIT[received[0]]
    # a crawl whose start_requests() raised did only part of its work: a cron job must hear it
    complete = result.status == "finished" and not result.stats.get(SEEDING_CUT_SHORT)
    return result, EXIT_OK if complete else EXIT_FAILED


def _notifier(engine_settings: Settings) -> Callable[[str], None]:
    """Prints the engine's news; the effective policy goes with the first (the crawl's start),
    so that a crawl that cannot start prints only its one-line error."""
    shown = False

    def notify(message: str) -> None:
        nonlocal shown
        # styled Text, not print(style=...): that style also fell on the live status line redrawn below it
        err.print(Text(message, style="bold"), highlight=False, soft_wrap=True)
        if not shown:
            shown = True
            policy = describe_policy(engine_settings).replace("\n", "\n        ")
            err.print(Text.assemble(("policy  ", "bold dim"), (policy, "dim")), soft_wrap=True)

    return notify


def _report(result: CrawlResult, spider: str, *, resume: str | None = None) -> None:
    out.print(
        summary(
            spider=spider,
            status=result.status,
            reason=result.reason,
            stats=result.stats,
            database=result.database,
            resume=resume,
        ),
        soft_wrap=True,  # its commands stay on one line each, to copy whole
    )


def command_list(args: argparse.Namespace) -> int:
    spiders = Project.load(args.config).spiders()
    table = Table("spider", "start URLs", "defined in")
    for name, spider_class in sorted(spiders.items()):
        table.add_row(name, "\n".join(spider_class.start_urls) or "(start_requests)", spider_class.__module__)
    out.print(table if spiders else "no spiders found")
    return EXIT_OK


_SPIDER_NAME = re.compile(r"[A-Za-z_][\w-]*")  # no SQL statement is one bare word


def command_query(args: argparse.Namespace) -> int:
    if args.db is not None:
        rest = args.target
        if rest and _SPIDER_NAME.fullmatch(rest[0]):  # query SPIDER --db PATH, as status takes it: the file is --db's
            rest = rest[1:]
        if len(rest) > 1:
            raise ScraperError('query --db PATH takes one SQL argument: query --db PATH "SELECT ..."')
        database = args.db
    else:
        if len(args.target) not in (1, 2):
            raise ScraperError(
                'query takes a spider (or --db PATH) and at most one SQL argument: query SPIDER "SELECT ..."'
            )
        project = Project.load(args.config)
        database, rest = project.database(project.spider_class(args.target[0])), args.target[1:]
    if not rest or not rest[0].strip():  # "" too: the tables, rather than "0 rows"
        return _show_tables(database, args)
    columns, rows, more = asyncio.run(run_query(database, rest[0], limit=args.rows))
    _print_rows(columns, rows)
    if more:
        out.print(
            f"the first {len(rows):,} rows; more follow (LIMIT / OFFSET in the SQL, or --rows N; 0: all)", style="dim"
        )
    else:
        out.print(f"{len(rows):,} row{'' if len(rows) == 1 else 's'}", style="dim")
    return EXIT_OK


def _show_tables(database: Path, args: argparse.Namespace) -> int:
    """``query`` without SQL: the tables there are to query, and a query to start from."""
    columns, rows = asyncio.run(tables_overview(database))
    _print_rows(columns, rows)
    target = shlex.join(["--db", str(args.db)] if args.db is not None else args.target[:1])
    # the first table with rows, items first: the first by name alone was scraper_cookies for a
    # crawl that stored no item, a table that a finished crawl leaves empty
    first = next((name for name, count, _ in rows if count), "scraper_crawls")
    out.print(
        f"{command_prefix()} query {target} {shlex.quote(f'SELECT * FROM {as_typed(first)} LIMIT 5')}", style="dim"
    )
    return EXIT_OK


def _print_rows(columns: list[str], rows: Sequence[Sequence[object]]) -> None:
    out.print(_query_view(columns, [[_cell(value) for value in row] for row in rows], out.width))


def _query_view(columns: list[str], rows: list[list[Text]], width: int) -> RenderableType:
    """A table when every column gets a readable width in ``width``, else each row as a block
    of name-value lines (psql's expanded display): squeezed into 80 columns, the demo's
    ``SELECT * FROM product`` showed two letters of each value."""
    wanted = [
        min(_READABLE_CELL, max([len(name), *(len(row[index].plain) for row in rows)]))
        for index, name in enumerate(columns)
    ]
    if sum(wanted) + 3 * len(columns) + 1 <= width:  # a cell's padding and border: 3 characters
        table = Table(show_lines=False)
        for name in columns:  # folded, not cut short with '…': a URL has no space to wrap at
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        return table
    blocks: list[RenderableType] = []
    for number, row in enumerate(rows, 1):
        record = Table.grid(padding=(0, 2))
        record.add_column(style="bold", no_wrap=True)
        record.add_column(overflow="fold")
        for name, cell in zip(columns, row, strict=True):
            record.add_row(name, cell)
        blocks += [Rule(f"row {number}", align="left", style="dim"), record]
    return Group(*blocks)


def _cell(value: object) -> Text:
    """A value as ``query`` shows it: NULL set apart from the text 'NULL', a BLOB by its size
    and first bytes instead of a Python bytes literal as long as the BLOB."""
    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, bytes):
        shown = value[:_BLOB_SHOWN].hex()
        return Text(f"x'{shown}'" if len(value) <= _BLOB_SHOWN else f"x'{shown}…' ({len(value):,} bytes)", style="cyan")
    return Text(str(value))


def command_status(args: argparse.Namespace) -> int:
    """Exit 0 with the report; 1 when the database holds no crawl (of the spider); 2 when it
    holds no crawl of the number given (bad input)."""
    database = args.db
    if database is None:
        if args.spider is None:
            raise ScraperError("status takes a spider name or --db PATH")
        project = Project.load(args.config)
        database = project.database(project.spider_class(args.spider))
    report = asyncio.run(read_status(database, spider=args.spider, crawl_id=args.crawl))
    if report is None and args.crawl is not None:
        raise ScraperError(f"no crawl {args.crawl} recorded in {database} (without --crawl, status shows the last one)")
    if report is None:  # a crawl database, with no crawl of the spider yet (another's, maybe)
        _print_error(f"no crawl {f'of {args.spider} ' if args.spider else ''}recorded in {database}")
        return EXIT_FAILED
    out.print(render_status(report))
    return EXIT_OK
