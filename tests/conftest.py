"""Shared test helpers: settings on a temporary SQLite file with zero delays and back-off."""

from __future__ import annotations

import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from scraper.settings import Settings, load_settings

# The suite runs as in an activated venv (CI runs .venv/bin/python -m pytest without activating
# it), so that the commands the framework prints for pasting start "python -m scraper";
# tests/unit/test_invocation.py covers an interpreter that is not the PATH's python.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def make_settings(**overrides: Any) -> Settings:
    """Test settings: no back-off waits, short timeouts; robots.txt and pipelines only when asked."""
    base: dict[str, Any] = {
        "robots_txt": False,
        "retry": {"times": 2, "backoff": 0.0, "max_backoff": 0.0},
        "timeout": 5,
        "pipelines": [],
    }
    base.update(overrides)
    return load_settings(config=base)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "crawl.db"


def rows(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the crawl database synchronously (tests only: the crawl is over)."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, parameters).fetchall()
