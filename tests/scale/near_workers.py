"""Process entry points for the multi-process near-cache test (importable by ``spawn``)."""

from __future__ import annotations

import random
import time
from typing import Any

from flask import Flask

from flask_dataroom_cache import DataRoomCache


def _store(url: str, prefix: str) -> Any:
    app = Flask("near_worker")
    app.config.update(REDIS_URL=url, CACHE_KEY_PREFIX=prefix, CACHE_L1_MAX_ENTRIES=1000)
    ext = DataRoomCache()
    ext.init_app(app)
    store = ext.state(app).store
    deadline = time.monotonic() + 10
    while not store.backend.primary.l1_active and time.monotonic() < deadline:
        time.sleep(0.01)
    return store


def writer(url: str, prefix: str, commits: int, db: Any, committed: Any, start: Any) -> None:
    """Commit ``commits`` times: change the data, invalidate, then publish 'commit returned'."""
    store = _store(url, prefix)
    start.wait()
    for i in range(1, commits + 1):
        db.value = i  # the database commit
        store.invalidate(["room:1"], defer=False)  # the after-commit invalidation
        committed.value = i  # commit() has returned
        time.sleep(random.uniform(0, 0.004))
    store.backend.close()


def reader(url: str, prefix: str, db: Any, committed: Any, start: Any, done: Any, out: Any) -> None:
    """Read continuously; a read started after commit ``c`` returned must see >= c."""
    store = _store(url, prefix)
    key = f"{prefix}:room:1"
    reads = stale = 0
    start.wait()
    while not done.is_set():
        floor = committed.value  # this read starts after commit `floor` returned
        value = store.get_or_set(key, lambda: db.value, tags=["room:1"])
        reads += 1
        if value < floor:
            stale += 1
    out.put((reads, stale, store.backend.primary.l1_hits))
    store.backend.close()


def exit_normally(url: str, prefix: str) -> None:
    """A worker with L1 that exits normally without ``close()`` (gunicorn max_requests, a
    deploy): prints its id once it is registered, then returns (atexit runs)."""
    import redis

    store = _store(url, prefix)
    near = store.backend.primary
    assert near.l1_active
    assert redis.Redis.from_url(url).zscore(near.peers_key, near.origin) is not None
    print(near.origin, flush=True)


def forked_helper(out: Any) -> None:
    """A multiprocessing helper (fork) that never touches the cache: CPU work, then exit."""
    time.sleep(0.1)
    out.put("done")


def forked_l1_user(near: Any, url: str, key: str, out: Any) -> None:
    """A forked child (``near`` is the parent's NearCache, inherited by the fork) that
    invalidates first (no subscriber yet), then reads through L1, then returns
    (multiprocessing ends it with os._exit: no atexit)."""
    import redis

    assert near._subscriber.thread is None and not near.l1_active  # nothing started by the fork
    start = time.monotonic()
    near.invalidate(["room:other"])  # the first use: starts the subscriber
    invalidate_s = time.monotonic() - start
    deadline = time.monotonic() + 5
    while not near.l1_active and time.monotonic() < deadline:
        time.sleep(0.01)
    hits = near.l1_hits
    value = near.get(key, ("~epoch", "room:1"))[0]  # from Redis, copied into L1
    near.get(key, ("~epoch", "room:1"))  # from L1
    registered = redis.Redis.from_url(url).zscore(near.peers_key, near.origin) is not None
    out.put((near.origin, invalidate_s, value, near.l1_hits - hits, registered))
