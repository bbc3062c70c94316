"""Finding a spider by name: what the error says when the name finds none."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scraper.errors import ConfigError, SpiderNotFound
from scraper.registry import load_spider_class

SPIDERS = """
    from scraper import Spider

    class Walk(Spider):
        name = "walk"
        start_urls = ["http://127.0.0.1:1/"]

    class BaseShop(Spider):  # a base class: no name, no spider of its own
        pass

    class QuotesSpider(BaseShop):  # a name forgotten
        start_urls = ["http://127.0.0.1:1/"]
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"registry_spiders_{tmp_path.name}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(textwrap.dedent(SPIDERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("asked", ["quotes", "QuotesSpider", "quotesspider"])
def test_a_class_with_no_name_is_named_when_asked_for(package: str, asked: str) -> None:
    """A spider class without ``name`` is skipped (a base class has none), so a forgotten name
    made 'no spider named' with nothing to say why."""
    with pytest.raises(SpiderNotFound) as caught:
        load_spider_class(asked, [package])
    assert str(caught.value) == (
        f"no spider named {asked!r} in {package} (known: walk): "
        f"the class {package}.QuotesSpider has no name; add name = {asked.lower()!r} to it"
    )


def test_a_typo_gets_the_close_name(package: str) -> None:
    with pytest.raises(SpiderNotFound) as caught:
        load_spider_class("wlak", [package])
    assert str(caught.value).endswith("(known: walk): did you mean 'walk'?")
    with pytest.raises(SpiderNotFound) as caught:
        load_spider_class("zzz", [package])
    assert str(caught.value).endswith("(known: walk)")
    assert load_spider_class("walk", [package]).__name__ == "Walk"


def test_yield_from_in_an_async_callback_says_what_to_yield(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Scrapy callback's ``yield from`` is a SyntaxError in an ``async def``."""
    name = f"registry_yield_from_{tmp_path.name}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(
        "from scraper import Spider\n\nclass S(Spider):\n    name = 's'\n\n"
        "    async def parse(self, response):\n        yield from response.follow_all(css='a')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_spider_class("s", [name])
    assert "SyntaxError: 'yield from' inside async function" in str(caught.value)
    assert "(hint: in an async def, yield what you would yield from: yield response.follow_all(...)" in str(
        caught.value
    )


def test_the_broken_module_named_is_the_one_that_names_the_spider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two modules failing to import: the first one's failure was shown, though the spider
    asked for was the other's."""
    name = f"registry_broken_{tmp_path.name}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "first.py").write_text(
        "from scraper import Spider\n\nclass A(Spider):\n    name = 'a'\n    x = 1 / 0\n"
    )
    (tmp_path / name / "second.py").write_text("import no_such_module_here\nNAME = 'wanted'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_spider_class("wanted", [name])
    assert str(caught.value) == (
        f"spiders: importing '{name}.second' failed: No module named 'no_such_module_here' "
        "(no other module defines a spider named 'wanted')"
    )
    with pytest.raises(ConfigError) as caught:  # named by neither: both are said
        load_spider_class("other", [name])
    assert str(caught.value).startswith("no module that imports defines a spider named 'other', and 2 fail: ")
    assert f"'{name}.first' failed: ZeroDivisionError" in str(caught.value)
    assert f"'{name}.second' failed: No module named" in str(caught.value)


def test_an_empty_spiders_setting_says_so() -> None:
    """It said "no spider named 'shop' in  (known: none)", naming no module and no setting."""
    with pytest.raises(SpiderNotFound) as raised:
        load_spider_class("shop", [])
    assert str(raised.value) == (
        "no spider named 'shop': setting 'spiders' lists no module "
        "(list those holding your spiders: spiders: [spiders])"
    )


def test_a_name_two_spiders_share_fails_only_when_asked_for(
    package: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / package / "twin.py").write_text(
        textwrap.dedent("""
            from scraper import Spider

            class Twin(Spider):
                name = "walk"
                start_urls = ["http://127.0.0.1:1/"]

            class Other(Spider):
                name = "other"
                start_urls = ["http://127.0.0.1:1/"]
        """)
    )
    try:
        with pytest.raises(ConfigError) as caught:
            load_spider_class("walk", [package])
        assert str(caught.value) == (
            f"spiders {package}.Walk and {package}.twin.Twin are both named 'walk': rename one"
        )
        assert load_spider_class("other", [package]).__name__ == "Other"
        assert "are both named 'walk' (not spider 'other', which runs)" in caplog.text
    finally:
        sys.modules.pop(f"{package}.twin", None)
