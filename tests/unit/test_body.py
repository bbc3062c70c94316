"""Tests for body decoding: every coding round-trips in small chunks, bombs stop at the limit
with bounded memory, and corrupt, truncated or unknown codings are refused."""

from __future__ import annotations

import functools
import gzip
import sys
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import brotli  # type: ignore[import-untyped]
import pytest

from scraper.body import ACCEPT_ENCODING, check_headers, read_body
from scraper.errors import ContentTypeRefused, IncompleteBody, ResponseTooLarge, UndecodableBody, UnsupportedEncoding

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

URL = "http://127.0.0.1/page"
PAYLOAD = b"".join(f"<li id='{i}'>item {i}: {i * i:x}</li>\n".encode() for i in range(8000))  # ~250 KB
LIMIT = 1 << 20
ZERO_BLOCK = bytes(1 << 20)
BOMB_BLOCKS = 200  # 200 MB of zeros once decoded


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate (zlib)": zlib.compress,
    "deflate (raw)": _raw_deflate,
    "br": lambda data: brotli.compress(data, quality=6),
    "zstd": zstd.compress,
    "identity": lambda data: data,
    "gzip, br": lambda data: brotli.compress(gzip.compress(data)),
    "deflate, zstd": lambda data: zstd.compress(zlib.compress(data)),
}


def header_of(case: str) -> str:
    """The Content-Encoding value for a case name ("deflate (raw)" -> "deflate")."""
    return case.split(" (")[0]


async def chunked(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(data: bytes, case: str, *, limit: int = LIMIT, size: int = 1000) -> bytes:
    return await read_body(chunked(data, size), content_encoding=header_of(case), limit=limit, url=URL)


# --- bombs: 200 MB of zeros, compressed block by block so the tests never hold 200 MB ---


def _zlib_bomb(wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(compressor.compress(ZERO_BLOCK) for _ in range(BOMB_BLOCKS)) + compressor.flush()


def _brotli_bomb() -> bytes:
    compressor = brotli.Compressor(quality=5)
    return b"".join([*(compressor.process(ZERO_BLOCK) for _ in range(BOMB_BLOCKS)), compressor.finish()])


def _zstd_bomb() -> bytes:
    compressor = zstd.ZstdCompressor()
    return b"".join(compressor.compress(ZERO_BLOCK) for _ in range(BOMB_BLOCKS)) + compressor.flush()


BOMBS: dict[str, Callable[[], bytes]] = {
    "gzip": lambda: _zlib_bomb(16 + zlib.MAX_WBITS),
    "deflate (zlib)": lambda: _zlib_bomb(zlib.MAX_WBITS),
    "deflate (raw)": lambda: _zlib_bomb(-zlib.MAX_WBITS),
    "br": _brotli_bomb,
    "zstd": _zstd_bomb,
}


@functools.cache
def bomb(case: str) -> bytes:
    """Built once per test module run, on first use."""
    return BOMBS[case]()


BOMBS["gzip, br"] = lambda: brotli.compress(bomb("gzip"))  # a small br wrapping the gzip bomb


async def peak_during(run: Callable[[], Awaitable[object]]) -> tuple[object, int]:
    """What ``run()`` returned or raised, and the peak traced memory above the start."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        try:
            outcome: object = await run()
        except Exception as exc:  # the caller asserts on it
            outcome = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak - start


# --- round trips ---


@pytest.mark.parametrize("case", COMPRESSORS)
async def test_round_trip_in_small_chunks(case: str) -> None:
    assert await read(COMPRESSORS[case](PAYLOAD), case) == PAYLOAD


@pytest.mark.parametrize("case", COMPRESSORS)
async def test_round_trip_one_byte_at_a_time(case: str) -> None:
    """Headers split over chunks (gzip's, zlib's two bytes that tell raw deflate apart)."""
    payload = PAYLOAD[:3000]
    assert await read(COMPRESSORS[case](payload), case, size=1) == payload


@pytest.mark.parametrize("content_encoding", [None, "", "identity", "IDENTITY", " identity , "])
async def test_no_coding_passes_bytes_through(content_encoding: str | None) -> None:
    body = await read_body(chunked(PAYLOAD), content_encoding=content_encoding, limit=LIMIT, url=URL)
    assert body == PAYLOAD


async def test_codings_are_case_insensitive_and_identity_is_skipped() -> None:
    data = brotli.compress(gzip.compress(PAYLOAD))
    assert await read(data, "GZIP , identity, Br") == PAYLOAD


async def test_stacked_codings_apply_in_reverse_order() -> None:
    """ "gzip, br" means gzip first, then br: reading it as "br, gzip" must fail."""
    data = brotli.compress(gzip.compress(PAYLOAD))
    assert await read(data, "gzip, br") == PAYLOAD
    with pytest.raises(UndecodableBody, match=r"could not be decoded \(gzip\)"):
        await read(data, "br, gzip")


def test_accept_encoding_lists_every_codec_installed_here() -> None:
    assert [coding.strip() for coding in ACCEPT_ENCODING.split(",")] == ["gzip", "deflate", "br", "zstd"]


@pytest.mark.parametrize("coding", [coding.strip() for coding in ACCEPT_ENCODING.split(",")])
async def test_every_advertised_coding_decodes(coding: str) -> None:
    compress = next(function for case, function in COMPRESSORS.items() if header_of(case) == coding)
    assert await read(compress(PAYLOAD), coding) == PAYLOAD


async def test_empty_body_is_accepted_whatever_its_coding() -> None:
    """HEAD, 204 and 304 replies keep Content-Encoding but carry no bytes."""
    assert await read(b"", "gzip") == b""


async def test_bytes_after_the_end_of_the_stream_are_ignored() -> None:
    assert await read(gzip.compress(PAYLOAD) + b"trailing junk", "gzip") == PAYLOAD


# --- the limit ---


@pytest.mark.parametrize("case", COMPRESSORS)
async def test_limit_exactly_at_size_passes_and_one_less_raises(case: str) -> None:
    data = COMPRESSORS[case](PAYLOAD)
    assert await read(data, case, limit=len(PAYLOAD)) == PAYLOAD
    with pytest.raises(ResponseTooLarge, match="max_response_bytes") as caught:
        await read(data, case, limit=len(PAYLOAD) - 1)
    assert caught.value.url == URL


async def test_raw_bytes_past_the_limit_are_refused_even_if_they_decode_small() -> None:
    """Like Content-Length, the bytes on the wire count: 2 MB of trailing junk is refused."""
    data = gzip.compress(b"tiny") + bytes(2 * LIMIT)
    with pytest.raises(ResponseTooLarge, match="raw body"):
        await read(data, "gzip", size=65536)


@pytest.mark.parametrize("case", BOMBS)
async def test_bomb_stops_just_past_the_limit_in_bounded_memory(case: str) -> None:
    data = bomb(case)
    consumed = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for chunk in chunked(data, 4096):
            consumed += len(chunk)
            yield chunk

    async def run() -> bytes:
        return await read_body(counted(), content_encoding=header_of(case), limit=LIMIT, url=URL)

    outcome, peak = await peak_during(run)

    assert isinstance(outcome, ResponseTooLarge), outcome
    assert outcome.url == URL
    assert peak < 4 * LIMIT, f"peak {peak / LIMIT:.1f} x limit"
    assert consumed <= max(len(data) // 20, 8192), f"read {consumed} of {len(data)} compressed bytes"


async def test_memory_measurement_sees_an_unbounded_decompression() -> None:
    """Negative control: decoding a 20 MB bomb without a bound shows up in the peak."""
    data = gzip.compress(bytes(20 * LIMIT))

    async def run() -> bytes:
        return gzip.decompress(data)

    outcome, peak = await peak_during(run)
    assert isinstance(outcome, bytes)
    assert peak > 4 * LIMIT


# --- refusals ---

GARBAGE = b"this is not compressed at all, just text " * 20


@pytest.mark.parametrize("case", ["gzip", "x-gzip", "deflate", "br", "zstd"])
async def test_garbage_is_refused_naming_the_coding(case: str) -> None:
    with pytest.raises(UndecodableBody, match=rf"could not be decoded \({case}\): .+") as caught:
        await read(GARBAGE, case)
    assert caught.value.url == URL


async def test_corrupt_gzip_in_the_middle_is_refused() -> None:
    data = bytearray(gzip.compress(PAYLOAD))
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    with pytest.raises(UndecodableBody, match=r"could not be decoded \(gzip\)"):
        await read(bytes(data), "gzip")


async def test_corrupt_inner_layer_of_a_stack_names_that_layer() -> None:
    data = zstd.compress(GARBAGE)
    with pytest.raises(UndecodableBody, match=r"could not be decoded \(gzip\)"):
        await read(data, "gzip, zstd")


@pytest.mark.parametrize("case", [case for case in COMPRESSORS if case != "identity"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
async def test_truncated_stream_is_refused(case: str, keep: float) -> None:
    data = COMPRESSORS[case](PAYLOAD)
    with pytest.raises(IncompleteBody, match="ended before its"):
        await read(data[: int(len(data) * keep)], case)


async def test_truncated_gzip_trailer_is_refused() -> None:
    """Every byte of content arrived, but not the CRC and length that vouch for it."""
    with pytest.raises(IncompleteBody, match=r"ended before its gzip stream"):
        await read(gzip.compress(PAYLOAD)[:-4], "gzip")


@pytest.mark.parametrize("content_encoding", ["compress", "lzma", "gzip, snappy", "sdch"])
async def test_unknown_coding_is_refused_by_name(content_encoding: str) -> None:
    unknown = content_encoding.split(", ")[-1]
    with pytest.raises(UnsupportedEncoding, match=f"unsupported Content-Encoding '{unknown}'"):
        await read(PAYLOAD, content_encoding)


async def test_too_many_stacked_codings_are_refused() -> None:
    with pytest.raises(UnsupportedEncoding, match="too many stacked"):
        await read(GARBAGE, ", ".join(["gzip"] * 5))


# --- check_headers ---


def check(headers: dict[str, str], content_types: tuple[str, ...] = (), limit: int = 1000) -> None:
    check_headers(headers, url=URL, limit=limit, content_types=content_types)


def allowed(headers: dict[str, str], content_types: tuple[str, ...] = (), limit: int = 1000) -> bool:
    """Whether check_headers lets the response through."""
    try:
        check(headers, content_types, limit)
    except (ResponseTooLarge, ContentTypeRefused):
        return False
    return True


@pytest.mark.parametrize("length", ["1001", " 1001 ", "10000000000"])
def test_content_length_over_the_limit_is_refused(length: str) -> None:
    with pytest.raises(ResponseTooLarge, match="Content-Length") as caught:
        check({"Content-Length": length})
    assert caught.value.url == URL


def test_content_length_at_the_limit_passes() -> None:
    assert allowed({"Content-Length": "1000"})
    with pytest.raises(ResponseTooLarge):
        check({"Content-Length": "1000"}, limit=999)


@pytest.mark.parametrize("length", ["", "abc", "1e9", "-5", "+5", "1_000", "\u00b2", "10, 10", "0x10"])
def test_malformed_content_length_is_ignored(length: str) -> None:
    """Even with limit=0, where any real length above zero is refused."""
    assert allowed({"Content-Length": length}, limit=0)


def test_header_names_are_case_insensitive_even_in_a_plain_dict() -> None:
    with pytest.raises(ResponseTooLarge):
        check({"content-length": "5000"})
    with pytest.raises(ContentTypeRefused):
        check({"CONTENT-TYPE": "image/png"}, ("text/html",))


ALLOWED = ("text/html", "text/*", "application/*+json", "application/xml")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/HTML; Charset=UTF-8",
        "text/plain",
        "application/ld+json",
        "application/vnd.api+json ; q=1",
        " application/xml ",
    ],
)
def test_allowed_content_types_pass(content_type: str) -> None:
    assert allowed({"Content-Type": content_type}, ALLOWED)
    with pytest.raises(ContentTypeRefused):  # the same header against a list it is not in
        check({"Content-Type": content_type}, ("image/*",))


@pytest.mark.parametrize(
    "content_type", ["image/png", "application/json", "application/pdf", "video/mp4; codecs=avc1", "texty/html"]
)
def test_other_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(ContentTypeRefused, match=content_type.split(";")[0]) as caught:
        check({"Content-Type": content_type}, ALLOWED)
    assert caught.value.url == URL


def test_upper_case_patterns_match_too() -> None:
    assert allowed({"Content-Type": "text/html"}, ("TEXT/HTML",))
    with pytest.raises(ContentTypeRefused):
        check({"Content-Type": "text/htm"}, ("TEXT/HTML",))


@pytest.mark.parametrize("headers", [{}, {"Content-Type": ""}, {"Content-Type": "; charset=utf-8"}])
def test_missing_content_type_passes(headers: dict[str, str]) -> None:
    assert allowed(headers, ("text/html",))


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", "x/y"])
def test_empty_allowlist_allows_everything(content_type: str) -> None:
    assert allowed({"Content-Type": content_type}, ())
    with pytest.raises(ContentTypeRefused):
        check({"Content-Type": content_type}, ("text/html",))


def test_size_is_checked_before_type() -> None:
    with pytest.raises(ResponseTooLarge):
        check({"Content-Length": "5000", "Content-Type": "image/png"}, ("text/html",))
