"""The SQL of the crawl database: the ``scraper_*`` tables, and the statements that create,
extend and fill one table per item class."""

from __future__ import annotations

from collections.abc import Sequence

from scraper.item import META_COLUMNS

FRAMEWORK_TABLES = """
CREATE TABLE IF NOT EXISTS scraper_crawls (
    id            INTEGER PRIMARY KEY,
    spider        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,          -- running / finished / interrupted / failed
    finish_reason TEXT,
    stats         TEXT                    -- JSON
);
CREATE TABLE IF NOT EXISTS scraper_requests (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    url         TEXT NOT NULL,
    method      TEXT NOT NULL,
    host        TEXT NOT NULL,
    depth       INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    callback    TEXT,
    state       TEXT NOT NULL,            -- pending / done / failed / filtered
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    reason      TEXT,                     -- why failed or filtered; for pending: the last retry's cause
    not_before  REAL,                     -- unix time before which a parked request is not fetched
    crawl_id    INTEGER NOT NULL,
    added_at    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scraper_requests_state ON scraper_requests (state, priority);
CREATE INDEX IF NOT EXISTS scraper_requests_host ON scraper_requests (host, state);
CREATE TABLE IF NOT EXISTS scraper_errors (
    id         INTEGER PRIMARY KEY,
    crawl_id   INTEGER NOT NULL,
    url        TEXT,
    stage      TEXT NOT NULL,             -- fetch / parse / validate / pipeline
    error_type TEXT NOT NULL,
    message    TEXT NOT NULL,
    traceback  TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scraper_errors_crawl ON scraper_errors (crawl_id, stage);
"""

INSERT_REQUEST = """
INSERT INTO scraper_requests
    (fingerprint, url, method, host, depth, priority, callback, state, reason, crawl_id, added_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint) DO UPDATE SET
    state = excluded.state, attempts = 0, last_status = NULL, reason = excluded.reason, not_before = NULL,
    crawl_id = excluded.crawl_id, depth = excluded.depth, priority = excluded.priority,
    callback = excluded.callback, updated_at = excluded.updated_at
"""

FINISH_REQUEST = """
UPDATE scraper_requests
SET state = ?, attempts = ?, last_status = ?, reason = ?, not_before = ?, updated_at = ?
WHERE fingerprint = ?
"""

INSERT_ERROR = """
INSERT INTO scraper_errors (crawl_id, url, stage, error_type, message, traceback, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


def quote(name: str) -> str:
    """An SQLite identifier, quoted so that any field name is safe."""
    return '"' + name.replace('"', '""') + '"'


def create_item_table(table: str, columns: dict[str, str]) -> str:
    definitions = [f"{quote(name)} {kind}" for name, kind in {**columns, **META_COLUMNS}.items()]
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} (_id INTEGER PRIMARY KEY, {', '.join(definitions)})"


def add_column(table: str, name: str, kind: str) -> str:
    return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}"


def create_key_index(table: str, key: Sequence[str]) -> str:
    index = quote(f"{table}__key__{'__'.join(key)}")
    return f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {quote(table)} ({', '.join(map(quote, key))})"


def insert_item(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """An INSERT for ``columns``; with a ``key`` it upserts, replacing the stored values."""
    names = ", ".join(map(quote, columns))
    placeholders = ", ".join("?" for _ in columns)
    statement = f"INSERT INTO {quote(table)} ({names}) VALUES ({placeholders})"
    if not key:
        return statement
    updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in columns if name not in key)
    return f"{statement} ON CONFLICT ({', '.join(map(quote, key))}) DO UPDATE SET {updates}"
