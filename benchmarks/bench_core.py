"""Core figures, all from one run against the same real Redis (``BenchEnv.redis_url``):

* median µs of a hit via ``cache_get`` (one EVALSHA + decode), of a raw redis-py ``GET``
  of exactly the bytes our hit transfers (the floor), and their ratio (target <= 1.5x);
* the time to invalidate one tag covering 1, 1,000 and 100,000 entries (target: flat in
  N, since invalidation replaces one version token whatever the number of entries).

Everything lives under a random key prefix that is removed (SCAN + UNLINK) afterwards.
"""

from __future__ import annotations

import json
from typing import Any

from . import (
    PAYLOAD,
    BenchEnv,
    fill_raw,
    make_app,
    measure,
    ratio_row,
    row,
    temp_prefix,
    time_once,
)

GROUP = "core"


def hit(env: BenchEnv, client: Any) -> list[dict[str, Any]]:
    from flask_dataroom_cache import DataRoomCache, cache_get, get_cache_key, get_cache_tags

    number = 1000 if env.quick else 5000
    tags = get_cache_tags("file", "list", data_room_id=1, folder_id=7)
    with temp_prefix(client) as prefix:
        app = make_app(env.redis_url, prefix)
        with app.app_context():
            key = get_cache_key("file", "list", dataRoomId=1, folderId=7)
            store = DataRoomCache.state().store
            assert store.get_or_set(key, lambda: PAYLOAD, tags=tags) == PAYLOAD
            raw_value = client.get(key)  # exactly the bytes our hit transfers
            raw_key = f"{prefix}:raw"
            client.set(raw_key, raw_value)
            assert cache_get(key, tags) == PAYLOAD
            # Interleave the two measurements (A B A B ...) so drift hits both alike.
            raws, ours = [], []
            for _ in range(3):
                raws.append(measure(lambda: client.get(raw_key), number=number,
                                    repeats=env.repeats))
                ours.append(measure(lambda: cache_get(key, tags), number=number,
                                    repeats=env.repeats))
            raw = min(raws, key=lambda s: s["median_us"])
            mine = min(ours, key=lambda s: s["median_us"])
            assert store.metrics.snapshot()["total"]["hits"] >= number * env.repeats
        DataRoomCache.state(app).store.backend.close()
    ratio = mine["median_us"] / raw["median_us"]
    return [
        row(GROUP, "hit: raw redis-py GET of the same bytes (floor)", raw,
            note=f"{len(raw_value)} bytes"),
        row(GROUP, "hit: cache_get (1 EVALSHA + decode)", mine, note=f"{len(tags) + 1} tags"),
        ratio_row(GROUP, "cache_get hit / raw GET", ratio, "<= 1.5x", ratio <= 1.5),
    ]


def invalidation(env: BenchEnv, client: Any) -> list[dict[str, Any]]:
    from flask_dataroom_cache import DataRoomCache
    from flask_dataroom_cache.tags import normalize_tags

    sizes = [1, 1000, 10_000 if env.quick else 100_000]
    repeats = 5 if env.quick else 15
    rows: list[dict[str, Any]] = []
    medians: dict[int, float] = {}
    body = b"J" + json.dumps(PAYLOAD).encode()
    with temp_prefix(client) as prefix:
        app = make_app(env.redis_url, prefix)
        store = DataRoomCache.state(app).store
        for n in sizes:
            tag = f"folder:n{n}/contents"
            tags = normalize_tags([tag])
            keys = [f"{prefix}:file:n{n}:{i}" for i in range(n)]
            probe = keys[-1]

            def fill(keys: list[str] = keys, tags: tuple[str, ...] = tags) -> None:
                fill_raw(client, store, keys, tags, body)
                assert store.backend.get(keys[-1], tags)[0] is not None
                store.invalidate(["warm:up"], defer=False)  # same code path, hot connection

            def invalidate(tag: str = tag) -> None:
                store.invalidate([tag], defer=False)

            # Timed once per fill, so every timed call really covers n live entries.
            stats = time_once(fill, invalidate, repeats)
            assert store.backend.get(probe, tags)[0] is None  # really invalidated
            medians[n] = stats["median_us"]
            rows.append(row(GROUP, f"invalidate 1 tag over {n:,} entries", stats,
                            note=f"{repeats} fills, 1 timed call each"))
        store.backend.close()
    big = sizes[-1]
    flat = medians[big] / medians[1]
    rows.append(ratio_row(GROUP, f"invalidate over {big:,} / over 1 entry", flat,
                          "<= 3x (flat in N)", flat <= 3))
    return rows


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(env.redis_url)
    client.ping()
    try:
        return hit(env, client) + invalidation(env, client)
    finally:
        client.close()
