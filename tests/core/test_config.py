"""Configuration: validation at init_app, environment fallback, start-up fallbacks, and
isolation of two apps in one process."""

from __future__ import annotations

import logging
import os
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


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("CACHE_", "DATAROOM_")) or key == "REDIS_URL":
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
    ("DATAROOM_CACHE_KEY_PREFIX", ""),
    ("DATAROOM_CACHE_KEY_PREFIX", "a b"),
    ("DATAROOM_CACHE_KEY_PREFIX", "a:b"),
    ("DATAROOM_CACHE_KEY_PREFIX", "x" * 65),
    ("CACHE_MAX_ENTRIES", 0),
    ("CACHE_MAX_ENTRIES", "lots"),
    ("CACHE_REDIS_SOCKET_TIMEOUT", -1),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "nan"),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "inf"),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "soon"),
    ("CACHE_SNAPSHOT_CLOCK_SKEW_MS", -1),
    ("CACHE_SNAPSHOT_CLOCK_SKEW_MS", "soon"),
    ("CACHE_SNAPSHOT_CLOCK_SKEW_MS", True),
    ("CACHE_AUTO_TAGS", "sometimes"),
    ("CACHE_AUTO_TAGS_MAX_ROWS", 0),
    ("CACHE_OTEL_ENABLED", "maybe"),
    ("CACHE_OTEL_TRACE_HITS", 2),
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


# -- issue 12 item 9: namespaced keys, living beside Flask-Caching ----------------------

#: (key, value, Settings attribute, parsed value): every key we read, a non-default value.
EVERY_KEY = [
    ("REDIS_URL", "redis://127.0.0.1:1/0", "redis_url", "redis://127.0.0.1:1/0"),
    ("CACHE_TTL", "42", "ttl", 42),
    ("CACHE_ENABLED", "false", "enabled", False),
    ("CACHE_KEY_PREFIX", "nspfx", "key_prefix", "nspfx"),
    ("CACHE_MAX_ENTRIES", "77", "max_entries", 77),
    ("CACHE_REDIS_SOCKET_TIMEOUT", "0.5", "redis_socket_timeout", 0.5),
    ("CACHE_BREAKER_THRESHOLD", "9", "breaker_threshold", 9),
    ("CACHE_BREAKER_COOLDOWN", "2.5", "breaker_cooldown", 2.5),
    ("CACHE_FALLBACK", "memory", "fallback", "memory"),
    ("CACHE_FALLBACK_TTL", "3", "fallback_ttl", 3),
    ("CACHE_FALLBACK_MAX_ENTRIES", "12", "fallback_max_entries", 12),
    ("CACHE_HONOR_NO_CACHE", "true", "honor_no_cache", True),
    ("CACHE_AUTO_TAGS", "false", "auto_tags", False),
    ("CACHE_L1_MAX_ENTRIES", "5", "l1_max_entries", 5),
    ("CACHE_COMPRESS_MIN_BYTES", "0", "compress_min_bytes", 0),
    ("CACHE_PENDING_MAX", "13", "pending_max", 13),
    ("CACHE_SNAPSHOT_CLOCK_SKEW_MS", "250", "snapshot_clock_skew_ms", 250.0),
    ("CACHE_AUTO_TAGS", "false", "auto_tags", False),
    ("CACHE_AUTO_TAGS_MAX_ROWS", "50", "auto_tags_max_rows", 50),
    ("CACHE_OTEL_ENABLED", "false", "otel", False),  # default: on (opentelemetry-api here)
    ("CACHE_OTEL_TRACE_HITS", "true", "otel_trace_hits", True),
]


def test_every_key_is_covered_by_the_namespace_table() -> None:
    fields = {f for f in Settings.__dataclass_fields__ if f != "extra"}
    assert {attr for _, _, attr, _ in EVERY_KEY} == fields - {"notices", "flask_caching_keys"}


@pytest.mark.parametrize(("key", "value", "attr", "expected"), EVERY_KEY)
def test_every_key_has_a_namespaced_twin_that_wins(
    key: str, value: str, attr: str, expected: Any
) -> None:
    default = getattr(Settings.from_mapping({}, environ={}), attr)
    assert default != expected
    shared_default = {key: None}  # shared key present but unset: the namespaced one is used
    for config, environ in (
        ({"DATAROOM_" + key: value}, {}),
        ({}, {"DATAROOM_" + key: value}),
        ({"DATAROOM_" + key: value, **shared_default}, {key: value}),
    ):
        assert getattr(Settings.from_mapping(config, environ=environ), attr) == expected


def test_precedence_namespaced_anywhere_before_shared_config_before_env() -> None:
    def ttl(config: dict[str, Any], environ: dict[str, str]) -> int:
        return Settings.from_mapping(config, environ=environ).ttl

    everything = (
        {"DATAROOM_CACHE_TTL": 1, "CACHE_TTL": 3},
        {"DATAROOM_CACHE_TTL": "2", "CACHE_TTL": "4"},
    )
    assert ttl(*everything) == 1  # 1. namespaced key in app.config
    assert ttl({"CACHE_TTL": 3}, {"DATAROOM_CACHE_TTL": "2", "CACHE_TTL": "4"}) == 2  # 2. env
    assert ttl({"CACHE_TTL": 3}, {"CACHE_TTL": "4"}) == 3  # 3. shared key in app.config
    assert ttl({}, {"CACHE_TTL": "4"}) == 4  # 4. shared key in the environment
    assert ttl({}, {}) == 300


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_namespaced_value_raises_naming_the_namespaced_key(key: str, value: Any) -> None:
    name = key if key.startswith("DATAROOM_") else "DATAROOM_" + key
    with pytest.raises(ConfigError) as info:
        _init(**{name: value, "CACHE_TTL": 5})
    assert str(info.value).startswith(f"{name}={value!r}")


@pytest.mark.parametrize("shared", ["myapp:", "my app", "", "x" * 65, "a:b:"])
def test_shared_prefix_invalid_for_us_warns_once_and_does_not_fail(
    shared: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    app = _init(CACHE_KEY_PREFIX=shared)
    prefix = DataRoomCache.state(app).settings.key_prefix
    assert prefix.startswith("dataroom")
    Settings.from_mapping({"DATAROOM_CACHE_KEY_PREFIX": prefix}, environ={})  # valid for us
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    message = warnings[0].getMessage()
    assert f"CACHE_KEY_PREFIX={shared!r}" in message
    assert "DATAROOM_CACHE_KEY_PREFIX" in message and repr(prefix) in message
    with app.test_request_context("/"):
        app.preprocess_request()
    assert len(_warnings(caplog)) == 1
    # Two apps with different (unusable) shared prefixes stay apart on one Redis.
    other = _init(CACHE_KEY_PREFIX="other:")
    assert DataRoomCache.state(other).settings.key_prefix != prefix or shared == "other:"


def test_shared_prefix_from_the_environment_is_tolerated_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CACHE_KEY_PREFIX", "myapp:")
    assert _init_settings().key_prefix.startswith("dataroom")
    monkeypatch.setenv("DATAROOM_CACHE_KEY_PREFIX", "mine")
    assert _init_settings().key_prefix == "mine"


def _init_settings(**config: Any) -> Settings:
    return DataRoomCache.state(_init(**config)).settings


def test_namespaced_prefix_makes_the_shared_one_irrelevant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    settings = _init_settings(CACHE_KEY_PREFIX="myapp:", DATAROOM_CACHE_KEY_PREFIX="myapp-dr")
    assert settings.key_prefix == "myapp-dr"
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("flask_caching_prefix", "ours"),
    [
        ("myapp", None),  # the same shared value for both
        ("dataroom", None),
        ("dataroom:", None),
        ("data", None),
        (None, "flask_cache_x"),  # Flask-Caching's default prefix is a prefix of ours
    ],
)
def test_shared_prefix_that_would_share_keys_with_flask_caching_is_not_used(
    flask_caching_prefix: str | None, ours: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    config: dict[str, Any] = {"CACHE_TYPE": "SimpleCache"}
    if flask_caching_prefix is not None:
        config["CACHE_KEY_PREFIX"] = flask_caching_prefix
    environ = {"CACHE_KEY_PREFIX": ours} if ours else {}
    settings = Settings.from_mapping(config, environ=environ)
    theirs = flask_caching_prefix if flask_caching_prefix is not None else "flask_cache_"
    for namespace in (settings.key_prefix + ":", "{" + settings.key_prefix + ":"):
        assert not namespace.startswith(theirs) and not theirs.startswith(namespace)
    assert len(settings.notices) == 1 and "Flask-Caching" in settings.notices[0]
    # Without Flask-Caching on the app, a valid shared prefix is ours, as before.
    del config["CACHE_TYPE"]
    if flask_caching_prefix is not None and ":" not in flask_caching_prefix:
        assert Settings.from_mapping(config, environ={}).key_prefix == flask_caching_prefix


def test_namespaced_prefix_sharing_keys_with_flask_caching_raises() -> None:
    with pytest.raises(ConfigError, match="DATAROOM_CACHE_KEY_PREFIX='myapp'"):
        Settings.from_mapping(
            {"CACHE_TYPE": "RedisCache", "CACHE_KEY_PREFIX": "myapp",
             "DATAROOM_CACHE_KEY_PREFIX": "myapp"},
            environ={},
        )
    with pytest.raises(ConfigError, match="DATAROOM_CACHE_KEY_PREFIX"):
        Settings.from_mapping(
            {"DATAROOM_CACHE_KEY_PREFIX": "flask_cache_"}, environ={}, flask_caching=True
        )


def test_flask_caching_initialised_first_with_its_defaults_keeps_our_default_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flask_caching import Cache

    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    app = Flask(f"cfg_{uuid.uuid4().hex[:6]}")
    app.config.update(CACHE_TYPE="SimpleCache")
    Cache(app)
    DataRoomCache(app)
    assert DataRoomCache.state(app).settings.key_prefix == "dataroom"
    assert _warnings(caplog) == []


# -- issue 12 item 6d: Flask-Caching-only keys without Flask-Caching -------------------


def _request(app: Flask) -> None:
    with app.test_request_context("/"):
        app.preprocess_request()


def test_flask_caching_only_keys_warn_once_when_flask_caching_is_not_on_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    app = _init(CACHE_TYPE="RedisCache", CACHE_DEFAULT_TIMEOUT=60,
                CACHE_REDIS_URL="redis://127.0.0.1:1/0", CACHE_THRESHOLD=10)
    for _ in range(3):
        _request(app)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    message = warnings[0].getMessage()
    for key in ("CACHE_TYPE", "CACHE_DEFAULT_TIMEOUT", "CACHE_REDIS_URL", "CACHE_THRESHOLD"):
        assert key in message
    assert "CACHE_DEFAULT_TIMEOUT -> CACHE_TTL" in message
    assert "CACHE_REDIS_URL -> REDIS_URL" in message
    assert "CACHE_THRESHOLD -> CACHE_MAX_ENTRIES" in message


@pytest.mark.parametrize("order", ["flask_caching_first", "flask_caching_after"])
def test_flask_caching_only_keys_do_not_warn_when_flask_caching_is_on_the_app(
    order: str, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_caching import Cache

    caplog.set_level(logging.DEBUG, logger="flask_dataroom_cache")
    app = Flask(f"cfg_{uuid.uuid4().hex[:6]}")
    app.config.update(CACHE_TYPE="SimpleCache", CACHE_DEFAULT_TIMEOUT=60)
    if order == "flask_caching_first":
        Cache(app)
        DataRoomCache(app)
    else:
        DataRoomCache(app)
        Cache(app)
    _request(app)
    assert _warnings(caplog) == []


def test_no_flask_caching_keys_no_hook() -> None:
    app = _init(CACHE_TTL=5)
    assert not app.before_request_funcs.get(None)


# -- issue 12 item 10: every key through Settings ----------------------------------------


def test_clock_skew_is_a_setting_with_environment_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.from_mapping({}, environ={}).snapshot_clock_skew_ms == 100.0
    monkeypatch.setenv("CACHE_SNAPSHOT_CLOCK_SKEW_MS", "40")
    assert _init_settings().snapshot_clock_skew_ms == 40.0
    monkeypatch.setenv("CACHE_SNAPSHOT_CLOCK_SKEW_MS", "later")
    with pytest.raises(ConfigError, match=r"^CACHE_SNAPSHOT_CLOCK_SKEW_MS='later'"):
        _init()


def test_tracker_reads_the_clock_skew_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_sqlalchemy import SQLAlchemy

    monkeypatch.setenv("DATAROOM_CACHE_SNAPSHOT_CLOCK_SKEW_MS", "40")
    app = Flask(f"cfg_{uuid.uuid4().hex[:6]}")
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://")
    SQLAlchemy(app)
    DataRoomCache(app)
    assert DataRoomCache.state(app).tracker.snapshot.skew == 0.04


def test_only_config_py_reads_app_config_or_the_environment() -> None:
    import pathlib
    import re

    import flask_dataroom_cache

    root = pathlib.Path(flask_dataroom_cache.__file__).parent
    key = r"[\"'](?:DATAROOM_)?(?:CACHE_[A-Z0-9_]+|REDIS_URL)[\"']"
    reads = re.compile(
        r"\bos\.environ\b|\bgetenv\("  # the environment, for any key
        rf"|\.config\s*(?:\.get\s*\(|\.setdefault\s*\(|\[)\s*{key}"  # app.config[KEY]
        rf"|{key}\s*(?:\bin\b|\])"  # KEY in mapping, mapping[KEY]
    )
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "config.py" and path.parent == root:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if reads.search(line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []


def test_empty_flask_caching_prefix_is_named_in_a_notice() -> None:
    settings = Settings.from_mapping({"CACHE_TYPE": "RedisCache", "CACHE_KEY_PREFIX": ""}, {})
    assert settings.key_prefix == "dataroom"
    assert any("empties the whole Redis database" in n for n in settings.notices)


def test_leftover_cache_type_without_the_flask_caching_package_keeps_the_shared_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flask_dataroom_cache.config as config_module

    config = {"CACHE_TYPE": "RedisCache", "CACHE_KEY_PREFIX": "myapp"}
    assert Settings.from_mapping(config, environ={}).key_prefix != "myapp"  # installed here
    monkeypatch.setattr(config_module, "_flask_caching_installed", lambda: False)
    settings = Settings.from_mapping(config, environ={})
    assert settings.key_prefix == "myapp" and settings.notices == ()
    assert settings.flask_caching_keys == ("CACHE_TYPE",)
