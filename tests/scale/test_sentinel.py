"""Sentinel: one master, one replica, one sentinel, all real; a failover serves nothing stale."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.backends.redis import RedisBackend
from flask_dataroom_cache.store import CacheStore

from .servers import SentinelSetup, running_sentinel, wait_until

pytestmark = pytest.mark.redis_server


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    with running_sentinel(tmp_path) as setup:
        yield setup


def _app(url: str, socket_timeout: float = 0.5) -> tuple[Flask, CacheStore]:
    app = Flask(f"sentinel_{uuid.uuid4().hex[:6]}")
    app.config.update(
        REDIS_URL=url,
        CACHE_KEY_PREFIX="s" + uuid.uuid4().hex[:10],
        CACHE_REDIS_SOCKET_TIMEOUT=socket_timeout,
        CACHE_BREAKER_THRESHOLD=3,
        CACHE_BREAKER_COOLDOWN=0.2,
    )
    ext = DataRoomCache()
    ext.init_app(app)
    return app, ext.state(app).store


def test_features_and_failover_without_stale_reads(sentinel_setup: SentinelSetup) -> None:
    # A generous WAIT timeout: this machine may be loaded; the default is 100 ms.
    app, store = _app(sentinel_setup.url + "?wait_timeout_ms=1000", socket_timeout=2.0)
    assert store.backend.primary.wait_timeout_ms == 1000  # type: ignore[attr-defined]
    backend: Any = store.backend
    primary = backend.primary
    assert isinstance(primary, RedisBackend) and primary.wait_replicas == 1
    prefix = app.config["CACHE_KEY_PREFIX"]
    keys = [f"{prefix}:folder:{i}" for i in range(10)]
    db: dict[str, int] = {k: 1 for k in keys}
    computed: list[str] = []

    def read(key: str) -> int:
        def compute() -> int:
            computed.append(key)
            return db[key]

        return store.get_or_set(key, compute, tags=[f"tag:{key}", "room:1"])

    assert [read(k) for k in keys] == [1] * 10
    assert [read(k) for k in keys] == [1] * 10
    assert len(computed) == 10  # second round: all hits on the master

    # Commit new values and invalidate just before the failover: WAIT makes sure the new
    # tokens are on the replica that is about to be promoted.
    for k in keys:
        db[k] = 2
    store.invalidate(["room:1"], defer=False)
    assert primary.replica_lag_events == 0
    old_master = sentinel_setup.master_port()
    sentinel_setup.sentinel.client().execute_command("SENTINEL", "FAILOVER", "drc")

    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                for k in keys:
                    seen.append(read(k))
            except BaseException as exc:  # pragma: no cover - the test fails below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sentinel_setup.master_port() != old_master, 15, "failover")
        wait_until(
            lambda: sentinel_setup.replica.client().info("replication")["role"] == "master",
            10,
            "replica promoted",
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert seen and set(seen) == {2}, "a stale value was served during the failover"

    # After the failover: the new master serves hits and takes invalidations.
    # The breaker recovers on the next request after its cooldown (requests drive it).
    wait_until(lambda: read(keys[0]) == 2 and backend.state == "closed", 5, "breaker closed")
    assert [read(k) for k in keys] == [2] * 10
    before = len(computed)
    assert [read(k) for k in keys] == [2] * 10
    assert len(computed) == before, "the promoted master should serve hits"
    for k in keys:
        db[k] = 3
    store.invalidate(["room:1"], defer=False)
    assert [read(k) for k in keys] == [3] * 10
    new_master = sentinel_setup.replica.client()
    assert any(k.startswith(prefix.encode()) for k in new_master.scan_iter(match=f"{prefix}:*"))
    assert store.clear() > 0


def test_invalidation_waits_for_the_replica_and_counts_lag(sentinel_setup: SentinelSetup) -> None:
    """A frozen replica cannot ack: WAIT times out, the lag is counted, nothing raises."""
    import os
    import signal

    backend = RedisBackend.from_url(
        sentinel_setup.url + "?wait_timeout_ms=50", prefix="sw", tag_ttl=60, socket_timeout=1.0
    )
    assert backend.wait_timeout_ms == 50
    capped = RedisBackend.from_url(
        sentinel_setup.url + "?wait_timeout_ms=5000", prefix="sw", tag_ttl=60, socket_timeout=0.5
    )
    assert capped.wait_timeout_ms == 400  # WAIT always returns before the socket times out
    capped.close()
    backend.invalidate(["a"])
    before = backend.replica_lag_events  # 0 unless this machine is very loaded
    os.kill(sentinel_setup.replica.proc.pid, signal.SIGSTOP)
    try:
        start = time.perf_counter()
        backend.invalidate(["a"])
        assert time.perf_counter() - start >= 0.04  # it did wait for the replica
        assert backend.replica_lag_events == before + 1
        assert backend.info()["replica_lag_events"] == before + 1
    finally:
        os.kill(sentinel_setup.replica.proc.pid, signal.SIGCONT)
    backend.clear()
    backend.close()
