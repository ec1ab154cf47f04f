"""The near cache (L1): fast hits, and never stale after another process's commit returned."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.backends.near import NearCache
from flask_dataroom_cache.backends.redis import RedisBackend
from flask_dataroom_cache.backends.resilient import ResilientBackend

from . import near_workers
from .servers import (
    Cluster,
    RedisProcess,
    free_port,
    registry_age,
    settle_registry,
    start_server,
    wait_until,
)

pytestmark = pytest.mark.redis_server
TAGS = ("~epoch", "room:1")


def _url(server: RedisProcess) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


@pytest.fixture
def pair(own_redis: RedisProcess) -> Iterator[tuple[NearCache, NearCache]]:
    """Two L1 instances (two 'processes') on one Redis and one prefix."""
    prefix = "n" + uuid.uuid4().hex[:10]
    made = []
    for _ in range(2):
        redis_backend = RedisBackend.from_url(_url(own_redis), prefix, 60, 0.5)
        made.append(
            NearCache(
                redis_backend,
                lambda b=redis_backend: b.client,  # type: ignore[misc]
                prefix=prefix,
                max_entries=100,
                lease=0.3,
            )
        )
    for near in made:
        wait_until(lambda n=near: n.l1_active, 5, "L1 subscription")  # type: ignore[misc]
    settle_registry(made[0])  # a new registry makes invalidations wait (see below)
    yield made[0], made[1]
    made[0].clear()
    for near in made:
        near.close()


def _fill(near: NearCache, key: str, payload: bytes) -> None:
    got, versions = near.get(key, TAGS)
    assert got is None and versions is not None
    assert near.set(key, payload, 60, TAGS, versions)


def test_l1_hit_and_invalidation_acknowledged_before_return(
    pair: tuple[NearCache, NearCache],
) -> None:
    a, b = pair
    key = f"{a.channel}:k"
    _fill(a, key, b"v1")
    assert b.get(key, TAGS)[0] == b"v1"  # Redis hit, copied into b's L1
    hits = b.l1_hits
    assert b.get(key, TAGS)[0] == b"v1"
    assert b.l1_hits == hits + 1
    a.invalidate(["room:1"])
    # No sleep: invalidate returned only after b acknowledged, so b's L1 is already clean.
    assert key not in b._copies.entries
    assert b.get(key, TAGS)[0] is None
    assert a.ack_timeouts == 0
    _fill(a, key, b"v2")
    assert b.get(key, TAGS)[0] == b"v2"
    a.delete(key)
    assert key not in b._copies.entries
    _fill(b, key, b"v3")
    assert b.get(key, TAGS)[0] == b"v3" and key in b._copies.entries
    a.clear()
    assert not b._copies.entries


def test_frozen_subscriber_makes_the_writer_wait_for_its_lease(
    pair: tuple[NearCache, NearCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """b's subscriber thread is stuck: no ack, no pong. a waits out the lease; b stops
    serving its (now stale) L1 entry by then."""
    a, b = pair
    key = f"{a.channel}:frozen"
    _fill(b, key, b"old")
    assert b.get(key, TAGS)[0] == b"old" and key in b._copies.entries
    release = threading.Event()
    real = b._subscriber._handle

    def stuck(message: dict[str, Any], client: Any) -> None:
        release.wait(5)
        real(message, client)

    monkeypatch.setattr(b._subscriber, "_handle", stuck)
    time.sleep(0.1)  # b's thread is now blocked in `stuck`
    start = time.monotonic()
    a.invalidate(["room:1"])
    waited = time.monotonic() - start
    try:
        assert waited >= b.lease * 0.9, waited
        assert a.ack_timeouts == 1
        assert key in b._copies.entries  # b never heard of it...
        assert not b.l1_active  # ...but its lease expired, so it must not serve it
        assert b.get(key, TAGS)[0] is None  # read from Redis: a miss, not "old"
    finally:
        release.set()
    wait_until(lambda: b.l1_active and key not in b._copies.entries, 5, "b catches up")


def test_peer_dropped_by_redis_is_waited_for_not_served_stale(own_redis: RedisProcess) -> None:
    """b's subscriber thread stalls (GC pause, starved CPU) and Redis drops b's pub/sub
    connection (output-buffer limit, CLIENT KILL) while b's lease is still running.
    PUBLISH no longer counts b, but b is in the peer registry: a's invalidation waits
    for b's ack or lease, so a read b starts after it returned is never stale."""
    prefix = "n" + uuid.uuid4().hex[:10]
    name = f"near-b-{prefix}"
    sub_client = own_redis.client(client_name=name)  # b's channel client: killable by name
    lease = 1.0  # long enough that b's lease surely still runs when a invalidates
    made = []
    for channel_client in (None, sub_client):
        backend = RedisBackend.from_url(_url(own_redis), prefix, 60, 0.5)
        made.append(
            NearCache(
                backend,
                (lambda b=backend: b.client) if channel_client is None else (lambda: sub_client),
                prefix=prefix,
                max_entries=100,
                lease=lease,
            )
        )
    a, b = made
    release = threading.Event()
    try:
        wait_until(lambda: a.l1_active and b.l1_active, 5, "L1 subscriptions")
        settle_registry(a)
        key = f"{a.channel}:dropped"
        _fill(a, key, b"old")
        assert b.get(key, TAGS)[0] == b"old" and key in b._copies.entries
        real = b._subscriber._handle

        def stuck(message: dict[str, Any], client: Any) -> None:
            release.wait(10)
            real(message, client)

        b._subscriber._handle = stuck  # type: ignore[method-assign]
        time.sleep(0.1)  # b's thread is now blocked in `stuck`
        admin = own_redis.client()
        killed = 0
        for info in admin.client_list():
            if info.get("name") == name and int(info.get("sub", 0)) > 0:
                admin.client_kill_filter(_id=info["id"])
                killed += 1
        assert killed == 1
        assert b.l1_active  # b's lease still runs: without the registry a would not wait
        assert admin.pubsub_numsub(a.channel)[0][1] == 1  # PUBLISH counts only a itself
        hits = b.l1_hits
        start = time.monotonic()
        a.invalidate(["room:1"])  # "the commit returned"
        waited = time.monotonic() - start
        assert waited >= lease * 0.9, waited  # waited for b (registered, cannot ack)
        assert a.ack_timeouts == 1
        assert key in b._copies.entries  # b never heard of the invalidation...
        assert not b.l1_active  # ...but its lease ran out before a returned
        assert b.get(key, TAGS)[0] is None  # a read started after the return: not "old"
        assert b.l1_hits == hits
    finally:
        release.set()
        a.clear()
        for near in made:
            near.close()
        sub_client.close()


def test_peer_registry_membership_expiry_and_cleanup(
    pair: tuple[NearCache, NearCache], own_redis: RedisProcess
) -> None:
    a, b = pair
    r = own_redis.client()
    assert a.peers_key == b.peers_key and not a.peers_key.startswith(a.channel)  # not `clear`ed

    def members() -> set[str]:
        return {m.decode() for m in r.zrange(a.peers_key, 0, -1)}

    assert {a.origin, b.origin} <= members()
    # A crashed process (registered, will never ack) costs each invalidation one lease...
    now_s, now_us = r.time()
    r.zadd(a.peers_key, {"crashed": now_s * 1000 + now_us // 1000 + 600})
    start = time.monotonic()
    a.invalidate(["room:1"])
    assert time.monotonic() - start >= a.lease * 0.9
    assert a.ack_timeouts == 1
    # ...only until its registration expires; then it is ignored and trimmed.
    wait_until(lambda: "crashed" not in members(), 5, "expired entry trimmed")
    start = time.monotonic()
    a.invalidate(["room:1"])
    assert time.monotonic() - start < a.lease / 2
    assert a.ack_timeouts == 1
    b.close()  # a clean exit leaves the registry at once
    assert b.origin not in members() and a.origin in members()
    start = time.monotonic()
    a.invalidate(["room:1"])
    assert time.monotonic() - start < a.lease / 2
    assert a.ack_timeouts == 1


def test_fill_racing_an_invalidation_is_discarded(
    pair: tuple[NearCache, NearCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """b reads a valid entry from Redis; before b copies it into L1, a invalidates."""
    a, b = pair
    key = f"{a.channel}:race"
    _fill(a, key, b"old")
    real_get = b._get_expiring
    assert real_get is not None

    def get_then_invalidate(k: str, tags: Any) -> Any:
        res = real_get(k, tags)
        a.invalidate(["room:1"])  # lands (and is acked by b) between read and fill
        return res

    monkeypatch.setattr(b, "_get_expiring", get_then_invalidate)
    assert b.get(key, TAGS)[0] == b"old"  # this read started before the commit: allowed
    monkeypatch.setattr(b, "_get_expiring", real_get)
    assert key not in b._copies.entries
    assert b.get(key, TAGS)[0] is None


@pytest.mark.parametrize("packed", [True, False], ids=["hand-packed", "redis-py"])
def test_l1_copy_never_outlives_the_entry_timeout(
    pair: tuple[NearCache, NearCache], packed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L1 copies expire with the Redis entry: the writer's copy after the ``ttl`` it set,
    a reader's copy (filled from a Redis hit) after the entry's remaining PTTL, read in the
    same round trip as the hit."""
    a, b = pair
    if not packed:  # the MULTI/MGET/PTTL/EXEC through redis-py's pipeline
        monkeypatch.setattr(b.inner, "_direct", None)
    key = f"{a.channel}:short"
    got, versions = a.get(key, TAGS)
    assert got is None and versions is not None
    start = time.monotonic()
    assert a.set(key, b"v", 1, TAGS, versions)
    time.sleep(0.3)
    assert b.get(key, TAGS)[0] == b"v"  # a Redis hit with ~0.7 s left, copied into L1
    assert a._copies.entries[key][2] <= start + 1.0 + 0.01
    assert b._copies.entries[key][2] <= start + 1.0 + 0.01  # not CACHE_TTL (300 s) from the fill
    hits = b.l1_hits
    assert b.get(key, TAGS)[0] == b"v"
    assert b.l1_hits == hits + 1
    wait_until(lambda: time.monotonic() > start + 1.05, 5, "entry timeout")
    assert a.get(key, TAGS)[0] is None  # Redis expired it; neither L1 still serves it
    assert b.get(key, TAGS)[0] is None
    assert b.l1_hits == hits + 1
    # An entry without a (known) remaining lifetime is not copied: PTTL -2 (gone).
    assert b.inner.get_expiring(f"{a.channel}:absent", TAGS)[1] is None  # type: ignore[attr-defined]


def test_subscription_drop_clears_and_bypasses_l1(
    pair: tuple[NearCache, NearCache], own_redis: RedisProcess
) -> None:
    a, b = pair
    key = f"{a.channel}:drop"
    _fill(a, key, b"v")
    assert b.get(key, TAGS)[0] == b"v" and key in b._copies.entries
    drops = b.subscription_drops
    own_redis.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    wait_until(lambda: b.subscription_drops > drops, 5, "drop noticed")
    assert key not in b._copies.entries or b.l1_active
    wait_until(lambda: a.l1_active and b.l1_active, 5, "resubscribed")
    assert b.get(key, TAGS)[0] == b"v"  # from Redis again, then L1
    a.invalidate(["room:1"])
    assert b.get(key, TAGS)[0] is None


def _app(url: str, prefix: str, **extra: Any) -> tuple[Flask, Any]:
    app = Flask(f"near_{uuid.uuid4().hex[:6]}")
    app.config.update(REDIS_URL=url, CACHE_KEY_PREFIX=prefix, CACHE_L1_MAX_ENTRIES=100)
    app.config.update(extra)
    ext = DataRoomCache()
    ext.init_app(app)
    return app, ext.state(app).store


def test_factory_wires_l1_inside_the_breaker(own_redis: RedisProcess) -> None:
    prefix = "n" + uuid.uuid4().hex[:10]
    _, store = _app(_url(own_redis), prefix)
    assert isinstance(store.backend, ResilientBackend)
    assert isinstance(store.backend.primary, NearCache)
    _, off = _app(_url(own_redis), prefix, CACHE_L1_MAX_ENTRIES=0)
    assert not isinstance(off.backend.primary, NearCache)
    wait_until(lambda: store.backend.primary.l1_active, 5, "L1")
    key = f"{prefix}:x"
    assert store.get_or_set(key, lambda: {"a": 1}, tags=["room:1"]) == {"a": 1}
    assert store.get_or_set(key, lambda: {"a": 2}, tags=["room:1"]) == {"a": 1}
    assert store.backend.primary.l1_hits >= 1
    assert store.backend.info()["l1_entries"] == 1
    store.clear()
    store.backend.close()
    off.backend.close()


def test_l1_on_cluster(redis_cluster: Cluster) -> None:
    prefix = "n" + uuid.uuid4().hex[:10]
    _, s1 = _app(redis_cluster.url, prefix)
    _, s2 = _app(redis_cluster.url, prefix)
    n1, n2 = s1.backend.primary, s2.backend.primary
    wait_until(lambda: n1.l1_active and n2.l1_active, 5, "L1 on cluster")
    settle_registry(n1)
    key = f"{prefix}:folder:1"
    assert s1.get_or_set(key, lambda: 1, tags=["room:1"]) == 1
    assert s2.get_or_set(key, lambda: 99, tags=["room:1"]) == 1
    assert s2.get_or_set(key, lambda: 99, tags=["room:1"]) == 1
    assert n2.l1_hits >= 1
    s1.invalidate(["room:1"], defer=False)
    assert n1.ack_timeouts == 0
    assert s2.get_or_set(key, lambda: 2, tags=["room:1"]) == 2
    s1.clear()
    s1.backend.close()
    s2.backend.close()


def test_three_processes_never_read_stale_after_commit_returned(own_redis: RedisProcess) -> None:
    """One writer process commits and invalidates in a loop; two reader processes read
    through their L1 and check every read against the last commit that had returned."""
    ctx = multiprocessing.get_context("spawn")
    prefix = "n" + uuid.uuid4().hex[:10]
    url = _url(own_redis)
    db = ctx.Value("i", 0)
    committed = ctx.Value("i", 0)
    start = ctx.Event()
    done = ctx.Event()
    out = ctx.Queue()
    readers = [
        ctx.Process(target=near_workers.reader, args=(url, prefix, db, committed, start, done, out))
        for _ in range(2)
    ]
    writer = ctx.Process(target=near_workers.writer, args=(url, prefix, 300, db, committed, start))
    procs = [*readers, writer]
    for p in procs:
        p.start()
    try:
        time.sleep(1.5)  # workers import and subscribe
        start.set()
        writer.join(60)
        assert writer.exitcode == 0
        done.set()
        results = [out.get(timeout=30) for _ in readers]
    finally:
        done.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    for reads, stale, l1_hits in results:
        assert stale == 0, f"{stale} stale reads out of {reads}"
        assert reads > 300
        assert l1_hits > reads // 4, (l1_hits, reads)  # L1 really served most reads


def _members(server: RedisProcess, near: NearCache) -> set[str]:
    return {m.decode() for m in server.client().zrange(near.peers_key, 0, -1)}


def _timed_invalidate(near: NearCache) -> float:
    start = time.monotonic()
    near.invalidate(["room:1"])
    return time.monotonic() - start


def test_process_exiting_normally_leaves_the_registry(own_redis: RedisProcess) -> None:
    """A worker with L1 that exits normally without close() (gunicorn max_requests, a
    deploy) removes its registration at exit: the next invalidation does not wait for it."""
    prefix = "n" + uuid.uuid4().hex[:10]
    _, store = _app(_url(own_redis), prefix)
    near = store.backend.primary
    try:
        wait_until(lambda: near.l1_active, 5, "L1")
        settle_registry(near)
        code = (
            "import sys; from tests.scale import near_workers; "
            "near_workers.exit_normally(sys.argv[1], sys.argv[2])"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, _url(own_redis), prefix],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        child = done.stdout.split()[-1]  # it was registered while it ran...
        assert child not in _members(own_redis, near)  # ...and left at exit
        waited = _timed_invalidate(near)
        assert waited < 0.1, waited
        assert near.ack_timeouts == 0
    finally:
        store.clear()
        store.backend.close()
    assert near.origin not in _members(own_redis, near)  # close() leaves too


def test_forked_helper_that_never_uses_l1_never_registers(own_redis: RedisProcess) -> None:
    """A multiprocessing (fork) helper that does not touch the cache starts no subscriber
    and no registration: it never makes the parent's invalidations wait."""
    prefix = "n" + uuid.uuid4().hex[:10]
    _, store = _app(_url(own_redis), prefix)
    near = store.backend.primary
    ctx = multiprocessing.get_context("fork")
    try:
        wait_until(lambda: near.l1_active, 5, "L1")
        settle_registry(near)
        before = _timed_invalidate(near)
        out = ctx.Queue()
        helper = ctx.Process(target=near_workers.forked_helper, args=(out,))
        helper.start()
        assert out.get(timeout=10) == "done"
        assert _members(own_redis, near) == {near.origin}  # the helper never registered
        helper.join(10)
        assert helper.exitcode == 0
        after = _timed_invalidate(near)
        assert after < 0.1, (before, after)
        assert near.ack_timeouts == 0
        assert _members(own_redis, near) == {near.origin}
    finally:
        store.clear()
        store.backend.close()


def test_forked_child_subscribes_on_first_use_and_leaves_at_exit(own_redis: RedisProcess) -> None:
    """A forked child starts its subscriber on its first L1 use (here an invalidation,
    which waits for the subscription so that acks reach it, not for a lease), serves from
    L1, and leaves the registry when it ends (multiprocessing: os._exit, no atexit; the
    multiprocessing finalizer does it)."""
    prefix = "n" + uuid.uuid4().hex[:10]
    url = _url(own_redis)
    _, store = _app(url, prefix)
    near = store.backend.primary
    ctx = multiprocessing.get_context("fork")
    key = f"{prefix}:forked"
    try:
        wait_until(lambda: near.l1_active, 5, "L1")
        settle_registry(near)
        _fill(near, key, b"v")
        out = ctx.Queue()
        child = ctx.Process(target=near_workers.forked_l1_user, args=(near, url, key, out))
        child.start()
        origin, invalidate_s, value, hits, registered = out.get(timeout=20)
        child.join(10)
        assert child.exitcode == 0
        assert origin != near.origin
        assert invalidate_s < near.lease / 2, invalidate_s  # acks reached the new child
        assert value == b"v" and hits == 1 and registered
        assert origin not in _members(own_redis, near)  # left at exit
        assert _timed_invalidate(near) < 0.1
        assert near.ack_timeouts == 0
    finally:
        store.clear()
        store.backend.close()


def test_unreadable_registry_falls_back_to_publish_and_the_lease(
    pair: tuple[NearCache, NearCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the publish script fails (the registry cannot be read), the invalidation is
    still broadcast with a plain PUBLISH and waits out the lease; it does not raise."""
    a, b = pair
    key = f"{a.channel}:fallback"
    _fill(a, key, b"v")
    assert b.get(key, TAGS)[0] == b"v" and key in b._copies.entries

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("MOVED 1234 127.0.0.1:1")

    monkeypatch.setattr(a._registry, "_scripts_for", lambda client: (broken, broken))
    waited = _timed_invalidate(a)
    assert waited >= a.lease, waited  # registered peers unknown: the whole lease
    assert a.registry_errors == 1 and a.ack_timeouts == 0
    assert key not in b._copies.entries  # b got the plain PUBLISH
    assert b.get(key, TAGS)[0] is None
    monkeypatch.undo()


def test_young_registry_makes_invalidations_wait_the_lease(
    pair: tuple[NearCache, NearCache], own_redis: RedisProcess
) -> None:
    """A registry younger than a registration (``2 * lease``) may miss peers registered
    before it was lost: invalidations wait out the lease. An old one does not."""
    a, b = pair
    r = own_redis.client()
    assert registry_age(a) > 2 * a.lease  # the fixture waited: an old registry
    assert _timed_invalidate(a) < a.lease / 2
    assert a.registry_young_waits == 0 and a.ack_timeouts == 0
    # As after a restart without persistence / FLUSHALL / eviction: the next registrations
    # recreate the registry and restart its marker.
    r.delete(a.peers_key)
    wait_until(lambda: b.origin in _members(own_redis, a), 5, "b re-registered")
    assert 0 <= registry_age(a) < 2 * a.lease
    waited = _timed_invalidate(a)
    assert waited >= a.lease, waited  # peers unknown: the whole lease
    assert a.registry_young_waits == 1
    # The marker lost alone (eviction) is restarted too; meanwhile: peers unknown.
    r.delete(a.born_key)
    assert registry_age(a) < 0
    assert _timed_invalidate(a) >= a.lease
    assert a.registry_young_waits == 2
    settle_registry(a)
    assert _timed_invalidate(a) < a.lease / 2  # old again: acks suffice
    assert a.registry_young_waits == 2 and a.ack_timeouts == 0
    # The marker never expires before the registry: same TTL, refreshed together.
    assert abs(r.pttl(a.born_key) - r.pttl(a.peers_key)) < 50


def test_redis_restart_never_lets_a_stalled_peer_serve_stale(tmp_path: Path) -> None:
    """Redis restarts without persistence while b's subscriber thread is stalled holding
    an L1 copy (its lease still runs). a resubscribes, re-registers and invalidates: the
    registry lists only a, but it is young, so a waits out the lease; a read b starts
    after a's invalidation returned is never served b's old copy."""
    port = free_port()
    server = start_server(tmp_path, port)
    url = f"redis://127.0.0.1:{port}/0"
    prefix = "n" + uuid.uuid4().hex[:10]
    lease = 2.0  # b's lease surely still runs when a invalidates after the restart
    made = []
    release = threading.Event()
    try:
        for _ in range(2):
            backend = RedisBackend.from_url(url, prefix, 60, 0.5)
            made.append(
                NearCache(
                    backend,
                    lambda be=backend: be.client,  # type: ignore[misc]
                    prefix=prefix,
                    max_entries=100,
                    lease=lease,
                    ping_interval=0.1,
                )
            )
        a, b = made
        wait_until(lambda: a.l1_active and b.l1_active, 5, "L1 subscriptions")
        key = f"{prefix}:k"
        assert a.set(key, b"old", 60, TAGS, a.versions(TAGS))
        assert b.get(key, TAGS)[0] == b"old" and key in b._copies.entries
        real = b._subscriber._handle

        def stuck(message: dict[str, Any], client: Any) -> None:
            release.wait(15)
            real(message, client)

        b._subscriber._handle = stuck  # type: ignore[method-assign]
        time.sleep(0.3)  # b's subscriber thread is now blocked in `stuck`
        server.stop()
        server = start_server(tmp_path, port)  # empty: registry, marker and tokens gone
        wait_until(lambda: a.l1_active, 10, "a resubscribed and re-registered")
        assert b.l1_active and key in b._copies.entries  # b has not noticed: its lease runs
        assert _members(server, a) == {a.origin}  # the registry lists only a
        hits = b.l1_hits
        start = time.monotonic()
        a.invalidate(["room:1"])  # "the commit returned"
        waited = time.monotonic() - start
        got = b.get(key, TAGS)[0]  # a read started after the return
        assert got != b"old", "b served its stale L1 copy after a's invalidation returned"
        assert b.l1_hits == hits
        assert waited >= lease, waited  # a young registry: the whole lease
        assert a.registry_young_waits == 1
    finally:
        release.set()
        for near in made:
            near.close()
        server.stop()


def test_lock_release_compares_and_never_publishes(
    pair: tuple[NearCache, NearCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock is not a cached value: releasing it publishes nothing to the peers (and
    waits for no ack), and only its holder's token releases it (issue 12 item 7)."""
    a, b = pair
    published: list[Any] = []
    for near in (a, b):
        real = near._broadcast
        monkeypatch.setattr(
            near,
            "_broadcast",
            lambda *args, real=real, **kw: (published.append((args, kw)), real(*args, **kw)),
        )
    key = f"{a.channel[: -len(':~l1')]}:~lock:x"
    assert a.add(key, b"A", 5)
    assert not b.add(key, b"B", 5)
    a.inner.delete(key)  # A's lock expired
    assert b.add(key, b"B", 5)
    assert not a.release(key, b"A")  # A, late, leaves B's lock
    assert not a.add(key, b"C", 5)
    assert b.release(key, b"B")
    assert a.add(key, b"C", 5)
    assert published == []


def test_locked_view_miss_does_not_publish_with_the_near_cache(
    own_redis: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask import jsonify

    prefix = "n" + uuid.uuid4().hex[:10]
    app, store = _app(_url(own_redis), prefix)
    near = store.backend.primary
    assert isinstance(near, NearCache)
    wait_until(lambda: near.l1_active, 5, "L1")
    published: list[Any] = []
    monkeypatch.setattr(near, "_broadcast", lambda *a, **kw: published.append((a, kw)))
    ext = app.extensions["dataroom_cache"].extension

    @app.get("/locked")
    @ext.cached(shared=True, lock=True)
    def locked() -> Any:
        return jsonify(n=1)

    try:
        client = app.test_client()
        assert client.get("/locked").headers["X-Cache"] == "MISS"
        assert client.get("/locked").headers["X-Cache"] == "HIT"
        assert published == []
        # the lock was released (by compare-and-delete, not by a DEL sent to peers)
        assert store.add(f"{prefix}:~lock:x", 1, 5)
        lock_keys = [k for k in near.inner.client.scan_iter(match=f"{prefix}:~lock:*")]
        assert lock_keys == [f"{prefix}:~lock:x".encode()]
    finally:
        store.clear()
        store.backend.close()


def test_an_entry_read_with_fewer_tags_than_it_carries_is_not_copied(
    pair: tuple[NearCache, NearCache],
) -> None:
    """An entry stored with automatic dependencies carries tags its readers do not know
    (they ask with the declared ones): a copy indexed by the tags asked about would never
    be dropped by an invalidation of the others (issue 17). It is served from Redis, not
    copied; the invalidation of a tag only the entry knows reaches every reader."""
    a, b = pair
    key = f"{a.channel}:auto"
    full = tuple(sorted((*TAGS, "~r:files:1")))
    got, _ = a.get(key, TAGS)
    assert got is None
    assert a.set(key, b"v1", 60, full, a.versions(full))
    assert b.get(key, TAGS)[0] == b"v1"  # a hit (get.lua: the entry's own tags)
    assert key not in b._copies.entries  # not copied under the wrong tags
    a.invalidate(["~r:files:1"])
    assert b.get(key, TAGS)[0] is None
