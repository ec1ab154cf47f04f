"""``fresh_memory_cache`` / ``fresh_redis_cache``: the app's cache on a fresh backend for
a block, the tracker and the views still wired, everything put back afterwards; the Redis
one under its own prefix, whose keys (and only those) are removed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.testing import (
    RedisUnavailable,
    assert_hit,
    assert_miss,
    fresh_memory_cache,
    fresh_redis_cache,
)

from .conftest import NotesApp

REDIS_URL = os.environ.get("REDIS_URL") or None
AppFactory = Callable[..., tuple[Flask, DataRoomCache]]


def test_memory_block_starts_empty_and_puts_everything_back(notes_app: NotesApp) -> None:
    app = notes_app.app
    state = DataRoomCache.state(app)
    original = state.store.backend
    checks = list(state.store.bypass_checks)
    assert_miss(notes_app.get("/folders/1/notes"))
    assert_hit(notes_app.get("/folders/1/notes"))
    with fresh_memory_cache(app) as cache:
        assert cache.kind == "memory" and cache.backend is state.store.backend
        assert cache.backend is not original and cache.app is app
        assert state.store.bypass_checks == checks  # the tracker's hooks are kept
        assert_miss(notes_app.get("/folders/1/notes"))  # an empty cache
        assert_hit(notes_app.get("/folders/1/notes"))
        notes_app.add_note(1, "a")  # the tracker invalidates on the fresh backend
        fresh = notes_app.get("/folders/1/notes")
        assert_miss(fresh)
        assert fresh.get_json() == {"titles": ["a"]}
        assert cache.set("k", 1) and cache.get("k") == 1
    assert state.store.backend is original
    assert state.store.get("k") is None  # what the block stored is gone with its backend
    after = notes_app.get("/folders/1/notes")  # the block's commit reached this cache too
    assert_miss(after)
    assert after.get_json() == {"titles": ["a"]}


def test_a_disabled_cache_is_switched_on(make_app: AppFactory) -> None:
    app, _ = make_app(CACHE_ENABLED=False)
    store = DataRoomCache.state(app).store
    with fresh_memory_cache(app) as cache:
        assert store.enabled
        assert cache.set("k", 1) and cache.get("k") == 1
    assert not store.enabled


def test_helpers_bound_to_the_app(notes_app: NotesApp) -> None:
    with fresh_memory_cache(notes_app.app) as cache:
        with cache.capture_invalidations() as sent:
            notes_app.add_note(2, "a")
        sent.assert_any("folder:2/contents")
        with cache.disabled():
            assert cache.get_or_set("k", lambda: 1) == 1
        assert cache.get("k") is None
        cache.assert_fresh_after(
            lambda: notes_app.add_note(2, "b"), lambda: notes_app.get("/folders/2/notes")
        )
        with cache.capture_entries() as stored:
            cache.set("k", 2, tags=["t"])
        assert stored.keys == ["k"]
        cache.invalidate_tags("t")
        assert cache.get("k", ["t"]) is None
        assert cache.stats()["total"]["sets"] >= 1
        assert cache.clear() >= 0


@pytest.fixture(params=["fakeredis", *(["redis"] if REDIS_URL else [])])
def redis_url(
    request: pytest.FixtureRequest, fake_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A Redis for ``fresh_redis_cache``: fakeredis, and the real one when REDIS_URL is set."""
    if request.param == "fakeredis":
        import fakeredis

        from flask_dataroom_cache.backends import redis as redis_backend_module

        monkeypatch.setattr(
            redis_backend_module,
            "connect",
            lambda url, socket_timeout: fakeredis.FakeRedis(server=fake_server),
        )
        yield "redis://fakeredis:6379/0"
    else:
        assert REDIS_URL is not None
        yield REDIS_URL


def redis_keys(url: str, pattern: str) -> list[bytes]:
    from flask_dataroom_cache.backends import redis as redis_backend_module

    client = redis_backend_module.connect(url, 2.0)
    return list(client.scan_iter(match=pattern, count=1000))


def test_redis_block_uses_its_own_prefix_and_removes_its_keys(
    notes_app: NotesApp, redis_url: str
) -> None:
    app = notes_app.app
    state = DataRoomCache.state(app)
    settings, original = state.settings, state.store.backend
    assert_miss(notes_app.get("/folders/1/notes"))  # keyed under the app's prefix
    own_keys = set(redis_keys(redis_url, f"{settings.key_prefix}:*"))  # fakeredis, redis
    with fresh_redis_cache(app, redis_url) as cache:
        assert cache.kind == "redis" and cache.prefix.startswith("test")
        assert state.settings.key_prefix == cache.prefix == state.store.settings.key_prefix
        first = notes_app.get("/folders/1/notes")
        assert_miss(first)  # the key memo was cleared: the key has the new prefix
        assert_hit(notes_app.get("/folders/1/notes"))
        notes_app.add_note(1, "a")
        assert notes_app.get("/folders/1/notes").get_json() == {"titles": ["a"]}
        keys = redis_keys(redis_url, f"{cache.prefix}:*")
        assert any(b"view:folder_notes" in key for key in keys), keys
        # under the app's own prefix: only the versions of the tags the block invalidated
        added = set(redis_keys(redis_url, f"{settings.key_prefix}:*")) - own_keys
        assert all(b":~tagv:" in key for key in added), added
    assert redis_keys(redis_url, f"{cache.prefix}:*") == []  # its keys, removed
    assert state.settings is settings and state.store.settings is settings
    assert state.store.backend is original
    after = notes_app.get("/folders/1/notes")  # the app's own keys again, and fresh
    assert_miss(after)
    assert after.get_json() == {"titles": ["a"]}


def test_redis_block_with_a_given_prefix(make_app: AppFactory, redis_url: str) -> None:
    app, _ = make_app()
    with fresh_redis_cache(app, redis_url, prefix="tgiven" + os.urandom(4).hex()) as cache:
        cache.set(f"{cache.prefix}:k", 1)  # keys outside the prefix are the test's to remove
        assert redis_keys(redis_url, f"{cache.prefix}:*")
    assert redis_keys(redis_url, f"{cache.prefix}:*") == []


def test_an_unreachable_redis_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = Flask("unreachable")
    DataRoomCache(app)  # memory; the real redis-py client for the URL below
    backend = DataRoomCache.state(app).store.backend
    with (
        pytest.raises(RedisUnavailable, match=r"redis://127\.0\.0\.1:1/0 does not answer"),
        fresh_redis_cache(app, "redis://127.0.0.1:1/0"),
    ):
        pass
    assert DataRoomCache.state(app).store.backend is backend
