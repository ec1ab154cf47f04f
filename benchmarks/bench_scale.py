"""Scale-out figures: the hit path (raw GET floor, Flask-Caching, ours on Redis, ours with
L1) and tag invalidation over 1 / 1,000 / 100,000 entries versus deleting the keys.

All figures come from the same run against the same Redis (``BenchEnv.redis_url``), under
a throwaway key prefix that is removed afterwards. Ratios compare figures of this run only.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import PAYLOAD, BenchEnv, make_app, measure, ratio_row, row, temp_prefix, time_once

GROUP = "scale"


def hit_path(env: BenchEnv, client: Any) -> list[dict[str, Any]]:
    from flask_caching.backends.rediscache import RedisCache

    from flask_dataroom_cache import DataRoomCache, cache_get
    from flask_dataroom_cache.tags import get_cache_tags

    number = 1000 if env.quick else 4000
    l1_number = number * 20
    rows: list[dict[str, Any]] = []
    tags = get_cache_tags("file", "list", data_room_id=1, folder_id=7)
    with temp_prefix(client) as prefix:
        redis_app = make_app(env.redis_url, prefix)
        l1_app = make_app(env.redis_url, prefix, CACHE_L1_MAX_ENTRIES=1000)
        key = f"{prefix}:file:list:folder=7"
        with redis_app.app_context():
            store = DataRoomCache.state().store
            assert store.get_or_set(key, lambda: PAYLOAD, tags=tags) == PAYLOAD
            raw_value = client.get(key)  # exactly the bytes our hit transfers
        raw_key = f"{prefix}:raw"
        client.set(raw_key, raw_value)

        rows.append(row(GROUP, "hit: raw redis-py GET, same bytes (floor)",
                        measure(lambda: client.get(raw_key), number=number, repeats=env.repeats),
                        note=f"{len(raw_value)} bytes"))

        fc = RedisCache(host=client.connection_pool.connection_kwargs.get("host", "127.0.0.1"),
                        port=client.connection_pool.connection_kwargs.get("port", 6379),
                        db=client.connection_pool.connection_kwargs.get("db", 0),
                        key_prefix=f"{prefix}:fc:", default_timeout=300)
        fc.set("listing", PAYLOAD)
        assert fc.get("listing") == PAYLOAD
        fc_stats = measure(lambda: fc.get("listing"), number=number, repeats=env.repeats)
        rows.append(row(GROUP, "hit: Flask-Caching RedisCache.get (pickle)", fc_stats))

        with redis_app.app_context():
            assert cache_get(key, tags) == PAYLOAD
            ours = measure(lambda: cache_get(key, tags), number=number, repeats=env.repeats)
        rows.append(row(GROUP, "hit: ours cache_get on Redis (1 MGET + decode)", ours))

        with l1_app.app_context():
            near = DataRoomCache.state().store.backend.primary  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5
            while not near.l1_active and time.monotonic() < deadline:
                time.sleep(0.01)
            assert cache_get(key, tags) == PAYLOAD  # fills L1
            before = near.l1_hits
            l1 = measure(lambda: cache_get(key, tags), number=l1_number, repeats=env.repeats)
            served = near.l1_hits - before
            assert served >= l1_number * env.repeats * 0.9, "L1 did not serve the benchmark"
        rows.append(row(GROUP, "hit: ours cache_get with L1 (near cache)", l1))

        with redis_app.app_context():
            plain_store = DataRoomCache.state().store
            inv_plain = measure(
                lambda: plain_store.invalidate(["folder:7/contents"], defer=False),
                number=number // 4,
                repeats=env.repeats,
            )
        with l1_app.app_context():
            l1_store = DataRoomCache.state().store
            inv_l1 = measure(
                lambda: l1_store.invalidate(["folder:7/contents"], defer=False),
                number=number // 4,
                repeats=env.repeats,
            )
            assert near.ack_timeouts == 0
        rows.append(row(GROUP, "invalidate 1 tag, L1 off (token SET)", inv_plain))
        rows.append(row(GROUP, "invalidate 1 tag, L1 on (SET + PUBLISH + 1 ack)", inv_l1))

        raw = rows[0]["median_us"]
        fcm = rows[1]["median_us"]
        speedup = ours["median_us"] / l1["median_us"]
        overhead = ours["median_us"] / raw
        rows += [
            ratio_row(GROUP, "L1 hit speed-up over our Redis hit", speedup, ">= 5x", speedup >= 5),
            ratio_row(
                GROUP, "our Redis hit / raw GET of the same bytes", overhead, "<= 1.5x",
                overhead <= 1.5,
            ),
            ratio_row(GROUP, "Flask-Caching get / our Redis hit", fcm / ours["median_us"], "info",
                      True),
            ratio_row(GROUP, "Flask-Caching get / our L1 hit", fcm / l1["median_us"], ">= 2x",
                      fcm / l1["median_us"] >= 2),
        ]
        for app in (redis_app, l1_app):
            DataRoomCache.state(app).store.backend.close()
    return rows


def invalidation(env: BenchEnv, client: Any) -> list[dict[str, Any]]:
    """Ours: one tag's token is replaced (O(1)). Baseline: find nothing, just DEL the N
    keys in batches of 1,000 (the cheapest key-set scheme: it already knows the keys)."""
    from flask_dataroom_cache import DataRoomCache
    from flask_dataroom_cache.backends.redis.layout import frame

    sizes = [1, 1000, 10_000 if env.quick else 100_000]
    repeats = 3 if env.quick else 5
    rows: list[dict[str, Any]] = []
    with temp_prefix(client) as prefix:
        app = make_app(env.redis_url, prefix)
        store = DataRoomCache.state(app).store
        body = json.dumps(PAYLOAD).encode()
        for n in sizes:
            tag = f"folder:{n}/contents"
            tags = ("~epoch", tag)
            keys = [f"{prefix}:file:n{n}:{i}" for i in range(n)]

            def fill(keys: list[str] = keys, tags: tuple[str, ...] = tags) -> None:
                versions = store.backend.versions(tags)
                blob = frame(tags, versions, b"J" + body)
                pipe = client.pipeline(transaction=False)
                for i, k in enumerate(keys):
                    pipe.set(k, blob, ex=600)
                    if i % 5000 == 4999:
                        pipe.execute()
                pipe.execute()

            def ours(tag: str = tag) -> None:
                store.invalidate([tag], defer=False)

            def delete(keys: list[str] = keys) -> None:
                pipe = client.pipeline(transaction=False)
                for i in range(0, len(keys), 1000):
                    pipe.delete(*keys[i : i + 1000])
                pipe.execute()

            fill()
            probe = keys[0]
            assert store.backend.get(probe, tags)[0] is not None
            ours_stats = time_once(fill, ours, repeats)
            assert store.backend.get(probe, tags)[0] is None  # really invalidated
            del_stats = time_once(fill, delete, repeats)
            assert client.exists(probe) == 0
            rows.append(row(GROUP, f"invalidate 1 tag over {n:,} entries: ours", ours_stats))
            rows.append(row(GROUP, f"invalidate {n:,} entries: DEL keys in batches of 1000",
                            del_stats))
            ratio = del_stats["median_us"] / ours_stats["median_us"]
            rows.append(ratio_row(GROUP, f"DEL {n:,} keys / ours", ratio,
                                  ">= 1x at 1,000+" if n >= 1000 else "info",
                                  ratio >= 1 or n < 1000))
        store.backend.close()
    return rows


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(env.redis_url)
    client.ping()
    try:
        return hit_path(env, client) + invalidation(env, client)
    finally:
        client.close()


