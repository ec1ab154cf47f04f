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

from flask_dataroom_cache import (
    DataRoomCache,
    aget_or_set,
    asyncstore,
    cache_get,
    get_cache_key,
)
from flask_dataroom_cache import flights as flights_module

from .test_memoize import CountingFlights

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
    lead = store.flights.lead

    def counting_lead(k: str) -> Any:
        found = lead(k)
        arrived.release()
        return found

    store.flights.lead = counting_lead  # type: ignore[method-assign]

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

    monkeypatch.setattr(flights_module.Flight, "wait_async", never_wait)

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
    return not DataRoomCache.state(app).store.flights._running


# -- flights depending on each other; sync and async callers of one key --------------------------
@pytest.mark.parametrize("inner", ["same task", "child task"])
def test_two_leaders_each_needing_the_others_key_do_not_wait_on_each_other(
    app: Flask, monkeypatch: pytest.MonkeyPatch, inner: str
) -> None:
    """Task 1 leads A, whose compute needs B; task 2 leads B, whose compute needs A. As
    in ``get_or_set``, a caller leading a flight (its task, or the task that made it)
    computes rather than wait on another: waiting would stall both for the flight wait."""
    monkeypatch.setattr(asyncstore, "FLIGHT_WAIT", 3600.0)  # a stall would hang the test
    key_a, key_b = get_cache_key("file", 5), get_cache_key("file", 6)
    a_led, b_led = asyncio.Event(), asyncio.Event()

    async def read(key: str, name: str) -> str:
        async def leaf() -> str:
            return name

        if inner == "same task":
            return await aget_or_set(key, leaf, tags=TAGS)
        return await asyncio.create_task(aget_or_set(key, leaf, tags=TAGS))

    async def compute_a() -> str:
        a_led.set()
        await b_led.wait()
        return "a+" + await read(key_b, "b")

    async def compute_b() -> str:
        b_led.set()
        await a_led.wait()
        return "b+" + await read(key_a, "a")

    async def main() -> list[str]:
        both = asyncio.gather(
            aget_or_set(key_a, compute_a, tags=TAGS), aget_or_set(key_b, compute_b, tags=TAGS)
        )
        return await asyncio.wait_for(both, TIMEOUT)

    got_a, got_b = asyncio.run(main())
    # each read the other's key computing it, or what the other had stored by then
    assert got_a in ("a+b", "a+b+a") and got_b in ("b+a", "b+a+b")
    assert store_flights_empty(app)


@pytest.mark.parametrize("leader", ["sync", "async"])
def test_sync_and_async_callers_of_one_key_compute_once(app: Flask, leader: str) -> None:
    """``get_or_set`` (and ``@cache.memoize``) and ``aget_or_set`` share one single-flight
    registry: whichever leads, the other waits (a thread blocks, a task awaits) and reads
    what it stored."""
    key = get_cache_key("file", 7)
    store = DataRoomCache.state(app).store
    flights = CountingFlights()
    store.flights = flights
    computed: list[str] = []

    def compute_sync() -> str:
        computed.append("sync")
        assert flights.wait_for(2, TIMEOUT)  # the other caller has reached the flight
        return "from sync"

    async def compute_async() -> str:
        computed.append("async")
        assert await asyncio.to_thread(flights.wait_for, 2, TIMEOUT)
        return "from async"

    def sync_caller() -> str:
        return store.get_or_set(key, compute_sync, tags=TAGS)

    def async_caller() -> str:
        return asyncio.run(aget_or_set(key, compute_async, tags=TAGS))

    first, second = (sync_caller, async_caller) if leader == "sync" else (async_caller, sync_caller)
    results: list[str] = []

    def run(fn: Any) -> None:
        with app.app_context():
            results.append(fn())

    t1 = threading.Thread(target=run, args=(first,))
    t1.start()
    assert flights.wait_for(1, TIMEOUT)
    t2 = threading.Thread(target=run, args=(second,))
    t2.start()
    t1.join(TIMEOUT)
    t2.join(TIMEOUT)
    assert computed == [leader]
    assert results == [f"from {leader}"] * 2
    assert store_flights_empty(app)


class _MustNotBlock(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        raise AssertionError("blocked the thread its own leader runs in")


def test_sync_code_in_a_loop_never_blocks_on_a_flight_led_by_another_task_of_it(
    app: Flask,
) -> None:
    """A sync ``get_or_set`` (or memoized call) made inside a coroutine, while another
    task of the same loop leads the key: blocking the thread would stop that leader, so
    it computes."""
    key = get_cache_key("file", 8)
    store = DataRoomCache.state(app).store

    async def main() -> tuple[str, str]:
        started, release = asyncio.Event(), asyncio.Event()

        async def compute() -> str:
            started.set()
            await release.wait()
            return "async"

        leader = asyncio.create_task(aget_or_set(key, compute, tags=TAGS))
        await started.wait()
        flight = store.flights._running[key]
        assert isinstance(flight, flights_module.Flight)
        flight._ended = _MustNotBlock()
        got = store.get_or_set(key, lambda: "sync", tags=TAGS)
        release.set()
        return got, await asyncio.wait_for(leader, TIMEOUT)

    assert asyncio.run(main()) == ("sync", "async")
    assert store_flights_empty(app)
