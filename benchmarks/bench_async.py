"""Async: an async cached view's hit against the same sync view's, and where
``aget_or_set`` makes its Redis call (issue 14).

* **Views.** One app, one real Redis, the same view body twice: ``def`` and ``async def``,
  both ``@cache.cached`` per user with two tags, driven through the WSGI app in interleaved
  rounds (``bench_views``' driver). A hit of an async view runs no event loop (the cache's
  work is in the request thread, ``docs/async.md``): target, async hit time <= 1.3x the
  sync hit's. The miss is reported too: it runs the view in asgiref's loop thread.
* **Where the Redis call is made.** ``aget_or_set`` calls the sync store (redis-py) from
  the loop; the alternative is ``redis.asyncio``. Measured on the same server: one hit per
  call (sequential), and 50 tasks hitting at once (``asyncio.gather``), for
  ``aget_or_set``, a raw redis-py ``GET`` in the loop and a raw ``await redis.asyncio``
  ``GET`` (the floor any async client could reach, before any cache logic).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

from . import BenchEnv, ratio_row, row, temp_prefix
from .bench_views import _driver

GROUP = "async"
TASKS = 50


def _interleaved(drivers: dict[str, Any], rounds: int, batch: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {n: [] for n in drivers}
    for drive in drivers.values():
        for _ in range(20):
            drive()
    gc_was = gc.isenabled()
    gc.disable()
    names = list(drivers)
    try:
        for r in range(rounds):
            # alternate the order: neither route always runs right after the other
            for name in names if r % 2 == 0 else names[::-1]:
                drive = drivers[name]
                start = time.perf_counter()
                for _ in range(batch):
                    drive()
                samples[name].append((time.perf_counter() - start) / batch * 1e6)
    finally:
        if gc_was:
            gc.enable()
    return samples


def _stats(us: list[float]) -> dict[str, float]:
    return {
        "median_us": round(statistics.median(us), 3),
        "min_us": round(min(us), 3),
        "max_us": round(max(us), 3),
    }


def _views(env: BenchEnv, prefix: str) -> list[dict[str, Any]]:
    from flask import Flask, jsonify, request

    from flask_dataroom_cache import DataRoomCache, contents_tag, dataroom_tag

    app = Flask(f"bench_async_{prefix}")
    app.config.update(REDIS_URL=env.redis_url, CACHE_KEY_PREFIX=prefix)
    cache = DataRoomCache()
    cache.init_app(app)

    @cache.identity
    def current_user_id() -> str | None:
        return request.headers.get("X-User-Id")

    items = [
        {"id": i, "name": f"quarterly-report-{i:03d}.pdf", "size": 1024 * i} for i in range(20)
    ]

    def tags(room_id: int, folder_id: int) -> list[str]:
        return [dataroom_tag(room_id), contents_tag(folder_id)]

    def listing(room_id: int, folder_id: int) -> Any:
        return jsonify(items=items, total=len(items))

    async def alisting(room_id: int, folder_id: int) -> Any:
        return jsonify(items=items, total=len(items))

    app.add_url_rule(
        "/sync/<int:room_id>/<int:folder_id>", "sync", cache.cached(tags=tags)(listing)
    )
    app.add_url_rule(
        "/async/<int:room_id>/<int:folder_id>", "async", cache.cached(tags=tags)(alisting)
    )
    app.add_url_rule("/sync-miss/<int:room_id>/<int:folder_id>", "sync-miss", listing)
    app.add_url_rule("/async-miss/<int:room_id>/<int:folder_id>", "async-miss", alisting)
    drivers = {
        "sync view hit": _driver(app, "/sync/1/7"),
        "async view hit": _driver(app, "/async/1/7"),
        "sync view, uncached": _driver(app, "/sync-miss/1/7"),
        "async view, uncached (asgiref loop)": _driver(app, "/async-miss/1/7"),
    }
    for name, drive in drivers.items():
        assert drive() == drive(), name
    with app.app_context():
        before = cache.stats()["endpoints"]["async"]["hits"]
    rounds = 15 if env.quick else 60
    samples = _interleaved(drivers, rounds, 30)
    with app.app_context():
        assert cache.stats()["endpoints"]["async"]["hits"] - before >= rounds * 30
    rows = [row(GROUP, f"GET {name}", _stats(us)) for name, us in samples.items()]
    # The verdict: the median of per-round ratios (both hits measured back to back in each
    # round, alternating order: on a shared machine a round's load hits both alike, while
    # the fastest rounds of each, bench_views' rule, can fall in different load phases).
    # The ratio of the fastest rounds follows as information.
    best = {n: min(v) for n, v in samples.items()}
    r_best = best["async view hit"] / best["sync view hit"]
    r_median = statistics.median(
        a / s for a, s in zip(samples["async view hit"], samples["sync view hit"], strict=True)
    )
    rows += [
        ratio_row(
            GROUP,
            "async view hit / sync view hit (time, median of per-round ratios)",
            r_median,
            "<= 1.3x",
            r_median <= 1.3,
        ),
        ratio_row(GROUP, "async / sync view hit, fastest rounds", r_best, "info", True),
        ratio_row(
            GROUP,
            "async / sync view, uncached (the loop's cost)",
            best["async view, uncached (asgiref loop)"] / best["sync view, uncached"],
            "info",
            True,
        ),
    ]
    DataRoomCache.state(app).store.backend.close()
    return rows


def _redis_calls(env: BenchEnv, prefix: str) -> list[dict[str, Any]]:
    import redis
    import redis.asyncio as aredis
    from flask import Flask

    from flask_dataroom_cache import DataRoomCache

    app = Flask(f"bench_async_calls_{prefix}")
    app.config.update(REDIS_URL=env.redis_url, CACHE_KEY_PREFIX=f"{prefix}c")
    cache = DataRoomCache()
    cache.init_app(app)
    store = DataRoomCache.state(app).store
    sync_client = redis.Redis.from_url(env.redis_url)
    raw_key = f"{prefix}c:raw"
    payload = b"x" * 2048
    sync_client.set(raw_key, payload)
    n = 300 if env.quick else 1500
    rows: list[dict[str, Any]] = []

    async def compute() -> dict[str, int]:
        return {"n": 1}

    async def bench() -> dict[str, float]:
        async_client = aredis.Redis.from_url(env.redis_url, max_connections=TASKS)
        from flask_dataroom_cache.asyncstore import aget_or_set

        async def one_aget() -> Any:
            return await aget_or_set(store, "k", compute, tags=["t:1", "t:2"])

        async def one_sync_get() -> Any:
            return sync_client.get(raw_key)

        async def one_async_get() -> Any:
            return await async_client.get(raw_key)

        await one_aget()
        out: dict[str, float] = {}
        for name, one in (
            ("aget_or_set hit (redis-py in the loop)", one_aget),
            ("raw redis-py GET in the loop", one_sync_get),
            ("raw redis.asyncio GET", one_async_get),
        ):
            for _ in range(50):
                await one()
            seq = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(n):
                    await one()
                seq.append((time.perf_counter() - start) / n * 1e6)
            out[f"{name}, one at a time"] = min(seq)
            par = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(n // TASKS):
                    await asyncio.gather(*(one() for _ in range(TASKS)))
                par.append((time.perf_counter() - start) / ((n // TASKS) * TASKS) * 1e6)
            out[f"{name}, {TASKS} tasks at once"] = min(par)
        await async_client.aclose()
        return out

    with app.app_context():
        found = asyncio.run(bench())
    for name, us in found.items():
        rows.append(
            row(
                GROUP,
                name,
                {"median_us": round(us, 3), "min_us": round(us, 3), "max_us": round(us, 3)},
                note="best of 5, per call",
            )
        )
    one = "one at a time"
    many = f"{TASKS} tasks at once"
    rows += [
        ratio_row(
            GROUP,
            "redis.asyncio GET / redis-py GET in the loop, one at a time (time)",
            found[f"raw redis.asyncio GET, {one}"] / found[f"raw redis-py GET in the loop, {one}"],
            "info",
            True,
        ),
        ratio_row(
            GROUP,
            f"redis.asyncio GET / redis-py GET in the loop, {many} (time per call)",
            found[f"raw redis.asyncio GET, {many}"]
            / found[f"raw redis-py GET in the loop, {many}"],
            "info",
            True,
        ),
    ]
    sync_client.close()
    store.backend.close()
    return rows


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(env.redis_url)
    client.ping()
    try:
        with temp_prefix(client) as prefix:
            return _views(env, prefix) + _redis_calls(env, prefix)
    finally:
        client.close()
