"""The SQL of the crawl database: the ``scraper_*`` tables, and the statements that create,
extend and fill one table per item class."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from typing import Any

from scraper.item import META_COLUMNS

Statement = tuple[str, Sequence[Any]]
"""One SQL statement and its bound parameters."""

FRAMEWORK_TABLES = """
CREATE TABLE IF NOT EXISTS scraper_crawls (
    id            INTEGER PRIMARY KEY,
    spider        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,          -- running / finished / interrupted / failed
    finish_reason TEXT,
    stats         TEXT,                   -- JSON
    arguments     TEXT                    -- JSON: each -a name and a digest of its value (crawls.arguments_digest)
);
CREATE TABLE IF NOT EXISTS scraper_requests (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    url         TEXT NOT NULL,
    method      TEXT NOT NULL,
    host        TEXT NOT NULL,
    depth       INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    callback    TEXT,                     -- the spider method's name
    headers     TEXT,                     -- JSON
    body        BLOB,
    meta        TEXT,                     -- JSON
    cb_kwargs   TEXT,                     -- JSON
    dont_filter INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,            -- pending / done / failed / filtered
    leased      INTEGER NOT NULL DEFAULT 0, -- 1: held by the running crawl (in memory or in flight)
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    reason      TEXT,                     -- why failed or filtered; for pending: the last retry's cause
    not_before  REAL,                     -- unix time before which a parked request is not fetched
    crawl_id    INTEGER NOT NULL,
    added_at    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- what a refill reads: spilled rows, best first. A request held in memory or in flight is
-- leased and so never in this index: the common page is inserted and finished without
-- touching it (with the earlier index of every pending row, leased or not, 2,100 request
-- rows inserted and finished wrote 411 WAL pages instead of 350).
CREATE INDEX IF NOT EXISTS scraper_requests_spilled
    ON scraper_requests (crawl_id, priority DESC, id) WHERE state = 'pending' AND leased = 0;
-- what a load for one host reads: its spilled rows, best first (the durable frontier loads a
-- host with none in memory from here, where the refill above read the rows of the few hosts
-- that filled memory first). Spilled rows only, as above: the common page never touches it.
CREATE INDEX IF NOT EXISTS scraper_requests_spilled_host
    ON scraper_requests (crawl_id, host, priority DESC, id) WHERE state = 'pending' AND leased = 0;
DROP INDEX IF EXISTS scraper_requests_pending;
-- an index on (host, state) cost every page's insert and update ~6 us and only spared the
-- per-host status query a sort: it scans the crawl's rows either way
DROP INDEX IF EXISTS scraper_requests_host;
CREATE TABLE IF NOT EXISTS scraper_errors (
    id         INTEGER PRIMARY KEY,
    crawl_id   INTEGER NOT NULL,
    url        TEXT,
    stage      TEXT NOT NULL,             -- start / fetch / parse / validate / pipeline
    error_type TEXT NOT NULL,
    message    TEXT NOT NULL,
    traceback  TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scraper_errors_crawl ON scraper_errors (crawl_id, stage);
-- the cookie jar of an unfinished crawl, which a resume starts from (deleted when it finishes)
CREATE TABLE IF NOT EXISTS scraper_cookies (
    crawl_id    INTEGER NOT NULL,
    domain      TEXT NOT NULL,            -- the host, for a host-only cookie
    path        TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    coded_value TEXT NOT NULL,            -- as it goes in the Cookie header
    host_only   INTEGER NOT NULL,
    expires     TEXT,                     -- HTTP date; NULL: a session cookie
    secure      INTEGER NOT NULL,
    http_only   INTEGER NOT NULL,
    same_site   TEXT,
    PRIMARY KEY (crawl_id, domain, path, name)
);
"""

COOKIE_COLUMNS = "domain, path, name, value, coded_value, host_only, expires, secure, http_only, same_site"

SAVE_COOKIE = f"INSERT OR REPLACE INTO scraper_cookies (crawl_id, {COOKIE_COLUMNS}) VALUES ({', '.join('?' * 11)})"

DELETE_COOKIE = "DELETE FROM scraper_cookies WHERE crawl_id = ? AND domain = ? AND path = ? AND name = ?"

CRAWL_COOKIES = f"SELECT {COOKIE_COLUMNS} FROM scraper_cookies WHERE crawl_id = ?"

FORGET_COOKIES = "DELETE FROM scraper_cookies WHERE crawl_id = ?"

UPGRADES = {  # a column added since the table was first made: its name and how to add it to an older file
    ("scraper_crawls", "arguments"): "ALTER TABLE scraper_crawls ADD COLUMN arguments TEXT",
}

REQUEST_COLUMNS = (
    "fingerprint, url, method, host, depth, priority, callback, headers, body, meta, cb_kwargs, dont_filter, "
    "state, reason, leased, crawl_id, added_at, updated_at"
)

REQUEST_WIDTH = 18

_UPSERT_REQUEST = """
ON CONFLICT (fingerprint) DO UPDATE SET
    url = excluded.url, method = excluded.method, depth = excluded.depth, priority = excluded.priority,
    callback = excluded.callback, headers = excluded.headers, body = excluded.body, meta = excluded.meta,
    cb_kwargs = excluded.cb_kwargs, dont_filter = excluded.dont_filter, state = excluded.state,
    reason = excluded.reason, leased = excluded.leased, attempts = 0, last_status = NULL, not_before = NULL,
    crawl_id = excluded.crawl_id, updated_at = excluded.updated_at
"""

FINISH_WIDTH = 8


@functools.lru_cache(maxsize=64)
def insert_requests(rows: int) -> str:
    """One INSERT for ``rows`` request rows (many rows per statement: far fewer round trips
    through the GIL than ``executemany``); an existing fingerprint is reset for this crawl."""
    return f"INSERT INTO scraper_requests ({REQUEST_COLUMNS}) VALUES {_values(REQUEST_WIDTH, rows)}{_UPSERT_REQUEST}"


@functools.lru_cache(maxsize=64)
def finish_requests(rows: int) -> str:
    """One UPDATE applying ``rows`` outcomes: (state, attempts, last_status, reason, not_before,
    leased, updated_at, fingerprint) each."""
    return (
        "UPDATE scraper_requests SET state = v.column1, attempts = v.column2, last_status = v.column3, "
        "reason = v.column4, not_before = v.column5, leased = v.column6, updated_at = v.column7 "
        f"FROM (VALUES {_values(FINISH_WIDTH, rows)}) AS v WHERE scraper_requests.fingerprint = v.column8"
    )


def _values(width: int, rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * rows)


_TO_LOAD = """
SELECT id, fingerprint, url, method, host, depth, priority, callback, headers, body, meta, cb_kwargs,
       dont_filter, attempts, not_before
FROM scraper_requests
WHERE crawl_id = ? AND state = 'pending' AND leased = 0"""
PENDING_TO_LOAD = f"{_TO_LOAD}\nORDER BY priority DESC, id\nLIMIT ?"


_LEAST_EXCLUDED = 8  # hosts a statement of pending_to_load leaves out, at least


def pending_to_load(crawl_id: int, excluding: Sequence[str], limit: int) -> Statement:
    """``PENDING_TO_LOAD`` without the rows of the hosts ``excluding`` (resting hosts', which
    would only hold memory). Their count is padded to a power of two (the last host named
    again): a statement for each count was compiled anew as hosts rested and woke."""
    if not excluding:
        return PENDING_TO_LOAD, (crawl_id, limit)
    size = max(_LEAST_EXCLUDED, 1 << (len(excluding) - 1).bit_length())
    padding = [excluding[-1]] * (size - len(excluding))
    return _pending_to_load_without(size), (crawl_id, *excluding, *padding, limit)


@functools.lru_cache(maxsize=16)
def _pending_to_load_without(hosts: int) -> str:
    return f"{_TO_LOAD} AND host NOT IN ({', '.join('?' * hosts)})\nORDER BY priority DESC, id\nLIMIT ?"


PENDING_OF_HOST_TO_LOAD = f"{_TO_LOAD} AND host = ?\nORDER BY priority DESC, id\nLIMIT ?"
# the spilled rows of a resumed crawl, by host (read from the index above, in its order)
SPILLED_BY_HOST = """
SELECT host, count(*) FROM scraper_requests
WHERE crawl_id = ? AND state = 'pending' AND leased = 0
GROUP BY host
LIMIT ?
"""


@functools.lru_cache(maxsize=64)
def lease(rows: int) -> str:
    return f"UPDATE scraper_requests SET leased = 1 WHERE id IN ({', '.join('?' * rows)})"


RELEASE_LEASES = "UPDATE scraper_requests SET leased = 0 WHERE crawl_id = ? AND leased = 1"


@functools.lru_cache(maxsize=64)
def give_back(rows: int) -> str:
    """Release the leases of ``rows`` pending requests of a crawl (fingerprints, then the
    crawl's id) and return the fingerprints of those released: a request whose row is not
    committed yet has none to release, and stays where it is."""
    return (
        f"UPDATE scraper_requests SET leased = 0 WHERE fingerprint IN ({', '.join('?' * rows)}) "
        "AND crawl_id = ? AND state = 'pending' AND leased = 1 RETURNING fingerprint"
    )


ERROR_WIDTH = 7


@functools.lru_cache(maxsize=64)
def insert_errors(rows: int) -> str:
    """One INSERT for ``rows`` error records (many rows per statement, as for requests)."""
    return (
        "INSERT INTO scraper_errors (crawl_id, url, stage, error_type, message, traceback, created_at) "
        f"VALUES {_values(ERROR_WIDTH, rows)}"
    )


def quote(name: str) -> str:
    """An SQLite identifier, quoted so that any field name is safe."""
    return '"' + name.replace('"', '""') + '"'


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def as_typed(name: str) -> str:
    """A table's name as a query shown for pasting writes it: bare when SQLite reads it so
    (``product``), else quoted (``"order"``, ``"my-products"``): the summary's query of an
    ``Order`` item's table, pasted, failed with 'near "order": syntax error'."""
    return name if _PLAIN_NAME.match(name) and _reads_bare(name) else quote(name)


@functools.lru_cache(maxsize=64)
def _reads_bare(name: str) -> bool:
    """Whether SQLite's parser takes ``name`` as a table's name unquoted (not a keyword)."""
    with closing(sqlite3.connect(":memory:")) as db:
        try:
            db.execute(f"SELECT * FROM {name}")
        except sqlite3.OperationalError as exc:  # "no such table" when it read a name
            return "syntax error" not in str(exc)
    return True


def create_item_table(table: str, columns: dict[str, str]) -> str:
    definitions = [f"{quote(name)} {kind}" for name, kind in {**columns, **META_COLUMNS}.items()]
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} (_id INTEGER PRIMARY KEY, {', '.join(definitions)})"


def add_column(table: str, name: str, kind: str) -> str:
    return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}"


def key_index_prefix(table: str) -> str:
    """How every key index of ``table`` is named (unquoted): those are the framework's to drop."""
    return f"{table}__key__"


def key_index_name(table: str, key: Sequence[str]) -> str:
    """The name of the unique index that a ``key`` of an item table gets (unquoted)."""
    return key_index_prefix(table) + "__".join(key)


def create_key_index(table: str, key: Sequence[str]) -> str:
    index = quote(key_index_name(table, key))
    return f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {quote(table)} ({', '.join(map(quote, key))})"


def drop_index(index: str) -> str:
    return f"DROP INDEX {quote(index)}"


def keep_last_of_each_key(table: str, key: Sequence[str]) -> str:
    """The DELETE that leaves one row, the last stored, for each value of ``key``: what makes
    room for the key's unique index in a table that holds duplicates."""
    return (
        f"DELETE FROM {quote(table)} WHERE _id NOT IN "
        f"(SELECT max(_id) FROM {quote(table)} GROUP BY {', '.join(map(quote, key))})"
    )


@functools.lru_cache(maxsize=256)
def insert_item(table: str, columns: tuple[str, ...], key: tuple[str, ...], rows: int = 1) -> str:
    """An INSERT of ``rows`` rows of ``columns``; with a ``key`` it upserts, replacing the
    stored values. Built once per table, column set and row count."""
    names = ", ".join(map(quote, columns))
    statement = f"INSERT INTO {quote(table)} ({names}) VALUES {_values(len(columns), rows)}"
    if not key:
        return statement
    updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in columns if name not in key)
    return f"{statement} ON CONFLICT ({', '.join(map(quote, key))}) DO UPDATE SET {updates}"
