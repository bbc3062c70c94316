"""``Item``, the typed record a spider yields, and its mapping to an SQLite table.

Each item class gets one table, named in snake_case; fields become typed columns; bytes are
BLOBs; lists, dicts and nested models are stored as JSON text. Plain dicts go to the table ``item``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import os
import re
import string
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

import pydantic
from selectolax.lexbor import LexborNode

from scraper.encoding import is_unicode

logger = logging.getLogger(__name__)

DICT_TABLE = "item"
_FRAMEWORK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")  # this package's folder
_CALLERS_KEPT = 8  # frames of the code that made an invalid item, at most, put in its traceback
RESERVED_PREFIX = "scraper_"
# SQLite refuses to create a table named sqlite_...: found at the first write, it stopped the crawl
_RESERVED_PREFIXES = {RESERVED_PREFIX: "the framework's tables", "sqlite_": "SQLite's own"}
META_COLUMNS = {"_crawl_id": "INTEGER", "_url": "TEXT", "_scraped_at": "TEXT"}

_invalid_items: ContextVar[dict[int, pydantic.ValidationError] | None] = ContextVar(
    "scraper_invalid_items", default=None
)

_SQL_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "INTEGER"),  # before int: bool is an int
    (int, "INTEGER"),
    (float, "REAL"),
    (Decimal, "REAL"),  # SQLite has no decimal type; NUMERIC would turn 12.00 into 12
    (str, "TEXT"),
    (bytes, "BLOB"),  # as they are: JSON would store them as UTF-8 text, and refuse any other
    (dt.datetime, "TEXT"),
    (dt.date, "TEXT"),
    (Enum, "TEXT"),
)


class Item(pydantic.BaseModel):
    """Base of a spider's records. Subclass it with typed fields.

    ``key`` names the fields that identify a record: the table gets a UNIQUE index on them and
    a record with the same key replaces the stored one (upsert). ``table`` overrides the name.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    key: ClassVar[tuple[str, ...]] = ()
    table: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        try:
            # what BaseModel.__init__ does, without a second frame and keyword re-packing
            # (an item is built per page: this is a third of its cost)
            self.__pydantic_validator__.validate_python(data, self_instance=self)
        except pydantic.ValidationError as exc:
            invalid = _invalid_items.get()
            if invalid is None:
                raise
            # Inside a callback: keep the page going, report this item instead (see deferred_validation).
            invalid[id(self)] = _from_caller(exc)
            object.__setattr__(self, "__dict__", dict(data))
            object.__setattr__(self, "__pydantic_fields_set__", set(data))
            object.__setattr__(self, "__pydantic_extra__", None)
            object.__setattr__(self, "__pydantic_private__", None)

    # Inside a callback, a copy of an item that failed validation fails with it: pydantic does
    # not validate a copy, which was stored as it was. model_copy() makes its copies with these.

    def __copy__(self) -> typing.Self:
        return self._failing_like_me(super().__copy__())

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> typing.Self:
        return self._failing_like_me(super().__deepcopy__(memo))

    def _failing_like_me(self, copy: typing.Self) -> typing.Self:
        invalid = _invalid_items.get()
        if invalid and id(self) in invalid:
            invalid[id(copy)] = invalid[id(self)]
        return copy

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, role in (("table", "its table's name"), ("key", "its upsert key")):
            if name in cls.model_fields:  # item.table would be the field's value: items filed by value
                raise TypeError(f"{cls.__name__}: a field cannot be named {name!r} ({role}); name it otherwise")
        cls.table = _table_name(cls)
        if isinstance(cls.key, str):  # key = ("url") without its comma: read as one field, not 'u', 'r', 'l'
            cls.key = (cls.key,)
        missing = [name for name in cls.key if name not in cls.model_fields]
        if missing:
            raise TypeError(f"{cls.__name__}.key names unknown fields: {', '.join(missing)}")
        try:
            check_column_names([*cls.model_fields, *cls.model_computed_fields], "field")
        except ValueError as exc:
            raise TypeError(f"{cls.__name__}: {exc}") from None


def _table_name(item_class: type[Item]) -> str:
    """The class's ``table``, else its name in snake_case; refused (``TypeError``) when it
    starts with a prefix the framework or SQLite keeps."""
    table = item_class.__dict__.get("table") or snake_case(item_class.__name__)
    for prefix, owner in _RESERVED_PREFIXES.items():
        if folded(table).startswith(prefix):
            raise TypeError(
                f"{item_class.__name__}: table names starting with {prefix!r} are reserved for {owner} "
                f"(give the class another name, or set table: ClassVar[str])"
            )
    return table


def _from_caller(error: pydantic.ValidationError) -> pydantic.ValidationError:
    """``error`` with the frames of the code that made the item (up to the framework's own)
    put before its traceback. Caught in ``Item.__init__``, its traceback began there: the
    error row and the warning pointed at scraper/item.py, never at the spider's line."""
    traceback = error.__traceback__
    frame: types.FrameType | None = sys._getframe(2)  # 0: here, 1: Item.__init__, 2: what called it
    for _ in range(_CALLERS_KEPT):
        if frame is None or frame.f_code.co_filename.startswith(_FRAMEWORK):
            break
        traceback = types.TracebackType(traceback, frame, frame.f_lasti, frame.f_lineno)
        frame = frame.f_back
    return error.with_traceback(traceback)


class deferred_validation:  # lower case, like contextlib.suppress: it reads as a function
    """While active, an ``Item`` that fails validation is created anyway and its error is
    put in the dict ``with`` binds (by ``id``), so one bad item does not abort the rest of a
    page. A class, not a generator: it is entered once per page."""

    __slots__ = ("_invalid", "_token")

    def __enter__(self) -> dict[int, pydantic.ValidationError]:
        self._invalid: dict[int, pydantic.ValidationError] = {}
        self._token = _invalid_items.set(self._invalid)
        return self._invalid

    def __exit__(self, *exc_info: object) -> None:
        _invalid_items.reset(self._token)


def invalid_part(
    record: Item | Mapping[str, Any], invalid: Mapping[int, pydantic.ValidationError]
) -> pydantic.ValidationError | None:
    """The errors of the invalid items that ``record`` holds (as a field's value, in a list or
    a dict, at any depth), each at its path in ``record``; None if it holds none. pydantic
    takes an item as a field's value without validating it again: an item that failed inside a
    callback was stored as part of another one, with no error."""
    details: list[Any] = []
    seen: set[int] = set()

    def look(path: tuple[str | int, ...], value: Any) -> None:
        if path and id(value) in invalid:
            details.extend({**detail, "loc": (*path, *detail["loc"])} for detail in invalid[id(value)].errors())
            return
        if id(value) in seen:  # a structure met twice (or holding itself) is read once
            return
        seen.add(id(value))
        if isinstance(value, Item):
            for name, inner in value.__dict__.items():
                look((*path, name), inner)
        elif isinstance(value, Mapping):
            for name, inner in value.items():
                look((*path, str(name)), inner)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for index, inner in enumerate(value):
                look((*path, index), inner)

    look((), record)
    if not details:
        return None
    title = type(record).__name__ if isinstance(record, Item) else "dict item"
    return pydantic.ValidationError.from_exception_data(title, details)


def validation_message(error: pydantic.ValidationError) -> str:
    """pydantic's error on one line, as an error row and the summary show it: the model, then
    each field's path, what is wrong and the value given (pydantic's own text takes three
    lines a field, and a link)."""
    parts = []
    for detail in error.errors(include_url=False):
        where = ".".join(map(str, detail["loc"])) or "(the item)"
        given = "" if detail["type"] == "missing" else f" (given {_shown(detail.get('input'))})"
        parts.append(f"{where}: {detail['msg']}{given}")
    return f"{error.title}: {'; '.join(parts)}"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def snake_case(name: str) -> str:
    """``ProductPage`` → ``product_page``, ``HTTPHeader`` → ``http_header``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); None for a union of several types; any
    other annotation as it is."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return members[0] if len(members) == 1 else None


def sql_type(annotation: Any) -> str:
    """The SQLite column type of a field annotation; anything structured is JSON text. A
    union of types with different columns has no declared type, so that each value is stored
    as it was given (declared TEXT, ``int | str`` stored 5 as '5')."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = {sql_type(member) for member in typing.get_args(annotation) if member is not type(None)}
        return kinds.pop() if len(kinds) == 1 else ""
    annotation = _without_none(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return sql_type(typing.get_args(annotation)[0])
    if isinstance(annotation, type):
        for python_type, column_type in _SQL_TYPES:
            if issubclass(annotation, python_type):
                return column_type
    return "TEXT"


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
FRAMEWORK_COLUMNS = frozenset({"_id", *META_COLUMNS})
SQLITE_MAX_COLUMNS = 2000  # SQLite's default SQLITE_MAX_COLUMN: columns of a table, all told
MAX_COLUMNS = SQLITE_MAX_COLUMNS - len(FRAMEWORK_COLUMNS)  # an item's own


def folded(name: str) -> str:
    """A table or column name as SQLite compares it: ASCII letters in any case are one name
    ("Price" and "price" are the same column; "É" and "é" are not)."""
    return name.translate(_ASCII_LOWER)


def check_column_names(names: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` when ``names`` (``what``: "field" or "key") cannot all be columns of
    one table: two would be one column, one is a column the framework keeps or holds a NUL,
    or there are more than SQLite allows. Else the table could not be made, and the failure
    would be the writer's, stopping the crawl."""
    seen: dict[str, str] = {}
    for name in names:
        key = folded(name)
        if key in FRAMEWORK_COLUMNS:
            kept = ", ".join(sorted(FRAMEWORK_COLUMNS))
            raise ValueError(f"{what} {name!r} is a column the framework keeps ({kept})")
        if key in seen:
            raise ValueError(f"{what}s {seen[key]!r} and {name!r} would be one column (SQLite ignores their case)")
        if "\0" in name:
            raise ValueError(f"{what} {name!r} holds a NUL character, which no SQLite name can")
        if not is_unicode(name):  # it failed every item of its page
            raise ValueError(f"{what} {name!r} holds a lone surrogate, which no SQLite name can")
        seen[key] = name
    if len(seen) > MAX_COLUMNS:
        raise ValueError(f"{len(seen):,} {what}s: a table takes at most {MAX_COLUMNS:,} (SQLite's limit, less its own)")


@functools.cache
def columns_of(item_class: type[Item]) -> dict[str, str]:
    """Column name → SQLite type: the fields in order, then the computed fields (computed once
    per class; do not mutate)."""
    columns = {name: sql_type(field.annotation) for name, field in item_class.model_fields.items()}
    for name, computed in item_class.model_computed_fields.items():
        columns[name] = sql_type(computed.return_type)
    _warn_of_other_types(item_class, columns)
    return columns


# the type each class sharing a table gave each of its columns, by table and column as SQLite
# compares names: (type, class name), the first class's
_TYPED_BY: dict[str, dict[str, tuple[str, str]]] = {}


def _warn_of_other_types(item_class: type[Item], columns: Mapping[str, str]) -> None:
    """Say when two item classes of one table type a field differently (once per class): the
    column keeps the type it was made with, and SQLite converts the other class's values to
    it, silently (text '00123' into an INTEGER column is 123)."""
    typed = _TYPED_BY.setdefault(folded(item_class.table), {})
    for name, kind in columns.items():
        earlier = typed.setdefault(folded(name), (kind, item_class.__name__))
        if kind and earlier[0] and kind != earlier[0]:
            logger.warning(
                "table %r: field %r is %s in %s but %s in %s; one column holds both, with one type, and SQLite "
                "converts values to it (text '00123' to 123): give the fields one type, or the classes tables "
                "of their own",
                item_class.table, name, earlier[0], earlier[1], kind, item_class.__name__,
            )  # fmt: skip


def columns_of_row(item_class: type[Item], row: Mapping[str, Any]) -> dict[str, str]:
    """The columns of ``row``, an item's as ``to_row`` made it: the class's columns, unless
    the row has others (extra fields a model allows, names a serializer or alias chose), whose
    types are then inferred from their values. Raises ``ValueError`` as ``check_column_names``."""
    columns = columns_of(item_class)
    if row.keys() == columns.keys():  # always so for a plain item
        return columns
    check_column_names(row, "field")
    return {name: columns.get(name) or _type_of_value(value) for name, value in row.items()}


def _type_of_value(value: Any) -> str:
    """The column type for a key of a dict (or an extra field) seen first: none declared, so
    that the column keeps each value as it comes. A type taken from the first value made
    SQLite convert later ones: a first 12345 declared INTEGER, and a later zip code '01234'
    was stored as 1234 (declared TEXT, a later 2.5 was stored '2.5')."""
    return ""


def columns_of_dict(record: Mapping[str, Any]) -> dict[str, str]:
    """Column types inferred from a plain dict's values (its keys become columns). Raises
    ``ValueError`` as ``check_column_names``."""
    columns = {str(name): _type_of_value(value) for name, value in record.items()}
    check_column_names(columns, "key")
    return columns


_PLAIN_TYPES = (str, int, float, bool, bytes)


@functools.cache
def _is_plain(item_class: type[Item]) -> bool:
    """True when every field holds a plain scalar (or None) that is its own column value: no
    serializers, computed fields or extra fields to honour."""
    decorators = item_class.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
        return False
    if item_class.model_config.get("extra") == "allow":
        return False
    return all(_plain_field(field) for field in item_class.model_fields.values())


def _plain_field(field: pydantic.fields.FieldInfo) -> bool:
    serializers = (pydantic.PlainSerializer, pydantic.WrapSerializer)
    held, rules = _held_type(field.annotation)
    if field.exclude or any(isinstance(rule, serializers) for rule in [*field.metadata, *rules]):
        return False
    return held in _PLAIN_TYPES


def _held_type(annotation: Any) -> tuple[Any, list[Any]]:
    """The type a field holds and the rules annotating it: ``bytes`` for ``bytes | None`` and
    for ``Annotated[bytes, ...] | None`` (pydantic takes an outer ``Annotated``'s rules into the
    field's metadata, but not those inside an ``Optional``: such a bytes field went to JSON, and
    failed on any byte that is not UTF-8)."""
    rules: list[Any] = []
    annotation = _without_none(annotation)
    while typing.get_origin(annotation) is typing.Annotated:
        held, *more = typing.get_args(annotation)
        rules += more
        annotation = _without_none(held)
    return annotation, rules


@functools.cache
def _bytes_fields(item_class: type[Item]) -> tuple[str, ...]:
    """The fields stored as they are, as BLOBs, where the JSON dump would make them text:
    ``bytes`` fields that no serializer of the field or the model rewrites."""
    decorators = item_class.__pydantic_decorators__
    if decorators.model_serializers:
        return ()
    serialized = {name for decorator in decorators.field_serializers.values() for name in decorator.info.fields}
    if "*" in serialized:
        return ()
    return tuple(
        name
        for name, field in item_class.model_fields.items()
        if _plain_field(field) and _held_type(field.annotation)[0] is bytes and name not in serialized
    )


def item_row(record: Item) -> tuple[dict[str, Any], dict[str, str]]:
    """``to_row(record)`` and its columns (``columns_of_row``), in one call: once per item."""
    item_class = type(record)
    if _is_plain(item_class):
        return dict(record.__dict__), columns_of(item_class)
    row = to_row(record)
    return row, columns_of_row(item_class, row)


def to_row(record: Item | Mapping[str, Any]) -> dict[str, Any]:
    """Values ready for sqlite3: scalars as they are, bytes as BLOBs, structures as JSON text."""
    if isinstance(record, Item):
        if _is_plain(type(record)):  # the common item: its validated values are the row
            return dict(record.__dict__)
        # dumped as JSON values: only lists and dicts are left to encode
        values = _json_values(record)
        return {name: _to_json(value) if isinstance(value, (list, dict)) else value for name, value in values.items()}
    return {str(name): _to_column_value(value, name) for name, value in record.items()}


def _json_values(record: Item) -> dict[str, Any]:
    """``model_dump(mode="json")``, but with its bytes fields as they are, in field order.
    Raises what pydantic raises, with a note naming the field. A dict key with a lone surrogate
    is refused first: pydantic writes it as U+FFFD, silently (a value keeps it, and is refused
    when it is bound); so is a Decimal past what a REAL column holds."""
    for name, value in record.__dict__.items():
        key = _surrogate_key(value)
        if key is not None:
            raise ValueError(f"field {name!r} has a key {key!r} with a lone surrogate, which SQLite cannot store")
        if isinstance(value, Decimal) and value.is_finite() and not math.isfinite(float(value)):
            # dumped as its text, which SQLite turned into infinity in the REAL column
            raise ValueError(f"field {name!r}: {value} is past what a REAL column holds (about 1.8e308)")
    try:
        return _dumped(record)
    except Exception as exc:
        exc.add_note(_field_failing(record))
        raise


def _surrogate_key(value: Any) -> str | None:
    """A dict key, anywhere in ``value``'s dicts, lists and models, that holds a lone surrogate."""
    inner: Iterable[Any]
    if isinstance(value, dict):
        bad = next((key for key in value if isinstance(key, str) and not is_unicode(key)), None)
        if bad is not None:
            return bad
        inner = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        inner = value
    elif isinstance(value, pydantic.BaseModel):
        inner = value.__dict__.values()
    else:
        return None
    return next((key for key in map(_surrogate_key, inner) if key is not None), None)


def _field_failing(record: Item) -> str:
    """Which field ``model_dump`` fails on, found by dumping each alone (after it failed),
    computed fields too."""
    for name in (*record.__dict__, *type(record).model_computed_fields):
        try:
            record.model_dump(mode="json", include={name})
        except Exception as exc:
            bytes_hint = ": bytes that are not UTF-8 go only in a field of type bytes" if "utf-8" in str(exc) else ""
            return f"field {name!r}{bytes_hint}"
    return "field unknown"


def _dumped(record: Item) -> dict[str, Any]:
    raw = _bytes_fields(type(record))
    if not raw:
        return record.model_dump(mode="json")
    dumped = record.model_dump(mode="json", exclude=set(raw))
    values = {
        name: getattr(record, name) if name in raw else dumped.pop(name)
        for name in record.__dict__
        if name in raw or name in dumped
    }
    values.update(dumped)  # computed fields, extra fields, aliases
    return values


def cannot_store(record: object) -> str:
    """How an error row starts for a record no row can be made of (``to_row`` raised)."""
    return f"{type(record).__name__} cannot be stored: "


NODE_HINT = "take node.text() or node.attributes[...]"


def _to_json(value: Any, name: object = None) -> str:
    """``value`` as JSON text; what JSON has no type for is written as its ``str()`` (a UUID,
    a path), but a selectolax node is refused (``name``: the dict item's key, for the error)."""

    def as_text(inner: Any) -> str:
        if isinstance(inner, LexborNode):
            where = f"{name!r} holds" if name is not None else "it holds"
            raise ValueError(f"{where} a selectolax node ({inner.tag}), not its text: {NODE_HINT}")
        return str(inner)

    try:
        return json.dumps(value, ensure_ascii=False, default=as_text, allow_nan=False)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        # JSON has no NaN or infinity (json.dumps wrote NaN, which no JSON reader takes, SQLite's
        # json functions included): null, as pydantic dumps them and as a NaN field is stored
        return json.dumps(_finite(value), ensure_ascii=False, default=as_text)


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity in its lists and dicts made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {name: _finite(inner) for name, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(inner) for inner in value]
    return value


def _to_column_value(value: Any, name: object) -> Any:
    if value is None or isinstance(value, (str, int, float, bytes)):
        return value
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (Decimal, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    return _to_json(value, name)
