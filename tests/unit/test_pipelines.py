"""Tests for the reusable stages in ``pipelines/``: Normalize, DedupByKey, RequireFields."""

from __future__ import annotations

import asyncio
import enum
from typing import ClassVar

import pytest
from pydantic import ConfigDict, Field

from pipelines.clean import Normalize, clean_text
from pipelines.dedup import DedupByKey
from pipelines.require import RequireFields
from scraper import DropItem, Item, Spider
from scraper.errors import ConfigError, OpenFailed
from scraper.pipeline import BaseStage, Pipeline, Record, Stage, StageFailed


class Page(Item):
    key: ClassVar[tuple[str, ...]] = ("url",)

    url: str
    title: str
    tags: list[str] = Field(default_factory=list)
    views: int = 0
    note: str | None = None


class Mirror(Item):
    """Another table keyed the same way: its keys never collide with ``Page``'s."""

    key: ClassVar[tuple[str, ...]] = ("url",)

    url: str


class Tagged(Item):
    key: ClassVar[tuple[str, ...]] = ("name", "tags")

    name: str
    tags: list[str]


class Note(Item):  # no key
    text: str
    subtitle: str = ""


class DemoSpider(Spider):
    name = "demo"


SPIDER = DemoSpider()


# ---------------------------------------------------------------- Normalize


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Brass \n\t Lamp  ", "Brass Lamp"),
        ("no\u00a0break\u2003space", "no break space"),
        ("\n\n", ""),
        ("tidy", "tidy"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


async def test_normalize_item_cleans_str_fields_and_lists_of_str() -> None:
    item = Page(
        url=" https://example.com/a ",
        title="\n   Brass   Lamp\n ",
        tags=[" home ", "garden\n  tools"],
        views=3,
        note="  kept  ",
    )
    cleaned = await Normalize().process(item, SPIDER)

    assert cleaned == Page(
        url="https://example.com/a",
        title="Brass Lamp",
        tags=["home", "garden tools"],
        views=3,
        note="kept",
    )
    assert item.title == "\n   Brass   Lamp\n "  # a copy: the original is untouched


async def test_normalize_leaves_non_text_and_clean_items_alone() -> None:
    item = Page(url="https://example.com/a", title="Lamp", views=7, note=None)
    assert await Normalize().process(item, SPIDER) is item


class Color(enum.StrEnum):
    DARK_BLUE = "dark  blue"


class Swatch(Item):
    color: Color
    note: str


async def test_normalize_leaves_an_enum_of_text_a_member() -> None:
    """A str Enum's value was cleaned into a plain str, no member any more ('dark blue'), and
    pydantic warned as the item was stored."""
    cleaned = await Normalize().process(Swatch(color=Color.DARK_BLUE, note=" a  b "), SPIDER)
    assert isinstance(cleaned, Swatch)
    assert (cleaned.color, cleaned.note) == (Color.DARK_BLUE, "a b")
    assert await Normalize().process({"c": Color.DARK_BLUE}, SPIDER) == {"c": Color.DARK_BLUE}


async def test_normalize_dict() -> None:
    record = {"name": "  a   b ", "count": 2, "tags": [" x ", 5], "nested": {"k": " v ", "n": [" w "]}}
    cleaned = await Normalize().process(record, SPIDER)

    assert cleaned == {"name": "a b", "count": 2, "tags": ["x", 5], "nested": {"k": "v", "n": ["w"]}}
    assert record["name"] == "  a   b " and record["nested"] == {"k": " v ", "n": [" w "]}


class Address(Item):
    street: str


class Listing(Item):
    model_config = ConfigDict(extra="allow")

    title: str
    address: Address
    labels: set[str] = set()
    specs: dict[str, str] = {}


async def test_normalize_reaches_every_text_of_an_item() -> None:
    """Texts in sets, dict values, nested items and extra fields were left as the page had them."""
    item = Listing(
        title=" Flat ", address=Address(street=" 1  Main St "), labels={" new "}, specs={"rooms": " 3\n"}, floor=" 2 "
    )
    cleaned = await Normalize().process(item, SPIDER)

    assert isinstance(cleaned, Listing)
    assert cleaned.model_dump() == {
        "title": "Flat",
        "address": {"street": "1 Main St"},
        "labels": {"new"},
        "specs": {"rooms": "3"},
        "floor": "2",
    }
    assert item.address.street == " 1  Main St " and item.model_extra == {"floor": " 2 "}  # copies


# ---------------------------------------------------------------- DedupByKey


async def test_dedup_drops_a_repeated_key_naming_its_values() -> None:
    stage = DedupByKey()
    await stage.open(SPIDER)
    first = Page(url="https://example.com/a", title="A")

    assert await stage.process(first, SPIDER) is first
    assert await stage.process(Page(url="https://example.com/b", title="A"), SPIDER)
    with pytest.raises(DropItem, match=r"duplicate Page \(url='https://example.com/a'\)"):
        await stage.process(Page(url="https://example.com/a", title="other title"), SPIDER)


async def test_dedup_keys_are_per_table() -> None:
    stage = DedupByKey()
    await stage.open(SPIDER)
    await stage.process(Page(url="https://example.com/a", title="A"), SPIDER)

    mirror = Mirror(url="https://example.com/a")
    assert await stage.process(mirror, SPIDER) is mirror


async def test_dedup_compound_key_with_a_list() -> None:
    stage = DedupByKey()
    await stage.open(SPIDER)
    await stage.process(Tagged(name="n", tags=["a", "b"]), SPIDER)
    await stage.process(Tagged(name="n", tags=["b", "a"]), SPIDER)  # order matters in a list

    with pytest.raises(DropItem, match=r"name='n', tags=\['a', 'b'\]"):
        await stage.process(Tagged(name="n", tags=["a", "b"]), SPIDER)


async def test_dedup_passes_unkeyed_items_and_dicts() -> None:
    stage = DedupByKey()
    await stage.open(SPIDER)
    note, record = Note(text="same"), {"url": "https://example.com/a"}

    for _ in range(2):
        assert await stage.process(note, SPIDER) is note
        assert await stage.process(record, SPIDER) is record


async def test_dedup_forgets_on_open() -> None:
    stage = DedupByKey()
    item = Page(url="https://example.com/a", title="A")
    await stage.open(SPIDER)
    await stage.process(item, SPIDER)
    with pytest.raises(DropItem):
        await stage.process(item, SPIDER)
    await stage.close(SPIDER)

    await stage.open(SPIDER)  # a new crawl
    assert await stage.process(item, SPIDER) is item


async def test_normalize_before_dedup_catches_whitespace_duplicates() -> None:
    pipeline = Pipeline.from_settings(["pipelines.clean:Normalize", "pipelines.dedup:DedupByKey"])
    assert all(isinstance(stage, Stage) for stage in pipeline.stages)
    await pipeline.open(SPIDER)

    await pipeline.process(Page(url="https://example.com/a", title="A"), SPIDER)
    with pytest.raises(DropItem):
        await pipeline.process(Page(url="\n https://example.com/a ", title="A"), SPIDER)


# ---------------------------------------------------------------- RequireFields


async def test_require_fields_drops_blank_required_text() -> None:
    stage = RequireFields()
    with pytest.raises(DropItem, match=r"Page with empty required field\(s\): url, title"):
        await stage.process(Page(url="", title=" \n "), SPIDER)


async def test_require_fields_passes_filled_items_optional_blanks_and_dicts() -> None:
    stage = RequireFields()
    note = Note(text="hello", subtitle="")
    record = {"text": ""}

    assert await stage.process(note, SPIDER) is note
    assert await stage.process(record, SPIDER) is record


class ScrapyStyle:
    """A pipeline as Scrapy writes one."""

    def process_item(self, item: Record, spider: Spider) -> Record:
        return item


class ScrapyHooksAlone:
    """Scrapy's hook names on a class of its own, with our process()."""

    async def open_spider(self, spider: Spider) -> None:
        return None

    async def process(self, item: Record, spider: Spider) -> Record:
        return item


class ScrapyHooks(BaseStage):
    """A stage with Scrapy's hook names: open_spider() was never called, so nothing it set up
    was there when process() ran."""

    async def open_spider(self, spider: Spider) -> None:
        self.seen: set[str] = set()


class ScrapyFactory(BaseStage):
    @classmethod
    def from_crawler(cls, crawler: object) -> ScrapyFactory:
        return cls()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "tests.unit.test_pipelines:ScrapyHooks",
            "pipelines: tests.unit.test_pipelines:ScrapyHooks: open_spider is Scrapy's name, never called here: "
            "write 'async def open(self, spider)'",
        ),
        (
            "tests.unit.test_pipelines:ScrapyFactory",
            "pipelines: tests.unit.test_pipelines:ScrapyFactory: from_crawler is Scrapy's name, never called here",
        ),
        # a function named by mistake: called without its argument
        (
            "pipelines.clean:clean_text",
            "pipelines: pipelines.clean:clean_text could not be created: TypeError: clean_text() missing",
        ),
        ("json:JSONDecoder", "pipelines: json:JSONDecoder is not a Stage (needs async open, process, close)"),
        ("pipelines.clean:Nope", "pipelines: module 'pipelines.clean' has no 'Nope'"),
        (
            "tests.unit.test_pipelines:ScrapyStyle",
            "pipelines: tests.unit.test_pipelines:ScrapyStyle is not a Stage (needs async open, process, close); "
            "process_item is Scrapy's name: write 'async def process(self, item, spider)'",
        ),
        (  # not a BaseStage: its open_spider went unsaid
            "tests.unit.test_pipelines:ScrapyHooksAlone",
            "pipelines: tests.unit.test_pipelines:ScrapyHooksAlone is not a Stage (needs async open, process, close); "
            "open_spider is Scrapy's name: write 'async def open(self, spider)'",
        ),
        (
            "pipelines.clean.Normalize",  # Scrapy's ITEM_PIPELINES form
            "pipelines: 'pipelines.clean.Normalize' must look like 'package.module:Name' (pipelines.clean:Normalize?)",
        ),
        ("Normalize", "pipelines: 'Normalize' must look like 'package.module:Name'"),
    ],
)
def test_a_pipelines_entry_that_cannot_be_a_stage_is_a_config_error_naming_it(path: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_settings(["pipelines.clean:Normalize", path])
    assert str(raised.value).startswith(message)


class Forgetful(BaseStage):
    """Changes the item and forgets to return it: the classic slip."""

    async def process(self, item: Record, spider: Spider) -> Record:
        item["seen"] = True  # type: ignore[index]
        return None  # type: ignore[return-value]


async def test_a_stage_that_returns_no_item_fails_that_item_naming_the_stage() -> None:
    pipeline = Pipeline([Normalize(), Forgetful()])
    with pytest.raises(StageFailed) as raised:
        await pipeline.process({"title": " x "}, SPIDER)
    assert raised.value.stage == "Forgetful"
    assert str(raised.value.error) == "process returned NoneType; expected the item, or raise DropItem"


class Exiting(BaseStage):
    """A stage whose code ends abruptly: ``sys.exit()``, a library's BaseException."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def process(self, item: Record, spider: Spider) -> Record:
        raise self.error


class Unwind(BaseException):
    pass


@pytest.mark.parametrize("error", [SystemExit(3), Unwind("from a library"), asyncio.CancelledError()])
async def test_a_stage_that_exits_or_raises_a_base_exception_fails_that_item_only(error: BaseException) -> None:
    """Only Exception was caught: anything else a stage raised ended the crawl, marked failed."""
    with pytest.raises(StageFailed) as raised:
        await Pipeline([Exiting(error)]).process({"title": "x"}, SPIDER)
    assert raised.value.stage == "Exiting" and raised.value.error is error


async def test_the_crawls_own_cancellation_passes_through_a_stage() -> None:
    started = asyncio.Event()

    class Waiting(BaseStage):
        async def process(self, item: Record, spider: Spider) -> Record:
            started.set()
            await asyncio.sleep(60)
            return item

    task = asyncio.create_task(Pipeline([Waiting()]).process({"title": "x"}, SPIDER))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class PlainProcess(BaseStage):
    def process(self, item: Record, spider: Spider) -> Record:  # type: ignore[override]
        return item


class Unreachable(BaseStage):
    async def open(self, spider: Spider) -> None:
        raise ConnectionRefusedError("the warehouse is down")


def test_a_stage_method_that_is_not_async_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"^pipelines: tests.unit.test_pipelines:PlainProcess: process must be an 'async def'$"
    ):
        Pipeline.from_settings(["tests.unit.test_pipelines:PlainProcess"])


async def test_a_stage_that_fails_to_open_is_named() -> None:
    with pytest.raises(
        OpenFailed,
        match=r"^pipeline stage Unreachable: open\(\) failed: ConnectionRefusedError: the warehouse is down$",
    ):
        await Pipeline([Normalize(), Unreachable()]).open(SPIDER)


class Buffered(BaseStage):
    """Writes what it buffered when it closes, as an export stage would."""

    def __init__(self) -> None:
        self.flushed = False

    async def close(self, spider: Spider) -> None:
        self.flushed = True


class BrokenClose(BaseStage):
    async def close(self, spider: Spider) -> None:
        raise OSError("the warehouse is down")


async def test_a_stage_that_fails_to_close_does_not_keep_the_others_from_closing() -> None:
    """The first failure ended the closing: a stage before it never flushed its output."""
    first, last = Buffered(), Buffered()
    failures = await Pipeline([first, BrokenClose(), last]).close(SPIDER)
    assert first.flushed and last.flushed
    assert [str(failure) for failure in failures] == ["BrokenClose.close(): OSError: the warehouse is down"]
