"""Counters of a crawl, named by slash-separated paths (``items/product``,
``errors/fetch/FetchTimeout``); written to ``scraper_crawls.stats`` at the end."""

from __future__ import annotations

import time
from collections import Counter

ITEM_TOTALS = frozenset({"scraped", "dropped", "stored", "over_limit"})
"""Counters under ``items/`` that are totals; every other ``items/<name>`` is a table's count."""
SEEDING_CUT_SHORT = "start/raised"
"""Set when ``start_requests()`` raised: the crawl went on without what it had yet to yield."""
SEEDING_CUT_SHORT_SAYS = "start_requests() raised, so nothing it had yet to yield was crawled"
"""How the summary and ``status`` say it."""


class Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # the first message of each error kind, for the summary
        self.started = time.monotonic()

    def increment(self, key: str, amount: int = 1) -> None:
        self.counts[key] += amount

    def keep_largest(self, key: str, value: int) -> None:
        """``key`` holds the largest ``value`` given (a worst case, not a count)."""
        if value > self.counts[key]:
            self.counts[key] = value

    def count_error(self, key: str, message: str) -> bool:
        """Count an error of the kind ``key`` (or a dropped item); True for the first of its
        kind in this run, whose ``message`` is kept as the kind's example (a few kinds a
        crawl: bounded)."""
        self.counts[key] += 1
        if key in self.examples:
            return False
        self.examples[key] = message
        return True

    def add(self, other: Stats) -> None:
        """Add ``other``'s counts, and its examples of kinds this has none of."""
        self.counts.update(other.counts)
        for key, message in other.examples.items():
            self.examples.setdefault(key, message)

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)

    def total(self, prefix: str) -> int:
        """Sum of every counter under ``prefix/``."""
        start = prefix.rstrip("/") + "/"
        return sum(value for key, value in self.counts.items() if key.startswith(start))

    def under(self, prefix: str) -> dict[str, int]:
        """Counters under ``prefix/``, keyed by the rest of their name."""
        start = prefix.rstrip("/") + "/"
        return {key[len(start) :]: value for key, value in sorted(self.counts.items()) if key.startswith(start)}

    def items_by_table(self) -> dict[str, int]:
        """Stored items per table (``items/<table>``, the totals left out)."""
        return {name: count for name, count in self.under("items").items() if name not in ITEM_TOTALS}

    def set_items_by_table(self, counts: dict[str, int]) -> None:
        """Replace the per-table counts (a resumed crawl recounts them from the database)."""
        for table in self.items_by_table():
            del self.counts[f"items/{table}"]
        for table, count in counts.items():
            self.counts[f"items/{table}"] = count
        self.counts["items/stored"] = sum(counts.values())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def snapshot(self) -> dict[str, int | float]:
        result: dict[str, int | float] = dict(sorted(self.counts.items()))
        result["elapsed_seconds"] = round(self.elapsed, 3)
        return result
