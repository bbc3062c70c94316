"""The seen-set: which fingerprints this crawl has already admitted or refused.

In memory it is a plain set. With the SQLite frontier it is the crawl's own
``scraper_requests`` table, fronted by a bounded cache of recent fingerprints, so memory
stays flat however many URLs a crawl meets, and a resumed crawl remembers everything."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol


class FingerprintStore(Protocol):
    async def known(self, fingerprints: Sequence[str]) -> set[str]: ...


class SeenSet(Protocol):
    async def unseen(self, fingerprints: Sequence[str]) -> set[str]:
        """The fingerprints not seen before (does not mark them)."""
        ...

    def add(self, fingerprint: str) -> None: ...


class MemorySeen:
    def __init__(self) -> None:
        self._seen: set[str] = set()

    async def unseen(self, fingerprints: Sequence[str]) -> set[str]:
        return {fingerprint for fingerprint in fingerprints if fingerprint not in self._seen}

    def add(self, fingerprint: str) -> None:
        self._seen.add(fingerprint)


class StoredSeen:
    """Recent fingerprints in a bounded LRU cache; the rest asked from the store in one query
    per batch (a page's links).

    ``complete``: the cache holds every fingerprint the crawl has seen (a new crawl, until
    the cache first evicts one), so a miss is an answer and the store is not asked."""

    def __init__(self, store: FingerprintStore, *, cache_size: int, complete: bool = False) -> None:
        self._store = store
        self._cache: OrderedDict[str, None] = OrderedDict()
        self._cache_size = cache_size
        self._complete = complete

    async def unseen(self, fingerprints: Sequence[str]) -> set[str]:
        candidates = []
        for fingerprint in fingerprints:
            if fingerprint in self._cache:
                self._cache.move_to_end(fingerprint)
            else:
                candidates.append(fingerprint)
        if not candidates:
            return set()
        if self._complete:
            return set(candidates)
        known = await self._store.known(candidates)
        for fingerprint in known:
            self.add(fingerprint)
        return set(candidates) - known

    def add(self, fingerprint: str) -> None:
        self._cache[fingerprint] = None
        self._cache.move_to_end(fingerprint)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
            self._complete = False
