"""Core figures, all from one run against the same real Redis (``BenchEnv.redis_url``):

* median µs of a hit via ``cache_get`` (one MGET + decode), of a raw redis-py ``GET``
  of exactly the bytes our hit transfers (the floor), and their ratio (target <= 1.5x);
* the time to invalidate one tag covering 1, 1,000 and 100,000 entries (target: flat in
  N, since invalidation replaces one version token whatever the number of entries).

Everything lives under a random key prefix that is removed (SCAN + UNLINK) afterwards.
"""

from __future__ import annotations

import json
import statistics
import time
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
)

GROUP = "core"


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_us": round(statistics.median(samples), 3),
        "min_us": round(min(samples), 3),
        "max_us": round(max(samples), 3),
    }


def hit(env: BenchEnv, client: Any) -> list[dict[str, Any]]:
    """Raw GET and our hit measured in alternating short rounds (A B A B ...), so that
    load from other processes on the machine hits both alike; the ratio is the median of
    the per-round ratios."""
    from flask_dataroom_cache import DataRoomCache, cache_get, get_cache_key, get_cache_tags

    rounds = 9 if env.quick else 25
    number = 300 if env.quick else 1000
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
            hits_before = store.metrics.snapshot()["total"]["hits"]
            raws: list[float] = []
            ours: list[float] = []
            for _ in range(rounds):
                raws.append(measure(lambda: client.get(raw_key), number=number,
                                    repeats=1)["median_us"])
                ours.append(measure(lambda: cache_get(key, tags), number=number,
                                    repeats=1)["median_us"])
            hits = store.metrics.snapshot()["total"]["hits"] - hits_before
            assert hits >= rounds * number, "the benchmark did not measure hits"
        DataRoomCache.state(app).store.backend.close()
    ratio = statistics.median(o / r for o, r in zip(ours, raws, strict=True))
    return [
        row(GROUP, "hit: raw redis-py GET of the same bytes (floor)", _summary(raws),
            note=f"{len(raw_value)} bytes, {rounds} rounds of {number}"),
        row(GROUP, "hit: cache_get (1 MGET + decode)", _summary(ours),
            note=f"{len(tags) + 1} tags"),
        ratio_row(GROUP, "cache_get hit / raw GET (median of per-round ratios)", ratio,
                  "<= 1.5x", ratio <= 1.5),
    ]


def invalidation(env: BenchEnv, client: Any) -> list[dict[str, Any]]:
    """One tag over N live entries, timed per call. The N entries are written once; before
    every timed invalidation the tag's old token is put back (an untimed O(1) SET), which
    makes all N entries valid again, so each timed call really covers N live entries."""
    from flask_dataroom_cache import DataRoomCache
    from flask_dataroom_cache.tags import normalize_tags

    sizes = [1, 1000, 10_000 if env.quick else 100_000]
    samples_per_size = 50 if env.quick else 200
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
            probe = keys[n // 2]
            fill_raw(client, store, keys, tags, body)
            token_key = f"{prefix}:~tagv:{tag}"
            token = client.get(token_key)
            samples = []
            for i in range(samples_per_size):
                client.set(token_key, token, ex=3600)  # all n entries valid again
                if i % 50 == 0:
                    assert store.backend.get(probe, tags)[0] is not None
                start = time.perf_counter()
                store.invalidate([tag], defer=False)
                samples.append((time.perf_counter() - start) * 1e6)
                if i % 50 == 0:
                    assert store.backend.get(probe, tags)[0] is None  # really invalidated
            medians[n] = statistics.median(samples)
            rows.append(row(GROUP, f"invalidate 1 tag over {n:,} live entries",
                            _summary(samples), note=f"{samples_per_size} timed calls"))
        store.backend.close()
    big = sizes[-1]
    flat = medians[big] / medians[1]
    rows.append(ratio_row(GROUP, f"invalidate over {big:,} / over 1 entry", flat,
                          "<= 1.5x (flat in N)", flat <= 1.5))
    return rows


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(env.redis_url)
    client.ping()
    try:
        return hit(env, client) + invalidation(env, client)
    finally:
        client.close()
