"""Pipeline stages for crawls in tests, loaded by path as ``settings.pipelines`` loads any."""

from __future__ import annotations

import gc
from typing import ClassVar

from selectolax.lexbor import LexborHTMLParser

from scraper import DropItem, Spider
from scraper.pipeline import BaseStage, Record


class PickyStage(BaseStage):
    """Drops the item named ``beta`` and fails on ``eps`` (a bug in the stage); passes the rest."""

    async def process(self, item: Record, spider: Spider) -> Record:
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
        if name == "beta":
            raise DropItem("beta is not wanted")
        if name == "eps":
            raise KeyError("eps")
        return item


class FailsToClose(BaseStage):
    """Passes every item, then cannot close (a file it cannot flush, say)."""

    async def close(self, spider: Spider) -> None:
        raise OSError("cannot flush the export file")


class CountsLiveDocuments(BaseStage):
    """Passes every item, noting how many parsed documents are alive meanwhile (after the
    callback of the item's page, while its worker awaits the pipeline)."""

    seen: ClassVar[list[int]] = []

    async def process(self, item: Record, spider: Spider) -> Record:
        self.seen.append(sum(isinstance(each, LexborHTMLParser) for each in gc.get_objects()))
        return item
