"""``DedupByKey``: drops an item whose ``key`` values were already seen in this crawl, before
it reaches the database (where it would only overwrite the first copy)."""

from __future__ import annotations

from typing import Any

import pydantic

from scraper.errors import DropItem
from scraper.item import Item
from scraper.pipeline import BaseStage, Record
from scraper.spider import Spider


def _hashable(value: Any) -> Any:
    """A hashable stand-in for a key value (lists, dicts and models may be key fields too)."""
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump()
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(element) for element in value)
    if isinstance(value, dict):
        return frozenset((key, _hashable(element)) for key, element in value.items())
    if isinstance(value, (set, frozenset)):
        return frozenset(_hashable(element) for element in value)
    return value


class DedupByKey(BaseStage):
    """Keyed items are unique per table within one crawl; unkeyed items and dicts pass.

    Memory grows with the number of distinct keys; list it after ``Normalize`` so that
    whitespace differences do not hide duplicates.
    """

    def __init__(self) -> None:
        self._seen: set[tuple[str, tuple[Any, ...]]] = set()

    async def open(self, spider: Spider) -> None:
        self._seen = set()

    async def process(self, item: Record, spider: Spider) -> Record:
        if not isinstance(item, Item) or not item.key:
            return item
        values = tuple(getattr(item, name) for name in item.key)
        marker = (item.table, _hashable(values))
        if marker in self._seen:
            pairs = zip(item.key, values, strict=True)
            described = ", ".join(f"{name}={value!r}" for name, value in pairs)
            raise DropItem(f"duplicate {type(item).__name__} ({described})")
        self._seen.add(marker)
        return item
