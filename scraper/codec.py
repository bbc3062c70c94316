"""Requests as rows: what the SQLite frontier stores so that a crawl can resume in another
process. No pickle: the callback is stored by name, headers, meta and ``cb_kwargs`` as JSON,
the body as bytes. A request that cannot be stored this way is refused at admission with an
error naming the culprit."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import pydantic

from scraper.encoding import is_unicode
from scraper.errors import ScraperError
from scraper.http import Request
from scraper.spider import Spider


class RequestNotStorable(ScraperError):
    """A request's meta, cb_kwargs or callback cannot be stored as JSON / a method name."""


class EncodedRequest(NamedTuple):
    """The storable parts of a request, ready for ``scraper_requests``."""

    callback: str
    headers: str | None
    body: bytes | None
    meta: str | None
    cb_kwargs: str | None


def encode(request: Request) -> EncodedRequest:
    headers = request.headers_to_send()
    return EncodedRequest(
        callback=callback_name(request),
        headers=_json(headers, "headers", request.url) if headers else None,
        body=request.body(),
        meta=_json(request.meta, "meta", request.url, exact=True) if request.meta else None,
        cb_kwargs=_json(request.cb_kwargs, "cb_kwargs", request.url, exact=True) if request.cb_kwargs else None,
    )


def decode(row: Mapping[str, Any], spider: object) -> Request:
    """The request a stored row describes, its callback looked up on ``spider`` by name."""
    return Request(
        row["url"],
        callback=callback_named(spider, row["callback"], row["url"]),
        method=row["method"],
        headers=json.loads(row["headers"]) if row["headers"] else None,
        data=row["body"],
        meta=json.loads(row["meta"]) if row["meta"] else None,
        cb_kwargs=json.loads(row["cb_kwargs"]) if row["cb_kwargs"] else None,
        priority=row["priority"],
        dont_filter=bool(row["dont_filter"]),
        depth=row["depth"],
    )


def callback_named(spider: object, name: str | None, url: str) -> Callable[..., Any] | None:
    """The spider method ``callback_name`` named (None for ``parse``, the default)."""
    if not name or name == "parse":
        return None
    callback = getattr(spider, name, None)
    if callback is None:
        raise RequestNotStorable(f"{type(spider).__name__} has no callback {name!r} for {url}")
    return cast(Callable[..., Any], callback)


def callback_name(request: Request) -> str:
    """A request's callback by name ("parse" when it has none): only spider methods have one
    that another process can look up."""
    callback = request.callback
    if callback is None:
        return "parse"
    name = getattr(callback, "__name__", None)
    owner = getattr(callback, "__self__", None)
    if owner is None or not name:
        raise RequestNotStorable(
            f"callback of {request.url} must be a method of the spider (stored by name), not {callback!r}"
            f"{_callback_hint(callback)}"
        )
    if not isinstance(owner, Spider) and not (isinstance(owner, type) and issubclass(owner, Spider)):
        # looked up on the spider by its name, the spider's own method of that name ran
        raise RequestNotStorable(
            f"callback of {request.url} must be a method of the spider (stored by name): it is "
            f"{type(owner).__name__}'s {name}; delegate from a method of the spider"
        )
    return str(name)


def _callback_hint(callback: object) -> str:
    """What to pass instead of a callback that cannot be stored, where that is clear."""
    if isinstance(callback, str):
        return f": pass the method itself, callback=self.{callback}"
    if isinstance(callback, functools.partial):
        return ": pass the method, and its other arguments as cb_kwargs={...}"
    return ""


def _json(value: Mapping[str, Any], field: str, url: str, *, exact: bool = False) -> str:
    """``value`` as JSON text; with ``exact``, refused if it would come back changed (what a
    callback gets from a request read back from the file must be what it gets from memory)."""
    if exact and (change := _changed_by_json(value, field)) is not None:
        where, how = change
        raise RequestNotStorable(f"{where} of {url} {how}")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        culprit = next((key for key, item in value.items() if not _serialisable(item)), None)
        where = f"{field}[{culprit!r}]" if culprit is not None else field
        hint = _json_hint(where, value[culprit]) if culprit is not None else ""
        raise RequestNotStorable(f"{where} of {url} cannot be stored as JSON: {exc}{hint}") from None
    if not is_unicode(text):  # written as it was, it stopped the crawl
        culprit = next(
            (key for key in value if not is_unicode(json.dumps({key: value[key]}, ensure_ascii=False))), None
        )
        where = f"{field}[{culprit!r}]" if culprit is not None else field
        raise RequestNotStorable(f"{where} of {url} holds a lone surrogate, which is not text SQLite can store")
    return text


_PLAIN = frozenset({str, int, float, bool, type(None)})  # what JSON gives back as it was given


def _json_hint(where: str, value: Any) -> str:
    """How to hand on an item, or an item's dump with dates and decimals, as JSON values."""
    if isinstance(value, pydantic.BaseModel):
        return f" (pass {where}.model_dump(mode='json'), and rebuild it in the callback)"
    if isinstance(value, dict):
        return " (an item's model_dump(mode='json') gives dates and decimals as JSON values)"
    return ""


def _changed_by_json(value: Any, path: str) -> tuple[str, str] | None:
    """Where ``value`` would come back from JSON as something else, and how: a tuple comes back
    a list, a key that is not a string a string, an Enum (or another subclass of str, int or
    float) its plain value; equal, so no comparison of the two would tell. What JSON cannot
    hold at all (a date, a Decimal) is left to ``json.dumps`` to refuse."""
    kind = type(value)
    if kind in _PLAIN:
        return None
    if isinstance(value, (str, int, float)):
        base = next(plain for plain in (bool, int, float, str) if isinstance(value, plain))
        return path, (
            f"is a {kind.__name__} ({value!r}), which comes back from the crawl's file as a plain {base.__name__}: "
            "pass the plain value (an Enum's .value)"
        )
    if isinstance(value, tuple):
        return path, "is a tuple, which comes back from the crawl's file as a list: pass a list"
    if isinstance(value, list):
        return next(filter(None, (_changed_by_json(item, f"{path}[{n}]") for n, item in enumerate(value))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                if type(key) not in _PLAIN:  # a tuple, a date...: JSON has no key for it
                    return path, f"has the key {key!r}, which the crawl's file cannot keep as a key: use strings"
                came_back = json.dumps({key: None})[1:].partition(":")[0]  # the key as JSON gives it back
                return path, f"has the key {key!r}, which comes back from the crawl's file as {came_back}: use strings"
            if (change := _changed_by_json(item, f"{path}[{key!r}]")) is not None:
                return change
    return None


def _serialisable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
