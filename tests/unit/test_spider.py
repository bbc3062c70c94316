"""Tests for the Spider base class and run_callback, whatever style a callback is written in."""

from __future__ import annotations

import copy
import gc
import re
import traceback
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import pydantic
import pytest

from scraper import records
from scraper.errors import ConfigError
from scraper.http import Request, Response
from scraper.item import Item
from scraper.spider import CallbackResult, Spider, callback_of, run_callback, stray_output

URL = "https://example.com/list"


class Quote(Item):
    text: str
    likes: int = 0


class QuotesSpider(Spider):
    name = "quotes"
    start_urls = ("https://example.com/page/1", "https://example.com/page/2")

    async def parse(self, response: Response) -> AsyncIterator[Request | Item]:
        yield Quote(text="hi")

    async def parse_detail(self, response: Response) -> AsyncIterator[Request | Item]:
        yield Quote(text="detail")


def make_response(request: Request | None = None) -> Response:
    return Response(url=URL, status=200, body=b"<p>x</p>", request=request or Request(URL))


def summary(result: CallbackResult) -> tuple[list[str], list[Any]]:
    return [request.url for request in result.requests], result.items


NEXT = "https://example.com/next"


async def async_generator(response: Response) -> AsyncIterator[Any]:
    yield Quote(text="a")
    yield Request(NEXT)
    yield {"plain": "dict"}


async def async_returning_list(response: Response) -> list[Any]:
    return [Quote(text="a"), Request(NEXT), {"plain": "dict"}]


def plain_generator(response: Response) -> Iterator[Any]:
    yield Quote(text="a")
    yield Request(NEXT)
    yield {"plain": "dict"}


def plain_returning_tuple(response: Response) -> tuple[Any, ...]:
    return (Quote(text="a"), Request(NEXT), {"plain": "dict"})


@pytest.mark.parametrize("callback", [async_generator, async_returning_list, plain_generator, plain_returning_tuple])
async def test_run_callback_accepts_every_style(callback: Any) -> None:
    result = await run_callback(callback, make_response())
    assert summary(result) == ([NEXT], [Quote(text="a"), {"plain": "dict"}])
    assert result.invalid == []


async def returns_none(response: Response) -> None:
    return None


def plain_returns_none(response: Response) -> None:
    return None


@pytest.mark.parametrize("callback", [returns_none, plain_returns_none])
async def test_run_callback_with_no_output(callback: Any) -> None:
    assert summary(await run_callback(callback, make_response())) == ([], [])


@pytest.mark.parametrize("single", [Quote(text="only"), {"only": 1}])
async def test_run_callback_with_a_single_item(single: Any) -> None:
    async def callback(response: Response) -> Any:
        return single

    assert summary(await run_callback(callback, make_response())) == ([], [single])


async def test_run_callback_with_a_single_request() -> None:
    def callback(response: Response) -> Request:
        return Request(NEXT)

    assert summary(await run_callback(callback, make_response())) == ([NEXT], [])


async def test_cb_kwargs_are_passed() -> None:
    async def callback(response: Response, *, category: str, page: int) -> AsyncIterator[Any]:
        yield {"category": category, "page": page, "url": response.url}

    request = Request(URL, cb_kwargs={"category": "books", "page": 2})
    result = await run_callback(callback, make_response(request))
    assert result.items == [{"category": "books", "page": 2, "url": URL}]


async def test_invalid_items_are_kept_apart() -> None:
    async def callback(response: Response) -> AsyncIterator[Any]:
        yield Quote(text="good", likes=1)
        yield Quote(text="bad", likes="many")
        yield Request(NEXT)
        yield Quote(text="also good")

    result = await run_callback(callback, make_response())
    assert summary(result) == ([NEXT], [Quote(text="good", likes=1), Quote(text="also good")])
    [(item, error)] = result.invalid
    assert isinstance(error, pydantic.ValidationError)
    assert error.errors()[0]["loc"] == ("likes",)
    assert item.text == "bad"


async def test_an_invalid_items_error_points_at_the_line_that_made_it() -> None:
    """Caught in Item.__init__, its traceback began there: the warning and the error row named
    scraper/item.py, never the spider's line."""

    def quote_of(likes: str) -> Quote:  # a helper of the spider's, as spiders/quotes.py has
        return Quote(text="bad", likes=likes)

    async def callback(response: Response) -> AsyncIterator[Any]:
        yield quote_of("many")

    result = await run_callback(callback, make_response())
    [(_, error)] = result.invalid
    line = quote_of.__code__.co_firstlineno + 1
    assert records._where(error).endswith(f"test_spider.py:{line}, in quote_of")
    trace = "".join(traceback.format_exception(error))
    assert "in callback" in trace and "in quote_of" in trace and "validate_python" in trace


async def test_items_built_outside_the_callback_are_still_validated() -> None:
    await run_callback(async_generator, make_response())
    with pytest.raises(pydantic.ValidationError):
        Quote(text="bad", likes="many")


async def test_other_output_is_named_and_the_rest_kept() -> None:
    """One stray output (a string, a set, a number) must not cost the page its items and
    links; None is skipped, as Scrapy does."""

    async def callback(response: Response) -> AsyncIterator[Any]:
        yield Quote(text="fine")
        yield "a string"
        yield None
        yield {Quote(text="in a set").text}
        yield Request("http://example.com/next")
        yield [7]
        yield {"text": "a dict"}

    result = await run_callback(callback, make_response())
    assert [item["text"] if isinstance(item, dict) else item.text for item in result.items] == ["fine", "a dict"]
    assert [request.url for request in result.requests] == ["http://example.com/next"]
    assert result.strays == ["str (a URL? yield response.follow(url))", "set", "int"]
    assert str(stray_output("set")) == "callback yielded set; expected Request, Item or dict"


@pytest.mark.parametrize(
    ("returned", "stray"),
    [
        ("http://x.test/", "str (a URL? yield response.follow(url))"),
        (b"bytes", "bytes"),
        (5, "int"),
        (dict, "the class dict (not an instance of it)"),
    ],
)
async def test_a_returned_value_that_holds_no_outputs_is_one_stray(returned: Any, stray: str) -> None:
    """A returned URL was read character by character (nine stray rows for "http://x/"), and
    a number or a class failed the page as "'int' object is not iterable", naming neither."""

    async def callback(response: Response) -> Any:
        return returned

    assert (await run_callback(callback, make_response())).strays == [stray]


async def test_a_slip_is_named_and_a_yielded_async_generator_is_read() -> None:
    async def more(response: Response) -> AsyncIterator[Any]:
        yield Quote(text="from more")
        yield [Request("http://example.com/more"), Quote(text="nested in more")]
        yield deeper(response)

    async def deeper(response: Response) -> AsyncIterator[Any]:
        yield Quote(text="from deeper")
        yield Quote(text="bad", likes="many")  # type: ignore[arg-type]

    async def helper(response: Response) -> Quote:
        return Quote(text="never awaited")

    async def callback(response: Response) -> AsyncIterator[Any]:
        yield Quote
        yield more(response)  # Scrapy's 'yield from self.more(response)', in an async def
        yield helper(response)
        yield Quote(text="kept")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be noise on stderr
        result = await run_callback(callback, make_response())
        gc.collect()
    # a yielded async generator is read, after the rest: Scrapy's 'yield from' in an async def
    assert [item.text for item in result.items] == ["kept", "from more", "nested in more", "from deeper"]  # type: ignore[union-attr]
    assert [request.url for request in result.requests] == ["http://example.com/more"]
    assert [item.text for item, _ in result.invalid] == ["bad"]  # validated apart, as anywhere
    assert result.strays == [
        "the class Quote (not an instance of it)",
        "a coroutine (an async call that was not awaited)",
    ]


class Point(NamedTuple):
    x: int
    y: int


async def test_a_yielded_list_tuple_or_generator_gives_its_outputs_in_order() -> None:
    """An async generator cannot ``yield from``: ``yield response.follow_all(...)`` hands on a
    list, which was one stray "list" and no links."""

    async def callback(response: Response) -> AsyncIterator[Any]:
        yield Request("https://example.com/a")
        yield response.follow_all(["b", "c"])
        yield (Quote(text="in a tuple"), {"text": "a dict in it"})
        yield (Quote(text=text, likes=likes) for text, likes in [("lazy", 1), ("lazy and bad", "many")])
        yield [[Request("https://example.com/d")], None]
        yield Request("https://example.com/e")
        yield Point(1, 2)  # a named tuple is a value, not a container

    result = await run_callback(callback, make_response())
    assert [request.url for request in result.requests] == [f"https://example.com/{tail}" for tail in "abcde"]
    assert [item["text"] if isinstance(item, dict) else item.text for item in result.items] == [
        "in a tuple",
        "a dict in it",
        "lazy",
    ]
    assert [item.text for item, _ in result.invalid] == ["lazy and bad"]  # built by the generator, kept apart
    assert result.strays == ["Point"]


async def test_callback_errors_propagate() -> None:
    async def callback(response: Response) -> AsyncIterator[Any]:
        yield Quote(text="half")
        raise LookupError("selector missing")

    with pytest.raises(LookupError, match="selector missing"):
        await run_callback(callback, make_response())


# Spider


def test_arguments_become_attributes() -> None:
    spider = QuotesSpider(category="humor", pages="3")
    assert (spider.category, spider.pages) == ("humor", "3")  # type: ignore[attr-defined]
    assert not hasattr(QuotesSpider, "category")


@pytest.mark.parametrize("name", ["parse", "start_requests", "opened", "closed", "parse_detail"])
def test_argument_shadowing_a_method_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError) as raised:  # it said "not a usable attribute name"
        QuotesSpider(**{name: "x"})
    assert str(raised.value) == f"spider argument -a {name}=...: the spider's method {name}() has that name"


def test_an_argument_that_is_no_python_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^spider argument -a not-an-id=\.\.\.: not a usable attribute name$"):
        QuotesSpider(**{"not-an-id": "x"})


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("name", "cannot be changed"),
        ("settings", "-s KEY=VALUE"),
        ("start_urls", "start_requests()"),
        ("allowed_domains", "__init__()"),
        ("logger", "logger"),
    ],
)
def test_an_argument_replacing_what_the_framework_reads_is_a_config_error(name: str, advice: str) -> None:
    with pytest.raises(ConfigError, match=rf"^spider argument -a {name}=\.\.\.: .*{re.escape(advice)}"):
        QuotesSpider(**{name: "x"})


def test_a_callback_or_hook_that_is_no_method_is_refused_when_the_spider_is_defined() -> None:
    """parse = 5 failed every page with a TypeError row of its own."""
    with pytest.raises(TypeError, match=r"^Broken.parse = 5 \(int\): it must be a method \(async def parse\(...\)\)$"):

        class Broken(Spider):
            name = "broken"
            parse = 5  # type: ignore[assignment]


def test_a_closing_hook_that_cannot_take_the_reason_is_refused_when_the_spider_is_defined() -> None:
    """def closed(self) failed at the end of the crawl, a traceback in the log."""
    with pytest.raises(TypeError, match=r"^NoReason.closed\(\) is called as closed\(self, reason\): def closed"):

        class NoReason(Spider):
            name = "no_reason"

            def closed(self) -> None:  # type: ignore[override]
                pass

    class Flexible(Spider):  # what can take the call is fine
        name = "flexible"

        async def opened(self, *extra: Any) -> None:
            pass

        def closed(self, reason: str, note: str = "") -> None:  # type: ignore[override]
            pass


def test_a_hook_written_as_a_classmethod_is_a_method() -> None:
    class ClassHooks(Spider):
        name = "class_hooks"

        @classmethod
        async def start_requests(cls) -> AsyncIterator[Request]:  # type: ignore[override]
            yield Request("http://a.test/")

    assert ClassHooks.name == "class_hooks"


def test_scrapy_s_custom_settings_is_refused_when_the_spider_is_defined() -> None:
    with pytest.raises(
        TypeError, match=r"^Ported.custom_settings: a spider's own settings are `settings = \{...\}` here"
    ):

        class Ported(Spider):
            name = "ported"
            custom_settings = {"DOWNLOAD_DELAY": 1}


@pytest.mark.parametrize(
    ("attribute", "value", "advice"),
    [
        ("download_delay", 2.0, "it is the setting per_host.delay (settings = {...})"),
        ("user_agent", "mybot/1.0", "it is the setting user_agent (settings = {...})"),
        ("handle_httpstatus_list", [404], 'a request takes meta={"allow_statuses": [...]}'),
    ],
)
def test_scrapy_s_spider_attributes_that_are_settings_are_refused_when_the_spider_is_defined(
    attribute: str, value: object, advice: str
) -> None:
    """Scrapy reads these off the spider; here nothing did, and the crawl ran without them."""
    with pytest.raises(TypeError, match=rf"^Ported.{attribute} is Scrapy's, not read here: {re.escape(advice)}$"):
        type("Ported", (Spider,), {"name": "ported", attribute: value})


@pytest.mark.parametrize(
    ("name", "advice"),
    [("user_agent", "give -s user_agent=..."), ("download_delay", "give -s per_host.delay=...")],
)
def test_a_scrapy_setting_given_as_a_spider_argument_is_a_config_error(name: str, advice: str) -> None:
    """scrapy crawl -a user_agent=... works in Scrapy; here the attribute was never read."""
    with pytest.raises(
        ConfigError, match=rf"^spider argument -a {name}=\.\.\.: Scrapy's, not read here: {re.escape(advice)}$"
    ):
        QuotesSpider(**{name: "x"})


async def test_scrapy_s_async_start_is_refused_unless_start_requests_is_defined_too() -> None:
    with pytest.raises(TypeError, match=r"^Ported.start\(\): the first requests come from start_requests\(\) here"):

        class Ported(Spider):
            name = "ported"

            async def start(self) -> AsyncIterator[Request]:
                yield Request(URL)

    class Both(Spider):  # start() is then the spider's own business
        async def start_requests(self) -> AsyncIterator[Request]:
            async for request in self.start():
                yield request

        async def start(self) -> AsyncIterator[Request]:
            yield Request(URL)

    class Inherits(Both):  # start_requests() comes from its base
        async def start(self) -> AsyncIterator[Request]:
            yield Request(URL + "?inherited")

    assert [request.url async for request in Both().start_requests()] == [URL]
    assert [request.url async for request in Inherits().start_requests()] == [URL + "?inherited"]


async def test_default_start_requests() -> None:
    requests = [request async for request in QuotesSpider().start_requests()]
    assert [request.url for request in requests] == list(QuotesSpider.start_urls)
    assert all(request.callback is None and request.method == "GET" for request in requests)


async def test_start_requests_of_a_spider_without_start_urls() -> None:
    assert [request async for request in Spider().start_requests()] == []


def test_callback_of_defaults_to_parse() -> None:
    spider = QuotesSpider()
    assert callback_of(spider, Request(URL)) == spider.parse
    assert callback_of(spider, Request(URL, callback=spider.parse_detail)) == spider.parse_detail


async def test_base_parse_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match=r"Spider\.parse"):
        await run_callback(Spider().parse, make_response())


async def test_run_callback_with_a_spider_method() -> None:
    spider = QuotesSpider()
    result = await run_callback(callback_of(spider, Request(URL)), make_response())
    assert result.items == [Quote(text="hi")]


@pytest.mark.parametrize("name", ["shop/books", "../outside", "my spider", ".hidden", "a\\b", 42])
def test_a_name_that_cannot_name_a_database_file_is_refused(name: Any) -> None:
    with pytest.raises(TypeError, match=r"^Named\.name .*: use letters, digits, '_', '-' and '\.' \(not first\)$"):
        type("Named", (Spider,), {"name": name})


@pytest.mark.parametrize("name", ["books", "quotes-toscrape", "example.com", "café_2"])
def test_usual_names_are_accepted(name: str) -> None:
    assert type("Named", (Spider,), {"name": name}).name == name


class Author(Item):
    name: str
    born: int


class Book(Item):
    title: str
    author: Author | None = None
    authors: list[Author] = []


async def test_an_item_holding_an_invalid_item_is_invalid_too() -> None:
    """pydantic takes an item as a field's value without validating it again: an invalid one
    made inside a callback was stored as part of another (and as a copy), with no error row."""

    async def callback(response: Response) -> AsyncIterator[Any]:
        bad = Author(name="X")  # born is missing
        yield Book(title="nested", author=bad, authors=[Author(name="Y", born=1), bad])
        yield bad.model_copy(update={"name": "Z"})
        yield {"found": {"by": [bad]}}
        yield Book(title="kept", author=Author(name="Y", born=1))
        yield {"kept": [1, 2]}

    result = await run_callback(callback, make_response())
    assert [getattr(item, "title", item) for item in result.items] == ["kept", {"kept": [1, 2]}]
    errors = {(type(item).__name__, error.title): error.errors(include_url=False) for item, error in result.invalid}
    assert [(where, [detail["loc"] for detail in details]) for where, details in errors.items()] == [
        (("Book", "Book"), [("author", "born"), ("authors", 1, "born")]),
        (("Author", "Author"), [("born",)]),
        (("dict", "dict item"), [("found", "by", 0, "born")]),
    ]


@pytest.mark.parametrize("make_copy", [copy.copy, copy.deepcopy, lambda item: item.model_copy(deep=True)])
async def test_a_copy_of_an_invalid_item_is_invalid_too(make_copy: Any) -> None:
    """copy.copy() and copy.deepcopy() of an item that failed validation were stored, as it was
    (model_copy() was caught)."""

    async def callback(response: Response) -> AsyncIterator[Any]:
        yield make_copy(Author(name="X"))  # born is missing

    result = await run_callback(callback, make_response())
    assert result.items == [] and [type(item).__name__ for item, _ in result.invalid] == ["Author"]


def test_a_validation_error_is_said_on_one_line_with_the_values_given() -> None:
    from scraper.item import validation_message

    with pytest.raises(pydantic.ValidationError) as caught:
        Author(name=5, born="in " + "x" * 100)  # type: ignore[arg-type]
    message = validation_message(caught.value)
    assert "\n" not in message and "errors.pydantic.dev" not in message
    assert message.startswith("Author: name: Input should be a valid string (given 5); born: Input should be a valid")
    assert message.endswith(f"(given 'in {'x' * 53}...)")
    with pytest.raises(pydantic.ValidationError) as caught:
        Author()  # type: ignore[call-arg]
    assert validation_message(caught.value) == "Author: name: Field required; born: Field required"


def test_an_error_row_is_one_line_whatever_the_error_says() -> None:
    from scraper.records import error_record
    from scraper.stats import Stats

    class Priced(Item):
        price: int

        @pydantic.field_validator("price")
        @classmethod
        def _positive(cls, price: int) -> int:
            if price < 0:
                raise ValueError("negative price\nsee the docs")
            return price

    with pytest.raises(pydantic.ValidationError) as caught:
        Priced(price=-1)
    row = error_record("validate", caught.value, "http://a.test/", Stats(), announce=False)
    assert row.message == "Priced: price: Value error, negative price see the docs (given -1)"
    row = error_record("pipeline", RuntimeError("flush failed\r\n  second line"), None, Stats(), announce=False)
    assert row.message == "flush failed second line"
