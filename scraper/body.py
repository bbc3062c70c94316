"""Turns a response's raw bytes into a safe body, between the socket and ``Response``.

The fetcher reads with ``auto_decompress=False`` so that decoding happens here, incrementally and
with a bound on every decompressor call: a decompression bomb stops just past ``limit`` bytes.
"""

from __future__ import annotations

import fnmatch
import functools
import sys
import zlib
from collections.abc import AsyncIterable, Callable, Iterator, Mapping, Sequence
from typing import Final, Protocol, cast

from multidict import CIMultiDict, CIMultiDictProxy

from scraper.errors import ContentTypeRefused, IncompleteBody, ResponseTooLarge, UndecodableBody, UnsupportedEncoding

try:
    import brotli  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - then "br" is neither advertised nor decoded
    brotli = None

try:
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd
except ImportError:  # pragma: no cover - then "zstd" is neither advertised nor decoded
    zstd = None  # type: ignore[assignment]

__all__ = ["ACCEPT_ENCODING", "Decoder", "check_headers", "read_body"]

_STEP: Final = 64 * 1024  # most bytes one decoder call may return: what bounds memory per layer
_MAX_CODINGS: Final = 4  # stacked codings beyond this are an attack, not a real server
_ZSTD_WINDOW_LOG_MAX: Final = 23  # 8 MiB, the largest window RFC 9659 lets HTTP zstd use


class Decoder(Protocol):
    """One content coding, decoded a bounded piece at a time."""

    coding: str

    @property
    def finished(self) -> bool:
        """True once the end of the coded stream was seen (anything after it is ignored)."""

    def feed(self, data: bytes, max_length: int) -> bytes:
        """Decode ``data`` after any input held back. A result shorter than ``max_length`` means
        all input is decoded; otherwise call again with ``b""`` for the rest."""


class _Zlib:
    """gzip and zlib-wrapped deflate; input not yet decoded waits in ``unconsumed_tail``."""

    def __init__(self, coding: str, wbits: int) -> None:
        self.coding = coding
        self._inflater = zlib.decompressobj(wbits)

    @property
    def finished(self) -> bool:
        return self._inflater.eof

    def feed(self, data: bytes, max_length: int) -> bytes:
        if self._inflater.eof:
            return b""
        return self._inflater.decompress(self._inflater.unconsumed_tail + data, max_length)


class _Deflate:
    """RFC 9110 says zlib-wrapped, yet some servers send raw deflate: the first two bytes tell."""

    coding = "deflate"

    def __init__(self) -> None:
        self._head = b""
        self._inner: _Zlib | None = None

    @property
    def finished(self) -> bool:
        return self._inner is not None and self._inner.finished

    def feed(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            first, second = self._head[0], self._head[1]
            wrapped = first & 0x0F == 8 and first >> 4 <= 7 and (first << 8 | second) % 31 == 0
            self._inner = _Zlib(self.coding, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        return self._inner.feed(data, max_length)


class _Brotli:
    """``output_buffer_limit`` stops growing the output once it reaches the bound."""

    coding = "br"

    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    @property
    def finished(self) -> bool:
        return bool(self._decompressor.is_finished())

    def feed(self, data: bytes, max_length: int) -> bytes:
        if self.finished:
            return b""
        return cast(bytes, self._decompressor.process(data, output_buffer_limit=max_length))


class _Zstd:
    """A single zstd frame, its window capped as RFC 9659 allows so a frame cannot claim 2 GB."""

    coding = "zstd"

    def __init__(self) -> None:
        options: dict[int, int] = {zstd.DecompressionParameter.window_log_max: _ZSTD_WINDOW_LOG_MAX}
        self._decompressor = zstd.ZstdDecompressor(options=options)

    @property
    def finished(self) -> bool:
        return self._decompressor.eof

    def feed(self, data: bytes, max_length: int) -> bytes:
        if self._decompressor.eof:
            return b""
        return self._decompressor.decompress(data, max_length)


_DECODERS: dict[str, Callable[[], Decoder]] = {
    "gzip": lambda: _Zlib("gzip", 16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib("x-gzip", 16 + zlib.MAX_WBITS),
    "deflate": _Deflate,
}
_DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error, EOFError)
if brotli is not None and hasattr(brotli.Decompressor, "can_accept_more_data"):  # 1.2+ bounds output
    _DECODERS["br"] = _Brotli
    _DECODE_ERRORS += (brotli.error,)
if zstd is not None:
    _DECODERS["zstd"] = _Zstd
    _DECODE_ERRORS += (zstd.ZstdError,)

ACCEPT_ENCODING: Final = ", ".join(coding for coding in ("gzip", "deflate", "br", "zstd") if coding in _DECODERS)


def check_headers(headers: Mapping[str, str], *, url: str, limit: int, content_types: Sequence[str]) -> int | None:
    """Refuse by the headers alone, so an oversized or unwanted body is never read. An empty
    ``content_types`` allows everything; a missing Content-Type or a malformed Content-Length
    gives no grounds to refuse. Returns the declared length (None: missing or malformed)."""
    length = _declared_length(headers)
    if length is not None and length > limit:
        raise ResponseTooLarge(f"Content-Length {length} is larger than max_response_bytes={limit}", url=url)
    media_type = _media_type(_header(headers, "Content-Type"))
    if media_type and content_types and not _media_type_allowed(media_type, tuple(content_types)):
        raise ContentTypeRefused(f"Content-Type {media_type!r} is not in content_types", url=url)
    return length


def readable_whole(headers: Mapping[str, str], declared_length: int | None) -> bool:
    """An uncompressed body with a declared Content-Length (as ``check_headers`` returned it,
    having compared it with the limit): the client reads exactly that many bytes, so it
    needs no decoder and no running cap."""
    if declared_length is None:
        return False
    coding = _header(headers, "Content-Encoding")
    return coding is None or coding.strip().lower() == "identity"


def _declared_length(headers: Mapping[str, str]) -> int | None:
    """Content-Length as a number; None when missing or malformed (no grounds to refuse)."""
    length = (_header(headers, "Content-Length") or "").strip()
    return int(length) if length.isascii() and length.isdigit() else None


@functools.lru_cache(maxsize=256)
def _media_type(content_type: str | None) -> str:
    """``text/html`` of ``Text/HTML; charset=utf-8``. Cached: a crawl sees a handful."""
    return (content_type or "").split(";", 1)[0].strip().lower()


@functools.lru_cache(maxsize=256)
def _media_type_allowed(media_type: str, patterns: tuple[str, ...]) -> bool:
    """Cached: a crawl sees a handful of media types and one pattern list."""
    return any(fnmatch.fnmatchcase(media_type, pattern.lower()) for pattern in patterns)


async def read_body(
    chunks: AsyncIterable[bytes], *, content_encoding: str | None, limit: int, url: str, truncate: bool = False
) -> bytes:
    """The decoded body; ``ResponseTooLarge`` as soon as it (or the raw stream) passes ``limit``,
    so memory stays the limit plus the decompressor's window (up to 16 MiB for brotli, 8 MiB
    for zstd) whatever the compression ratio. With ``truncate`` the first
    ``limit`` bytes are returned instead (robots.txt: parse what fits). An empty body is
    accepted as is, whatever its Content-Encoding (HEAD, 204 and 304 replies often keep it)."""
    decoders = _decoders_for(content_encoding, url)
    body = bytearray()
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            if truncate:
                return bytes(body)[:limit]
            raise ResponseTooLarge(f"raw body larger than max_response_bytes={limit}", url=url)
        for piece in _decoded(decoders, chunk, url):
            if len(body) + len(piece) > limit:
                if truncate:
                    return bytes(body + piece[: limit - len(body)])
                raise ResponseTooLarge(f"decoded body larger than max_response_bytes={limit}", url=url)
            body += piece
    for decoder in decoders if received else ():
        if not decoder.finished:
            raise IncompleteBody(f"body ended before its {decoder.coding} stream did", url=url)
    return bytes(body)


def _decoders_for(content_encoding: str | None, url: str) -> list[Decoder]:
    """Decoders in the order to apply them: the coding listed last was applied last."""
    codings = [coding.strip().lower() for coding in (content_encoding or "").split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    if len(codings) > _MAX_CODINGS:
        raise UnsupportedEncoding(f"too many stacked content codings: {content_encoding!r}", url=url)
    unknown = [coding for coding in codings if coding not in _DECODERS]
    if unknown:
        raise UnsupportedEncoding(f"unsupported Content-Encoding {', '.join(unknown)!r}", url=url)
    return [_DECODERS[coding]() for coding in reversed(codings)]


def _decoded(decoders: Sequence[Decoder], data: bytes, url: str) -> Iterator[bytes]:
    """``data`` through every layer, lazily: each layer holds at most one ``_STEP`` piece."""
    if not decoders:
        if data:
            yield data
        return
    for piece in _drained(decoders[0], data, url):
        yield from _decoded(decoders[1:], piece, url)


def _drained(decoder: Decoder, data: bytes, url: str) -> Iterator[bytes]:
    """All that ``decoder`` can produce from ``data``, in pieces of about ``_STEP`` bytes."""
    while True:
        try:
            piece = decoder.feed(data, _STEP)
        except _DECODE_ERRORS as exc:
            raise UndecodableBody(f"body could not be decoded ({decoder.coding}): {exc}", url=url) from exc
        if piece:
            yield piece
        if len(piece) < _STEP:
            return
        data = b""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively even when ``headers`` is a plain dict."""
    value = headers.get(name)
    if value is None and not isinstance(headers, (CIMultiDictProxy, CIMultiDict)):
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value
