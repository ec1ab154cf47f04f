"""Shared fixtures: every cache test runs on memory and fakeredis, and on a real Redis
when ``REDIS_URL`` is set; every database test runs on SQLite, and on PostgreSQL when
``DATABASE_URL`` is set.

Isolation on shared servers: each test gets its own random key prefix (never FLUSHDB:
other test runs may share the database) and each PostgreSQL test session its own schema.
With ``REQUIRE_SERVICES=1`` (CI) a configured service that does not answer fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.backends import redis as redis_backend_module

REDIS_URL = os.environ.get("REDIS_URL") or None
DATABASE_URL = os.environ.get("DATABASE_URL") or None
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"

CACHE_KINDS = ["memory", "fakeredis"] + (["redis"] if REDIS_URL else [])
DB_KINDS = ["sqlite"] + (["postgresql"] if DATABASE_URL else [])


def _check_services() -> None:
    import redis
    import sqlalchemy

    if REDIS_URL:
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except Exception as exc:  # pragma: no cover - depends on the machine
            pytest.exit(f"REDIS_URL={REDIS_URL} does not answer: {exc}", returncode=3)
    if DATABASE_URL:
        try:
            with sqlalchemy.create_engine(DATABASE_URL).connect() as conn:
                conn.exec_driver_sql("select 1")
        except Exception as exc:  # pragma: no cover
            pytest.exit(f"DATABASE_URL={DATABASE_URL} does not answer: {exc}", returncode=3)


def pytest_configure(config: pytest.Config) -> None:
    # The package's own pytest plugin (dataroom_cache fixtures): pytest loads it through the
    # pytest11 entry point of the installed package; an install made before the entry point
    # existed (editable, metadata not rebuilt) does not declare it, so load it by module.
    if not config.pluginmanager.has_plugin("dataroom_cache"):
        config.pluginmanager.import_plugin("flask_dataroom_cache.pytest_plugin")


def pytest_sessionstart(session: pytest.Session) -> None:
    if REDIS_URL or DATABASE_URL:
        _check_services()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or concurrent test run) uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def fake_server() -> Any:
    import fakeredis

    return fakeredis.FakeServer()


@pytest.fixture(params=CACHE_KINDS)
def cache_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cache_config(
    cache_kind: str, prefix: str, fake_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """App config selecting the backend under test; cleans its keys afterwards."""
    config: dict[str, Any] = {"CACHE_KEY_PREFIX": prefix, "REDIS_URL": None}
    monkeypatch.delenv("REDIS_URL", raising=False)
    if cache_kind == "fakeredis":
        import fakeredis

        def fake_connect(url: str, socket_timeout: float) -> Any:
            return fakeredis.FakeRedis(server=fake_server)

        monkeypatch.setattr(redis_backend_module, "connect", fake_connect)
        config["REDIS_URL"] = "redis://fakeredis:6379/0"
    elif cache_kind == "redis":
        config["REDIS_URL"] = REDIS_URL
    yield config
    if cache_kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)  # type: ignore[arg-type]
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


@pytest.fixture
def make_app(cache_config: dict[str, Any]) -> Callable[..., tuple[Flask, DataRoomCache]]:
    """Build a Flask app with the cache under test; extra config as keyword arguments."""

    def factory(**extra: Any) -> tuple[Flask, DataRoomCache]:
        app = Flask(f"test_{uuid.uuid4().hex[:6]}")
        app.config.update(TESTING=True, **cache_config)
        app.config.update(extra)
        ext = DataRoomCache()
        ext.init_app(app)
        return app, ext

    return factory


@pytest.fixture
def app(make_app: Callable[..., tuple[Flask, DataRoomCache]]) -> Iterator[Flask]:
    flask_app, _ = make_app()
    with flask_app.app_context():
        yield flask_app


# -- databases ------------------------------------------------------------------------


@contextmanager
def pg_schema(base_url: str, prefix: str = "t_") -> Iterator[str]:
    """A URL for a fresh PostgreSQL schema on ``base_url`` (dropped afterwards), so test
    runs sharing one database never see each other's tables."""
    import sqlalchemy

    for scheme in ("postgres://", "postgresql://"):
        if base_url.startswith(scheme):
            base_url = "postgresql+psycopg://" + base_url[len(scheme) :]
    schema = prefix + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=DB_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A SQLAlchemy URL for an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    assert DATABASE_URL is not None
    with pg_schema(DATABASE_URL) as url:
        yield url


# -- signals ----------------------------------------------------------------------------
@pytest.fixture
def listen() -> Iterator[Callable[[Any, Flask], list[dict[str, Any]]]]:
    """``listen(signal, app)``: the keyword arguments of every send of ``signal`` with
    ``app`` as sender, in order (disconnected at teardown)."""
    connected: list[tuple[Any, Any, Flask]] = []

    def connect(signal: Any, app: Flask) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def receiver(sender: Any, **kwargs: Any) -> None:
            assert sender is app
            seen.append(kwargs)

        signal.connect(receiver, sender=app, weak=False)
        connected.append((signal, receiver, app))
        return seen

    yield connect
    for signal, receiver, _app in connected:
        signal.disconnect(receiver)

# -- OpenTelemetry ----------------------------------------------------------------------


@pytest.fixture
def span_exporter() -> Iterator[Any]:
    """The global tracer provider set to an SDK provider exporting to memory, for one test;
    the API's globals are reset afterwards (set once per process otherwise), so no other
    test runs with a provider configured."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    def reset() -> None:  # what opentelemetry's own test utilities do between tests
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None

    reset()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        reset()
