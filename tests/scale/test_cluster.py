"""Redis Cluster: every feature on a real 3-master cluster started from ``redis-server``."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis.crc import key_slot

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.backends.near import NearCache
from flask_dataroom_cache.backends.redis import ClusterRedisBackend, RedisBackend
from flask_dataroom_cache.backends.resilient import ResilientBackend
from flask_dataroom_cache.store import MISSING

from .servers import Cluster, running_cluster, settle_registry, wait_until

pytestmark = pytest.mark.redis_server
TAGS = ("~epoch", "dataroom:1", "folder:1/contents")


@pytest.fixture
def backend(redis_cluster: Cluster) -> Any:
    prefix = "c" + uuid.uuid4().hex[:10]
    b = RedisBackend.from_url(redis_cluster.url, prefix=prefix, tag_ttl=3600, socket_timeout=1.0)
    assert isinstance(b, ClusterRedisBackend)
    yield b
    b.clear()
    b.close()


def _fill(b: ClusterRedisBackend, key: str, payload: bytes, tags: tuple[str, ...] = TAGS) -> None:
    payload_now, versions = b.get(key, tags)
    assert payload_now is None and versions is not None
    assert b.set(key, payload, 60, tags, versions)


def test_roundtrip_invalidate_and_spread_over_masters(backend: ClusterRedisBackend) -> None:
    keys = [f"{backend.prefix}:file:{i}" for i in range(60)]
    for i, key in enumerate(keys):
        _fill(backend, key, b"v%d" % i)
    for i, key in enumerate(keys):
        assert backend.get(key, TAGS)[0] == b"v%d" % i
    # Entries are spread: every master holds some of them.
    per_master = [
        sum(1 for _ in node.redis_connection.scan_iter(match="{" + backend.prefix + ":s*"))
        for node in backend.client.get_primaries()
    ]
    assert len(per_master) == 3 and all(n > 0 for n in per_master), per_master
    backend.invalidate(["folder:1/contents"])
    assert all(backend.get(key, TAGS)[0] is None for key in keys)
    other = ("~epoch", "dataroom:2")
    _fill(backend, keys[0], b"x", other)
    backend.invalidate(["dataroom:1"])
    assert backend.get(keys[0], other)[0] == b"x"


def test_hit_is_one_command_on_one_node(
    backend: ClusterRedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{backend.prefix}:folder:7"
    _fill(backend, key, b"body")
    calls: list[tuple[Any, ...]] = []
    real = backend.client.execute_command

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(backend.client, "execute_command", counting)
    assert backend.get(key, TAGS)[0] == b"body"
    assert len(calls) == 1 and calls[0][0] == "EVALSHA", calls


def test_keyless_capture_can_be_stored_in_any_group(backend: ClusterRedisBackend) -> None:
    """versions() reads one group; set() of a key in another group must accept them."""
    versions = backend.versions(TAGS)
    keys = [f"{backend.prefix}:file:k{i}" for i in range(40)]
    assert len({backend._group(k) for k in keys}) > 1
    for key in keys:
        assert backend.set(key, b"ok", 60, TAGS, versions), key
        assert backend.get(key, TAGS)[0] == b"ok"
    # A capture taken before an invalidation is refused everywhere afterwards.
    old = backend.versions(TAGS)
    backend.invalidate(["dataroom:1"])
    assert not any(backend.set(k, b"stale", 60, TAGS, old) for k in keys)


def test_lost_token_copy_causes_a_miss_never_a_stale_hit(backend: ClusterRedisBackend) -> None:
    key = f"{backend.prefix}:file:lost"
    _fill(backend, key, b"v1")
    g = backend._group(key)
    # The token copy of the entry's group is evicted: the entry must miss, and a fresh
    # token is created (never the old one again).
    backend.client.delete(backend._group_tagv[g] + "dataroom:1")
    payload, versions = backend.get(key, TAGS)
    assert payload is None and versions is not None
    # Every other group got the same fresh token only where it was missing (SET NX): the
    # others keep the old one, so a value captured there is refused in this group.
    assert backend.set(key, b"v2", 60, TAGS, versions)
    assert backend.get(key, TAGS)[0] == b"v2"


def test_clear_scans_every_master_and_keeps_other_prefixes(
    backend: ClusterRedisBackend, redis_cluster: Cluster
) -> None:
    other = RedisBackend.from_url(
        redis_cluster.url, prefix=backend.prefix + "x", tag_ttl=3600, socket_timeout=1.0
    )
    try:
        for i in range(30):
            _fill(backend, f"{backend.prefix}:file:{i}", b"v")
        _fill(other, f"{backend.prefix}x:file:1", b"keep")  # type: ignore[arg-type]
        removed = backend.clear()
        assert removed >= 30
        assert backend.info()["keys"] == 0
        assert other.get(f"{backend.prefix}x:file:1", TAGS)[0] == b"keep"
        assert add_then_lock(backend)
    finally:
        other.clear()
        other.close()


def add_then_lock(b: ClusterRedisBackend) -> bool:
    key = f"{b.prefix}:~lock:x"
    first = b.add(key, b"1", 5)
    second = b.add(key, b"1", 5)
    b.delete(key)
    third = b.add(key, b"1", 5)
    # compare-and-delete: another value (a holder whose lock expired) releases nothing
    kept = not b.release(key, b"other") and not b.add(key, b"2", 5)
    released = b.release(key, b"1") and b.add(key, b"2", 5) and b.release(key, b"2")
    return first and not second and third and kept and released


def _app(url: str, **extra: Any) -> tuple[Flask, DataRoomCache]:
    app = Flask(f"cluster_{uuid.uuid4().hex[:6]}")
    app.config.update(
        REDIS_URL=url, CACHE_KEY_PREFIX="c" + uuid.uuid4().hex[:10], CACHE_REDIS_SOCKET_TIMEOUT=0.5
    )
    app.config.update(extra)
    ext = DataRoomCache()
    ext.init_app(app)
    return app, ext


def test_extension_on_cluster_get_or_set_and_invalidate(redis_cluster: Cluster) -> None:
    app, ext = _app(redis_cluster.url)
    store = ext.state(app).store
    assert isinstance(store.backend, ResilientBackend)
    assert isinstance(store.backend.primary, ClusterRedisBackend)
    db = {"name": "v1"}
    calls = []

    def compute() -> dict[str, str]:
        calls.append(1)
        return dict(db)

    with app.app_context():
        key = f"{app.config['CACHE_KEY_PREFIX']}:folder:1"
        assert store.get_or_set(key, compute, tags=["folder:1"]) == {"name": "v1"}
        assert store.get_or_set(key, compute, tags=["folder:1"]) == {"name": "v1"}
        assert len(calls) == 1
        db["name"] = "v2"
        store.invalidate(["folder:1"], defer=False)
        assert store.get_or_set(key, compute, tags=["folder:1"]) == {"name": "v2"}
        assert store.lookup(key, ["folder:1"]) == {"name": "v2"}
        assert store.clear() > 0
        assert store.lookup(key, ["folder:1"]) is MISSING


def test_breaker_when_a_master_dies(tmp_path: Path) -> None:
    """Killing a master: requests keep succeeding (misses), the breaker opens, no stale."""
    with running_cluster(tmp_path) as cluster:
        app, ext = _app(
            cluster.url, CACHE_BREAKER_THRESHOLD=2, CACHE_BREAKER_COOLDOWN=60, CACHE_TTL=60
        )
        store = ext.state(app).store
        prefix = app.config["CACHE_KEY_PREFIX"]
        db = {"v": 1}
        keys = [f"{prefix}:file:{i}" for i in range(30)]
        for key in keys:
            assert store.get_or_set(key, lambda: dict(db), tags=["file:list"]) == {"v": 1}
        cluster.nodes[1].stop()
        db["v"] = 2
        store.invalidate(["file:list"], defer=False)  # cannot reach every group: queued
        for key in keys:
            assert store.get_or_set(key, lambda: dict(db), tags=["file:list"]) == {"v": 2}
        backend = store.backend
        assert isinstance(backend, ResilientBackend)
        assert backend.state == "open"
        assert backend.pending >= 1


def _move_slot(cluster: Cluster, slot: int) -> int:
    """Reshard: move ``slot`` (and its keys) to the next master; returns its index."""
    clients = [n.client() for n in cluster.nodes]
    try:
        ids = [c.execute_command("CLUSTER", "MYID").decode() for c in clients]
        owner_port = next(
            int(r[2][1])
            for r in clients[0].execute_command("CLUSTER", "SLOTS")
            if int(r[0]) <= slot <= int(r[1])
        )
        src = next(i for i, n in enumerate(cluster.nodes) if n.port == owner_port)
        dst = (src + 1) % len(clients)
        clients[dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        clients[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        while keys := clients[src].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            clients[src].execute_command(
                "MIGRATE", "127.0.0.1", cluster.nodes[dst].port, "", 0, 5000, "KEYS", *keys
            )
        for client in clients:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        return dst
    finally:
        for client in clients:
            client.close()


def test_l1_survives_moving_the_channel_slot(tmp_path: Path) -> None:
    """After the slot of ``{P}:~l1`` (channel and peer registry) moves to another master,
    the registry and publish scripts follow the MOVED, the subscribers move to the new
    owner, L1 comes back, and invalidations neither raise nor open the breaker."""
    with running_cluster(tmp_path) as cluster:
        prefix = "c" + uuid.uuid4().hex[:10]
        apps = [_app(cluster.url, CACHE_KEY_PREFIX=prefix, CACHE_L1_MAX_ENTRIES=100)]
        apps.append(_app(cluster.url, CACHE_KEY_PREFIX=prefix, CACHE_L1_MAX_ENTRIES=100))
        s1, s2 = (ext.state(app).store for app, ext in apps)
        n1, n2 = s1.backend.primary, s2.backend.primary
        assert isinstance(n1, NearCache) and isinstance(n2, NearCache)
        try:
            wait_until(lambda: n1.l1_active and n2.l1_active, 5, "L1 on cluster")
            assert key_slot(n1.peers_key.encode()) == key_slot(n1.channel.encode())
            dst = _move_slot(cluster, key_slot(n1.channel.encode()))
            # Every subscriber notices at its next registration (every lease / 2): its
            # script follows the MOVED; it resubscribes on the new owner (L1 off meanwhile).
            wait_until(
                lambda: n1.subscription_drops and n2.subscription_drops, 5, "the move noticed"
            )
            wait_until(lambda: n1.l1_active and n2.l1_active, 5, "L1 back after the move")
            settle_registry(n1)  # moved with its marker: no younger than before
            for near in (n1, n2):
                conn = near._channel_client().connection_pool.connection_kwargs
                assert conn["port"] == cluster.nodes[dst].port
            key = f"{prefix}:folder:1"
            db = {"v": 1}
            for store in (s1, s2, s2):
                assert store.get_or_set(key, lambda: db["v"], tags=["room:1"]) == 1
            assert n2.l1_hits >= 1
            db["v"] = 2
            start = time.monotonic()
            s1.invalidate(["room:1"], defer=False)  # raised BackendError before the fix
            assert time.monotonic() - start < n1.lease / 2  # n2 acked on the new owner
            assert n1.ack_timeouts == 0 and n1.registry_errors == 0
            assert s2.get_or_set(key, lambda: db["v"], tags=["room:1"]) == 2
            for store in (s1, s2):
                backend = store.backend
                assert isinstance(backend, ResilientBackend)
                assert backend.state == "closed" and backend.pending == 0
            members = {
                m.decode()
                for m in cluster.nodes[dst].client().zrange(n1.peers_key, 0, -1)
            }
            assert members == {n1.origin, n2.origin}
        finally:
            for store in (s1, s2):
                store.backend.close()
