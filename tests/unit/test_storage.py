"""The SQLite writer: typed tables, upserts, new columns, group commits, crawl bookkeeping."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite
import pytest

from scraper import schema, writes
from scraper import writer as writer_module
from scraper.errors import ConfigError, StorageError, WriteFailed
from scraper.frontier import Refused, Scheduled
from scraper.http import Request
from scraper.item import Item
from scraper.records import Commit, ErrorRecord, Outcome, StoredItem
from scraper.stats import Stats
from scraper.storage import Storage, bind_none_and_bytes_directly
from scraper.worker import stored_item
from scraper.writer import Writer
from tests.conftest import rows


class Book(Item):
    key: ClassVar[tuple[str, ...]] = ("url",)
    url: str
    title: str
    price: Decimal
    pages: int
    in_print: bool
    rating: float
    published: dt.date
    tags: list[str] = []


def book(url: str = "http://b.test/1", title: str = "Dune", **changes: object) -> Book:
    values: dict[str, object] = dict(
        url=url,
        title=title,
        price=Decimal("9.99"),
        pages=412,
        in_print=True,
        rating=4.5,
        published=dt.date(1965, 8, 1),
        tags=["sf", "classic"],
    )
    values.update(changes)
    return Book.model_validate(values)


async def write(path: Path, *commits: Commit, stats: Stats | None = None) -> Stats:
    stats = stats or Stats()
    async with Storage(path, stats=stats) as storage:
        await storage.begin_crawl("books")
        for commit in commits:
            await storage.submit(commit)
        await storage.finish_crawl(status="finished", reason="finished")
    return stats


async def test_items_get_a_typed_table_with_meta_columns(database: Path) -> None:
    stats = await write(database, Commit(items=[stored_item(book(), "http://b.test/list")]))
    columns = {name: kind for _, name, kind, *_ in rows(database, "PRAGMA table_info(book)")}
    assert columns["title"] == "TEXT" and columns["pages"] == "INTEGER" and columns["rating"] == "REAL"
    assert columns["in_print"] == "INTEGER" and columns["price"] == "REAL" and columns["published"] == "TEXT"
    assert {"_crawl_id", "_url", "_scraped_at"} <= set(columns)
    stored = rows(database, "SELECT title, price, typeof(price), pages, in_print, published, tags, _url FROM book")
    assert stored == [("Dune", 9.99, "real", 412, 1, "1965-08-01", '["sf", "classic"]', "http://b.test/list")]
    assert stats.get("items/book") == 1


async def test_keyed_items_upsert_across_commits_and_crawls(database: Path) -> None:
    await write(database, Commit(items=[stored_item(book(title="Dune"), "u")]))
    await write(
        database,
        Commit(items=[stored_item(book(title="Dune (2nd ed.)"), "u")]),
        Commit(items=[stored_item(book(url="http://b.test/2", title="Emma"), "u")]),
    )
    assert rows(database, "SELECT url, title, _crawl_id FROM book ORDER BY url") == [
        ("http://b.test/1", "Dune (2nd ed.)", 2),
        ("http://b.test/2", "Emma", 2),
    ]


class Regional(Item):
    key: ClassVar[tuple[str, ...]] = ("sku", "region")
    sku: str
    region: str | None = None


def test_a_keyed_item_with_none_in_its_key_cannot_be_stored() -> None:
    """SQLite's UNIQUE never matches a NULL: each crawl added the item again instead of
    replacing it (three rows after three runs)."""
    with pytest.raises(ValueError) as raised:
        stored_item(Regional(sku="a"), "u")
    assert str(raised.value) == "key field 'region' is None; a keyed item needs a value in each key field"
    assert stored_item(Regional(sku="a", region="eu"), "u").row == {"sku": "a", "region": "eu"}


async def test_dict_values_are_stored_as_they_were_given(database: Path) -> None:
    """A dict's columns were typed by their first values: a later zip code '01234' became the
    integer 1234, a later 2.5 the text '2.5'."""
    await write(database, Commit(items=[stored_item({"zip": 12345, "price": "1.5"}, "u")]))
    await write(database, Commit(items=[stored_item({"zip": "01234", "price": 2.5}, "u")]))
    assert rows(database, "SELECT zip, typeof(zip), price, typeof(price) FROM item ORDER BY _id") == [
        (12345, "integer", "1.5", "text"),
        ("01234", "text", 2.5, "real"),
    ]


class BookWithTextPages(Item):
    """``Book`` after its ``pages`` became text ("xii + 412"), as a model may change."""

    table: ClassVar[str] = "book"
    url: str
    pages: str


async def test_a_field_whose_type_changed_since_its_column_was_made_is_warned_of(
    database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite keeps a column's declared type: the INTEGER column turned the text '0412' into
    412, without a word."""
    await write(database, Commit(items=[stored_item(book(), "u")]))
    await write(database, Commit(items=[stored_item(BookWithTextPages(url="http://b.test/2", pages="0412"), "u")]))
    assert (
        "table 'book': column 'pages' is INTEGER (made by an earlier crawl), but the field is TEXT now" in caplog.text
    )
    assert rows(database, "SELECT pages FROM book WHERE url = 'http://b.test/2'") == [(412,)]  # what it warns of


async def test_new_field_adds_a_column_and_keeps_old_rows(database: Path) -> None:
    await write(database, Commit(items=[stored_item({"name": "a"}, "u")]))
    await write(database, Commit(items=[stored_item({"name": "b", "size": 3}, "u")]))
    assert rows(database, "SELECT name, size FROM item ORDER BY name") == [("a", None), ("b", 3)]


async def test_page_commit_records_requests_outcome_and_errors(database: Path) -> None:
    start = Scheduled(Request("http://b.test/"), "fp-start", "b.test")
    child = Scheduled(Request("http://b.test/next", priority=5, depth=1), "fp-child", "b.test")
    error = ErrorRecord("http://b.test/", "validate", "ValidationError", "price missing", "trace")
    await write(
        database,
        Commit(requests=[start]),
        Commit(outcome=Outcome("fp-start", "done", status=200), requests=[child], errors=[error]),
    )
    assert rows(
        database,
        "SELECT fingerprint, state, last_status, depth, priority, host, callback FROM scraper_requests ORDER BY id",
    ) == [
        ("fp-start", "done", 200, 0, 0, "b.test", "parse"),
        ("fp-child", "pending", None, 1, 5, "b.test", "parse"),
    ]
    assert rows(database, "SELECT crawl_id, url, stage, error_type, message FROM scraper_errors") == [
        (1, "http://b.test/", "validate", "ValidationError", "price missing")
    ]


async def test_crawl_row_holds_status_reason_and_final_stats(database: Path) -> None:
    await write(database, *[Commit(items=[stored_item(book(url=f"http://b.test/{n}"), "u")]) for n in range(50)])
    ((status, reason, started, finished, stats),) = rows(
        database, "SELECT status, finish_reason, started_at, finished_at, stats FROM scraper_crawls"
    )
    assert (status, reason) == ("finished", "finished")
    assert started <= finished
    assert json.loads(stats)["items/book"] == 50  # counted after the last commit, not before


async def test_a_refused_request_is_recorded_even_when_its_meta_cannot_be_stored(database: Path) -> None:
    """The row of a refused request only records that it was seen (it is never resumed): what
    JSON cannot hold is left out rather than the row."""
    request = Request("http://elsewhere.test/x", meta={"handle": object()}, cb_kwargs={"n": 1})
    await write(database, Commit(refused=[Refused(request, "fp-offsite", "elsewhere.test", "offsite")]))
    stored = rows(database, "SELECT fingerprint, url, state, reason, meta, cb_kwargs FROM scraper_requests")
    assert stored == [("fp-offsite", "http://elsewhere.test/x", "filtered", "offsite", None, None)]


class Note(Item):
    text: str


class KeyedNote(Item):
    """``Note`` given a key later, as a user might: its table already holds duplicates."""

    table: ClassVar[str] = "note"
    key: ClassVar[tuple[str, ...]] = ("text",)
    text: str


async def test_a_key_on_a_table_holding_duplicates_fails_by_name_and_keeps_its_rows(database: Path) -> None:
    await write(database, Commit(items=[stored_item(Note(text="same"), "u"), stored_item(Note(text="same"), "u")]))
    with pytest.raises(StorageError, match=r"table 'note' holds duplicate rows for key \('text',\)") as raised:
        await write(database, Commit(items=[stored_item(KeyedNote(text="new"), "u")]))
    assert rows(database, "SELECT text FROM note") == [("same",), ("same",)]
    assert rows(database, "SELECT id, status FROM scraper_crawls") == [
        (1, "finished"),
        (2, "interrupted"),
    ]  # resumes once the table is fixed
    fix = re.search(r"keep the last of each with sqlite3 and '(.+)', or crawl into a new file", str(raised.value))
    assert fix is not None  # the way out, given with the error: it said only what was wrong
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(fix.group(1))
    await write(database, Commit(items=[stored_item(KeyedNote(text="new"), "u")]))
    assert rows(database, "SELECT text FROM note ORDER BY _id") == [("same",), ("new",)]


class BookBySku(Item):
    """``Book`` keyed by another field in a later crawl, as a user might change it."""

    table: ClassVar[str] = "book"
    key: ClassVar[tuple[str, ...]] = ("sku",)
    url: str
    sku: str


class UnkeyedBook(Item):
    table: ClassVar[str] = "book"
    url: str
    sku: str


async def test_a_changed_key_replaces_the_old_keys_index(database: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The old key's index stayed: every page with two products of one url (the new key
    tells them apart) failed on "UNIQUE constraint failed: book.url"."""
    await write(database, Commit(items=[stored_item(book(), "u")]))
    await write(
        database,
        Commit(items=[stored_item(BookBySku(url="http://b.test/1", sku=sku), "u") for sku in ("a", "b", "a")]),
    )
    assert rows(database, "SELECT url, sku FROM book ORDER BY _id") == [
        ("http://b.test/1", None),  # the first crawl's row, kept
        ("http://b.test/1", "a"),  # upserted twice, on the new key
        ("http://b.test/1", "b"),
    ]
    assert rows(database, "SELECT name FROM pragma_index_list('book')") == [("book__key__sku",)]
    assert "table 'book': its key is now ('sku',), not ('url',); the old key's unique index is dropped" in caplog.text
    await write(database, Commit(items=[stored_item(UnkeyedBook(url="http://b.test/1", sku="b"), "u")]))
    assert rows(database, "SELECT count(*) FROM book WHERE sku = 'b'") == [(2,)]  # no key: added, not upserted
    assert rows(database, "SELECT name FROM pragma_index_list('book')") == []


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs a /proc that refuses new files")
async def test_a_place_where_no_file_can_be_made_is_not_reported_as_in_use() -> None:
    with pytest.raises(StorageError) as raised:
        async with Storage(Path("/proc/scraper-test.db"), stats=Stats()):
            pass
    assert "/proc/scraper-test.db" in str(raised.value) and "in use" not in str(raised.value)


async def test_database_is_in_wal_mode(database: Path) -> None:
    await write(database)
    assert rows(database, "PRAGMA journal_mode") == [("wal",)]


async def test_statement_journals_stay_in_memory(database: Path) -> None:
    """A group commit's many-row statements journal the pages they change; spilled to a
    temporary file, that was thousands of page writes a crawl."""
    async with Storage(database, stats=Stats()) as storage:
        for connection in (storage._db, storage._reader):
            assert connection is not None
            async with connection.execute("PRAGMA temp_store") as cursor:
                assert tuple(await cursor.fetchone() or ()) == (2,)  # MEMORY


async def test_frontier_rows_carry_only_the_indexes_the_crawl_reads(database: Path) -> None:
    """Every index costs each page's insert and update; an old database loses the per-host
    index and the one of every pending row, and a refill still reads an index, not the table."""
    connection = sqlite3.connect(database)
    connection.executescript(schema.FRAMEWORK_TABLES)
    connection.execute("DROP INDEX scraper_requests_spilled")
    connection.execute("CREATE INDEX scraper_requests_host ON scraper_requests (host, state)")
    connection.execute(
        "CREATE INDEX scraper_requests_pending ON scraper_requests (crawl_id, leased, priority DESC, id) "
        "WHERE state = 'pending'"
    )
    connection.close()
    await write(database)
    indexes = rows(database, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'scraper_requests'")
    assert {name for (name,) in indexes} == {
        "scraper_requests_spilled",
        "scraper_requests_spilled_host",
        "sqlite_autoindex_scraper_requests_1",
    }
    plan = rows(database, f"EXPLAIN QUERY PLAN {schema.PENDING_TO_LOAD}", (1, 10))
    assert [detail for *_, detail in plan] == [
        "SEARCH scraper_requests USING INDEX scraper_requests_spilled (crawl_id=?)"
    ]
    plan = rows(database, f"EXPLAIN QUERY PLAN {schema.PENDING_OF_HOST_TO_LOAD}", (1, "a.test", 10))
    assert [detail for *_, detail in plan] == [
        "SEARCH scraper_requests USING INDEX scraper_requests_spilled_host (crawl_id=? AND host=?)"
    ]
    plan = rows(database, f"EXPLAIN QUERY PLAN {schema.SPILLED_BY_HOST}", (1, 10))
    assert [detail for *_, detail in plan] == [
        "SEARCH scraper_requests USING INDEX scraper_requests_spilled_host (crawl_id=?)"
    ]


def writer_of(storage: Storage) -> Writer:
    """The writer of ``storage``'s begun crawl."""
    assert storage._writer is not None
    return storage._writer


def counting_transactions(storage: Storage) -> list[int]:
    """Patch ``storage`` to record the commits of each transaction it writes."""
    sizes: list[int] = []
    original = writer_of(storage)._write

    async def counting(batch: list[Commit]) -> None:
        sizes.append(len(batch))
        await original(batch)

    writer_of(storage)._write = counting  # type: ignore[method-assign]
    return sizes


async def test_many_commits_are_grouped_into_few_transactions(database: Path) -> None:
    stats = Stats()
    async with Storage(database, stats=stats, batch_size=1000) as storage:
        await storage.begin_crawl("books")
        sizes = counting_transactions(storage)
        for n in range(300):
            await storage.submit(Commit(items=[stored_item(book(url=f"http://b.test/{n}"), "u")]))
        await storage.finish_crawl(status="finished", reason="finished")
    assert rows(database, "SELECT count(*) FROM book") == [(300,)]
    transactions = len(sizes)
    assert transactions < 30  # queued commits share transactions (group commit)


def test_none_and_bytes_bind_as_before_with_the_identity_adapters() -> None:
    bind_none_and_bytes_directly()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a, b, c, d)")
    db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (None, b"\x00\xffraw", bytearray(b"ba"), "text"))
    assert db.execute("SELECT a, b, c, d, typeof(a), typeof(b), typeof(c) FROM t").fetchall() == [
        (None, b"\x00\xffraw", b"ba", "text", "null", "blob", "blob")
    ]
    db.close()


def test_an_adapter_of_the_process_for_bytes_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def hexed(value: bytes) -> str:
        return value.hex()

    key = (bytes, sqlite3.PrepareProtocol)
    monkeypatch.setitem(sqlite3.adapters, key, hexed)  # what register_adapter does, undone after the test
    bind_none_and_bytes_directly()
    assert sqlite3.adapters[key] is hexed
    db = sqlite3.connect(":memory:")
    assert db.execute("SELECT ?", (b"\x01\x02",)).fetchone() == ("0102",)
    db.close()


def test_statement_sizes_add_up_and_stay_few() -> None:
    texts: set[int] = set()
    for count in range(1, 1501):
        sizes = list(writes.statement_sizes(count, 500))
        assert sum(sizes) == count and max(sizes) <= 500 and sizes == sorted(sizes, reverse=True)
        assert len(sizes) <= count // 500 + 9  # the rest (< 500) in at most 9 powers of two
        texts.update(sizes)
    assert texts == {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}


async def test_rows_go_in_full_statements_then_powers_of_two(database: Path) -> None:
    """A statement of many rows steps once where ``executemany`` steps once a row, and each
    new statement text is compiled: full statements as long as the parameter limit allows,
    then the rest in powers of two, so that a table's statements are a dozen texts that stay
    compiled, whatever the size of each commit."""
    sizes: list[int] = []

    def insert(width: int) -> Callable[[int], str]:
        def statement_for(count: int) -> str:
            sizes.append(count)
            return f"INSERT INTO t{width} VALUES {', '.join(['(' + ', '.join('?' * width) + ')'] * count)}"

        return statement_for

    async with aiosqlite.connect(database) as db:
        for width in (2, 100):
            await db.execute(f"CREATE TABLE t{width} ({', '.join(f'c{n}' for n in range(width))})")
        await writes.execute_all(db, writes.chunked(insert(2), [(n, str(n)) for n in range(1234)], 2))
        assert sizes == [500, 500, 128, 64, 32, 8, 2]  # 234 = 128 + 64 + 32 + 8 + 2
        sizes.clear()
        await writes.execute_all(db, writes.chunked(insert(100), [tuple(range(n, n + 100)) for n in range(700)], 100))
        assert sizes == [300, 300, 64, 32, 4]  # 100 columns: 30,000 parameters a statement at most
        await db.commit()
    assert rows(database, "SELECT count(*), sum(c0), max(c1) FROM t2") == [(1234, sum(range(1234)), "999")]
    assert rows(database, "SELECT count(*), sum(c99) FROM t100") == [(700, sum(range(99, 799)))]


async def test_statements_sent_at_once_run_in_their_order(database: Path) -> None:
    """``execute_all`` queues every statement before the first has run: their order on the
    connection's thread must still be the list's (each update below reads the row before)."""
    async with aiosqlite.connect(database) as db:
        await db.execute("CREATE TABLE t (n INTEGER)")
        await db.execute("INSERT INTO t VALUES (0)")
        steps = [("UPDATE t SET n = (n * 3 + ?) % 1000003", (digit,)) for digit in (2, 0, 1, 1, 2, 0, 2, 1) * 25]
        await writes.execute_all(db, [*steps, ("INSERT INTO t SELECT n + 1 FROM t", ())])
        await db.commit()
    expected = 0
    for _, (digit,) in steps:
        expected = (expected * 3 + digit) % 1000003
    assert rows(database, "SELECT n FROM t ORDER BY rowid") == [(expected,), (expected + 1,)]


class _FullDisk:
    """A value whose binding fails as a full disk would: a failure of the database, not of the
    value, so the writer must stop (sqlite3 adapts a value through its ``__conform__``)."""

    def __conform__(self, protocol: object) -> object:
        raise sqlite3.OperationalError("database or disk is full")


def failing_item() -> StoredItem:
    """An item whose statement fails inside the transaction, as on a full disk."""
    return stored_item({"n": 1}, "http://b.test/")._replace(row={"n": _FullDisk()})


async def test_a_statement_that_fails_mid_commit_leaves_none_of_its_transaction(database: Path) -> None:
    """The statements after a failing one still run (they were queued with it), so the
    transaction is rolled back whole (the request rows written before the failing statement
    are gone too), and the writer's failure reaches the crawl, here with the stop signal
    taken in the same batch as the failing commit: the writer must not wait for it."""
    failing = failing_item()
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("books")
        await storage.submit(Commit(requests=[Scheduled(Request("http://b.test/a"), "fp-a", "b.test")]))
        await storage.flush()
        await storage.submit(
            Commit(
                outcome=Outcome("fp-a", "done", status=200),
                items=[stored_item({"n": 0}, "http://b.test/a"), failing],
                requests=[Scheduled(Request("http://b.test/b"), "fp-b", "b.test")],
                errors=[ErrorRecord("http://b.test/a", "parse", "ValueError", "boom", None)],
            )
        )
        with pytest.raises(StorageError, match=r"writing to .* failed"):
            await storage.finish_crawl(status="finished", reason="finished")
    assert rows(database, "SELECT fingerprint, state FROM scraper_requests") == [("fp-a", "pending")]
    assert rows(database, "SELECT count(*) FROM scraper_errors") == [(0,)]
    assert rows(database, "SELECT count(*) FROM sqlite_master WHERE name = 'item'") == [(0,)]  # DDL included


async def test_a_refill_queued_with_a_failing_commit_fails_instead_of_hanging(database: Path) -> None:
    failing = failing_item()
    storage = Storage(database, stats=Stats())
    await storage.open()
    await storage.begin_crawl("books")
    await storage.submit(Commit(items=[failing]))
    with pytest.raises(StorageError, match="database or disk is full"):
        await asyncio.wait_for(storage.lease_pending(10), timeout=10.0)
    with pytest.raises(StorageError, match=r"writing to .* failed"):
        await storage.close()


async def test_commits_that_trickle_in_wait_for_each_other(database: Path) -> None:
    """Pages finishing a few ms apart (a loop that is not busy) share a transaction instead
    of paying a transaction each."""
    async with Storage(database, stats=Stats(), linger=30.0) as storage:
        await storage.begin_crawl("books")
        sizes = counting_transactions(storage)
        for n in range(5):
            await storage.submit(Commit(items=[stored_item(book(url=f"http://b.test/{n}"), "u")]))
            await asyncio.sleep(0.01)
        await storage.finish_crawl(status="finished", reason="finished")  # the stop ends the wait
    assert sizes == [5]
    assert rows(database, "SELECT count(*) FROM book") == [(5,)]


async def test_a_refill_does_not_wait_for_the_linger(database: Path) -> None:
    async with Storage(database, stats=Stats(), linger=30.0) as storage:
        await storage.begin_crawl("books")
        sizes = counting_transactions(storage)
        await storage.submit(Commit(requests=[Scheduled(Request("http://b.test/"), "fp-start", "b.test")]))
        leased = await asyncio.wait_for(storage.lease_pending(10), timeout=10.0)  # not after 30 s
        assert leased == []  # the request is this crawl's already (in its frontier)
        assert sizes == [1]  # the commit queued before the refill was written first, alone
        assert rows(database, "SELECT fingerprint, leased FROM scraper_requests") == [("fp-start", 1)]
        await storage.finish_crawl(status="finished", reason="finished")


async def test_flush_returns_once_every_earlier_commit_is_written(database: Path) -> None:
    async with Storage(database, stats=Stats(), linger=30.0) as storage:
        await storage.begin_crawl("books")
        sizes = counting_transactions(storage)
        for n in range(3):
            await storage.submit(Commit(items=[stored_item(book(url=f"http://b.test/{n}"), "u")]))
        assert storage.items_stored == 0
        await asyncio.wait_for(storage.flush(), timeout=10.0)  # not after the 30 s linger
        assert storage.items_stored == 3
        assert sizes == [3]
        await storage.finish_crawl(status="finished", reason="finished")
    assert rows(database, "SELECT count(*) FROM book") == [(3,)]


async def test_known_answers_fingerprints_queued_and_committed(database: Path) -> None:
    async with Storage(database, stats=Stats(), linger=30.0) as storage:
        await storage.begin_crawl("books")
        await storage.submit(Commit(requests=[Scheduled(Request("http://b.test/1"), "fp-1", "b.test")]))
        await storage.flush()
        await storage.submit(Commit(requests=[Scheduled(Request("http://b.test/2"), "fp-2", "b.test")]))
        assert await storage.known(["fp-1", "fp-2", "fp-3"]) == {"fp-1", "fp-2"}  # fp-2 still queued
        await storage.finish_crawl(status="finished", reason="finished")


async def test_a_storage_not_asked_for_known_fingerprints_refuses_to_answer(database: Path) -> None:
    """An in-memory seen-set never asks, so nothing tracks queued fingerprints: an answer
    would miss them."""
    async with Storage(database, stats=Stats(), answers_known=False) as storage:
        await storage.begin_crawl("books")
        await storage.submit(Commit(requests=[Scheduled(Request("http://b.test/1"), "fp-1", "b.test")]))
        with pytest.raises(RuntimeError, match="answers_known=False"):
            await storage.known(["fp-1"])
        await storage.finish_crawl(status="finished", reason="finished")
    assert rows(database, "SELECT fingerprint, state FROM scraper_requests") == [("fp-1", "pending")]


async def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot open database"):
        async with Storage(blocker / "crawl.db", stats=Stats()):
            pass


async def test_a_folder_given_as_the_database_is_named_as_one(tmp_path: Path) -> None:
    """SQLite says only "unable to open database file" (``--db /tmp`` for ``--db /tmp/x.db``)."""
    with pytest.raises(StorageError) as raised:
        async with Storage(tmp_path, stats=Stats()):
            pass
    assert str(raised.value) == f"cannot open database {tmp_path}: a folder; give a file's path"
    assert not tmp_path.with_name(tmp_path.name + ".lock").exists()  # no lock file left beside it


@pytest.mark.parametrize(("name", "read_as"), [(":memory:", "an in-memory database"), ("file:crawl.db", "a URI")])
async def test_a_name_sqlite_reads_as_no_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, read_as: str
) -> None:
    """--db :memory: crawled, exited 0 and kept nothing; --db file:crawl.db wrote crawl.db but
    locked 'file:crawl.db', so a second crawl of crawl.db was not refused."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError) as raised:
        async with Storage(Path(name), stats=Stats()):
            pass
    assert str(raised.value) == f"cannot open database {name}: SQLite reads that name as {read_as}; give a file's path"
    assert not (tmp_path / f"{name}.lock").exists() and not (tmp_path / "crawl.db").exists()  # nothing made


@pytest.mark.parametrize(
    ("text", "rows_each"),
    [
        ("", 2),  # the page's outcome and its item
        ("x" * 3 * writer_module._ROW_BYTES + "y" * 100, 5),  # an item of 3.1 KiB of text weighs 3 rows more
    ],
)
async def test_submitters_wait_for_room_while_the_writer_is_behind(
    database: Path, monkeypatch: pytest.MonkeyPatch, text: str, rows_each: int
) -> None:
    """Memory stays bounded: past ``_QUEUE_ROWS`` queued rows a submitter waits for the writer,
    an item with much text counting as several rows (pages stored whole had filled 1.1 GB)."""
    monkeypatch.setattr("scraper.writer._QUEUE_ROWS", 5 * rows_each)
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("books")
        gate = asyncio.Event()
        write_batch = writer_of(storage)._write

        async def held_write(batch: list[Commit]) -> None:
            await gate.wait()
            await write_batch(batch)

        writer_of(storage)._write = held_write  # type: ignore[method-assign]
        submitted = 0

        async def submit_all() -> None:
            nonlocal submitted
            for n in range(30):
                await storage.submit(Commit(items=[stored_item({"n": n, "text": text}, "u")]))
                submitted += 1

        submitting = asyncio.create_task(submit_all())
        try:
            for _ in range(200):  # until the bound is reached (at once, unless the machine is slow)
                if submitted >= 5:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # time for a sixth submit, were there room for it
            assert (
                submitted == 5 and writer_of(storage)._queued_rows == 5 * rows_each
            )  # the bound reached; the sixth waits
        finally:
            gate.set()  # a failed check must not leave the writer held
        await asyncio.wait_for(submitting, 5)
        await storage.finish_crawl(status="finished", reason="finished")
    assert rows(database, "SELECT count(*), sum(length(text)) FROM item") == [(30, 30 * len(text))]


async def test_an_item_sqlite_cannot_take_is_an_error_row_and_nothing_else_is_lost(database: Path) -> None:
    """A value past SQLite (an int past 64 bits, a lone surrogate) fails its item only: the
    other items of its page and of its transaction are stored, and the crawl goes on."""
    stats = await write(
        database,
        Commit(items=[stored_item({"n": 1}, "http://a.test/1")]),
        Commit(items=[stored_item({"n": 10**20}, "http://a.test/2"), stored_item({"n": 2}, "http://a.test/2")]),
        Commit(items=[stored_item({"n": 4, "note": "\ud800"}, "http://a.test/3")]),
        Commit(items=[stored_item({"n": 3}, "http://a.test/4")]),
    )
    assert rows(database, "SELECT n FROM item ORDER BY n") == [(1,), (2,), (3,)]
    errors = rows(database, "SELECT stage, error_type, url, message FROM scraper_errors ORDER BY url")
    assert [error[:3] for error in errors] == [
        ("validate", "OverflowError", "http://a.test/2"),
        ("validate", "UnicodeEncodeError", "http://a.test/3"),
    ]
    assert errors[0][3] == "not stored in table 'item': Python int too large to convert to SQLite INTEGER (field 'n')"
    assert errors[1][3].endswith("surrogates not allowed (field 'note')")  # the field named: it was not
    assert rows(database, "SELECT status FROM scraper_crawls") == [("finished",)]
    assert stats.get("items/stored") == 3 and stats.get("errors/validate/OverflowError") == 1


async def test_an_item_past_the_tables_column_limit_fails_alone(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dicts of many shapes add columns to one table; the item whose columns would pass
    SQLite's limit (here 5 + the framework's) is an error row, its page's other items stay."""
    monkeypatch.setattr("scraper.writes.MAX_COLUMNS", 5)
    wide = stored_item({"b1": 1, "b2": 2, "b3": 3}, "http://a.test/2")
    stats = await write(
        database,
        Commit(items=[stored_item({"a1": 1, "a2": 2, "a3": 3}, "http://a.test/1")]),
        Commit(items=[wide, stored_item({"ok": 1}, "http://a.test/2")]),
    )
    assert rows(database, "SELECT a1, ok FROM item ORDER BY _id") == [(1, None), (None, 1)]
    assert rows(database, "SELECT stage, error_type, url, message FROM scraper_errors") == [
        (
            "validate",
            "ColumnsExhausted",
            "http://a.test/2",
            "not stored in table 'item': table 'item' cannot take 3 more columns (SQLite's 2,000)",
        )
    ]
    assert stats.get("items/stored") == 2 and stats.get("errors/validate/ColumnsExhausted") == 1


async def test_a_small_commit_waits_for_room_behind_a_large_one(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of 20,000 links waited for room while the commits of its own requests, small,
    went in ahead of it: their outcomes were written before their rows, which then stayed
    pending in a finished crawl (5,000 of them)."""
    monkeypatch.setattr("scraper.writer._QUEUE_ROWS", 10)
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("books")
        gate = asyncio.Event()
        written: list[int] = []
        write_batch = writer_of(storage)._write

        async def held_write(batch: list[Commit]) -> None:
            await gate.wait()
            written.extend(len(commit.items) for commit in batch)
            await write_batch(batch)

        writer_of(storage)._write = held_write  # type: ignore[method-assign]

        def commit_of(items: int) -> Commit:
            return Commit(items=[stored_item({"n": n}, "u") for n in range(items)])

        await storage.submit(commit_of(5))  # 6 rows, taken by the held writer
        large = asyncio.create_task(storage.submit(commit_of(8)))  # 9 rows: 15 > 10, it waits
        await asyncio.sleep(0.01)
        small = asyncio.create_task(storage.submit(commit_of(1)))  # 2 rows would fit: it waits in line
        await asyncio.sleep(0.01)
        try:
            assert not large.done() and not small.done()
        finally:
            gate.set()
        await asyncio.wait_for(asyncio.gather(large, small), 5)
        await storage.finish_crawl(status="finished", reason="finished")
    assert written == [5, 8, 1]


async def test_a_transaction_sqlite_ended_itself_reports_its_own_cause(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk makes SQLite roll the transaction back itself; our ROLLBACK then failed with
    'no transaction is active', and that was the error the user saw instead of the cause."""

    async def full_disk(db: aiosqlite.Connection, statements: Any) -> None:
        await db.execute("ROLLBACK")  # what SQLite does on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(writes, "execute_all", full_disk)
    storage = Storage(database, stats=Stats())
    await storage.open()
    await storage.begin_crawl("books")
    await storage.submit(Commit(items=[stored_item({"n": 1}, "u")]))
    with pytest.raises(WriteFailed, match=r"^writing to .* failed: database or disk is full$"):
        await storage.finish_crawl(status="finished", reason="finished")
    await storage.close()
    assert rows(database, "SELECT status, finish_reason FROM scraper_crawls") == [
        ("interrupted", f"writing to {database} failed: database or disk is full")
    ]
    monkeypatch.undo()  # the disk has room again: the next run resumes what was committed
    async with Storage(database, stats=Stats()) as again:
        start = await again.begin_crawl("books")
        assert start.resumed and start.crawl_id == 1
        await again.finish_crawl(status="finished", reason="finished")


async def storage_whose_writes_raise(database: Path, error: Exception) -> Storage:
    """An open storage with a crawl begun, whose every transaction raises ``error``."""
    storage = Storage(database, stats=Stats())
    await storage.open()
    await storage.begin_crawl("books")

    async def broken(batch: list[Commit]) -> None:
        raise error

    writer_of(storage)._write = broken  # type: ignore[method-assign]
    return storage


async def test_a_writer_failing_in_an_unforeseen_way_still_closes_the_crawl_row(database: Path) -> None:
    storage = await storage_whose_writes_raise(database, RuntimeError("a bug in the writer"))
    await storage.submit(Commit(items=[stored_item({"n": 1}, "u")]))
    with pytest.raises(StorageError, match="a bug in the writer"):
        await storage.finish_crawl(status="finished", reason="finished")
    await storage.close()
    assert rows(database, "SELECT status FROM scraper_crawls") == [("interrupted",)]  # resumable


async def test_a_failing_writer_stops_submitters_instead_of_hanging(database: Path) -> None:
    storage = await storage_whose_writes_raise(database, StorageError("disk full"))
    with pytest.raises(StorageError, match="disk full"):
        for n in range(20_000):  # more than the queue holds: a hang here would time the test out
            await storage.submit(Commit(items=[stored_item({"n": n}, "u")]))
    with pytest.raises(StorageError, match=r"writing to .* failed: disk full"):
        await storage.close()


async def unfinished_crawl(database: Path, **arguments: str) -> None:
    """A crawl of ``books`` begun with ``arguments`` and left running, as a killed run leaves it."""
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("books", arguments=arguments)


async def test_a_crawl_resumes_only_with_the_arguments_it_was_started_with(database: Path) -> None:
    """Resumed with other -a values, the pending pages were crawled for one and the new ones
    for the other, in one crawl, without a word."""
    await unfinished_crawl(database, category="poetry", token="s3cret")
    async with Storage(database, stats=Stats()) as storage:
        with pytest.raises(ConfigError) as refused:
            await storage.begin_crawl("books", arguments={"category": "travel", "page": "2"})
        start = await storage.begin_crawl("books", arguments={"token": "s3cret", "category": "poetry"})
    assert str(refused.value) == (
        "crawl 1 of books was started with other -a arguments (category: another value; page: given now only; "
        "token: not given now): give the same ones to resume it, or --fresh to start anew"
    )
    assert start.resumed and start.crawl_id == 1
    (stored,) = rows(database, "SELECT arguments FROM scraper_crawls")[0]
    assert set(json.loads(stored)) == {"category", "token"} and "s3cret" not in stored  # names, not values


async def test_fresh_starts_anew_whatever_the_arguments(database: Path) -> None:
    await unfinished_crawl(database, category="poetry")
    async with Storage(database, stats=Stats()) as storage:
        start = await storage.begin_crawl("books", fresh=True, arguments={"category": "travel"})
    assert not start.resumed and start.crawl_id == 2


async def test_a_file_from_before_the_arguments_were_kept_gains_the_column_and_resumes(database: Path) -> None:
    with closing(sqlite3.connect(database)) as old:
        old.execute(
            "CREATE TABLE scraper_crawls (id INTEGER PRIMARY KEY, spider TEXT NOT NULL, started_at TEXT NOT NULL,"
            " finished_at TEXT, status TEXT NOT NULL, finish_reason TEXT, stats TEXT)"
        )
        old.execute("INSERT INTO scraper_crawls (spider, started_at, status) VALUES ('books', 'then', 'interrupted')")
        old.commit()
    async with Storage(database, stats=Stats()) as storage:
        start = await storage.begin_crawl("books", arguments={"category": "poetry"})  # nothing to compare with
    assert start.resumed and start.crawl_id == 1
    assert rows(database, "SELECT arguments FROM scraper_crawls") == [(None,)]


async def test_a_resume_that_cannot_write_is_one_error_and_leaves_the_crawl_as_it_was(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a disk still full, the resume marked the crawl running, then died with a traceback:
    the row lost its 'interrupted' and the reason why."""
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("books")
        await storage.finish_crawl(status="interrupted", reason="writing failed: database or disk is full")
    release = schema.RELEASE_LEASES
    monkeypatch.setattr(schema, "RELEASE_LEASES", "INSERT INTO no_such_table VALUES (?)")  # fails after the UPDATE
    async with Storage(database, stats=Stats()) as storage:
        with pytest.raises(WriteFailed, match=r"^cannot begin the crawl in .*: no such table: no_such_table$"):
            await storage.begin_crawl("books")
    assert rows(database, "SELECT status, finish_reason FROM scraper_crawls") == [
        ("interrupted", "writing failed: database or disk is full")
    ]
    monkeypatch.setattr(schema, "RELEASE_LEASES", release)
    async with Storage(database, stats=Stats()) as storage:
        assert (await storage.begin_crawl("books")).resumed


async def test_a_database_another_program_keeps_locked_is_one_error(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its BEGIN was outside the check that makes SQLite's errors one line: a traceback."""
    monkeypatch.setattr("scraper.storage._BUSY_TIMEOUT_MS", 50)
    async with Storage(database, stats=Stats()) as storage:
        await storage.begin_crawl("books")
        await storage.finish_crawl(status="interrupted", reason="SIGINT")
    with closing(sqlite3.connect(database, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another program, writing
        async with Storage(database, stats=Stats()) as storage:
            with pytest.raises(WriteFailed, match=r"^cannot begin the crawl in .*: database is locked$"):
                await storage.begin_crawl("books")
        other.execute("ROLLBACK")
    assert rows(database, "SELECT status, finish_reason FROM scraper_crawls") == [("interrupted", "SIGINT")]


class Shared(Item):
    table: ClassVar[str] = "shared"
    key: ClassVar[tuple[str, ...]] = ("a",)
    a: str


class SharedUnkeyed(Item):
    table: ClassVar[str] = "Shared"  # the same table to SQLite, spelt otherwise
    a: str


async def test_a_class_with_another_key_than_its_tables_fails_alone(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two classes on one table, one keyed: the first to write it keeps its key for the run,
    the other's items fail by name. The unkeyed class's items had failed on the key's index
    (or dropped it), each taking its page's other items with it."""
    written_apart: list[Commit] = []
    apart = writer_module.Writer._write_without_unstorable

    async def counted(self: Writer, commit: Commit, error: Exception) -> None:
        written_apart.append(commit)
        await apart(self, commit, error)

    monkeypatch.setattr(writer_module.Writer, "_write_without_unstorable", counted)
    stats = await write(
        database,
        Commit(items=[stored_item(Shared(a="x"), "http://a.test/1")]),
        Commit(
            items=[
                stored_item(SharedUnkeyed(a="x"), "http://a.test/2"),
                stored_item(Shared(a="y"), "http://a.test/2"),
                stored_item(book(), "http://a.test/2"),
            ]
        ),
        Commit(items=[stored_item(Shared(a="x"), "http://a.test/3")]),  # upserted: the key still holds
    )
    assert rows(database, "SELECT a, _url FROM shared ORDER BY a") == [
        ("x", "http://a.test/3"),
        ("y", "http://a.test/2"),
    ]
    assert rows(database, "SELECT count(*) FROM book") == [(1,)]
    assert rows(database, "SELECT name FROM pragma_index_list('shared')") == [("shared__key__a",)]
    assert rows(database, "SELECT stage, error_type, url, message FROM scraper_errors") == [
        (
            "validate",
            "KeyConflict",
            "http://a.test/2",
            "not stored in table 'Shared': table 'Shared' has key ('a',) in this run (another item class wrote "
            "it first), this item's class none: give both one key, or each its own table",
        )
    ]
    assert stats.get("items/stored") == 4
    assert written_apart == []  # refused before its transaction: the pages were not written one by one


async def test_an_item_a_unique_index_refuses_fails_alone_and_is_named(database: Path) -> None:
    """A UNIQUE index the user made (or any constraint) refusing one item had every item of
    its page dropped, under one error naming neither."""
    await write(database, Commit(items=[stored_item({"sku": "a"}, "http://a.test/1")]))
    with closing(sqlite3.connect(database)) as db:
        db.execute("CREATE UNIQUE INDEX item_sku ON item (sku)")
    await write(
        database,
        Commit(items=[stored_item({"sku": sku}, "http://a.test/2") for sku in ("b", "a", "c", "b")]),
    )
    assert rows(database, "SELECT sku FROM item ORDER BY _id") == [("a",), ("b",), ("c",)]
    assert rows(database, "SELECT error_type, message FROM scraper_errors") == [
        ("IntegrityError", "not stored in table 'item': UNIQUE constraint failed: item.sku (sku='a')"),
        ("IntegrityError", "not stored in table 'item': UNIQUE constraint failed: item.sku (sku='b')"),
    ]


async def test_another_programs_table_of_an_items_name_is_refused_naming_it(database: Path) -> None:
    """A file of another program's, with a table 'item' of its own: the crawl stopped on 'table item
    has no column named _crawl_id', then every run and status failed on 'no such column:
    _crawl_id', naming no table."""
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE item (x TEXT)")
        db.execute("INSERT INTO item VALUES ('theirs')")
    with pytest.raises(StorageError, match=r"table 'item' is not one of this framework's \(it has no _crawl_id"):
        await write(database, Commit(items=[stored_item({"sku": "a"}, "http://a.test/1")]))
    assert rows(database, "SELECT * FROM item") == [("theirs",)]  # left as it was
    async with Storage(database, stats=Stats()) as storage:  # the next run begins, and counts no items there
        start = await storage.begin_crawl("books")
    assert start.resumed and start.items == {}


def damage(path: Path) -> None:
    """600 bytes overwritten every 16 KiB past the first page: SQLite opens the file, then
    finds its pages malformed."""
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 16384):
        data[offset : offset + 600] = b"\xff" * 600
    path.write_bytes(bytes(data))


async def test_a_damaged_file_is_one_error_that_says_how_to_recover_it(database: Path) -> None:
    """A crawl of a damaged file ended in a traceback ('database disk image is malformed'),
    each run leaving a crawl row 'running', with a resume hint that could not work."""
    await write(database, *(Commit(items=[stored_item({"n": n, "text": "x" * 500}, f"u{n}")]) for n in range(300)))
    await asyncio.to_thread(damage, database)
    with pytest.raises(StorageError) as raised:
        async with Storage(database, stats=Stats()) as storage:
            await storage.begin_crawl("books")
    assert "malformed" in str(raised.value)
    assert str(raised.value).endswith(
        f"(the file is damaged: copy out what SQLite can still read with sqlite3 {database} '.recover' | "
        "sqlite3 NEW.db, or crawl into a new file with --db)"
    )


class Mixed(Item):
    table: ClassVar[str] = "Mixed"
    key: ClassVar[tuple[str, ...]] = ("a",)
    a: str
    b: str


class MixedByB(Item):
    table: ClassVar[str] = "mixed"
    key: ClassVar[tuple[str, ...]] = ("b",)
    a: str
    b: str


async def test_a_changed_key_is_replaced_whatever_the_case_of_the_tables_name(database: Path) -> None:
    await write(database, Commit(items=[stored_item(Mixed(a="1", b="x"), "u")]))
    await write(database, Commit(items=[stored_item(MixedByB(a="1", b=b), "u") for b in ("y", "z")]))
    assert rows(database, "SELECT name FROM pragma_index_list('mixed')") == [("mixed__key__b",)]
    assert rows(database, "SELECT a, b FROM mixed ORDER BY _id") == [("1", "x"), ("1", "y"), ("1", "z")]
