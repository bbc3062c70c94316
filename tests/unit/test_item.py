"""Tests for Item classes, their mapping to SQLite columns, and the SQL built in schema.py."""

from __future__ import annotations

import datetime as dt
import enum
import json
import sqlite3
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Optional

import pydantic
import pytest
from pydantic import Field

from scraper import schema
from scraper.item import (
    META_COLUMNS,
    Item,
    columns_of,
    columns_of_dict,
    columns_of_row,
    deferred_validation,
    snake_case,
    sql_type,
    to_row,
)
from scraper.worker import stored_item


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Dimensions(pydantic.BaseModel):
    width: float
    height: float


class Product(Item):
    key: ClassVar[tuple[str, ...]] = ("sku",)
    sku: str
    title: str
    price: Decimal
    stock: int = 0
    in_stock: bool = True
    rating: float | None = None
    color: Color = Color.RED
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    size: Dimensions | None = None
    released: dt.date | None = None
    seen_at: dt.datetime | None = None


class ProductPage(Item):
    url: str


class HTTPHeader(Item):
    name: str


class Renamed(Item):
    table: ClassVar[str] = "things"
    name: str


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


# Item classes


@pytest.mark.parametrize(
    ("item_class", "table"),
    [
        (ProductPage, "product_page"),
        (HTTPHeader, "http_header"),
        (Product, "product"),
        (Renamed, "things"),
    ],
)
def test_table_names(item_class: type[Item], table: str) -> None:
    assert item_class.table == table


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Quote", "quote"),
        ("ProductPage", "product_page"),
        ("HTTPHeader", "http_header"),
        ("PageV2Item", "page_v2_item"),
        ("getHTTPResponse", "get_http_response"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_subclass_gets_its_own_table() -> None:
    class SpecialProduct(Product):
        pass

    assert (SpecialProduct.table, Product.table) == ("special_product", "product")


def test_reserved_table_prefix_is_rejected() -> None:
    with pytest.raises(TypeError, match="scraper_"):

        class ScraperRequests(Item):
            url: str


def test_reserved_custom_table_is_rejected() -> None:
    with pytest.raises(TypeError, match="reserved"):

        class Sneaky(Item):
            table: ClassVar[str] = "scraper_errors"
            url: str


def test_reserved_prefix_in_any_case_is_rejected() -> None:
    with pytest.raises(TypeError, match="reserved"):

        class Sneaky(Item):
            table: ClassVar[str] = "Scraper_Requests"  # SQLite's table scraper_requests


@pytest.mark.parametrize("reserved", ["sqlite_stat", "SQLite_Weird"])
def test_sqlite_s_own_table_prefix_is_rejected_when_the_class_is_defined(reserved: str) -> None:
    with pytest.raises(TypeError, match=r"^Stat: table names starting with 'sqlite_' are reserved for SQLite's own"):

        class Stat(Item):
            table: ClassVar[str] = reserved
            url: str

    with pytest.raises(TypeError, match=r"^SqliteStat: .*'sqlite_'.*give the class another name"):

        class SqliteStat(Item):  # its table would be sqlite_stat
            url: str


@pytest.mark.parametrize(("field", "role"), [("table", "its table's name"), ("key", "its upsert key")])
def test_a_field_named_table_or_key_is_rejected_when_the_class_is_defined(field: str, role: str) -> None:
    """A field named 'table' once filed each item into the table its value named ('oak')."""
    message = f"^Furniture: a field cannot be named {field!r} \\({role}\\); name it otherwise"
    with pytest.raises(TypeError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's own: the field shadows the ClassVar
        type("Furniture", (Item,), {"__annotations__": {"url": str, field: str}})


def test_a_key_given_as_one_string_names_one_field() -> None:
    class Page(Item):
        key: ClassVar[tuple[str, ...]] = "url"  # type: ignore[assignment]  # ("url") without its comma
        url: str

    assert Page.key == ("url",) and Page(url="u").key == ("url",)


def test_fields_that_would_be_one_column_are_rejected() -> None:
    with pytest.raises(TypeError, match="Header: fields 'Name' and 'name' would be one column"):

        class Header(Item):
            Name: str
            name: str


def test_key_naming_unknown_field_is_rejected() -> None:
    with pytest.raises(TypeError, match="unknown fields: sku"):

        class Broken(Item):
            key: ClassVar[tuple[str, ...]] = ("url", "sku")
            url: str


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        ProductPage(url="https://example.com/", price=1)


def test_stored_item_takes_table_and_key_from_the_class() -> None:
    product = stored_item(Product(sku="A1", title="Lamp", price=Decimal("9.99")), "https://example.com/a1")
    assert (product.table, product.key, product.url) == ("product", ("sku",), "https://example.com/a1")
    plain = stored_item({"a": 1}, "https://example.com/")
    assert (plain.table, plain.key, plain.columns, plain.row) == ("item", (), {"a": ""}, {"a": 1})


# Column types


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, "TEXT"),
        (bytes, "BLOB"),
        (bytes | None, "BLOB"),
        (int, "INTEGER"),
        (bool, "INTEGER"),
        (float, "REAL"),
        (Decimal, "REAL"),
        (dt.datetime, "TEXT"),
        (dt.date, "TEXT"),
        (Optional[int], "INTEGER"),  # noqa: UP045 - the old spelling must work too
        (float | None, "REAL"),
        (int | str, ""),  # no declared type: 5 stays 5, "x" stays "x" (TEXT stored 5 as '5')
        (int | bool | None, "INTEGER"),
        (str | Color, "TEXT"),
        (Optional[Annotated[bytes, "note"]], "BLOB"),  # noqa: UP045
        (list[str], "TEXT"),
        (dict[str, int], "TEXT"),
        (Dimensions, "TEXT"),
        (Color, "TEXT"),
        (Annotated[int, "note"], "INTEGER"),
        (Any, "TEXT"),
    ],
)
def test_sql_type(annotation: Any, expected: str) -> None:
    assert sql_type(annotation) == expected


def test_columns_of_in_field_order() -> None:
    assert columns_of(Product) == {
        "sku": "TEXT",
        "title": "TEXT",
        "price": "REAL",
        "stock": "INTEGER",
        "in_stock": "INTEGER",
        "rating": "REAL",
        "color": "TEXT",
        "tags": "TEXT",
        "attributes": "TEXT",
        "size": "TEXT",
        "released": "TEXT",
        "seen_at": "TEXT",
    }


def test_columns_of_include_computed_fields() -> None:
    assert columns_of(ShoutedListing) == {
        "url": "TEXT",
        "title": "TEXT",
        "price": "REAL",
        "rating": "INTEGER",
        "in_stock": "INTEGER",
        "slug": "TEXT",  # after the fields, as to_row puts it
    }
    assert list(columns_of(ShoutedListing)) == list(to_row(ShoutedListing(url="u/x")))


def test_columns_of_row_adds_what_the_row_has_beyond_the_fields() -> None:
    class Open(Item):
        model_config = pydantic.ConfigDict(extra="allow")
        name: str

    item = Open(name="x", size=3, note=None)
    assert columns_of_row(Open, to_row(item)) == {"name": "TEXT", "size": "", "note": ""}  # extra: as a dict's
    with pytest.raises(ValueError, match="fields 'name' and 'NAME' would be one column"):
        columns_of_row(Open, to_row(Open(name="x", NAME="y")))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"a": 1, "A": 2}, "keys 'a' and 'A' would be one column"),
        ({"_Url": "x"}, "key '_Url' is a column the framework keeps"),
        ({"_id": 1}, "key '_id' is a column the framework keeps"),
        ({"a\0b": 1}, r"key 'a\\x00b' holds a NUL character"),
        ({f"k{n}": n for n in range(1997)}, "1,997 keys: a table takes at most 1,996"),
    ],
)
def test_columns_of_dict_refuses_keys_sqlite_would_merge(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        columns_of_dict(record)


def test_columns_of_dict_declare_no_type() -> None:
    """Typed by its first value, a column made SQLite convert later ones: after 12345, the zip
    code '01234' was stored as 1234; after '1.5', 2.5 as the text '2.5'."""
    record = {"name": "x", "count": 3, "price": None, "Ünit": "kg", "ünit": "g", "raw": b"\x89PNG"}
    assert columns_of_dict(record) == dict.fromkeys(record, "")


# Rows


def test_to_row_of_item() -> None:
    product = Product(
        sku="A1",
        title="Lampe à huile",
        price=Decimal("12.50"),
        color=Color.BLUE,
        tags=["home", "déco"],
        attributes={"material": "brass", "sizes": [1, 2]},
        size=Dimensions(width=1.5, height=2),
        released=dt.date(2024, 5, 1),
        seen_at=dt.datetime(2024, 5, 1, 12, 30, 5),
    )
    row = to_row(product)
    assert row["sku"] == "A1"
    assert row["title"] == "Lampe à huile"
    assert row["price"] == "12.50"
    assert row["in_stock"] is True
    assert row["rating"] is None
    assert row["color"] == "blue"
    assert row["tags"] == '["home", "déco"]'
    assert json.loads(row["attributes"]) == {"material": "brass", "sizes": [1, 2]}
    assert json.loads(row["size"]) == {"width": 1.5, "height": 2.0}
    assert row["released"] == "2024-05-01"
    assert row["seen_at"] == "2024-05-01T12:30:05"
    assert list(row) == list(columns_of(Product))


class Listing(Item):
    """Plain scalars only: its row is read straight from the validated values."""

    url: str
    title: str | None = None
    price: float = 0.0
    rating: int | None = None
    in_stock: bool = True


class ShoutedListing(Listing):
    """A serializer must be honoured, so this row goes through model_dump."""

    title: Annotated[str, pydantic.PlainSerializer(lambda value: value.upper())] = ""

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def slug(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    "item",
    [
        Listing(url="https://example.com/a", title="Lamp", price=3, in_stock=1),
        Listing(url="https://example.com/b", price=float("inf")),
        ShoutedListing(url="https://example.com/c", title="lamp"),
    ],
)
def test_to_row_of_scalar_items_matches_their_json_dump(item: Item) -> None:
    row = to_row(item)
    assert row == item.model_dump(mode="json")
    assert list(row)[: len(columns_of(type(item)))] == list(columns_of(type(item)))
    assert type(row["price"]) is float and type(row["in_stock"]) is bool


def test_to_row_honours_serializers_and_computed_fields() -> None:
    row = to_row(ShoutedListing(url="https://example.com/lamp-1", title="lamp"))
    assert (row["title"], row["slug"]) == ("LAMP", "lamp-1")


class Thumbnail(Item):
    """Bytes are kept as they are: JSON would make them UTF-8 text and refuse a PNG."""

    url: str
    image: bytes
    small: bytes | None = None


class TaggedThumbnail(Thumbnail):
    """A list makes the row go through model_dump; the bytes must still be bytes, unless a
    serializer of the field says otherwise."""

    tags: list[str] = []
    checksum: bytes = b""

    @pydantic.field_serializer("checksum")
    def _hex(self, checksum: bytes) -> str:
        return checksum.hex()


PNG = b"\x89PNG\r\n\x1a\n\x00\xff"


def test_to_row_keeps_bytes_as_bytes() -> None:
    assert to_row(Thumbnail(url="u", image=PNG)) == {"url": "u", "image": PNG, "small": None}
    row = to_row(TaggedThumbnail(url="u", image=PNG, small=b"\xfe", tags=["a"], checksum=b"\x01\xab"))
    assert row == {"url": "u", "image": PNG, "small": b"\xfe", "tags": '["a"]', "checksum": "01ab"}
    assert columns_of(TaggedThumbnail)["image"] == "BLOB"


def test_bytes_are_stored_as_blobs(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table(TaggedThumbnail.table, columns_of(TaggedThumbnail)))
    insert(db, TaggedThumbnail.table, (), to_row(TaggedThumbnail(url="u", image=PNG, tags=["a"])))
    stored = db.execute("SELECT image, typeof(image), typeof(small) FROM tagged_thumbnail").fetchone()
    assert stored == (PNG, "blob", "null")


class CappedThumbnail(Item):
    """Bytes under ``Optional`` with rules of their own: pydantic keeps the inner Annotated."""

    image: Optional[Annotated[bytes, Field(max_length=100)]] = None  # noqa: UP045 (as users write it)
    tags: list[str] = []


class Attachments(Item):
    files: list[bytes]


def test_bytes_with_rules_under_optional_are_kept_as_bytes() -> None:
    """They went through the JSON dump, which failed on the first byte that is not UTF-8."""
    assert to_row(CappedThumbnail(image=PNG)) == {"image": PNG, "tags": "[]"}
    assert columns_of(CappedThumbnail)["image"] == "BLOB"


def test_a_value_the_json_dump_fails_on_is_named_by_its_field() -> None:
    with pytest.raises(Exception) as caught:
        to_row(Attachments(files=[PNG]))
    assert caught.value.__notes__ == ["field 'files': bytes that are not UTF-8 go only in a field of type bytes"]


class Doubled(Item):
    price: int
    tags: list[str] = []  # not a plain item: dumped as JSON values

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def doubled(self) -> int:
        if self.price < 0:
            raise ValueError("negative")
        return 2 * self.price


def test_a_computed_field_that_raises_is_named() -> None:
    """The error row said "(field unknown)": only the fields given were tried."""
    with pytest.raises(ValueError, match="negative") as caught:
        to_row(Doubled(price=-1))
    assert caught.value.__notes__ == ["field 'doubled'"]


class Counts(Item):
    by_word: dict[str, int]
    nested: list[dict[str, int]] = []


@pytest.mark.parametrize(
    "counts", [Counts(by_word={"caf\udce9": 1}), Counts(by_word={}, nested=[{"ok": 1}, {"caf\udce9": 2}])]
)
def test_a_lone_surrogate_in_a_dict_key_is_refused_naming_the_field(counts: Counts) -> None:
    """pydantic's JSON dump wrote it as three U+FFFD, and the row was stored so, without a
    word (in a value it is kept, and refused, naming the field)."""
    field = "by_word" if counts.by_word else "nested"
    with pytest.raises(ValueError, match=rf"^field '{field}' has a key 'caf\\udce9' with a lone surrogate"):
        to_row(counts)


class Priced(Item):
    price: Decimal
    tags: list[str] = []  # not a plain item: dumped as JSON values


def test_a_decimal_past_what_a_real_column_holds_is_refused_naming_the_field() -> None:
    """Decimal("1e400") went to its REAL column as the text "1E+400", which SQLite stored as
    infinity, without a word. Decimal("Infinity") stays infinity, as a float's does."""
    with pytest.raises(ValueError, match=r"^field 'price': 1E\+400 is past what a REAL column holds"):
        to_row(Priced(price=Decimal("1e400")))
    assert to_row(Priced(price=Decimal("12.50")))["price"] == "12.50"


class Readings(Item):
    values: list[float]
    extra: dict[str, Any] = {}


def test_nan_and_infinity_in_json_are_null() -> None:
    """json.dumps wrote NaN and Infinity, which no JSON reader takes (SQLite's json_valid: 0)."""
    nan, inf = float("nan"), float("inf")
    assert to_row(Readings(values=[nan, inf, 1.5], extra={"a": [nan]})) == {
        "values": "[null, null, 1.5]",
        "extra": '{"a": [null]}',
    }
    assert to_row({"nested": {"a": (nan, -inf)}, "top": 2.5}) == {"nested": '{"a": [null, null]}', "top": 2.5}


def test_to_row_of_dict() -> None:
    row = to_row(
        {
            "when": dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC),
            "day": dt.date(2024, 1, 2),
            "amount": Decimal("1.10"),
            "color": Color.RED,
            "nested": {"a": [1, "ü"]},
            "n": 3,
        }
    )
    assert row == {
        "when": "2024-01-02T03:04:00+00:00",
        "day": "2024-01-02",
        "amount": "1.10",
        "color": "red",
        "nested": '{"a": [1, "ü"]}',
        "n": 3,
    }


# Deferred validation


def test_invalid_item_raises_outside_deferred_validation() -> None:
    with pytest.raises(pydantic.ValidationError):
        Product(sku="A1", title="Lamp", price="cheap")


def test_deferred_validation_records_invalid_items() -> None:
    with deferred_validation() as invalid:
        bad = Product(sku="A1", title="Lamp", price="cheap")
        good = Product(sku="A2", title="Lamp", price="3")
    assert set(invalid) == {id(bad)}
    assert isinstance(invalid[id(bad)], pydantic.ValidationError)
    assert invalid[id(bad)].errors()[0]["loc"] == ("price",)
    assert bad.sku == "A1"
    assert good.price == Decimal("3")


def test_deferred_validation_ends_with_its_block() -> None:
    with deferred_validation():
        pass
    with pytest.raises(pydantic.ValidationError):
        Product(sku="A1", title="Lamp", price="cheap")


def test_discarded_invalid_item_does_not_taint_a_later_one() -> None:
    with deferred_validation() as invalid:
        for _ in range(50):
            Product(sku="draft", title="x", price="n/a")
        kept = [Product(sku=str(n), title="x", price=n) for n in range(50)]
    assert not any(id(item) in invalid for item in kept)


# SQL


def table_columns(db: sqlite3.Connection, table: str) -> dict[str, str]:
    return {row[1]: row[2] for row in db.execute(f"PRAGMA table_info({schema.quote(table)})")}


def insert(db: sqlite3.Connection, table: str, key: tuple[str, ...], row: dict[str, Any]) -> None:
    db.execute(schema.insert_item(table, tuple(row), key), list(row.values()))


def test_framework_tables_are_idempotent(db: sqlite3.Connection) -> None:
    db.executescript(schema.FRAMEWORK_TABLES)
    db.executescript(schema.FRAMEWORK_TABLES)
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"scraper_crawls", "scraper_requests", "scraper_errors", "scraper_cookies"}


def test_create_item_table(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table(Product.table, columns_of(Product)))
    db.execute(schema.create_item_table(Product.table, columns_of(Product)))  # IF NOT EXISTS
    assert table_columns(db, "product") == {"_id": "INTEGER", **columns_of(Product), **META_COLUMNS}


def test_add_column(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table("quote", {"text": "TEXT"}))
    insert(db, "quote", (), {"text": "old"})
    db.execute(schema.add_column("quote", "likes", "INTEGER"))
    insert(db, "quote", (), {"text": "new", "likes": 3})
    assert table_columns(db, "quote")["likes"] == "INTEGER"
    assert db.execute("SELECT text, likes FROM quote ORDER BY _id").fetchall() == [
        ("old", None),
        ("new", 3),
    ]


def test_keyed_insert_upserts(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table("product", {"sku": "TEXT", "title": "TEXT", "stock": "INTEGER"}))
    db.execute(schema.create_key_index("product", ("sku",)))
    insert(db, "product", ("sku",), {"sku": "A1", "title": "Lamp", "stock": 5})
    insert(db, "product", ("sku",), {"sku": "A2", "title": "Book", "stock": 1})
    insert(db, "product", ("sku",), {"sku": "A1", "title": "Brass lamp", "stock": 4})
    assert db.execute("SELECT sku, title, stock FROM product ORDER BY sku").fetchall() == [
        ("A1", "Brass lamp", 4),
        ("A2", "Book", 1),
    ]


def test_unkeyed_insert_appends(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table("item", {"a": "TEXT"}))
    insert(db, "item", (), {"a": "x"})
    insert(db, "item", (), {"a": "x"})
    assert db.execute("SELECT count(*) FROM item").fetchone() == (2,)


def test_key_index_is_unique(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table("page", {"url": "TEXT", "lang": "TEXT"}))
    db.execute(schema.create_key_index("page", ("url", "lang")))
    db.execute(schema.create_key_index("page", ("url", "lang")))  # IF NOT EXISTS
    insert(db, "page", (), {"url": "u", "lang": "en"})
    insert(db, "page", (), {"url": "u", "lang": "fr"})
    with pytest.raises(sqlite3.IntegrityError):
        insert(db, "page", (), {"url": "u", "lang": "en"})


def test_odd_names_are_quoted(db: sqlite3.Connection) -> None:
    table = 'order "items"'
    columns = {"select": "TEXT", 'we"ird': "INTEGER", "has space": "TEXT", "group": "TEXT"}
    db.execute(schema.create_item_table(table, columns))
    db.execute(schema.create_key_index(table, ("select", "has space")))
    db.execute(schema.add_column(table, "from", "REAL"))
    key = ("select", "has space")
    insert(db, table, key, {"select": "a", 'we"ird': 1, "has space": "b", "group": "g", "from": 1.5})
    insert(db, table, key, {"select": "a", 'we"ird': 2, "has space": "b", "group": "h", "from": 2.5})
    rows = db.execute(f'SELECT "we""ird", "group", "from" FROM {schema.quote(table)}').fetchall()
    assert rows == [(2, "h", 2.5)]


def test_quote() -> None:
    assert schema.quote('a"b') == '"a""b"'


def test_item_row_round_trips_through_sqlite(db: sqlite3.Connection) -> None:
    db.execute(schema.create_item_table(Product.table, columns_of(Product)))
    db.execute(schema.create_key_index(Product.table, Product.key))
    product = Product(sku="A1", title="Lamp", price=Decimal("12.50"), tags=["x"])
    insert(db, Product.table, Product.key, to_row(product))
    stored = db.execute("SELECT price, in_stock, tags FROM product WHERE price > 12").fetchone()
    assert stored == (12.5, 1, '["x"]')


def test_a_dict_item_holding_a_selectolax_node_is_refused_naming_the_key() -> None:
    """The node was stored as the text '<LexborNode h1>': a forgotten .text() lost the data."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser("<h1>Title</h1><a href='/a'>a</a><a href='/b'>b</a>")
    with pytest.raises(ValueError, match=r"^'title' holds a selectolax node \(h1\), not its text: take node.text\(\)"):
        to_row({"title": tree.css_first("h1"), "n": 1})
    with pytest.raises(ValueError, match=r"^'links' holds a selectolax node \(a\)"):
        to_row({"links": tree.css("a")})
    import uuid

    token = uuid.UUID(int=7)
    assert to_row({"ids": [token], "title": tree.css_first("h1").text()}) == {  # type: ignore[union-attr]
        "ids": f'["{token}"]',  # what JSON has no type for is still its text
        "title": "Title",
    }


def test_two_classes_of_one_table_typing_a_field_differently_are_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """One column holds both classes' values with the type it was made with: the second class's
    '00123' became 123 in an INTEGER column, and nothing said so."""

    class ShelfBook(Item):
        table: ClassVar[str] = "shelf_shared"
        code: int
        title: str

    class ShelfRecord(Item):
        table: ClassVar[str] = "Shelf_Shared"  # the same table, as SQLite compares names
        code: str
        title: str

    class ShelfMap(Item):
        table: ClassVar[str] = "shelf_shared"
        title: str  # the same type: nothing to say

    for item in (ShelfBook(code=1, title="a"), ShelfRecord(code="00123", title="b"), ShelfMap(title="c")):
        stored_item(item, "http://127.0.0.1/")
    stored_item(ShelfRecord(code="7", title="d"), "http://127.0.0.1/")  # once per class, not per item
    said = [record.getMessage() for record in caplog.records if "shelf" in record.getMessage().lower()]
    assert said == [
        "table 'Shelf_Shared': field 'code' is INTEGER in ShelfBook but TEXT in ShelfRecord; one column holds "
        "both, with one type, and SQLite converts values to it (text '00123' to 123): give the fields one type, "
        "or the classes tables of their own"
    ]
