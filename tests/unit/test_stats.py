"""Tests for the crawl counters."""

from __future__ import annotations

import pytest

from scraper.stats import Stats


@pytest.fixture
def stats() -> Stats:
    stats = Stats()
    stats.increment("items/product")
    stats.increment("items/product", 2)
    stats.increment("items/review")
    stats.increment("itemsx/other", 10)
    stats.increment("errors/fetch/FetchTimeout", 4)
    stats.increment("pages")
    return stats


def test_increment_and_get(stats: Stats) -> None:
    assert stats.get("items/product") == 3
    assert stats.get("pages") == 1
    assert stats.get("never/counted") == 0


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("items", 4), ("items/", 4), ("errors", 4), ("errors/fetch", 4), ("pages", 0)],
)
def test_total_sums_only_below_the_prefix(stats: Stats, prefix: str, expected: int) -> None:
    assert stats.total(prefix) == expected


def test_under(stats: Stats) -> None:
    assert stats.under("items") == {"product": 3, "review": 1}
    assert stats.under("errors") == {"fetch/FetchTimeout": 4}
    assert stats.under("missing") == {}


def test_snapshot(stats: Stats) -> None:
    snapshot = stats.snapshot()
    elapsed = snapshot.pop("elapsed_seconds")
    assert snapshot == {
        "errors/fetch/FetchTimeout": 4,
        "items/product": 3,
        "items/review": 1,
        "itemsx/other": 10,
        "pages": 1,
    }
    assert list(snapshot) == sorted(snapshot)
    assert 0 <= elapsed < 60


def test_get_does_not_create_counters() -> None:
    stats = Stats()
    stats.get("items/product")
    assert stats.under("items") == {}


def test_count_error_keeps_the_first_message_of_each_kind_and_add_merges_them() -> None:
    stats, later = Stats(), Stats()
    assert stats.count_error("errors/parse/KeyError", "'title'") is True
    assert stats.count_error("errors/parse/KeyError", "'price'") is False
    assert later.count_error("errors/parse/KeyError", "'sku'") is True
    assert later.count_error("errors/validate/ValueError", "too big") is True

    stats.add(later)

    assert stats.get("errors/parse/KeyError") == 3 and stats.get("errors/validate/ValueError") == 1
    assert stats.examples == {"errors/parse/KeyError": "'title'", "errors/validate/ValueError": "too big"}


def test_keep_largest_holds_the_worst_value_given() -> None:
    stats = Stats()
    for value in (300, 1200, 700):
        stats.keep_largest("loop/worst_stall_ms", value)
    assert stats.get("loop/worst_stall_ms") == 1200
