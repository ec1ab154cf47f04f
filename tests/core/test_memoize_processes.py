"""``@cache.memoize(lock=True)`` across processes: concurrent misses of one call in several
processes compute it once (real Redis only: a fakeredis server or a memory cache cannot be
shared between processes)."""

from __future__ import annotations

import multiprocessing
import uuid

import pytest
from conftest import REDIS_URL

from . import memo_workers
from .conftest import scan_delete

PROCESSES = 3


@pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis (REDIS_URL) shared by processes")
def test_lock_true_computes_once_across_processes() -> None:
    import redis

    assert REDIS_URL is not None
    prefix = "t" + uuid.uuid4().hex[:12]
    counter_key = f"{prefix}:computations"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=memo_workers.call_memoized,
            args=(REDIS_URL, prefix, counter_key, True, barrier, out),
        )
        for _ in range(PROCESSES)
    ]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in range(PROCESSES)]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert int(client.get(counter_key) or 0) == 1
        assert len({r["pid"] for r in results}) == 1  # every process got the one value
        assert results[0]["room"] == 3
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        scan_delete(client, prefix)
        client.close()
