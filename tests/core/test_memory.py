"""The in-process backend: thread safety, LRU bound on entries and on tag tokens."""

from __future__ import annotations

import random
import threading
import time

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache, cache_get, cache_set
from flask_dataroom_cache.backends.memory import MemoryBackend
from flask_dataroom_cache.tags import normalize_tags

from .conftest import memory_backend_of


def test_lru_bound_one_million_sets() -> None:
    bound = 10_000
    backend = MemoryBackend(bound)
    tags = normalize_tags(["file:list"])
    versions = backend.versions(tags)
    payload = b'J"v"'
    start = time.perf_counter()
    set_ = backend.set
    for i in range(1_000_000):
        set_(f"k{i}", payload, 300, tags, versions)
    elapsed = time.perf_counter() - start
    assert len(backend._entries) <= bound
    assert backend.info()["keys"] == bound
    # The most recent survive, the oldest were evicted.
    assert backend.get("k999999", tags)[0] == payload
    assert backend.get("k0", tags)[0] is None
    assert elapsed < 20, elapsed  # budget guard, not a performance assertion


def test_lru_keeps_recently_read_entries() -> None:
    backend = MemoryBackend(3)
    tags = normalize_tags(None)
    v = backend.versions(tags)
    for k in "abc":
        backend.set(k, b"J1", 60, tags, v)
    assert backend.get("a", tags)[0] is not None  # a is now the most recent
    backend.set("d", b"J1", 60, tags, v)
    assert backend.get("b", tags)[0] is None
    assert backend.get("a", tags)[0] is not None


def test_tag_tokens_are_bounded_and_eviction_is_safe() -> None:
    backend = MemoryBackend(100, max_tags=1000)
    tags = normalize_tags(["folder:victim/contents"])
    versions = backend.versions(tags)
    assert backend.set("victim", b'J"v"', 60, tags, versions)
    for i in range(50_000):
        backend.invalidate([f"t:{i}"])
        backend.versions([f"u:{i}"])
    assert len(backend._tags) <= 1000
    # The victim's tag token was evicted: a miss, never a stale hit, and never the same token.
    assert backend.get("victim", tags)[0] is None
    assert backend.versions(tags) != versions


def test_config_bound_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = Flask("bound")
    app.config.update(CACHE_MAX_ENTRIES=10, REDIS_URL=None)
    DataRoomCache(app)
    with app.app_context():
        for i in range(100):
            assert cache_set(f"k{i}", i)
        assert len(memory_backend_of(app)._entries) == 10
        assert cache_get("k99") == 99 and cache_get("k0") is None


def test_threads_hammering_the_memory_backend() -> None:
    """Mixed set/get/get_or_set/delete/invalidate from many threads: no exception, the
    bound holds, and every hit returns the value written for that key."""
    backend = MemoryBackend(200, max_tags=300)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(4000):
                k = f"k{rnd.randrange(500)}"
                tags = normalize_tags([f"t:{rnd.randrange(20)}"])
                op = rnd.random()
                if op < 0.5:
                    payload, versions = backend.get(k, tags)
                    if payload is not None:
                        assert payload == k.encode(), (payload, k)
                    elif versions is not None and rnd.random() < 0.8:
                        backend.set(k, k.encode(), 60, tags, versions)
                elif op < 0.75:
                    backend.set(k, k.encode(), 60, tags, backend.versions(tags))
                elif op < 0.9:
                    backend.invalidate([f"t:{rnd.randrange(20)}", f"x:{rnd.randrange(10**6)}"])
                else:
                    backend.delete(k)
                assert len(backend._entries) <= 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(backend._entries) <= 200 and len(backend._tags) <= 300
    backend.invalidate(["t:1"])  # the lock was released every time
