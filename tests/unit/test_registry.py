"""Finding a spider by name: what the error says when the name finds none."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scraper.errors import SpiderNotFound
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
