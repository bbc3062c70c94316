"""The durable frontier's buffer, against a stand-in for storage: which rows it loads, and how many."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from scraper.frontier import Scheduled
from scraper.http import Request
from scraper.sqlite_frontier import SQLiteFrontier
from scraper.stats import Stats


class Rows:
    """Spilled rows by host, leased as the writer would lease them."""

    def __init__(self, spilled: dict[str, int]) -> None:
        self.spilled = dict(spilled)
        self.leases: list[tuple[int, tuple[str, ...]]] = []

    async def lease_pending(self, limit: int, hosts: Sequence[str] = ()) -> list[dict[str, Any]]:
        self.leases.append((limit, tuple(hosts)))
        rows = []
        for host in hosts or list(self.spilled):
            taken = min(limit - (0 if hosts else len(rows)), self.spilled.get(host, 0))
            self.spilled[host] = self.spilled.get(host, 0) - taken
            rows += [{"host": host, "url": f"http://{host}/{n}", "not_before": None} for n in range(taken)]
        return rows


def entry(host: str, number: int, *, in_memory: bool = True) -> Scheduled:
    return Scheduled(Request(f"http://{host}/{number}"), f"{host}{number}", host, in_memory=in_memory)


async def frontier_over(rows: Rows, buffer: int) -> SQLiteFrontier:
    frontier = SQLiteFrontier(storage=rows, spider=None, stats=Stats(), buffer=buffer)  # type: ignore[arg-type]

    async def decoded(row: dict[str, Any]) -> Scheduled:
        return entry(row["host"], int(row["url"].rsplit("/", 1)[1]))

    frontier._entry = decoded  # type: ignore[method-assign,assignment]
    return frontier


@pytest.mark.parametrize("waiting_hosts", [3, 400])
async def test_hosts_waiting_behind_a_full_buffer_are_loaded_within_twice_the_buffer(waiting_hosts: int) -> None:
    """A buffer full of one host's requests kept every other host waiting; then their loads,
    a share each with no bound, held 8.6 times the buffer (2,000 hosts), 640 times (200,000)."""
    spilled = {f"h{n}.test": 99 for n in range(waiting_hosts)}
    rows = Rows(spilled)
    frontier = await frontier_over(rows, buffer=100)
    for number in range(100):
        await frontier.push(entry("a.test", number))
    for host, count in spilled.items():
        for number in range(count):
            await frontier.push(entry(host, number, in_memory=False))
    for _ in range(waiting_hosts):
        frontier._next_hosts_look = 0.0  # as if 50 ms had passed
        await frontier.refill()
    loaded = {host for _, hosts in rows.leases for host in hosts}
    assert loaded and loaded <= set(spilled)  # waiting hosts, not the one filling memory
    assert len(frontier._queues) > 1
    assert frontier._size <= 2 * 100
    assert len(frontier) == 100 + sum(spilled.values())  # nothing lost or counted twice


async def test_a_host_loaded_again_only_when_its_queue_is_empty() -> None:
    rows = Rows({"b.test": 50})
    frontier = await frontier_over(rows, buffer=20)
    for number in range(20):
        await frontier.push(entry("a.test", number))
    for number in range(50):
        await frontier.push(entry("b.test", number, in_memory=False))
    await frontier.refill()
    first = len(rows.leases)
    await frontier.refill()  # b has rows in memory now: nothing to load, whenever asked
    frontier._next_hosts_look = 0.0
    await frontier.refill()
    assert len(rows.leases) == first == 1
    while frontier.pop("b.test") is not None:
        pass
    frontier._next_hosts_look = 0.0
    await frontier.refill()  # its queue emptied while its rows wait: loaded again
    assert len(rows.leases) == 2 and rows.leases[-1][1] == ("b.test",)
