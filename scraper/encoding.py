"""Turns a response body into text without ever crashing on a wrong or missing charset.

Order (README's; WHATWG's sniffing puts the byte-order mark before the header, and adds no
detector): Content-Type charset, byte-order mark,
``<meta>`` prescan of the first 1,024 bytes, strict UTF-8, charset detection (chardet), cp1252.
"""

from __future__ import annotations

import codecs
import functools
import re

import webencodings

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
_DETECTION_BYTES = 64 * 1024
_WESTERN_TIE = 0.8  # cp1252 is preferred when the detector is at least this sure of it, relative to its pick
# below this, the detector is guessing (a few words: 0.007-0.013 for its pick, against 0.024-0.55
# for a line of Turkish, Czech or Russian)
_UNSURE = 0.02
# where a sample may be cut: a byte below 0x40 is never the second byte of a two-byte character
# (Shift_JIS, GBK, Big5 and EUC trail bytes are 0x40 and up)
_SAFE_CUT = re.compile(rb"[\x00-\x3f][^\x00-\x3f]*\Z")


def _known(name: str | None) -> str | None:
    """The canonical name of the codec for the charset label ``name``, as browsers read it
    (WHATWG's labels: ISO-8859-1, latin1 and US-ASCII mean windows-1252, Shift_JIS its Windows
    superset), else as Python reads it; None when neither knows it."""
    if not name:
        return None
    label = name.strip()
    web = webencodings.lookup(label)
    try:
        return codecs.lookup(web.codec_info.name if web is not None else label).name
    except LookupError:  # x-user-defined: webencodings' own codec, not Python's
        return None


@functools.lru_cache(maxsize=256)  # a crawl sees a handful of Content-Type values
def charset_from_header(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type)
    return _known(match.group(1)) if match else None


def charset_from_bom(body: bytes) -> str | None:
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    return None


def charset_from_meta(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:1024])
    if not match:
        return None
    name = _known(match.group(1).decode("ascii", "replace"))
    # A page that says utf-16 in ASCII bytes cannot be utf-16 (HTML spec): it is utf-8.
    return "utf-8" if name and name.startswith("utf-16") else name


def detect_encoding(body: bytes, content_type: str | None = None) -> str:
    """The encoding to decode ``body`` with; never raises."""
    declared = charset_from_header(content_type) or charset_from_bom(body) or charset_from_meta(body)
    if declared:
        return declared
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    return _detected(_sample(body)) or "cp1252"


def _sample(body: bytes) -> bytes:
    """The first ``_DETECTION_BYTES`` of ``body``, ending where no character is cut in two: a
    Shift_JIS, GBK or EUC page cut inside a character read to the detector as none of them,
    and came out as cp1252 or cp874 mojibake."""
    if len(body) <= _DETECTION_BYTES:
        return body
    sample = body[:_DETECTION_BYTES]
    cut = _SAFE_CUT.search(sample, len(sample) - 1024)
    return sample[: cut.start() + 1] if cut is not None else sample


def _detected(sample: bytes) -> str | None:
    """The detector's pick among the web's encodings (WHATWG's, not DOS's or Mac's), except
    that cp1252 wins a near tie, and wins when the detector is guessing, wherever it reads
    the sample as words: for short Western European text the detector is nearly as sure of
    cp1250, cp1251 or cp1253, turning "è" into "č", and on a few words picks about anything."""
    import chardet  # here: a slow import, needed only for pages that declare no charset
    from chardet.enums import EncodingEra

    candidates = chardet.detect_all(
        sample, encoding_era=EncodingEra.MODERN_WEB, prefer_superset=True, ignore_threshold=True
    )
    if not candidates or not candidates[0]["encoding"]:
        return None
    best = candidates[0]
    picked = _known(best["encoding"])
    western = next((each for each in candidates if _known(each["encoding"]) == "cp1252"), None)
    if western is None or picked == "cp1252":
        return picked
    near_tie = western["confidence"] >= best["confidence"] * _WESTERN_TIE
    if (near_tie or best["confidence"] < _UNSURE) and _foreign_share(sample) < 0.5:
        return "cp1252"  # the web's reading of a page that declares nothing, where it makes words
    # a short page leaves the detector unsure: a pick that puts Cyrillic or Greek letters inside
    # Latin words ("Maße" read as KOI8-U: "MaЪe") is wrong where cp1252 reads whole words. Half
    # of the words it reads so, not one: a Russian page may hold a typo (a Latin letter in a word)
    if picked and _mixed_share(sample, picked) >= 0.5 and not _mixed_share(sample, "cp1252"):
        return "cp1252"
    return picked


_WORD = re.compile(r"[^\W\d_]+")


def _mixed_share(sample: bytes, encoding: str) -> float:
    """Of the words of ``sample`` read in ``encoding`` that are not ASCII, the share that mix
    ASCII letters with letters past Latin (U+0250 on): no language writes such words."""
    words = [word for word in _WORD.findall(sample.decode(encoding, errors="replace")) if not word.isascii()]
    mixed = sum(any(c.isascii() for c in word) and any(ord(c) >= 0x250 for c in word) for word in words)
    return mixed / len(words) if words else 0.0


def _foreign_share(sample: bytes) -> float:
    """Of the words of ``sample`` read in cp1252 that are not ASCII (runs of ASCII letters and
    characters past ASCII, punctuation at their ends left out), the share that no Western
    language writes: with no ASCII letter (Cyrillic or Greek read so: "Ïðèâåò") or with symbols
    among the letters (Polish read so: "Za¿ó³æ")."""
    words = [word.strip(_MARKS) for word in _LATIN_RUN.findall(sample.decode("cp1252", errors="replace"))]
    words = [word for word in words if len(word) > 1 and not word.isascii()]
    foreign = sum(
        not any(c.isascii() for c in word) or not all(c.isalpha() for c in word if not c.isascii()) for word in words
    )
    return foreign / len(words) if words else 0.0


_LATIN_RUN = re.compile(r"[A-Za-z\x80-\U0010ffff]+")
_MARKS = "«»“”‘’„…–—¡¿·°§¶"  # noqa: RUF001  # punctuation past ASCII, around a word


_BOM_CODECS = {"utf-8": "utf-8-sig", "utf-16-le": "utf-16", "utf-16-be": "utf-16"}  # drop the mark


def decode(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """``(text, encoding)``; undecodable bytes become U+FFFD instead of an exception."""
    encoding = detect_encoding(body, content_type)
    return decode_as(body, encoding), encoding


def decode_as(body: bytes, encoding: str) -> str:
    """``body`` as text in ``encoding`` (a name ``detect_encoding`` gave), any BOM dropped."""
    if encoding in _BOM_CODECS and charset_from_bom(body):
        encoding = _BOM_CODECS[encoding]
    return body.decode(encoding, errors="replace")


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8, as SQLite stores text: not when it holds a
    lone surrogate (bytes decoded with ``errors="surrogateescape"``, a JSON ``"\\udce9"``).
    ASCII text, the common case, is answered without encoding it."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """``text``, with each lone surrogate written as its escape (``"caf\\udce9"``), so that
    SQLite can store it."""
    return text if is_unicode(text) else text.encode("utf-8", "backslashreplace").decode()
