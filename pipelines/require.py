"""``RequireFields``: drops an item whose required text fields are empty (say, a selector that
matched an empty element). List it after ``Normalize``, so whitespace-only counts as empty."""

from __future__ import annotations

from scraper.errors import DropItem
from scraper.item import Item
from scraper.pipeline import BaseStage, Record
from scraper.spider import Spider


class RequireFields(BaseStage):
    """Required ``str`` fields (those without a default) must not be blank; dicts pass."""

    async def process(self, item: Record, spider: Spider) -> Record:
        if not isinstance(item, Item):
            return item
        blank = [
            name
            for name, field in type(item).model_fields.items()
            if field.is_required() and _is_blank(getattr(item, name))
        ]
        if blank:
            names = ", ".join(blank)
            raise DropItem(f"{type(item).__name__} with empty required field(s): {names}")
        return item


def _is_blank(value: object) -> bool:
    return isinstance(value, str) and not value.strip()
