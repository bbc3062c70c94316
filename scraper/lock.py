"""One crawl per database at a time: an exclusive file lock beside the database. The
operating system drops it when the process dies, so a killed crawl's lock is simply taken
over by the next run."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from scraper.errors import StorageError


class CrawlLock:
    def __init__(self, database: Path) -> None:
        # beside the file itself: named after a symlink to it, a second crawl took a lock of
        # its own and both wrote one crawl (file system calls: callers run this in a thread)
        database = database.resolve()
        self.path = database.with_name(database.name + ".lock")
        self._lock = FileLock(self.path, timeout=0)

    def __enter__(self) -> CrawlLock:
        try:
            self._lock.acquire()
        except Timeout:
            if not self.path.exists():  # no lock file, no holder: the file system would not create one
                raise StorageError(f"cannot create the lock file {self.path}") from None
            raise StorageError(
                f"{self.path.with_suffix('')} is in use by another crawl ({self._holder()}); "
                "wait for it to finish or stop it first"
            ) from None
        self.path.with_name(self.path.name + ".pid").write_text(str(os.getpid()))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.path.with_name(self.path.name + ".pid").unlink(missing_ok=True)
        self._lock.release()

    def _holder(self) -> str:
        try:
            return "pid " + self.path.with_name(self.path.name + ".pid").read_text().strip()
        except OSError:
            return "another process"
