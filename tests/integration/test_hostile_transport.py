"""End-to-end crawls against servers that misbehave on the wire: refused, silent, dripping,
resetting, bombing, lying about sizes, speaking broken HTTP or undeclared charsets.

Each crawl also fetches a good page on another host (``localhost``), whose item must be stored:
one bad server never stops the crawl, which ends "finished" with every request settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from scraper.demo_site import serve
from tests.conftest import rows
from tests.integration.scenario import (
    CONNECTION_LIFETIME,
    GOOD_TEXT,
    Behaviour,
    Crawl,
    crawl,
    good_site,
    head,
    peak_rss_bytes,
    raw_server,
    refused_url,
    reset_connection,
    reset_peak_rss,
    resident_bytes,
)

TIMES = 1  # retry.times in every crawl here: a failed request has TIMES + 1 attempts
RETRIED = {"ConnectionFailed", "IncompleteBody", "FetchTimeout"}  # the rest fail at the first attempt
MiB = 1 << 20


def request_row(database: Path, url: str) -> tuple[str, int, int | None]:
    """(state, attempts, last_status) of ``url``'s request."""
    [row] = rows(database, "SELECT state, attempts, last_status FROM scraper_requests WHERE url = ?", (url,))
    return row


def error_types(database: Path, url: str) -> list[str]:
    return [error for (error,) in rows(database, "SELECT error_type FROM scraper_errors WHERE url = ?", (url,))]


def assert_good_page_stored(run: Crawl, database: Path, good_url: str) -> None:
    assert (run.result.status, run.result.reason) == ("finished", "finished")
    assert rows(database, "SELECT url, text FROM item WHERE url = ?", (good_url,)) == [(good_url, GOOD_TEXT)]
    assert request_row(database, good_url) == ("done", 1, 200)


# 1. connection refused


async def test_refused_connection_fails_after_retries_and_the_crawl_goes_on(database: Path) -> None:
    bad = refused_url()
    async with good_site() as good:
        run = await crawl([bad, f"{good}/good"], database)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bad) == ("failed", TIMES + 1, None)
    assert error_types(database, bad) == ["ConnectionFailed"]
    assert run.result.stats.get("errors/fetch/ConnectionFailed") == 1
    assert run.elapsed < 3  # a refusal is immediate: nothing waits for the timeout


# 2. a server that accepts and never answers


async def silent(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(CONNECTION_LIFETIME)


async def test_silent_server_times_out_once_per_attempt(database: Path) -> None:
    async with raw_server(silent) as bad, good_site() as good:
        run = await crawl([bad.url, f"{good}/good"], database, timeout=1)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bad.url) == ("failed", TIMES + 1, None)
    assert error_types(database, bad.url) == ["FetchTimeout"]
    assert len(bad.connections) == TIMES + 1
    # the client gave up on each connection at its deadline, not before and not much later
    assert all(0.9 <= connection.held < 2.0 for connection in bad.connections)
    assert run.elapsed < (TIMES + 1) * 1 + 3


# 3. slow drip: headers, then one byte every 0.2 s (a read timeout alone would never fire)


async def drip(writer: asyncio.StreamWriter) -> None:
    writer.write(head(Content_Type="text/html", Content_Length=1_000_000) + b"<p>")
    await writer.drain()
    for _ in range(int(CONNECTION_LIFETIME / 0.2)):
        await asyncio.sleep(0.2)
        writer.write(b"x")
        await writer.drain()


@pytest.mark.timeout(30)
async def test_slow_drip_is_cut_at_the_total_timeout(tmp_path: Path) -> None:
    elapsed: dict[float, float] = {}
    held: dict[float, list[float]] = {}
    for timeout in (1.0, 2.0):  # 2.0 is the negative control: the deadline is what ends the drip
        database = tmp_path / f"drip-{timeout:g}.db"
        async with raw_server(drip) as bad, good_site() as good:
            run = await crawl([bad.url, f"{good}/good"], database, timeout=timeout)
        assert_good_page_stored(run, database, f"{good}/good")
        assert request_row(database, bad.url)[:2] == ("failed", TIMES + 1)
        assert error_types(database, bad.url) == ["FetchTimeout"]
        assert len(bad.disconnected()) == TIMES + 1
        elapsed[timeout] = run.elapsed
        held[timeout] = [connection.held for connection in bad.connections]

    assert (TIMES + 1) * 1.0 <= elapsed[1.0] < (TIMES + 1) * 1.0 + 3
    assert all(0.9 <= seconds < 1.6 for seconds in held[1.0])
    assert all(1.9 <= seconds < 2.6 for seconds in held[2.0])
    assert elapsed[2.0] - elapsed[1.0] > (TIMES + 1) * 0.7  # a longer timeout lets the drip run longer


# 4. the connection ends in the middle of the body: reset (RST) or closed (FIN)


def cut_mid_body(reset: bool) -> Behaviour:
    async def behaviour(writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Type="text/html", Content_Length=100_000) + b"<p>" + b"x" * 997)
        await writer.drain()
        await asyncio.sleep(0.05)  # let the head and the first bytes reach the client
        if reset:
            reset_connection(writer)  # else the raw server closes it normally when this returns

    return behaviour


reset_mid_body = cut_mid_body(reset=True)


@pytest.mark.parametrize("reset", [True, False], ids=["RST", "FIN"])
async def test_body_cut_short_is_retried_then_failed(database: Path, reset: bool) -> None:
    async with raw_server(cut_mid_body(reset)) as bad, good_site() as good:
        run = await crawl([bad.url, f"{good}/good"], database, timeout=5)

    assert_good_page_stored(run, database, f"{good}/good")
    state, attempts, _ = request_row(database, bad.url)
    assert (state, attempts) == ("failed", TIMES + 1)
    assert len(bad.connections) == TIMES + 1  # the retry really went back to the server
    [error] = error_types(database, bad.url)
    assert error in {"IncompleteBody", "ConnectionFailed"}
    assert run.result.stats.get(f"retries/{error}") == TIMES
    assert run.elapsed < 3  # the cut is noticed at once, not at the 5 s timeout
    assert rows(database, "SELECT count(*) FROM item") == [(1,)]  # no half body was parsed


# 5. gzip bomb: 1 GB of zeros, about 1 MB on the wire


@dataclass
class Transfer:
    """What one streaming handler sent, and whether the client left before the end."""

    sent: int = 0
    client_left: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


def gzip_bomb(blocks: int) -> Iterator[bytes]:
    """``blocks`` MiB of zeros as one gzip member, compressed one block at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    for _ in range(blocks):
        yield compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


async def stream(
    request: web.Request, transfer: Transfer, pieces: Iterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html", **headers})
    await response.prepare(request)
    try:
        async with asyncio.timeout(CONNECTION_LIFETIME):
            for piece in pieces:
                await response.write(piece)
                transfer.sent += len(piece)
                await asyncio.sleep(0)  # the client shares this loop: let it read
        await response.write_eof()
    except (ConnectionResetError, TimeoutError):  # aiohttp: "Cannot write to closing transport"
        transfer.client_left = True
    finally:
        transfer.done.set()
    return response


@contextlib.asynccontextmanager
async def streaming_site(
    path: str, body: Callable[[], Iterator[bytes]], headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, list[Transfer]]]:
    """An aiohttp site streaming ``body()`` at ``path``; yields its URL and one record per request."""
    transfers: list[Transfer] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        transfers.append(Transfer())
        return await stream(request, transfers[-1], body(), headers or {})

    app = web.Application()
    app.router.add_get(path, handler)
    async with serve(app) as base_url:
        yield f"{base_url}{path}", transfers


async def finished(transfers: list[Transfer]) -> list[Transfer]:
    """The records once every handler has returned."""
    for transfer in transfers:
        await asyncio.wait_for(transfer.done.wait(), 10)
    return transfers


async def crawl_bomb(database: Path, good: str, cap: int) -> tuple[Crawl, int, str]:
    """Crawl the 1 GB bomb with ``max_response_bytes=cap``; also the peak RSS growth it caused."""
    async with streaming_site("/bomb", lambda: gzip_bomb(1024), {"Content-Encoding": "gzip"}) as (bomb, transfers):
        before = resident_bytes()
        if not reset_peak_rss() and peak_rss_bytes() > before + 8 * MiB:
            pytest.skip("an earlier RSS peak would hide this one, and /proc/self/clear_refs cannot reset it")
        run = await crawl([bomb, f"{good}/good"], database, max_response_bytes=cap)
        growth = peak_rss_bytes() - before
        [transfer] = await finished(transfers)
    assert transfer.client_left  # the client hung up before the end of the bomb
    return run, growth, bomb


@pytest.mark.timeout(30)
async def test_gzip_bomb_is_refused_within_a_bounded_memory(tmp_path: Path) -> None:
    async with good_site() as good:
        await crawl([f"{good}/good"], tmp_path / "warm-up.db")  # first-use allocations are not the bomb's
        database = tmp_path / "bomb.db"
        run, growth, bomb = await crawl_bomb(database, good, cap=MiB)
        # negative control: the probe does see memory grow with the cap
        _, control_growth, _ = await crawl_bomb(tmp_path / "control.db", good, cap=64 * MiB)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bomb) == ("failed", 1, None)  # too large is final: no retry
    assert error_types(database, bomb) == ["ResponseTooLarge"]
    assert growth < 8 * MiB, f"RSS grew {growth / MiB:.1f} MiB for a 1 MiB cap"
    assert control_growth > 32 * MiB, f"RSS grew only {control_growth / MiB:.1f} MiB for a 64 MiB cap"


# 6. huge non-HTML: refused by its headers, without reading or waiting


def octet_stream(length: int | None) -> Behaviour:
    async def behaviour(writer: asyncio.StreamWriter) -> None:
        sizes: dict[str, str | int] = {} if length is None else {"Content_Length": length}
        writer.write(head(Content_Type="application/octet-stream", **sizes) + b"\0" * 1024)
        await writer.drain()
        await asyncio.sleep(CONNECTION_LIFETIME)  # then hang: only the client can end this

    return behaviour


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (5_000_000_000, {"ContentTypeRefused", "ResponseTooLarge"}),  # either header is reason enough
        (None, {"ContentTypeRefused"}),  # no length: the type alone refuses it
    ],
)
async def test_huge_octet_stream_is_refused_by_headers_and_hung_up_on(
    database: Path, length: int | None, expected: set[str]
) -> None:
    async with raw_server(octet_stream(length)) as bad, good_site() as good:
        run = await crawl([bad.url, f"{good}/good"], database, timeout=5)
        hung_up = await bad.wait_disconnected(1)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bad.url) == ("failed", 1, None)  # refusal is final: no retry
    [error] = error_types(database, bad.url)
    assert error in expected
    assert run.elapsed < 2  # well before the 5 s timeout
    assert len(bad.connections) == 1
    assert [connection.held < 2 for connection in hung_up] == [True]  # the client hung up at once


# 7. endless chunked HTML


def endless_chunks() -> Iterator[bytes]:
    chunk = b"<p>" + b"y" * (64 * 1024 - 3)
    while True:
        yield chunk


async def test_endless_chunked_body_is_cut_at_the_cap(database: Path) -> None:
    async with streaming_site("/endless", endless_chunks) as (bad, transfers), good_site() as good:
        run = await crawl([bad, f"{good}/good"], database, timeout=5, max_response_bytes=256 * 1024)
        [transfer] = await finished(transfers)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bad) == ("failed", 1, None)
    assert error_types(database, bad) == ["ResponseTooLarge"]
    assert transfer.client_left  # the stream ended because the client hung up
    assert transfer.sent < 64 * MiB  # what the socket buffers held, not an endless transfer
    assert run.elapsed < 3


# 8. undeclared charsets

RUSSIAN = (
    "Москва — столица России, крупнейший по численности населения город страны и один из самых "
    "больших городов мира. Здесь расположены органы государственной власти, многочисленные музеи, "
    "театры и университеты, а улицы старого центра хранят память о восьми веках истории."  # noqa: RUF001
)
JAPANESE = (
    "東京は日本の首都であり、世界でも有数の大都市です。江戸時代には将軍の城下町として栄え、"
    "明治維新の後に現在の名前になりました。今日では多くの人々が電車で通勤し、古い寺社と高いビルが並んでいます。"
)
FRENCH = (
    "À l'été, les élèves se réunissaient près de la fontaine du château pour écouter le garçon qui "
    "jouait du violon. Ça leur rappelait les fêtes de Noël, où l'on mangeait des crêpes et des "
    "gâteaux aux noix, près du feu, jusqu'à très tard dans la soirée."
)
UNDECLARED = {"/ru": (RUSSIAN, "cp1251"), "/ja": (JAPANESE, "shift_jis"), "/fr": (FRENCH, "latin-1")}


def page_in(text: str, codec: str) -> bytes:
    return f"<html><head><title>page</title></head><body><p>{text}</p></body></html>".encode(codec)


async def test_undeclared_legacy_charsets_are_decoded_to_the_original_text(database: Path) -> None:
    routes = {path: (page_in(text, codec), "text/html") for path, (text, codec) in UNDECLARED.items()}
    async with good_site(routes) as good:
        run = await crawl([f"{good}{path}" for path in [*UNDECLARED, "/good"]], database)

    assert_good_page_stored(run, database, f"{good}/good")
    stored = dict(rows(database, "SELECT url, text FROM item"))
    for path, (text, codec) in UNDECLARED.items():
        assert not text.isascii() and codec not in {"utf-8", "ascii"}  # the bytes really are legacy
        assert stored[f"{good}{path}"] == text, f"{codec} page decoded wrongly"
    assert rows(database, "SELECT count(*) FROM scraper_errors") == [(0,)]


# 9. malformed HTTP

MALFORMED = {
    "garbage status code": b"HTTP/1.1 abc\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nContent-Type text/html\r\nContent-Length: 12\r\n\r\n<p>hello</p>",
    "not HTTP at all": b"SSH-2.0-OpenSSH_9.6\r\n",
    "negative Content-Length": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: -5\r\n\r\n<p>x</p>",
    "conflicting Content-Length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 8\r\nContent-Length: 20\r\n\r\n<p>x</p>"
    ),
    "bad chunk size": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n<p>x</p>\r\n0\r\n\r\n"
    ),
    "endless header line": b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 200_000,
    "closed without a byte": b"",
}


def answer_with(reply: bytes) -> Behaviour:
    async def behaviour(writer: asyncio.StreamWriter) -> None:
        writer.write(reply)
        await writer.drain()

    return behaviour


@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_http_is_a_connection_failure(database: Path, reply: bytes) -> None:
    async with raw_server(answer_with(reply)) as bad, good_site() as good:
        run = await crawl([bad.url, f"{good}/good"], database)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bad.url) == ("failed", TIMES + 1, None)
    assert error_types(database, bad.url) == ["ConnectionFailed"]
    [(message,)] = rows(database, "SELECT message FROM scraper_errors WHERE url = ?", (bad.url,))
    assert "400, message" not in message  # aiohttp's words for its parser's refusal, read as the server's 400
    # one connection an attempt: aiohttp's own resend of an idempotent request whose connection
    # closed before any answer (RFC 9112 9.3.1) went outside the host's delay and the counts
    assert len(bad.connections) == TIMES + 1
    assert run.elapsed < 3


# 9b. a body that is not in the coding it claims

NOT_GZIP = b"<html><body><p>plain text, though the header says gzip</p></body></html>"
GZIP_LIE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: "
    + str(len(NOT_GZIP)).encode()
    + b"\r\n\r\n"
    + NOT_GZIP
)


async def test_a_body_not_in_its_claimed_coding_fails_at_once(database: Path) -> None:
    """The server sends it so every time: it was retried as if it had been cut short."""
    async with raw_server(answer_with(GZIP_LIE)) as bad, good_site() as good:
        run = await crawl([bad.url, f"{good}/good"], database)

    assert_good_page_stored(run, database, f"{good}/good")
    assert request_row(database, bad.url) == ("failed", 1, None)
    assert len(bad.connections) == 1
    assert error_types(database, bad.url) == ["UndecodableBody"]


# all of the above in one crawl: every request settles, and the books balance


@contextlib.asynccontextmanager
async def hostile_web() -> AsyncIterator[dict[str, set[str]]]:
    """Every bad server at once, mapped to the error types its request may fail with."""
    async with contextlib.AsyncExitStack() as stack:
        servers = {
            "silent": await stack.enter_async_context(raw_server(silent)),
            "drip": await stack.enter_async_context(raw_server(drip)),
            "reset": await stack.enter_async_context(raw_server(reset_mid_body)),
            "octet": await stack.enter_async_context(raw_server(octet_stream(5_000_000_000))),
            "malformed": await stack.enter_async_context(raw_server(answer_with(MALFORMED["garbage status code"]))),
        }
        bomb, _ = await stack.enter_async_context(
            streaming_site("/bomb", lambda: gzip_bomb(1024), {"Content-Encoding": "gzip"})
        )
        endless, _ = await stack.enter_async_context(streaming_site("/endless", endless_chunks))
        yield {
            refused_url(): {"ConnectionFailed"},
            servers["silent"].url: {"FetchTimeout"},
            servers["drip"].url: {"FetchTimeout"},
            servers["reset"].url: {"IncompleteBody", "ConnectionFailed"},
            servers["octet"].url: {"ContentTypeRefused", "ResponseTooLarge"},
            servers["malformed"].url: {"ConnectionFailed"},
            bomb: {"ResponseTooLarge"},
            endless: {"ResponseTooLarge"},
        }


@pytest.mark.timeout(30)
async def test_a_crawl_through_the_whole_hostile_web_settles_every_request(database: Path) -> None:
    routes = {path: (page_in(text, codec), "text/html") for path, (text, codec) in UNDECLARED.items()}
    async with hostile_web() as bad, good_site(routes) as good:
        good_urls = [f"{good}{path}" for path in [*UNDECLARED, "/good"]]
        run = await crawl(
            [*bad, *good_urls],
            database,
            timeout=1,
            max_response_bytes=MiB,
            # every bad server shares the host 127.0.0.1: keep its circuit breaker out of this test
            breaker={"failures": 100},
        )

    assert (run.result.status, run.result.reason) == ("finished", "finished")
    states = dict(rows(database, "SELECT url, state FROM scraper_requests"))
    assert states == {url: "failed" for url in bad} | {url: "done" for url in good_urls}  # nothing left pending
    [(done,)] = rows(database, "SELECT count(*) FROM scraper_requests WHERE state = 'done' AND reason IS NULL")
    assert run.result.stats.get("pages") == done == len(good_urls) == len(rows(database, "SELECT * FROM item"))
    errors = rows(
        database,
        "SELECT e.url, e.stage, e.error_type, r.attempts FROM scraper_errors e JOIN scraper_requests r USING (url)",
    )
    assert len(errors) == len(bad)  # one error row per failed request, none for a retried attempt
    for url, stage, error_type, attempts in errors:
        assert stage == "fetch" and error_type in bad[url], (url, error_type)
        assert attempts == (TIMES + 1 if error_type in RETRIED else 1), (url, error_type, attempts)
    assert run.result.stats.total("errors/fetch") == len(bad)
    stored = dict(rows(database, "SELECT url, text FROM item"))
    assert stored == {f"{good}{path}": text for path, (text, _) in UNDECLARED.items()} | {f"{good}/good": GOOD_TEXT}
    assert run.elapsed < 15
