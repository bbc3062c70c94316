"""Item pipeline: stages that each receive an item and return it (possibly changed), or raise
``DropItem``. Stages run in the order ``settings.pipelines`` lists them."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from scraper.errors import ConfigError, DropItem, OpenFailed, describe, stop_if_cancelled
from scraper.item import Item
from scraper.loading import build_object
from scraper.spider import Spider

logger = logging.getLogger(__name__)

Record = Item | dict[str, Any]


@runtime_checkable
class Stage(Protocol):
    async def open(self, spider: Spider) -> None: ...

    async def process(self, item: Record, spider: Spider) -> Record:
        """The item to pass on; raise ``DropItem`` to discard it."""
        ...

    async def close(self, spider: Spider) -> None: ...


class BaseStage:
    """A convenient base: no-op ``open``/``close``, and ``process`` passes items through."""

    async def open(self, spider: Spider) -> None:
        return None

    async def process(self, item: Record, spider: Spider) -> Record:
        return item

    async def close(self, spider: Spider) -> None:
        return None


class StageFailed(Exception):
    """A stage raised something other than ``DropItem``; carries the stage's name."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {type(error).__name__}: {error}")
        self.stage = stage
        self.error = error


_SCRAPY_HOOKS = {
    "open_spider": "write 'async def open(self, spider)'",
    "close_spider": "write 'async def close(self, spider)'",
    "from_crawler": "the stage is made with no arguments; set it up in 'async def open(self, spider)'",
}
_SCRAPY_NAMES = {"process_item": "write 'async def process(self, item, spider)'", **_SCRAPY_HOOKS}


class Pipeline:
    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    @classmethod
    def from_settings(cls, paths: Sequence[str]) -> Pipeline:
        """Instantiate each ``"module:Class"``; a class that is not a ``Stage`` is a ``ConfigError``."""
        stages = []
        for path in paths:
            stage = build_object(path, setting="pipelines")
            if not isinstance(stage, Stage):  # each Scrapy name it has, said: a BaseStage's were, this one's not
                said = "".join(
                    f"; {name} is Scrapy's name: {ours}" for name, ours in _SCRAPY_NAMES.items() if hasattr(stage, name)
                )
                raise ConfigError(f"pipelines: {path} is not a Stage (needs async open, process, close){said}")
            for method in ("open", "process", "close"):  # a plain def fails every item, or at the end
                if not inspect.iscoroutinefunction(getattr(stage, method)):
                    raise ConfigError(f"pipelines: {path}: {method} must be an 'async def'")
            for scrapy_name, ours in _SCRAPY_HOOKS.items():  # never called here: what it sets up would be missing
                if hasattr(stage, scrapy_name):
                    raise ConfigError(f"pipelines: {path}: {scrapy_name} is Scrapy's name, never called here: {ours}")
            stages.append(stage)
        return cls(stages)

    async def open(self, spider: Spider) -> None:
        """Open each stage in order; raises ``OpenFailed`` naming the first that fails."""
        for stage in self.stages:
            try:
                await stage.open(spider)
            except Exception as exc:
                raise OpenFailed(f"pipeline stage {type(stage).__name__}: open() failed: {describe(exc)}") from exc

    async def close(self, spider: Spider) -> list[StageFailed]:
        """Close each stage, last first, and return the failures: one that fails does not
        keep the others from closing (a stage that buffers its output loses it unless its
        close() runs), and its failure is the crawl's error row, not only a line in the log."""
        failures = []
        for stage in reversed(self.stages):
            try:
                await stage.close(spider)
            except Exception as exc:
                failure = StageFailed(f"{type(stage).__name__}.close()", exc)
                failure.__cause__ = exc  # its traceback, in the error row
                failures.append(failure)
        return failures

    async def process(self, item: Record, spider: Spider) -> Record:
        """Run every stage; raises ``DropItem`` or ``StageFailed`` (never anything else)."""
        for stage in self.stages:
            try:
                item = await stage.process(item, spider)
            except DropItem as exc:
                exc.stage = type(stage).__name__
                raise
            except BaseException as exc:  # the stage boundary: a bug in one stage fails one item
                stop_if_cancelled(exc)
                raise StageFailed(type(stage).__name__, exc) from exc
            if not isinstance(item, (Item, dict)):  # most often a forgotten ``return item``
                error = TypeError(f"process returned {type(item).__name__}; expected the item, or raise DropItem")
                raise StageFailed(type(stage).__name__, error)
        return item
