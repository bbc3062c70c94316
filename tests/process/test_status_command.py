"""``scraper status`` as a user runs it: on a finished crawl, beside a live one, and on
nothing at all."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, suppress
from pathlib import Path

from scraper.schema import FRAMEWORK_TABLES
from tests.conftest import rows
from tests.process.test_cli import ENV, REPO, scraper


def test_status_of_a_finished_demo_crawl(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    assert scraper("demo", "--products", "40", "--db", str(database)).returncode == 0
    result = scraper("status", "--db", str(database))
    assert result.returncode == 0, result.stderr
    assert "1 of demo_shop: finished" in result.stdout
    assert "127.0.0.1" in result.stdout and "done" in result.stdout and "errors: none" in result.stdout
    assert any(line.split() == ["product", "40"] for line in result.stdout.splitlines())


def test_status_beside_a_live_crawl_then_after_it_stopped(tmp_path: Path) -> None:
    database = tmp_path / "live.db"
    command = [sys.executable, "-m", "scraper", "demo", "--products", "3000", "--db", str(database)]
    log = tmp_path / "crawl.log"
    with log.open("w") as output:
        crawl = subprocess.Popen(
            [*command, "-s", "per_host.delay=0.002"], cwd=REPO, env=ENV, stdout=output, stderr=output
        )
    try:
        _wait_for_items(database, crawl)
        live = scraper("status", "--db", str(database))
        assert live.returncode == 0, live.stderr
        assert "1 of demo_shop: running" in live.stdout
        host = next(line.split() for line in live.stdout.splitlines() if line.lstrip().startswith("127.0.0.1"))
        pending, leased = int(host[1].replace(",", "")), int(host[2].replace(",", ""))
        assert pending + leased > 0 and leased > 0
        assert "ETA" in live.stdout and "pages/s" in live.stdout
    finally:
        crawl.send_signal(signal.SIGINT)
        crawl.wait(timeout=30)
    assert crawl.returncode == 130, log.read_text()
    stopped = scraper("status", "--db", str(database))
    assert stopped.returncode == 0 and "1 of demo_shop: interrupted (SIGINT), resumes on next run" in stopped.stdout
    # the rows say so too: nothing holds the pending requests now (they had stayed leased)
    assert rows(database, "SELECT leased, count(*) > 0 FROM scraper_requests WHERE state = 'pending' GROUP BY 1") == [
        (0, 1)
    ]


def _wait_for_items(database: Path, crawl: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and crawl.poll() is None:
        with suppress(sqlite3.OperationalError):  # no product table yet
            if database.exists() and rows(database, "SELECT count(*) FROM product")[0][0] >= 50:
                return
        time.sleep(0.05)
    raise AssertionError(f"the crawl stored no items in time (exit {crawl.poll()})")


def test_status_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    result = scraper("status", "--db", str(tmp_path / "nope.db"))
    assert result.returncode == 2
    assert "no database at" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "nope.db.lock").exists()


def test_status_of_a_database_without_crawls(tmp_path: Path) -> None:
    database = tmp_path / "empty.db"
    with closing(sqlite3.connect(database)) as db:
        db.executescript(FRAMEWORK_TABLES)
    result = scraper("status", "--db", str(database))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no crawl recorded in {database}"


def test_status_of_a_spider_whose_database_holds_only_anothers_crawls(tmp_path: Path) -> None:
    """It said the file held no crawl at all."""
    database = tmp_path / "shared.db"
    with closing(sqlite3.connect(database)) as db:
        db.executescript(FRAMEWORK_TABLES)
        db.execute(
            "INSERT INTO scraper_crawls (spider, started_at, status, stats) "
            "VALUES ('limits', '2026-01-01', 'finished', '{}')"
        )
        db.commit()
    result = scraper("status", "quotes", "--db", str(database))
    assert (result.returncode, result.stderr.strip()) == (1, f"error: no crawl of quotes recorded in {database}")


def test_status_of_a_crawl_number_not_there_is_bad_input(tmp_path: Path) -> None:
    """It exited 1 with no 'error:', as if the crawl had failed."""
    database = tmp_path / "one.db"
    with closing(sqlite3.connect(database)) as db:
        db.executescript(FRAMEWORK_TABLES)
        db.execute("INSERT INTO scraper_crawls (spider, started_at, status) VALUES ('shop', 'then', 'finished')")
        db.commit()
    result = scraper("status", "--db", str(database), "--crawl", "9")
    assert result.returncode == 2
    assert " ".join(result.stderr.split()) == (
        f"error: no crawl 9 recorded in {database} (without --crawl, status shows the last one)"
    )
    assert scraper("status", "--db", str(database), "--crawl", "1").returncode == 0
