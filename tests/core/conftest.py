"""Helpers of the core suite: the store under test, the raw Redis client behind it, and a
command counter that wraps that client (no MONITOR: other test runs share the server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import CacheStore, DataRoomCache, aget_or_set, get_or_set
from flask_dataroom_cache.backends.memory import MemoryBackend
from flask_dataroom_cache.backends.redis import RedisBackend

REDIS_KINDS = ("fakeredis", "redis")


def store_of(app: Flask) -> CacheStore:
    return DataRoomCache.state(app).store


def primary_of(app: Flask) -> Any:
    """The backend doing the work (RedisBackend or MemoryBackend), under the breaker."""
    backend = store_of(app).backend
    return getattr(backend, "primary", backend)


def redis_backend_of(app: Flask) -> RedisBackend:
    primary = primary_of(app)
    assert isinstance(primary, RedisBackend), primary
    return primary


def memory_backend_of(app: Flask) -> MemoryBackend:
    primary = primary_of(app)
    assert isinstance(primary, MemoryBackend), primary
    return primary


class CommandCounter:
    """Counts the commands and round trips a redis-py (or fakeredis) client sends.

    ``execute_command`` is what every single command (and every registered ``Script``
    call: ``EVALSHA``) goes through; a pipeline is one round trip carrying its stack.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.commands: list[str] = []
        self.round_trips = 0
        self._exec = client.execute_command
        self._pipeline = client.pipeline
        client.execute_command = self._execute_command
        client.pipeline = self._make_pipeline

    def _execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        self.commands.append(str(args[0]).upper())
        return self._exec(*args, **kwargs)

    def _make_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._pipeline(*args, **kwargs)
        execute = pipe.execute
        counter = self

        def counted_execute(*a: Any, **kw: Any) -> Any:
            if pipe.command_stack:
                counter.round_trips += 1
                counter.commands.extend(str(c[0][0]).upper() for c in pipe.command_stack)
            return execute(*a, **kw)

        pipe.execute = counted_execute
        return pipe

    def reset(self) -> None:
        self.commands.clear()
        self.round_trips = 0

    def restore(self) -> None:
        self.client.execute_command = self._exec
        self.client.pipeline = self._pipeline


@pytest.fixture
def store(app: Flask) -> CacheStore:
    return store_of(app)


@pytest.fixture
def counter(app: Flask, cache_kind: str) -> Iterator[CommandCounter]:
    """A command counter on the app's Redis client (skips the memory backend)."""
    if cache_kind not in REDIS_KINDS:
        pytest.skip("counts Redis commands")
    c = CommandCounter(redis_backend_of(app).client)
    try:
        yield c
    finally:
        c.restore()


def scan_delete(client: Any, prefix: str) -> None:
    """Remove every key under ``prefix:`` (SCAN, never KEYS/FLUSHDB)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])


@pytest.fixture
def cache_config(cache_config: dict[str, Any]) -> dict[str, Any]:
    """The shared fixture, plus a generous Redis socket timeout: on a loaded CI host a slow
    reply must not turn into a miss (handled correctly, but it would fail a test that
    expects a hit). Timeouts themselves are tested with explicit values."""
    cache_config["CACHE_REDIS_SOCKET_TIMEOUT"] = 2.0
    return cache_config


@pytest.fixture(params=["get_or_set", "aget_or_set"])
def any_get_or_set(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``get_or_set``, or ``aget_or_set`` run to completion in an event loop of its own
    (its ``compute`` made an ``async def``): one test body checks both (issue 14)."""
    if request.param == "get_or_set":
        return get_or_set

    def run(key: str, compute: Callable[[], Any], ttl: int | None = None, tags: Any = None) -> Any:
        async def acompute() -> Any:
            await asyncio.sleep(0)
            return compute()

        return asyncio.run(aget_or_set(key, acompute, ttl, tags))

    return run
