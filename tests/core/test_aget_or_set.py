"""``aget_or_set`` (issue 14): its single flight, inside one loop and across loops.

The promises it shares with ``get_or_set`` (hit, miss, ``None`` cached, exceptions, the
capture-before-compute race) are the ``any_get_or_set`` parametrisations of
``test_semantics.py`` and ``test_races.py``; here, what only an awaitable has: a waiter
awaits (its loop keeps running), in its own loop, whichever thread leads.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache, aget_or_set, asyncflight, cache_get, get_cache_key

TIMEOUT = 10
TAGS = ["file:1"]


def test_tasks_of_one_loop_compute_once_and_waiters_leave_the_loop_free(app: Flask) -> None:
    key = get_cache_key("file", 1)
    computed: list[int] = []
    ticks: list[int] = []
    release = asyncio.Event()

    async def compute() -> str:
        computed.append(1)
        await release.wait()
        return "v"

    async def ticker() -> None:
        # runs while nine tasks wait for the leader: none of them holds the loop
        for i in range(20):
            ticks.append(i)
            await asyncio.sleep(0)
        release.set()

    async def main() -> list[Any]:
        readers = [aget_or_set(key, compute, tags=TAGS) for _ in range(10)]
        return await asyncio.wait_for(asyncio.gather(*readers, ticker()), TIMEOUT)

    results = asyncio.run(main())
    assert results[:10] == ["v"] * 10
    assert computed == [1]
    assert len(ticks) == 20
    assert cache_get(key, TAGS) == "v"


def test_loops_in_other_threads_wait_for_the_leader(app: Flask) -> None:
    """Under Flask each async view runs in a loop of its own thread: a waiter's future
    belongs to its loop, woken from the leader's thread (``call_soon_threadsafe``)."""
    key = get_cache_key("file", 2)
    n = 6
    computed: list[int] = []
    arrived = threading.Semaphore(0)
    release = threading.Event()
    store = DataRoomCache.state(app).store
    lead = store.async_flights.lead

    def counting_lead(k: str, leader: Any = None) -> Any:
        found = lead(k, leader)
        arrived.release()
        return found

    store.async_flights.lead = counting_lead  # type: ignore[method-assign]

    async def compute() -> str:
        computed.append(1)
        await asyncio.to_thread(release.wait, TIMEOUT)
        return "v"

    results: list[Any] = []

    def worker() -> None:
        with app.app_context():
            results.append(asyncio.run(aget_or_set(key, compute, tags=TAGS)))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert arrived.acquire(timeout=TIMEOUT)
    release.set()
    for t in threads:
        t.join(TIMEOUT)
    assert results == ["v"] * n
    assert computed == [1]


def test_a_task_reading_the_key_it_computes_does_not_wait_for_itself(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = get_cache_key("file", 3)

    async def never_wait(self: Any, timeout: float = 0) -> bool:
        raise AssertionError("the leading task waited for itself")

    monkeypatch.setattr(asyncflight.Flight, "wait", never_wait)

    async def inner() -> str:
        return "inner"

    async def outer() -> str:
        return "outer+" + await aget_or_set(key, inner, tags=TAGS)

    assert asyncio.run(aget_or_set(key, outer, tags=TAGS)) == "outer+inner"


def test_a_failed_leader_lets_the_waiters_compute(app: Flask) -> None:
    key = get_cache_key("file", 4)
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise RuntimeError("leader fails")
        return "v"

    async def main() -> list[Any]:
        readers = [aget_or_set(key, compute, tags=TAGS) for _ in range(3)]
        return await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), TIMEOUT)

    results = asyncio.run(main())
    assert isinstance(results[0], RuntimeError)
    assert results[1:] == ["v", "v"]
    assert len(calls) == 3  # no stored value to read: each waiter computes
    assert store_flights_empty(app)


def store_flights_empty(app: Flask) -> bool:
    return not DataRoomCache.state(app).store.async_flights._running
