"""``Normalize``: tidies the whitespace of every text field, so spiders can keep texts as the
page has them. List it first: later stages (dedup, required fields) compare clean values."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, TypeVar

import pydantic

from scraper.item import Item
from scraper.pipeline import BaseStage, Record
from scraper.spider import Spider

_Model = TypeVar("_Model", bound=pydantic.BaseModel)
_WHITESPACE = re.compile(r"\s+")  # Unicode-aware: tabs, newlines, no-break spaces too


def clean_text(text: str) -> str:
    """Runs of whitespace become one space; none at either end."""
    return _WHITESPACE.sub(" ", text).strip()


def clean_value(value: Any) -> Any:
    """Strings cleaned, wherever they are: in lists, tuples, sets, the values of dicts, the
    fields of nested models (a copy, when one changes); anything else as it is."""
    if isinstance(value, str):
        # a str Enum's member is a choice, not text: cleaned, it became a plain str, no member
        return value if isinstance(value, Enum) else clean_text(value)
    if isinstance(value, (list, set, frozenset)):
        return type(value)(clean_value(element) for element in value)
    if isinstance(value, tuple):
        cleaned = (clean_value(element) for element in value)
        return type(value)(*cleaned) if hasattr(value, "_fields") else type(value)(cleaned)  # a NamedTuple
    if isinstance(value, dict):
        return {key: clean_value(element) for key, element in value.items()}
    if isinstance(value, pydantic.BaseModel):
        return _clean_model(value)
    return value


def _clean_model(model: _Model) -> _Model:
    """``model``, or a copy with its text cleaned: declared fields and extra ones (a model
    with ``extra="allow"``)."""
    names = [*type(model).model_fields, *(model.model_extra or {})]
    changes = {}
    for name in names:
        old = getattr(model, name)
        if (new := clean_value(old)) != old:
            changes[name] = new
    return model.model_copy(update=changes) if changes else model


class Normalize(BaseStage):
    """Collapses and strips whitespace in every text of a record: its str fields, and the
    texts inside its lists, sets, dicts and nested models."""

    async def process(self, item: Record, spider: Spider) -> Record:
        if isinstance(item, Item):
            return _clean_model(item)
        return {name: clean_value(value) for name, value in item.items()}
