"""The view lock (``lock=True``) is released only by its holder (compare-and-delete), its
TTL is an option, and releasing it never publishes a near-cache invalidation (issue 12
item 7)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import jsonify

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache import flights as flights_module
from flask_dataroom_cache.backends.memory import MemoryBackend
from flask_dataroom_cache.keys import build_key
from flask_dataroom_cache.views import flight as flight_module

from .conftest import ViewsApp


def _lock_key(va: ViewsApp, endpoint: str) -> str:
    prefix = va.store.settings.key_prefix
    key = build_key(prefix, "~view", endpoint, {"~h": "localhost"})
    return f"{prefix}:~lock:{key[len(prefix) + 1 :]}"


def test_backend_release_deletes_only_its_own_token(make_app: Any) -> None:
    """On every backend the app builds (the breaker over memory, fakeredis or Redis):
    a holder whose lock expired cannot remove the next holder's lock."""
    app, _ = make_app()
    backend = DataRoomCache.state(app).store.backend
    key = f"{DataRoomCache.state(app).settings.key_prefix}:~lock:x"
    assert backend.add(key, b"A", 5)
    assert backend.release(key, b"A")  # our own: released
    assert backend.add(key, b"A", 5)
    backend.delete(key)  # A's lock expired (what a TTL does)
    assert backend.add(key, b"B", 5)  # the next holder
    assert not backend.release(key, b"A")  # A finishes late: B's lock stays
    assert not backend.add(key, b"C", 5)
    assert backend.release(key, b"B")
    assert not backend.release(key, b"B")  # absent: nothing to release
    assert backend.add(key, b"C", 5)


def test_memory_release_after_real_expiry() -> None:
    now = [0.0]
    backend = MemoryBackend(clock=lambda: now[0])
    assert backend.add("k", b"A", 1)
    now[0] = 1.5  # A's lock expired
    assert backend.add("k", b"B", 1)
    assert not backend.release("k", b"A")
    assert not backend.add("k", b"C", 1)
    now[0] = 3.0
    assert not backend.release("k", b"B")  # expired: gone, nothing released


def test_expired_holder_does_not_release_the_next_holders_lock(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/slow")
    @va.cache.cached(shared=True, lock=True)
    def slow() -> Any:
        va.calls["slow"] += 1
        lock_key = _lock_key(va, "slow")
        # this request ran past the lock's TTL: the lock expired and another process
        # took it
        va.store.backend.delete(lock_key)
        assert va.store.add(lock_key, "next holder", 5)
        return jsonify(n=1)

    assert va.get("/slow").headers["X-Cache"] == "MISS"
    with va.app.app_context():
        assert not va.store.add(_lock_key(va, "slow"), 1, 5)  # still the next holder's


def test_lock_timeout_option_sets_the_lock_ttl(
    views_app: Any, cache_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    va: ViewsApp = views_app()
    ttls: list[int] = []
    real_add = va.store.add

    def spy_add(key: str, value: Any, ttl: int) -> bool:
        if ":~lock:" in key or ":~swr:" in key:
            ttls.append(ttl)
        return real_add(key, value, ttl)

    monkeypatch.setattr(va.store, "add", spy_add)
    remaining: list[float] = []

    @va.app.get("/slow")
    @va.cache.cached(shared=True, lock=True, lock_timeout=42)
    def slow() -> Any:
        if cache_kind != "memory":
            client = va.store.backend.primary.client
            remaining.append(client.pttl(_lock_key(va, "slow")) / 1000)
        return jsonify(n=1)

    @va.app.get("/default")
    @va.cache.cached(shared=True, lock=True)
    def default() -> Any:
        return jsonify(n=1)

    va.get("/slow")
    va.get("/default")
    assert ttls == [42, flight_module.LOCK_TTL]
    if cache_kind != "memory":
        assert 40 < remaining[0] <= 42


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lock": True, "lock_timeout": 0},
        {"lock": True, "lock_timeout": 1.5},
        {"lock": True, "lock_timeout": True},
        {"lock": True, "lock_timeout": "5"},
        {"lock_timeout": 5},  # no lock to time out
    ],
)
def test_lock_timeout_is_validated(views_app: Any, kwargs: dict[str, Any]) -> None:
    va: ViewsApp = views_app()
    with pytest.raises(ValueError, match="lock_timeout"):
        va.cache.cached(shared=True, **kwargs)


def test_lock_timeout_with_stale_while_revalidate_only_is_accepted(views_app: Any) -> None:
    va: ViewsApp = views_app()
    va.cache.cached(shared=True, stale_while_revalidate=10, lock_timeout=30)


def test_waiters_poll_for_the_lock_timeout(views_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock held elsewhere is waited for as long as it can be held (its timeout), not
    LOCK_WAIT: a view declared slower than that is worth waiting for."""
    va: ViewsApp = views_app()
    clock = [0.0]
    monkeypatch.setattr(flights_module.time, "monotonic", lambda: clock[0])

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(flights_module.time, "sleep", sleep)

    @va.app.get("/slow")
    @va.cache.cached(shared=True, lock=True, lock_timeout=20)
    def slow() -> Any:
        return jsonify(n=1)

    assert va.store.add(_lock_key(va, "slow"), "other", 60)
    assert va.get("/slow").headers["X-Cache"] == "MISS"
    assert 20 <= clock[0] < 21
