"""The public API under ``mypy --strict``, as a spider's author runs it: every form README
shows for a callback, ``start_requests()`` and the hooks type-checks, and misuse does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CORRECT = """
from collections.abc import AsyncIterator, Iterator
from typing import Any

from scraper import Item, Request, Response, Spider


class Quote(Item):
    text: str


class Forms(Spider):
    name = "forms"
    start_urls = ["https://example.com/"]

    def __init__(self, **arguments: str) -> None:
        super().__init__(**arguments)
        self.allowed_domains = ["example.com"]  # the refusal of -a allowed_domains says to do this

    def start_requests(self) -> Iterator[Request]:  # Scrapy's plain generator
        yield Request("https://example.com/")

    async def parse(self, response: Response) -> AsyncIterator[Quote | Request]:
        yield Quote(text=response.url)
        yield response.follow("/next", callback=self.parse_list)

    async def parse_list(self, response: Response) -> list[Request]:  # an async def returning a list
        return response.follow_all(css="a", callback=self.parse_plain)

    def parse_plain(self, response: Response) -> Iterator[dict[str, Any]]:  # a plain generator
        yield {"url": response.url}

    def opened(self) -> None:  # a plain def, as Scrapy's
        self.logger.info("opened")

    async def closed(self, reason: str) -> None:
        self.logger.info("closed: %s", reason)


class Listed(Spider):
    name = "listed"

    def start_requests(self) -> list[Request]:
        return [Request("https://example.com/")]

    def closed(self, reason: str) -> None:
        return None
"""

WRONG = """
from scraper import Request, Response, Spider


class Wrong(Spider):
    name = "wrong"

    async def parse(self, response: Response) -> int:
        return 5


Request(5)
"""


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "user_spider.py"
    module.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         str(module)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.timeout(150)
def test_every_documented_form_of_a_spider_type_checks(tmp_path: Path) -> None:
    """Seven documented forms failed --strict: an async def returning a list, a plain generator,
    a plain def closed(), start_requests() as a generator or a list, allowed_domains set in
    __init__() (as the refusal of -a allowed_domains advises)."""
    result = mypy(tmp_path, CORRECT)
    assert result.returncode == 0, result.stdout


@pytest.mark.timeout(150)
def test_a_callback_returning_what_no_crawl_reads_does_not_type_check(tmp_path: Path) -> None:
    result = mypy(tmp_path, WRONG)
    assert result.returncode == 1
    assert 'Return type "Coroutine[Any, Any, int]" of "parse" incompatible' in result.stdout
    assert 'Argument 1 to "Request" has incompatible type "int"' in result.stdout
