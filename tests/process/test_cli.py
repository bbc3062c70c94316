"""The command line as a user runs it: a subprocess, its exit code, its output, its database."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.live import Live
from rich.text import Text

from scraper import cli
from scraper.cli import _query_view, _resume_command, build_parser, main
from scraper.demo_site import serve
from scraper.stats import Stats
from scraper.storage import Storage
from tests.conftest import make_settings, rows
from tests.integration.test_crawl import faulty_site

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def scraper(
    *args: str, cwd: Path = REPO, timeout: float = 60, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess; ``columns``: the terminal's width, if not ENV's."""
    env = ENV if columns is None else {**ENV, "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "scraper", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


async def run_on_faulty_site(project: Path, spider: str, *options: str) -> tuple[int | None, str, str, str]:
    """``run SPIDER`` in ``project`` against ``faulty_site``: exit code, stdout, stderr, and
    the site's URL."""
    app, _ = faulty_site()
    async with serve(app) as base_url:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scraper", "run", spider, "-a", f"base_url={base_url}", *options,
            cwd=project, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode(), base_url


def make_project(root: Path, spider_source: str, config: str = "") -> Path:
    (root / "myspiders").mkdir()
    (root / "myspiders" / "__init__.py").write_text("")
    (root / "myspiders" / "site.py").write_text(textwrap.dedent(spider_source))
    (root / "config.yaml").write_text("spiders: [myspiders]\n" + textwrap.dedent(config))
    return root


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["run", "no_such_spider"], "no spider named 'no_such_spider'"),
        (["run", "[/b]"], "no spider named '[/b]'"),  # printed as it is, not read as a closing tag
        (["run", "demo_shop", "-s", "concurrency=abc"], "setting 'concurrency'"),
        (["run", "demo_shop", "-s", "no_such_key=1"], "unknown setting 'no_such_key'"),
        (["run", "demo_shop", "-s", "per_host.dealy=1"], "did you mean 'delay'"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    database = tmp_path / "never.db"
    result = scraper(*arguments, "--db", str(database))
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not database.exists()


def test_no_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """It said only 'the following arguments are required: COMMAND'."""
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    shown = capsys.readouterr().err
    assert shown.startswith("usage: scraper") and "crawl with a spider and store what it finds" in shown
    assert "required: COMMAND" not in shown


def test_demo_crawls_the_bundled_shop_and_prints_a_summary(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    result = scraper("demo", "--products", "40", "--db", str(database))
    assert result.returncode == 0, result.stderr
    assert "stored 40 of the shop's 40 products" in result.stdout
    assert "pages/s" in result.stdout and "product: 40" in result.stdout
    assert "python -m scraper query --db" in result.stdout
    assert rows(database, "SELECT count(DISTINCT url) FROM product") == [(40,)]
    assert rows(database, "SELECT status FROM scraper_crawls") == [("finished",)]


def test_running_the_demo_again_replaces_its_products_instead_of_adding_them(tmp_path: Path) -> None:
    """The shop gets a new port each run and the products were keyed by URL: every run of the
    quick start's command added 600 rows more."""
    database = tmp_path / "demo.db"
    for _ in range(2):
        result = scraper("demo", "--products", "20", "--db", str(database))
        assert result.returncode == 0, result.stderr
    assert rows(database, "SELECT count(*), count(DISTINCT sku) FROM product") == [(20, 20)]
    assert rows(database, "SELECT count(*) FROM scraper_crawls WHERE status = 'finished'") == [(2,)]


def test_the_summarys_commands_stay_on_one_line_in_a_narrow_terminal(tmp_path: Path) -> None:
    """A table cell wrapped the 'look' command over two lines, which did not paste."""
    database = tmp_path / "a-directory-name-long-enough-to-wrap" / "demo.db"
    database.parent.mkdir()
    result = scraper("demo", "--products", "5", "--db", str(database), columns=60)
    assert result.returncode == 0, result.stderr
    command = f"python -m scraper query --db {database} 'SELECT * FROM product LIMIT 5'"
    assert f"  look        {command}" in result.stdout.splitlines()


ARGUMENT_SPIDER = """
    from scraper import Spider

    class NeedsLimit(Spider):
        name = "needs_limit"
        start_urls = ["http://127.0.0.1:1/"]

        def __init__(self, limit: str) -> None:
            super().__init__()
            self.limit = int(limit)
"""


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], "spider 'needs_limit' could not be created with no -a arguments: "),
        (["-a", "lmit=3"], "with -a lmit=...: NeedsLimit.__init__() got an unexpected keyword argument 'lmit'"),
        (["-a", "limit=many"], "with -a limit=...: invalid literal for int() with base 10: 'many'"),
    ],
)
def test_a_spider_that_refuses_its_arguments_is_one_line_naming_it(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    project = make_project(tmp_path, ARGUMENT_SPIDER)
    result = scraper("run", "needs_limit", *arguments, "--db", str(tmp_path / "never.db"), cwd=project)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never.db").exists()


def test_demo_outside_the_repository_says_where_it_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path, SPIDER)
    result = scraper("demo", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no spider named 'demo_shop' in myspiders (known: site): "
        "demo runs in the framework's repository, whose spiders/ holds it"
    )
    assert not (project / "data").exists()


@pytest.mark.parametrize(
    ("size", "said"),
    [
        ("-5", "argument --products: -5 is below 0"),
        # built in memory: 100,000,000 grew ~50 MB a second, silently, deaf to a first Ctrl-C
        ("100000000", "argument --products: the demo shop holds at most 100,000 products"),
    ],
)
def test_demo_refuses_a_size_it_cannot_serve_before_it_starts(tmp_path: Path, size: str, said: str) -> None:
    database = tmp_path / "demo.db"
    result = scraper("demo", "--products", size, "--db", str(database))
    assert result.returncode == 2
    assert said in result.stderr and "Traceback" not in result.stderr
    assert not database.exists()


def test_debug_logging_shows_the_pages_not_every_sql_statement(tmp_path: Path) -> None:
    result = scraper("demo", "--products", "3", "--db", str(tmp_path / "demo.db"), "--log-level", "DEBUG")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("done (200) <GET http://127.0.0.1:") >= 4  # the home page, listings, 3 products
    assert "aiosqlite" not in result.stderr and "filelock" not in result.stderr  # thousands of lines a crawl


def test_logs_written_to_a_file_are_one_line_a_record(tmp_path: Path) -> None:
    """Piped or written to a file (cron, CI), each record was wrapped at 80 columns and padded
    with spaces: 2,105 request lines took 6,311, the URL on a line of its own, so that grep
    for a URL found nothing."""
    result = scraper("demo", "--products", "3", "--db", str(tmp_path / "demo.db"), "--log-level", "DEBUG", columns=80)
    assert result.returncode == 0, result.stderr
    records = [line for line in result.stderr.splitlines() if "done (200)" in line]
    assert len(records) >= 4 and all(re.search(r"<GET http://127\.0\.0\.1:\d+/\S*>", line) for line in records)
    assert not [
        line for line in result.stderr.splitlines() if line.startswith(("DEBUG", "INFO")) and line != line.rstrip()
    ]


def test_query_prints_a_table_and_is_read_only(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "20", "--db", str(database)).returncode == 0
    counted = scraper("query", "--db", str(database), "SELECT count(*) AS products FROM product")
    assert counted.returncode == 0
    assert "products" in counted.stdout and "20" in counted.stdout
    refused = scraper("query", "--db", str(database), "DELETE FROM product")
    assert refused.returncode == 2 and "readonly" in refused.stderr
    assert rows(database, "SELECT count(*) FROM product") == [(20,)]
    shown = scraper("query", "--db", str(database), "--rows", "3", "SELECT url FROM product ORDER BY url")
    assert shown.returncode == 0
    assert shown.stdout.count("/product/") == 3
    assert "the first 3 rows; more follow" in shown.stdout
    everything = scraper("query", "--db", str(database), "--rows", "0", "SELECT url FROM product")
    assert everything.stdout.count("/product/") == 20 and "20 rows" in everything.stdout
    # a spider named as well, as status takes it: its name ran as SQL ('near "demo_shop": syntax error')
    named = scraper("query", "demo_shop", "SELECT count(*) AS products FROM product", "--db", str(database))
    assert named.returncode == 0 and "20" in named.stdout, named.stderr
    tables = scraper("query", "demo_shop", "--db", str(database))
    assert tables.returncode == 0 and "product" in tables.stdout, tables.stderr


def test_ctrl_c_stops_a_long_query(tmp_path: Path) -> None:
    """SQLite's step ran on in its thread: three Ctrl-Cs in 8 s, and the query ran on."""
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "1", "--db", str(database)).returncode == 0
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    process = subprocess.Popen(
        [sys.executable, "-m", "scraper", "query", "--db", str(database), endless],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the query is running
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()  # a query that Ctrl-C did not stop must not outlive the test
    assert process.returncode == 130 and "Traceback" not in stderr, stderr


def test_query_without_sql_lists_the_tables_with_their_rows_and_columns(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "20", "--db", str(database)).returncode == 0
    shown = scraper("query", "--db", str(database))
    assert shown.returncode == 0, shown.stderr
    lines = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown.stdout.splitlines() if "│" in line]
    tables = [(cells[0], cells[1]) for cells in lines if cells[0]]
    assert tables[0] == ("product", "20")  # items first
    assert [name for name, _ in tables[1:]] == [
        "scraper_cookies",
        "scraper_crawls",
        "scraper_errors",
        "scraper_requests",
    ]
    assert "_scraped_at" in lines[0][2] and "title" in lines[0][2]
    assert shown.stdout.splitlines()[-1] == f"python -m scraper query --db {database} 'SELECT * FROM product LIMIT 5'"
    blank = scraper("query", "--db", str(database), " ")  # it printed "0 rows"
    assert blank.returncode == 0 and blank.stdout == shown.stdout
    too_many = scraper("query", "--db", str(database), "SELECT 1", "SELECT 2")
    assert too_many.returncode == 2 and "takes one SQL argument" in too_many.stderr


def test_query_without_sql_suggests_a_table_that_has_rows(tmp_path: Path) -> None:
    """With no item stored, it suggested the first table by name: scraper_cookies, always empty
    once a crawl is over."""
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "2", "--db", str(database)).returncode == 0
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM product")
    shown = scraper("query", "--db", str(database))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1] == (
        f"python -m scraper query --db {database} 'SELECT * FROM scraper_crawls LIMIT 5'"
    )


def test_query_shows_values_as_they_are(tmp_path: Path) -> None:
    """Scraped text is shown as text (a '[/b]' in it once made rich raise; '[red]x' vanished
    into a colour), NULL apart from the text 'NULL', a BLOB by its size and first bytes."""
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "1", "--db", str(database)).returncode == 0
    sql = "SELECT '[/b] quote' AS \"[/h]\", '[red]x', x'00ff', zeroblob(100), NULL, 'NULL'"
    result = scraper("query", "--db", str(database), sql)
    assert result.returncode == 0, result.stderr
    cells = [cell.strip() for cell in result.stdout.splitlines()[3].split("│")[1:-1]]
    assert cells == [
        "[/b] quote",
        "[red]x",
        "x'00ff'",
        "x'00000000000000000000000000000000…' (100 bytes)",
        "NULL",
        "NULL",
    ]
    assert "[/h]" in result.stdout.splitlines()[1]


def test_query_shows_each_row_as_a_block_when_its_columns_do_not_fit(tmp_path: Path) -> None:
    """Squeezed into 80 columns, the summary's own 'look' query (SELECT * FROM product)
    showed two letters of each value ('ti…', 'El…'); at 200, a few more."""
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "2", "--db", str(database)).returncode == 0
    ((title, description),) = rows(database, "SELECT title, description FROM product ORDER BY _id LIMIT 1")
    wide = scraper("query", "--db", str(database), "SELECT * FROM product ORDER BY _id")
    assert wide.returncode == 0, wide.stderr
    lines = wide.stdout.splitlines()
    assert lines[0].startswith("row 1 ─") and any(line.startswith("row 2 ─") for line in lines)
    assert max(map(len, lines)) <= int(ENV["COLUMNS"]) and wide.stdout.rstrip().endswith("2 rows")
    assert [line.split() for line in lines[1:4]][2] == ["title", *title.split()]  # whole, after _id and url
    shown = " ".join(line.split(maxsplit=1)[1] if line.startswith("description") else line.strip() for line in lines)
    assert " ".join(description.split()) in " ".join(shown.split())  # wrapped, not cut
    narrow = scraper("query", "--db", str(database), "SELECT _id, title FROM product ORDER BY _id")
    header, first = narrow.stdout.splitlines()[1], narrow.stdout.splitlines()[3]
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == ["_id", "title"]  # a table, as before
    assert [cell.strip() for cell in first.split("│")[1:-1]] == ["1", title]


def test_query_folds_a_long_url_in_a_table_instead_of_cutting_it() -> None:
    """A URL has no space to wrap at: the table cut it to 'http://127.0.0.1:8770/cp…'."""
    url = "http://127.0.0.1:8770/a-path-longer-than-its-column/page?x=1"
    console = Console(width=60, file=io.StringIO(), color_system=None)
    console.print(_query_view(["url", "status"], [[Text(url), Text("200")]], console.width))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[1].split() == ["┃", "url", "┃", "status", "┃"]  # a table, with the URL's cells below
    cells = [line.split("│")[1].strip() for line in lines[3:-1]]
    assert "".join(cells) == url and "…" not in "".join(lines)


def test_a_notice_during_live_progress_leaves_the_status_line_unstyled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The crawl's start was printed with print(style="bold"), and the live status line, redrawn
    beneath it by that same print, came out bold (then dim, after the policy)."""
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system="standard")
    monkeypatch.setattr(cli, "err", console)
    with Live(Text("crawling 0 pages"), console=console, auto_refresh=False):
        cli._notifier(make_settings())("crawl 1 of shop started")
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[1mcrawl 1 of shop started" in shown and "\x1b[1;2mpolicy  \x1b[0m\x1b[2mconcurrency" in shown
    assert shown.count("crawling 0 pages") >= 3  # drawn, then redrawn below each notice
    assert re.findall(r"\x1b\[[0-9;]*mcrawling", shown) == []  # never in the notice's style


def test_query_of_a_missing_database_is_one_clear_line(tmp_path: Path) -> None:
    result = scraper("query", "--db", str(tmp_path / "nope.db"), "SELECT 1")
    assert result.returncode == 2
    assert "no database at" in result.stderr
    assert not (tmp_path / "nope.db").exists()


SPIDER = """
    from scraper import Spider, Request

    class SiteSpider(Spider):
        name = "site"
        start_urls = ["http://127.0.0.1:1/"]

        async def start_requests(self):
            yield Request(self.base_url + "/")

        async def parse(self, response):
            for link in response.css("a"):
                yield response.follow(link, callback=self.parse_page)

        async def parse_page(self, response):
            if response.url.endswith("/boom"):
                raise RuntimeError("broken page")
            for node in response.css("li"):
                yield {"name": node.text(), "size": int(node.attributes["data-size"])}
"""


@pytest.mark.parametrize(
    ("spider_settings", "expected"),
    [
        ('"concurrency=3"', "error: SiteSpider.settings must be a dict of settings, not str"),
        (
            '{"per_host": {"dealy": 1}}',
            "unknown setting 'per_host.dealy' (did you mean 'delay'?) (with SiteSpider.settings)",
        ),
        (  # the key as -s takes it: read as nested (it was "unknown setting 'per_host.delay'")
            '{"per_host.dealy": 1}',
            "unknown setting 'per_host.dealy' (did you mean 'delay'?) (with SiteSpider.settings)",
        ),
        (  # accepted, with no effect
            '{"spiders": ["other"]}',
            "SiteSpider.settings: 'spiders' says where spiders are found, so it has no effect in a spider's own",
        ),
    ],
)
def test_bad_spider_settings_are_one_line_naming_the_spider(
    tmp_path: Path, spider_settings: str, expected: str
) -> None:
    source = SPIDER.replace(
        'start_urls = ["http://127.0.0.1:1/"]', f"start_urls = []\n        settings = {spider_settings}"
    )
    result = scraper("run", "site", cwd=make_project(tmp_path, source))
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_a_failing_opened_hook_is_one_line_and_a_failed_crawl_row(tmp_path: Path) -> None:
    hook = "        async def opened(self):\n            raise KeyError('api_token')\n\n"
    source = SPIDER.replace(
        "        async def parse(self, response):", hook + "        async def parse(self, response):"
    )
    project = make_project(tmp_path, source)
    result = scraper("run", "site", cwd=project)
    assert result.returncode == 1
    assert (
        "error: SiteSpider.opened() failed: KeyError: 'api_token' (--log-level DEBUG shows the traceback)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    crawls = rows(project / "data" / "site.db", "SELECT status, finish_reason FROM scraper_crawls")
    assert crawls == [("failed", "OpenFailed: SiteSpider.opened() failed: KeyError: 'api_token'")]


def test_commands_find_the_project_from_a_folder_inside_it(tmp_path: Path) -> None:
    """As Scrapy finds scrapy.cfg: from myspiders/, no spider was found."""
    project = make_project(tmp_path, SPIDER)
    inside = project / "myspiders" / "deeper"
    inside.mkdir()
    listed = scraper("list", cwd=inside)
    assert listed.returncode == 0, listed.stderr
    assert "myspiders.site" in listed.stdout
    status = scraper("status", "site", cwd=inside)  # the project's data/, not the folder's
    assert status.returncode == 2
    assert f"no database at {project / 'data' / 'site.db'}" in status.stderr


def test_outside_any_project_no_spiders_module_says_where_commands_run(tmp_path: Path) -> None:
    env = {key: value for key, value in ENV.items() if key != "PYTHONPATH"}  # the repository's spiders/ too
    result = subprocess.run(
        [sys.executable, "-m", "scraper", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "module 'spiders' not found (setting 'spiders'; commands run in the project's folder" in result.stderr


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        ("crawl", "Scrapy's 'crawl' is 'run' here: python -m scraper run NAME"),
        ("runspider", "put the spider in spiders/ and run it by name: python -m scraper run NAME"),
        # not built yet, and what to use meanwhile: they said only "not built yet"
        (
            "shell",
            "try selectors on a saved page: Response(url=..., body=...).css(...) (the README's tutorial); "
            "not built yet",
        ),
        (
            "parse",
            "run_callback runs one callback on a saved page, storing nothing (the README's tutorial); not built yet",
        ),
        # this project's own, not built yet: they were a bare "invalid choice"
        (
            "export",
            'the items are in the crawl\'s SQLite file: python -m scraper query SPIDER "SELECT ..."; not built yet',
        ),
        ("report", "python -m scraper status SPIDER shows a crawl's progress; not built yet"),
    ],
)
def test_a_scrapy_command_says_what_to_type_here(command: str, hint: str) -> None:
    result = scraper(command, "quotes")
    assert result.returncode == 2
    assert result.stderr.rstrip().endswith(
        f"invalid choice: '{command}' (choose from 'run', 'list', 'query', 'status', 'demo'): {hint}"
    )


def test_list_shows_the_project_spiders(tmp_path: Path) -> None:
    project = make_project(tmp_path, SPIDER)
    result = scraper("list", cwd=project)
    assert result.returncode == 0
    assert "site" in result.stdout and "myspiders.site" in result.stdout


def test_config_and_log_level_go_before_or_after_the_command(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    project = make_project(tmp_path / "project", SPIDER)
    config = str(project / "config.yaml")
    for arguments in (["--config", config, "list"], ["list", "--config", config]):
        result = scraper(*arguments, cwd=tmp_path)  # elsewhere: only the config finds the spiders
        assert result.returncode == 0 and "myspiders.site" in result.stdout, (arguments, result.stderr)
    bad = scraper("list", "--log-level", "loud", cwd=project)
    assert bad.returncode == 2 and "argument --log-level: invalid choice: 'LOUD'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_config_that_is_a_folder_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    """A config.yaml folder was passed over in silence (the crawl ran on the defaults), and
    --config naming a folder said it did not exist."""
    project = make_project(tmp_path, SPIDER)
    (project / "config.yaml").unlink()
    (project / "config.yaml").mkdir()
    found = scraper("list", cwd=project)
    given = scraper("--config", str(tmp_path), "list", cwd=project)
    assert (found.returncode, found.stderr.strip()) == (
        2,
        f"error: cannot read {project / 'config.yaml'}: Is a directory",
    )
    assert (given.returncode, given.stderr.strip()) == (2, f"error: cannot read {tmp_path}: Is a directory")


def test_a_module_that_fails_to_import_hides_no_other_spider(tmp_path: Path) -> None:
    """A spider being written, with a syntax error, stopped every command: list listed nothing
    and no other spider would run."""
    project = make_project(tmp_path, SPIDER + ARGUMENT_SPIDER)
    (project / "myspiders" / "wip.py").write_text("from scraper import Spider\n\nclass Wip(Spider)\n    name = 'wip'\n")
    failure = "spiders: importing 'myspiders.wip' failed: SyntaxError: expected ':' (wip.py, line 3)"

    listed = scraper("list", cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert "site" in listed.stdout and "needs_limit" in listed.stdout
    assert failure in " ".join(listed.stderr.split()) and "(its spiders are left out)" in " ".join(
        listed.stderr.split()
    )

    found = scraper("run", "needs_limit", "-a", "limit=many", "--db", str(tmp_path / "never.db"), cwd=project)
    assert found.returncode == 2  # the spider was found: its own argument is what fails
    assert "with -a limit=...: invalid literal for int() with base 10: 'many'" in found.stderr
    assert failure in " ".join(found.stderr.split())  # still said, as a warning

    wanted = scraper("run", "wip", "--db", str(tmp_path / "never.db"), cwd=project)
    assert wanted.returncode == 2
    assert f"error: {failure} (no other module defines a spider named 'wip')" in wanted.stderr
    assert not (tmp_path / "never.db").exists()


LONE_SPIDER = """
    class Lone(Spider):
        name = "lone"
        start_urls = ["http://127.0.0.1:1/"]
"""


def test_two_spiders_with_one_name_are_an_error_only_when_that_name_is_asked_for(tmp_path: Path) -> None:
    """A copy of the tutorial's spider beside the repository's stopped every command, those
    for other spiders (``list``, ``demo``) too."""
    project = make_project(tmp_path, SPIDER + SPIDER.replace("class SiteSpider", "class Other") + LONE_SPIDER)
    clash = "spiders myspiders.site.SiteSpider and myspiders.site.Other are both named 'site'"
    listed = scraper("list", cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert "│ lone " in listed.stdout and "│ site " not in listed.stdout
    assert f"{clash} (left out until one is renamed)" in " ".join(listed.stderr.split())
    asked = scraper("run", "site", "--db", str(tmp_path / "never.db"), cwd=project)
    assert asked.returncode == 2
    assert asked.stderr.strip() == f"error: {clash}: rename one"
    assert not (tmp_path / "never.db").exists()


async def test_run_records_failures_and_exits_zero(tmp_path: Path) -> None:
    project = make_project(tmp_path, SPIDER, "retry: {times: 1, backoff: 0}\n")
    code, stdout, stderr, _ = await run_on_faulty_site(project, "site")
    assert code == 0, stderr
    database = project / "data" / "site.db"
    assert sorted(rows(database, "SELECT stage, error_type FROM scraper_errors")) == [
        ("fetch", "HttpStatusError"),
        ("parse", "RuntimeError"),
        ("parse", "ValueError"),  # int("huge") in the /invalid page's dict items
    ]
    assert rows(database, "SELECT name FROM item ORDER BY name") == [("alpha",), ("beta",)]
    assert "errors" in stdout and "HttpStatusError" in stdout


async def test_resuming_with_other_arguments_is_refused_and_keeps_the_crawl(tmp_path: Path) -> None:
    project = make_project(tmp_path, SPIDER)
    database = project / "data" / "site.db"
    async with Storage(database, stats=Stats()) as storage:  # a crawl killed while it ran for another site
        await storage.begin_crawl("site", arguments={"base_url": "http://127.0.0.1:1"})
    code, _, stderr, _ = await run_on_faulty_site(project, "site")
    assert code == 2
    assert " ".join(stderr.split()) == (
        "error: crawl 1 of site was started with other -a arguments (base_url: another value): "
        "give the same ones to resume it, or --fresh to start anew"
    )
    assert rows(database, "SELECT id, status FROM scraper_crawls") == [(1, "running")]
    code, _, stderr, _ = await run_on_faulty_site(project, "site", "--fresh")
    assert code == 0, stderr
    assert rows(database, "SELECT id, status FROM scraper_crawls") == [(1, "running"), (2, "finished")]


CUT_SHORT_SPIDER = """
    from scraper import Spider, Request

    class CutShort(Spider):
        name = "cut_short"

        async def start_requests(self):
            yield Request(self.base_url + "/good")
            raise RuntimeError("the seed list is gone")

        async def parse(self, response):
            yield {"status": response.status}
"""


async def test_a_crawl_whose_start_requests_raised_crawls_what_it_had_and_exits_1(tmp_path: Path) -> None:
    """It exited 0 as 'finished': a cron job took a crawl that lacked its seeds for a success."""
    project = make_project(tmp_path, CUT_SHORT_SPIDER)
    code, stdout, stderr, _ = await run_on_faulty_site(project, "cut_short")
    assert code == 1, stderr
    assert "cut_short: finished (finished); start_requests() raised, so nothing it had yet to yield was crawled" in (
        " ".join(stdout.split())
    )
    assert rows(project / "data" / "cut_short.db", "SELECT status FROM item") == [(200,)]


LOGGING_SPIDER = """
    from scraper import Spider, Request

    class Talks(Spider):
        name = "talks"
        start_urls = ["http://127.0.0.1:1/"]

        async def start_requests(self):
            yield Request(self.base_url + "/good")

        async def parse(self, response):
            self.logger.info("parsed %s with status %d", response.url, response.status)
            self.logger.debug("every detail")
            yield {"status": response.status}
"""


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ([], ["INFO"]),  # a Scrapy user's self.logger.info() lines were dropped by the default WARNING
        (["-s", "parse_processes=1"], ["INFO"]),  # from a parse process too
        (["--log-level", "WARNING"], []),  # a level given is every logger's
        (["--log-level", "DEBUG"], ["INFO", "DEBUG"]),
    ],
)
async def test_a_spiders_own_log_lines_show_at_info_by_default(
    tmp_path: Path, options: list[str], shown: list[str]
) -> None:
    project = make_project(tmp_path, LOGGING_SPIDER)
    code, _, stderr, base_url = await run_on_faulty_site(project, "talks", *options)
    assert code == 0, stderr
    lines = stderr.splitlines()
    said = [line.split()[0] for line in lines if "spider.talks:" in line]
    assert said == shown, lines
    if shown:
        assert f"spider.talks: parsed {base_url}/good with status 200" in " ".join(stderr.split())
    assert not any(line.startswith("INFO") and "spider." not in line for line in lines)  # the framework stays quiet


def test_sigint_drains_records_interrupted_and_exits_130(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "scraper", "demo", "--products", "3000", "--db", str(database),
         "-s", "per_host.delay=0.005"],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not _has_items(database) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert rows(database, "SELECT status, finish_reason FROM scraper_crawls") == [("interrupted", "SIGINT")]
    stored = rows(database, "SELECT count(*) FROM product")[0][0]
    assert 0 < stored < 3000


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["run", "shop"], "python -m scraper run shop"),
        (
            ["--config", "my conf.yaml", "run", "shop", "--fresh", "-a", "base_url=http://h/ x", "-s", "concurrency=4",
             "--db", "out/shop.db"],
            "python -m scraper --config 'my conf.yaml' run shop -a 'base_url=http://h/ x' -s concurrency=4 "
            "--db out/shop.db",
        ),
    ],
)  # fmt: skip
def test_the_resume_command_is_the_run_command_without_fresh(argv: list[str], command: str) -> None:
    assert _resume_command(build_parser().parse_args(argv)) == command


def test_a_crawl_whose_reader_went_away_finishes_all_the_same(tmp_path: Path) -> None:
    """`run ... | head -1`: the next line printed raised BrokenPipeError, and the crawl died
    with its row left 'running'."""
    database = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "scraper", "demo", "--products", "300", "--db", str(database)],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    with process.stdout:
        process.stdout.readline()  # then the reader is gone, as `head -1` goes
    assert process.wait(timeout=60) == 0
    assert rows(database, "SELECT status FROM scraper_crawls") == [("finished",)]
    assert rows(database, "SELECT count(*) FROM product") == [(300,)]


def test_sighup_of_a_terminal_that_closed_drains_and_exits_129(tmp_path: Path) -> None:
    """The live display wrote past the stream that drops output (to rich's proxy's file): the
    first write to the closed terminal raised EIO in the signal handler, before it stopped the
    crawl, which ran to its end."""
    database = tmp_path / "demo.db"
    terminal, crawl_side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "scraper", "demo", "--products", "3000", "--db", str(database),
         "-s", "per_host.delay=0.005"],
        cwd=REPO, env=ENV, stdin=crawl_side, stdout=crawl_side, stderr=crawl_side,
    )  # fmt: skip
    os.close(crawl_side)
    try:
        deadline = time.monotonic() + 30
        while not _has_items(database) and time.monotonic() < deadline:
            os.read(terminal, 65536)  # keep the terminal drained while it is open
            time.sleep(0.05)
    finally:
        os.close(terminal)  # the terminal goes away (an ssh session dropped)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=30) == 129
    assert rows(database, "SELECT status, finish_reason FROM scraper_crawls") == [("interrupted", "SIGHUP")]
    assert 0 < rows(database, "SELECT count(*) FROM product")[0][0] < 3000


def test_ctrl_c_before_the_crawl_takes_the_signals_is_exit_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C while the spiders were importing printed a KeyboardInterrupt traceback."""

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "command_list", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == ""


def _has_items(database: Path) -> bool:
    try:
        return bool(database.exists() and rows(database, "SELECT count(*) FROM product")[0][0] > 0)
    except Exception:
        return False


def test_scrapys_output_option_is_refused_with_where_the_items_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "demo_shop", "-o", "items.json"])
    assert exited.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "unrecognized arguments: -o items.json (Scrapy's feed output: the items are in the crawl's SQLite file, "
            "read with 'query')"
        )
    )
