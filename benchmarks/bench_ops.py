"""Outage figures: what one cached read costs while Redis is down, compared with the same
read when Redis answers and with no cache at all.

* ``uncached``: the compute function alone (a no-op returning a small dict): the floor;
* ``breaker open, no fallback``: ``get_or_set`` with the breaker open (Redis unreachable,
  nothing contacted): the extra cost of the cache during an outage;
* ``breaker open, memory fallback hit``: ``CACHE_FALLBACK=memory`` serving a repeat;
* ``invalidate while open``: queueing one tag;
* ``hit, Redis up``: the normal hit, for scale;
* ``before the breaker opens``: one read against a port that refuses connections (what
  each of the first ``CACHE_BREAKER_THRESHOLD`` failing calls costs when Redis is killed).

Ratios are taken between figures of the same run.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

from . import BenchEnv, measure, ratio_row, row

GROUP = "ops"
VALUE = {"id": 1, "name": "room 1", "items": list(range(10))}


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def _store(url: str, *, start_open: bool, fallback: bool = False, **kw: Any) -> Any:
    """A store on Redis behind the breaker, built directly (no start-up fallback)."""
    from flask_dataroom_cache import CacheStore, Settings
    from flask_dataroom_cache.backends.memory import MemoryBackend
    from flask_dataroom_cache.backends.redis import RedisBackend
    from flask_dataroom_cache.backends.resilient import ResilientBackend

    prefix = "benchops" + uuid.uuid4().hex[:8]
    primary = RedisBackend.from_url(url, prefix=prefix, tag_ttl=3600, socket_timeout=0.25)
    backend = ResilientBackend(
        primary,
        fallback=MemoryBackend(1000) if fallback else None,
        fallback_ttl=3600,
        start_open=start_open,
        background_probe=False,
        **kw,
    )
    return CacheStore(backend, Settings(key_prefix=prefix))


def run(env: BenchEnv) -> list[dict[str, Any]]:
    number = 2_000 if env.quick else 20_000
    repeats = 3 if env.quick else env.repeats
    rows: list[dict[str, Any]] = []
    tags = ["dataroom:1"]

    def compute() -> dict[str, Any]:
        return VALUE

    uncached = measure(compute, number=number, repeats=repeats)
    rows.append(row(GROUP, "uncached: compute() alone (floor)", uncached))

    down = _store(_dead_url(), start_open=True, cooldown=3600)
    assert down.backend.state == "open"
    open_stats = measure(
        lambda: down.get_or_set("k", compute, tags=tags), number=number, repeats=repeats
    )
    rows.append(row(GROUP, "get_or_set, breaker open, no fallback", open_stats))
    rows.append(
        row(
            GROUP,
            "extra cost per read while Redis is down (open - uncached)",
            extra_us=round(open_stats["median_us"] - uncached["median_us"], 3),
        )
    )
    inv = measure(lambda: down.invalidate(tags, defer=False), number=number, repeats=repeats)
    rows.append(row(GROUP, "invalidate 1 tag while open (queued)", inv))
    down.backend._undelivered._tags.clear()  # the queue of this throwaway store: drop it quietly
    down.backend.close()

    fb = _store(_dead_url(), start_open=True, fallback=True, cooldown=3600)
    fb.get_or_set("k", compute, tags=tags)
    fb_stats = measure(
        lambda: fb.get_or_set("k", compute, tags=tags), number=number, repeats=repeats
    )
    rows.append(row(GROUP, "get_or_set, breaker open, memory fallback hit", fb_stats))
    fb.backend.close()

    # As if Redis had just died: a breaker that never opens, so every call tries it.
    refused = _store(_dead_url(), start_open=False, threshold=10**9)
    ref_stats = measure(
        lambda: refused.get_or_set("k", compute, tags=tags),
        number=max(100, number // 100),
        repeats=repeats,
    )
    rows.append(row(GROUP, "get_or_set before the breaker opens (connection refused)", ref_stats))
    refused.backend.close()

    up = _store(env.redis_url, start_open=False)
    try:
        up.backend.ping()
        reachable = True
    except Exception:
        reachable = False
    if reachable:
        up.get_or_set("k", compute, tags=tags)
        hit = measure(
            lambda: up.get_or_set("k", compute, tags=tags), number=number, repeats=repeats
        )
        rows.append(row(GROUP, "get_or_set hit, Redis up (for scale)", hit))
        up.clear()
    up.backend.close()
    extra = open_stats["median_us"] - uncached["median_us"]
    rows.append(
        ratio_row(
            GROUP,
            "extra cost of a read while down / 20 us budget",
            extra / 20.0,
            "< 1 (a read while Redis is down costs the database query + under 20 us)",
            extra < 20.0,
        )
    )
    return rows
