"""The seen-sets: the memory one, and the store-backed one whose cache can answer alone
while it holds everything the crawl has seen."""

from __future__ import annotations

from collections.abc import Sequence

from scraper.seen import MemorySeen, StoredSeen


class CountingStore:
    """Knows a fixed set of fingerprints and counts the questions."""

    def __init__(self, known: set[str]) -> None:
        self._known = known
        self.questions: list[list[str]] = []

    async def known(self, fingerprints: Sequence[str]) -> set[str]:
        self.questions.append(list(fingerprints))
        return {fingerprint for fingerprint in fingerprints if fingerprint in self._known}


async def test_memory_seen_reports_only_new_fingerprints() -> None:
    seen = MemorySeen()
    seen.add("a")
    assert await seen.unseen(["a", "b"]) == {"b"}


async def test_a_complete_cache_answers_without_asking_the_store() -> None:
    store = CountingStore(known=set())
    seen = StoredSeen(store, cache_size=10, complete=True)
    seen.add("a")
    assert await seen.unseen(["a", "b", "c"]) == {"b", "c"}
    assert store.questions == []


async def test_the_store_is_asked_once_the_cache_has_evicted() -> None:
    store = CountingStore(known={"a"})
    seen = StoredSeen(store, cache_size=2, complete=True)
    for fingerprint in ("a", "b", "c"):  # "a" is evicted: the cache no longer holds everything
        seen.add(fingerprint)
    assert await seen.unseen(["a", "d"]) == {"d"}
    assert store.questions == [["a", "d"]]


async def test_an_incomplete_cache_asks_the_store_for_misses_only() -> None:
    store = CountingStore(known={"old"})
    seen = StoredSeen(store, cache_size=10)  # a resumed crawl: the store knows more than the cache
    seen.add("recent")
    assert await seen.unseen(["recent", "old", "new"]) == {"new"}
    assert store.questions == [["old", "new"]]
