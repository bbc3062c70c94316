"""The crawl's database file, watched while the crawl writes to it.

Deleted (or replaced) during a crawl, the file lives on unlinked for as long as the crawl
holds it open: every write succeeds, the crawl reports its items stored at that path, and
they vanish when it closes. The watch notices within ``_EVERY`` seconds (the writer then
stops the crawl), and at the end writes the open file's content back to the path (``VACUUM
INTO``), or beside it when another file is there now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from pathlib import Path

import aiosqlite

from scraper.errors import StorageError

logger = logging.getLogger(__name__)

_EVERY = 2.0  # seconds between looks at the path: a thread hop each, from the writer


def _identity_of(path: Path) -> tuple[int, int] | None:
    """The device and inode at ``path`` (None when nothing is there)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


class FileGone(StorageError):
    """The path no longer holds the file the crawl writes."""


class FileWatch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._companions: dict[Path, tuple[int, int] | None] = {}  # the crawl's own -wal and -shm files
        self._looked = 0.0

    async def start(self) -> None:
        """Note which files the path and its -wal and -shm are now (the crawl's, open)."""
        names = [self.path.with_name(self.path.name + suffix) for suffix in ("-wal", "-shm")]
        self._identity, *companions = await asyncio.to_thread(
            lambda: [_identity_of(self.path), *map(_identity_of, names)]
        )
        self._companions = dict(zip(names, companions, strict=True))
        self._looked = time.monotonic()

    async def check_now_and_then(self) -> None:
        """Raise ``StorageError`` once the path no longer holds the file the crawl writes."""
        now = time.monotonic()
        if self._identity is None or now - self._looked < _EVERY:
            return
        self._looked = now
        if await asyncio.to_thread(_identity_of, self.path) != self._identity:
            raise FileGone(f"{self.path} was deleted or replaced while the crawl ran")

    async def rescue(self, db: aiosqlite.Connection) -> Path | None:
        """If the path no longer holds the open file, write the file's content (all that was
        committed) back to the path, or beside it if another file is there, and return where
        it went (None: nothing to do, or the write failed, which is logged). Once only: the
        file written back is not the crawl's.

        First the crawl's own -wal and -shm go from beside the path: left there, SQLite took
        them for those of the file now at the path, and the next run read the crawl's pages
        into a file moved over it, destroying that file. (The crawl's connections keep them
        open, so they go on working until they close.)"""
        if self._identity is None or await asyncio.to_thread(_identity_of, self.path) == self._identity:
            return None
        self._identity = None
        target = await asyncio.to_thread(self._make_room)
        try:
            await db.execute("VACUUM INTO ?", (str(target),))
        except sqlite3.Error as exc:
            logger.error(
                "%s was deleted or replaced while the crawl ran, and writing it back failed: %s", self.path, exc
            )
            return None
        return target

    def _make_room(self) -> Path:
        """Remove the crawl's -wal and -shm from beside the path (those still there), and
        return where its data goes: the path, or the first free of ``<path>.recovered``,
        ``<path>.recovered-2``..."""
        for name, identity in self._companions.items():
            if identity is not None and _identity_of(name) == identity:
                name.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)  # its folder may have gone with it
        target, taken = self.path, 0
        while target.exists():
            taken += 1
            target = self.path.with_name(f"{self.path.name}.recovered" + (f"-{taken}" if taken > 1 else ""))
        return target
