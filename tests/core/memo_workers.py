"""Process entry points of ``test_memoize_processes.py`` (importable by a spawned child)."""

from __future__ import annotations

import os
import time
from typing import Any


def call_memoized(
    url: str, prefix: str, counter_key: str, lock: bool, barrier: Any, out: Any
) -> None:
    """One process: its own app on ``url`` under ``prefix``; a memoized function that
    counts its computations in Redis and takes a while; called once, all processes
    released together by ``barrier``; what it returned goes to ``out``."""
    import redis
    from flask import Flask

    from flask_dataroom_cache import DataRoomCache

    app = Flask(f"memo_worker_{os.getpid()}")
    app.config.update(REDIS_URL=url, CACHE_KEY_PREFIX=prefix)
    cache = DataRoomCache(app)
    client = redis.Redis.from_url(url)

    @cache.memoize(lock=lock, tags=["report"])
    def report(room: int) -> dict[str, int]:
        client.incr(counter_key)
        time.sleep(0.5)  # long enough for every other process to miss meanwhile
        return {"room": room, "pid": os.getpid()}

    try:
        with app.app_context():
            barrier.wait(60)
            out.put(report(3))
    finally:
        client.close()
