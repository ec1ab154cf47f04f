"""Backend trouble never reaches the caller: errors are misses, failed invalidations are
recorded (and delivered before the next read), logs are rate-limited; a disabled cache
never touches Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from scale.servers import RedisProcess, free_port, start_server, wait_until

from flask_dataroom_cache import (
    CacheStore,
    DataRoomCache,
    Settings,
    cache_delete,
    cache_get,
    cache_set,
    get_cache_key,
    get_or_set,
    invalidate_tags,
)
from flask_dataroom_cache.backends import redis as redis_backend_module
from flask_dataroom_cache.backends.base import BackendError
from flask_dataroom_cache.backends.memory import MemoryBackend

from .conftest import REDIS_KINDS, redis_backend_of, store_of


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("flask_dataroom_cache") and r.levelno >= logging.WARNING
    ]


def _break(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("injected: connection reset")

    class BrokenPipe:
        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: self if name != "execute" else boom()

    monkeypatch.setattr(client, "execute_command", boom)
    monkeypatch.setattr(client, "pipeline", lambda *a, **k: BrokenPipe())


def _errors(app: Flask) -> int:
    return int(store_of(app).metrics.snapshot()["total"]["errors"])


def test_injected_redis_errors_become_misses_and_recorded_invalidations(
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
    cache_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if cache_kind not in REDIS_KINDS:
        pytest.skip("Redis errors")
    app, _ = make_app(CACHE_BREAKER_COOLDOWN=0)
    key = get_cache_key("file", 1)
    tags = ["file:1"]
    with app.app_context():
        assert cache_set(key, "before", tags=tags)
        assert cache_get(key, tags) == "before"
        client = redis_backend_of(app).client
        caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
        with monkeypatch.context() as patch:
            _break(client, patch)
            for _ in range(200):
                assert cache_get(key, tags) is None
            assert get_or_set(key, lambda: "computed", tags=tags) == "computed"
            assert cache_set(key, "during", tags=tags) is False
            invalidate_tags("file:1")  # the data changed during the outage
            cache_delete(get_cache_key("file", 2))
            backend = store_of(app).backend
            assert backend.pending >= 2  # recorded, not dropped
            assert backend.state == "open"
            assert _errors(app) >= 1
            warnings = _warnings(caplog)
            assert 1 <= len(warnings) <= 2, warnings  # rate-limited: not one per call
        # Redis answers again: the queued invalidation is delivered before any read.
        assert cache_get(key, tags) is None  # "before" is stale: never served
        # (the breaker's background prober delivers it; reads bypass Redis until then)
        backend = store_of(app).backend
        wait_until(lambda: backend.state == "closed", 5, "breaker closed")
        assert backend.pending == 0
        assert get_or_set(key, lambda: "after", tags=tags) == "after"
        assert cache_get(key, tags) == "after"


class _Failing(MemoryBackend):
    def get(self, key: str, tags: Any) -> Any:
        raise BackendError("down")

    def versions(self, tags: Any) -> Any:
        raise BackendError("down")

    def set(self, *a: Any) -> bool:
        raise BackendError("down")

    def delete(self, key: str) -> None:
        raise BackendError("down")

    def invalidate(self, tags: Any) -> None:
        raise BackendError("down")


def test_store_turns_backend_errors_into_misses_and_logs_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CacheStore(_Failing(), Settings.from_mapping({}, environ={}))
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    for i in range(100):
        assert store.get(f"k{i}", ["t:1"]) is None
        assert store.get_or_set(f"k{i}", lambda: 5, tags=["t:1"]) == 5
        assert store.set(f"k{i}", 1, tags=["t:1"]) is False
        store.delete(f"k{i}")
        store.invalidate(["t:1"])
    assert store.metrics.snapshot()["total"]["errors"] >= 400
    assert len(_warnings(caplog)) == 1, _warnings(caplog)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_server(tmp_path, free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis_server
def test_redis_stopped_at_runtime(
    own_server: RedisProcess, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = Flask("stopped")
    app.config.update(
        REDIS_URL=f"redis://127.0.0.1:{own_server.port}/0",
        CACHE_KEY_PREFIX="p" + uuid.uuid4().hex[:8],
    )
    DataRoomCache(app)
    key = get_cache_key("file", 1)
    with app.app_context():
        assert cache_set(key, "v", tags=["file:1"])
        assert cache_get(key, ["file:1"]) == "v"
        own_server.stop()
        caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
        for _ in range(50):
            assert cache_get(key, ["file:1"]) is None
        assert get_or_set(key, lambda: "db", tags=["file:1"]) == "db"
        invalidate_tags("file:1")
        assert store_of(app).backend.pending == 1
        assert 1 <= len(_warnings(caplog)) <= 2, _warnings(caplog)
    # Stop its background prober (it retries the queued invalidation against the dead
    # server) so that it cannot touch Redis during later tests.
    store_of(app).backend.close()


def test_disabled_cache_is_a_no_op_and_never_touches_redis(
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
    cache_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real_connect = redis_backend_module.connect
    monkeypatch.setattr(
        redis_backend_module,
        "connect",
        lambda *a, **k: calls.append("connect") or real_connect(*a, **k),
    )
    real_exec = redis.Redis.execute_command
    monkeypatch.setattr(
        redis.Redis,
        "execute_command",
        lambda self, *a, **k: calls.append(str(a[0])) or real_exec(self, *a, **k),
    )
    real_pipe = redis.client.Pipeline.execute
    monkeypatch.setattr(
        redis.client.Pipeline,
        "execute",
        lambda self, *a, **k: calls.append("pipeline") or real_pipe(self, *a, **k),
    )
    app, _ = make_app(CACHE_ENABLED="false")
    computed: list[int] = []
    with app.app_context():
        key = get_cache_key("file", 1)
        assert cache_get(key, ["file:1"]) is None
        assert cache_set(key, "v", tags=["file:1"]) is False
        assert cache_get(key, ["file:1"]) is None
        for _ in range(3):
            assert get_or_set(key, lambda: computed.append(1) or "c", tags=["file:1"]) == "c"
        assert computed == [1, 1, 1]
        invalidate_tags("file:1")
        cache_delete(key)
        with pytest.raises(TypeError):
            cache_set(key, object())  # programming errors still surface
    assert calls == [], calls
