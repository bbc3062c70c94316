"""``Normalize``: tidies the whitespace of every text field, so spiders can keep texts as the
page has them. List it first: later stages (dedup, required fields) compare clean values."""

from __future__ import annotations

import re
from typing import Any

from scraper.item import Item
from scraper.pipeline import BaseStage, Record
from scraper.spider import Spider

_WHITESPACE = re.compile(r"\s+")  # Unicode-aware: tabs, newlines, no-break spaces too


def clean_text(text: str) -> str:
    """Runs of whitespace become one space; none at either end."""
    return _WHITESPACE.sub(" ", text).strip()


def clean_value(value: Any) -> Any:
    """Strings cleaned, and strings inside lists and tuples; anything else as it is."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (list, tuple)):
        return type(value)(clean_value(element) for element in value)
    return value


class Normalize(BaseStage):
    """Collapses and strips whitespace in every str field (and lists of str) of a record."""

    async def process(self, item: Record, spider: Spider) -> Record:
        if isinstance(item, Item):
            changes = {}
            for name in type(item).model_fields:
                old = getattr(item, name)
                if (new := clean_value(old)) != old:
                    changes[name] = new
            return item.model_copy(update=changes) if changes else item
        return {name: clean_value(value) for name, value in item.items()}
