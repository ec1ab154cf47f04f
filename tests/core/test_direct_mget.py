"""The Redis backend's direct paths: the hit's MGET and the commit's invalidation EVALSHA,
hand-packed and sent on a pooled connection.

Real Redis only (``REDIS_URL``): it exercises redis-py's own connection pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import REDIS_URL

from flask_dataroom_cache.backends.base import BackendError
from flask_dataroom_cache.backends.redis import RedisBackend, connect
from flask_dataroom_cache.backends.redis.resp import direct_encoding

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")

TAGS = ["dataroom:1", "folder:7/contents", "user:é ü"]


@pytest.fixture
def backend(prefix: str) -> Iterator[RedisBackend]:
    assert REDIS_URL
    backend = RedisBackend(connect(REDIS_URL, 2.0), prefix)
    assert backend._direct == ("utf-8", "strict")
    try:
        yield backend
    finally:
        client = backend.client
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


class _Counting:
    """Counts packed commands sent through redis-py's Connection class."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import redis.connection

        self.sent: list[bytes] = []
        real = redis.connection.Connection.send_packed_command

        def send(conn: Any, command: Any, check_health: bool = True) -> Any:
            self.sent.append(b"".join(command) if isinstance(command, list) else command)
            return real(conn, command, check_health)

        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", send)


def test_direct_hit_is_one_mget_and_matches_the_generic_path(
    backend: RedisBackend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{prefix}:view:ours:~u=user-é"
    payload, versions = backend.get(key, TAGS)
    assert payload is None and versions is not None
    assert backend.set(key, b"body\nwith\r\nlines", 60, TAGS, versions)
    counting = _Counting(monkeypatch)
    assert backend.get(key, TAGS) == (b"body\nwith\r\nlines", None)
    assert len(counting.sent) == 1 and counting.sent[0].startswith(b"*5\r\n$4\r\nMGET\r\n")
    # byte-identical to what redis-py packs for the same arguments
    _header, token_keys, _ = backend._plan(TAGS)
    conn = backend.client.connection_pool.get_connection()
    try:
        assert counting.sent[0] == b"".join(conn.pack_command("MGET", key, *token_keys))
    finally:
        backend.client.connection_pool.release(conn)
    # the generic path reads the same
    direct = backend._direct
    backend._direct = None
    try:
        assert backend.get(key, TAGS) == (b"body\nwith\r\nlines", None)
    finally:
        backend._direct = direct
    # an invalidation is seen by the direct path
    backend.invalidate(["folder:7/contents"])
    payload, fresh = backend.get(key, TAGS)
    assert payload is None and fresh is not None and fresh[1] != versions[1]


def test_direct_read_error_disconnects_releases_and_raises_backend_error(
    backend: RedisBackend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.connection

    key = f"{prefix}:view:x"
    backend.get(key, TAGS)  # a pooled, connected connection
    pool = backend.client.connection_pool
    disconnected: list[Any] = []
    real_disconnect = redis.connection.Connection.disconnect

    def disconnect(conn: Any, *a: Any, **k: Any) -> Any:
        disconnected.append(conn)
        return real_disconnect(conn, *a, **k)

    def boom(conn: Any, *a: Any, **k: Any) -> Any:
        raise ValueError("injected parser failure")

    monkeypatch.setattr(redis.connection.Connection, "disconnect", disconnect)
    monkeypatch.setattr(redis.connection.Connection, "read_response", boom)
    with pytest.raises(BackendError):
        backend.get(key, TAGS)
    assert disconnected
    assert not pool._in_use_connections
    monkeypatch.undo()
    # the pool recovers: the next read reconnects
    payload, versions = backend.get(key, TAGS)
    assert payload is None and versions is not None


def test_wrapped_execute_command_is_honoured(
    backend: RedisBackend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = backend.client.execute_command

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(backend.client, "execute_command", spy)
    backend.get(f"{prefix}:view:y", ["a"])
    assert "MGET" in seen


def test_direct_path_only_for_plain_clients() -> None:
    import fakeredis
    import redis

    assert direct_encoding(fakeredis.FakeRedis()) is None
    assert direct_encoding(redis.Redis(single_connection_client=False)) is None  # retries
    assert direct_encoding(redis.Redis(decode_responses=True)) is None


def test_direct_read_of_an_unreachable_server_is_a_backend_error(prefix: str) -> None:
    from scale.servers import free_port

    backend = RedisBackend(connect(f"redis://127.0.0.1:{free_port()}/0", 0.5), prefix)
    assert backend._direct is not None
    pool = backend.client.connection_pool
    try:
        for _ in range(2):
            with pytest.raises(BackendError):
                backend.get(f"{prefix}:view:z", TAGS)
            assert not pool._in_use_connections
    finally:
        backend.client.close()


def test_direct_invalidation_is_one_evalsha_identical_to_redis_py(
    backend: RedisBackend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{prefix}:view:inv"
    payload, versions = backend.get(key, TAGS)
    assert payload is None and versions is not None
    assert backend.set(key, b"v", 60, TAGS, versions)
    counting = _Counting(monkeypatch)
    backend.invalidate(["user:é ü", "folder:7/contents"])
    assert len(counting.sent) == 1
    sent = counting.sent[0]
    assert sent.startswith(b"*7\r\n$7\r\nEVALSHA\r\n")
    # byte-identical to what redis-py packs for the same arguments
    token = sent.rsplit(b"\r\n", 2)[-2].decode()
    keys = [f"{prefix}:~tagv:user:é ü", f"{prefix}:~tagv:folder:7/contents"]
    conn = backend.client.connection_pool.get_connection()
    try:
        expected = conn.pack_command(
            "EVALSHA", backend._invalidate.sha, 2, *keys, backend.tag_ttl, token
        )
    finally:
        backend.client.connection_pool.release(conn)
    assert sent == b"".join(expected)
    # both tags got the new token, the third kept its own; the entry is a miss now
    client = backend.client
    assert client.get(keys[0]) == client.get(keys[1]) == token.encode()
    assert 0 < client.ttl(keys[0]) <= backend.tag_ttl
    payload, fresh = backend.get(key, TAGS)
    assert payload is None and fresh is not None
    assert fresh[0] == versions[0] and fresh[1] == fresh[2] == token != versions[1]


def test_direct_invalidation_loads_a_missing_script(
    backend: RedisBackend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that does not know the script (restarted, SCRIPT FLUSH) answers NOSCRIPT;
    the invalidation still lands, through redis-py's Script, which loads it."""
    from flask_dataroom_cache.backends.redis.resp import bulk

    key = f"{prefix}:view:noscript"
    _, versions = backend.get(key, TAGS)
    assert versions is not None and backend.set(key, b"v", 60, TAGS, versions)
    # a digest no server knows stands in for a flushed script cache (SCRIPT FLUSH would
    # disturb every other user of this Redis)
    monkeypatch.setattr(backend, "_invalidate_sha", bulk(b"0" * 40))
    backend.invalidate(["dataroom:1"])
    payload, fresh = backend.get(key, TAGS)
    assert payload is None and fresh is not None and fresh[0] != versions[0]
    assert not backend.client.connection_pool._in_use_connections


def test_direct_invalidation_failure_is_a_backend_error(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.connection

    backend.invalidate(["a"])  # a pooled, connected connection
    pool = backend.client.connection_pool

    def boom(conn: Any, *a: Any, **k: Any) -> Any:
        raise ConnectionError("injected reset")

    monkeypatch.setattr(redis.connection.Connection, "read_response", boom)
    with pytest.raises(BackendError, match="invalidation"):
        backend.invalidate(["a"])
    assert not pool._in_use_connections
    monkeypatch.undo()
    backend.invalidate(["a"])  # reconnects
