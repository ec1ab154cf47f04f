"""Configuration: validation at init_app, environment fallback, start-up fallbacks, and
isolation of two apps in one process."""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import pytest
from flask import Flask
from scale.servers import free_port

import flask_dataroom_cache.backends as backends_pkg
from flask_dataroom_cache import (
    ConfigError,
    DataRoomCache,
    Settings,
    cache_get,
    cache_set,
    get_cache_key,
)
from flask_dataroom_cache.backends import redis as redis_backend_module
from flask_dataroom_cache.backends.memory import MemoryBackend
from flask_dataroom_cache.backends.resilient import ResilientBackend

from .conftest import memory_backend_of, scan_delete, store_of

_ENV_KEYS = (
    "REDIS_URL",
    "CACHE_TTL",
    "CACHE_ENABLED",
    "CACHE_KEY_PREFIX",
    "CACHE_MAX_ENTRIES",
    "CACHE_REDIS_SOCKET_TIMEOUT",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in _ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def _init(**config: Any) -> Flask:
    app = Flask(f"cfg_{uuid.uuid4().hex[:6]}")
    app.config.update(config)
    DataRoomCache(app)
    return app


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("flask_dataroom_cache") and r.levelno >= logging.WARNING
    ]


BAD_VALUES = [
    ("CACHE_TTL", -5),
    ("CACHE_TTL", 0),
    ("CACHE_TTL", "-5"),
    ("CACHE_TTL", "five"),
    ("CACHE_TTL", 1.5),
    ("CACHE_TTL", True),
    ("CACHE_ENABLED", "maybe"),
    ("CACHE_ENABLED", 2),
    ("CACHE_ENABLED", ""),
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "http://localhost:6379/0"),
    ("REDIS_URL", "redis://localhost:port/0"),
    ("REDIS_URL", "redis://:6379/0"),
    ("REDIS_URL", "redis://localhost:6379/zero"),
    ("REDIS_URL", "redis://localhost:70000/0"),
    ("REDIS_URL", "unix://"),
    ("REDIS_URL", 6379),
    ("CACHE_KEY_PREFIX", ""),
    ("CACHE_KEY_PREFIX", "a b"),
    ("CACHE_KEY_PREFIX", "a:b"),
    ("CACHE_KEY_PREFIX", "x" * 65),
    ("CACHE_MAX_ENTRIES", 0),
    ("CACHE_MAX_ENTRIES", "lots"),
    ("CACHE_REDIS_SOCKET_TIMEOUT", -1),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "nan"),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "inf"),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "soon"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_raises_config_error_naming_key_and_value(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        _init(**{key: value})
    message = str(info.value)
    assert key in message
    assert repr(value) in message


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, v in BAD_VALUES if isinstance(v, str)])
def test_bad_value_from_the_environment_names_key_and_value(
    key: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        _init()
    assert key in str(info.value) and repr(value) in str(info.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_defaults() -> None:
    s = Settings.from_mapping({}, environ={})
    assert (s.redis_url, s.ttl, s.enabled, s.key_prefix, s.max_entries) == (
        None,
        300,
        True,
        "dataroom",
        10_000,
    )
    assert s.redis_socket_timeout == 0.25
    assert s.tag_ttl >= 2 * s.ttl


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("FALSE", False), (" yes ", True), ("off", False), ("1", True), (0, False),
     (True, True)],
)
def test_booleans(raw: Any, expected: bool) -> None:
    assert Settings.from_mapping({"CACHE_ENABLED": raw}, environ={}).enabled is expected


def test_environment_fallback_and_config_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CACHE_TTL": "42",
        "CACHE_ENABLED": "false",
        "CACHE_KEY_PREFIX": "envpfx",
        "CACHE_MAX_ENTRIES": "77",
        "CACHE_REDIS_SOCKET_TIMEOUT": "0.5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = _init()
    s = DataRoomCache.state(app).settings
    assert (s.ttl, s.enabled, s.key_prefix, s.max_entries, s.redis_socket_timeout) == (
        42,
        False,
        "envpfx",
        77,
        0.5,
    )
    app = _init(CACHE_TTL=7, CACHE_KEY_PREFIX="cfgpfx")  # app.config wins
    s = DataRoomCache.state(app).settings
    assert (s.ttl, s.key_prefix, s.max_entries) == (7, "cfgpfx", 77)


def test_valid_urls_are_accepted() -> None:
    for url in (
        "redis://localhost",
        "redis://:secret@localhost:6380/3",
        "rediss://user:pw@cache.example.com:6379/0",
        "unix:///tmp/redis.sock",
        "redis+cluster://a:7000,b:7001",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
    ):
        assert Settings.from_mapping({"REDIS_URL": url}, environ={}).redis_url == url
    assert Settings.from_mapping({"REDIS_URL": "  "}, environ={}).redis_url is None


def test_no_redis_url_uses_bounded_memory() -> None:
    app = _init(CACHE_MAX_ENTRIES=123)
    backend = memory_backend_of(app)
    assert backend.max_entries == 123


def test_unreachable_redis_at_start_warns_once_and_uses_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there: connection refused at once
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    app = _init(REDIS_URL=f"redis://127.0.0.1:{port}/0", CACHE_KEY_PREFIX="unreach")
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert "unreachable" in warnings[0].getMessage()
    assert "memory" in warnings[0].getMessage()
    backend = store_of(app).backend
    assert isinstance(backend, ResilientBackend)
    assert isinstance(backend.fallback, MemoryBackend)
    with app.app_context():
        assert cache_set("unreach:k", {"v": 1}, tags=["t:1"])
        assert cache_get("unreach:k", ["t:1"]) == {"v": 1}  # served by the memory cache
    assert len(_warnings(caplog)) == 1  # using it did not warn again


def test_redis_not_installed_warns_once_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Make ``import redis`` fail and force our Redis module to be imported afresh.
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis."):
            monkeypatch.setitem(sys.modules, name, None)
    for name in list(sys.modules):
        if name.startswith("flask_dataroom_cache.backends.redis"):  # the package and its modules
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(backends_pkg, "redis", redis_backend_module, raising=False)
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    app = _init(REDIS_URL="redis://127.0.0.1:6379/0")
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert "pip install flask-dataroom-cache[redis]" in warnings[0].getMessage()
    assert isinstance(store_of(app).backend, MemoryBackend)
    with app.app_context():
        assert cache_set("k", 1)
        assert cache_get("k") == 1


def test_two_apps_do_not_share_state(make_app: Any, prefix: str, cache_kind: str) -> None:
    app1, _ = make_app(CACHE_TTL=60)
    app2, _ = make_app(CACHE_TTL=90, CACHE_KEY_PREFIX=prefix + "-two")
    try:
        s1, s2 = store_of(app1), store_of(app2)
        assert s1 is not s2 and s1.backend is not s2.backend and s1.metrics is not s2.metrics
        assert (s1.settings.ttl, s2.settings.ttl) == (60, 90)
        with app1.app_context():
            from flask_dataroom_cache import get_cache_key

            key1 = get_cache_key("file", 1)
            assert cache_set(key1, "one", tags=["file:1"])
        with app2.app_context():
            key2 = get_cache_key("file", 1)
            assert key2 != key1 and key2.startswith(prefix + "-two:")
            assert cache_get(key2, ["file:1"]) is None
            assert cache_set(key2, "two", tags=["file:1"])
            from flask_dataroom_cache import invalidate_tags

            invalidate_tags("file:1")
            assert cache_get(key2, ["file:1"]) is None
        with app1.app_context():
            assert cache_get(key1, ["file:1"]) == "one"  # app2's invalidation stayed in app2
        assert s1.metrics.snapshot() != s2.metrics.snapshot()
        # One extension object serving two apps keeps them apart too.
        shared = DataRoomCache()
        a, b = Flask("a"), Flask("b")
        a.config.update(CACHE_TTL=11)
        b.config.update(CACHE_TTL=22)
        shared.init_app(a)
        shared.init_app(b)
        assert DataRoomCache.state(a).settings.ttl == 11
        assert DataRoomCache.state(b).settings.ttl == 22
        assert DataRoomCache.state(a).store is not DataRoomCache.state(b).store
    finally:
        if cache_kind == "redis":
            scan_delete(store_of(app2).backend.primary.client, prefix + "-two")  # type: ignore[attr-defined]


def test_redis_client_one_pool_per_app_with_the_configured_timeouts(
    make_app: Any, cache_kind: str
) -> None:
    if cache_kind != "redis":
        pytest.skip("inspects a real redis-py client")
    app1, _ = make_app(CACHE_REDIS_SOCKET_TIMEOUT=0.5)
    app2, _ = make_app()
    c1 = store_of(app1).backend.primary.client  # type: ignore[attr-defined]
    c2 = store_of(app2).backend.primary.client  # type: ignore[attr-defined]
    assert c1.connection_pool is not c2.connection_pool
    kwargs = c1.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.5
    assert c2.connection_pool.connection_kwargs["socket_timeout"] == 2.0  # tests/core default
    pool = c1.connection_pool
    with app1.app_context():
        for i in range(20):
            cache_set(get_cache_key("k", i), i)
            assert cache_get(get_cache_key("k", i)) == i
    assert store_of(app1).backend.primary.client.connection_pool is pool  # type: ignore[attr-defined]
