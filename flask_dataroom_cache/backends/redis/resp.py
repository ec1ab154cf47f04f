"""The hand-packed RESP fast path: hot commands packed by hand, sent on a pooled connection.

redis-py's generic ``execute_command`` (argument packing, retry wrapper, response
callbacks, observability hooks) costs more client time than the round trip itself on
loopback. So the commands a request waits for are packed here, byte for byte what redis-py
would pack, and sent with :func:`send`:

* the hit's ``MGET entry token...`` (:func:`pack_mget`; the token keys are packed once per
  tag list by the backend's plan);
* the near cache's ``MULTI MGET PTTL EXEC`` in one packet (:func:`pack_mget_pttl`);
* the commit's invalidation ``EVALSHA`` (:func:`pack_evalsha`).

Only for the clients :func:`direct_encoding` accepts, and only while nobody wraps
``execute_command`` (:func:`unwrapped`: tracing, a test's counter); every other client
takes redis-py's generic path, with the same replies.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..base import BackendError
from .connection import ResponseError, redis_py

__all__ = [
    "EXEC_REPLIES",
    "bulk",
    "direct_encoding",
    "pack_evalsha",
    "pack_mget",
    "pack_mget_pttl",
    "send",
    "unwrapped",
]

_EXECUTE_COMMAND = redis_py.Redis.execute_command if redis_py is not None else None

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"

#: The replies of :func:`pack_mget_pttl`'s packet: ``OK``, ``QUEUED``, ``QUEUED``, and the
#: ``EXEC`` array ``[MGET reply, PTTL reply]``.
EXEC_REPLIES = 4


def bulk(data: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _takes_no_arguments(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty
        or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for p in params
    )


def direct_encoding(client: Any) -> tuple[str, str] | None:
    """``(encoding, errors)`` when ``client`` is a plain :class:`redis.Redis` whose hot
    commands may skip ``execute_command``, else ``None``.

    Only a client that would not behave differently there: no subclass (fakeredis, other
    wrappers), no single-connection client, no client-side cache, no retries (``connect``
    builds clients without: the breaker decides), bytes replies.
    """
    if redis_py is None or type(client) is not redis_py.Redis:
        return None
    if getattr(client, "connection", None) is not None:
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return None
    if not hasattr(pool, "get_connection") or not hasattr(pool, "release"):
        return None
    if not _takes_no_arguments(pool.get_connection):  # redis-py < 5.3 wants a command name
        return None
    retry = client.get_retry()
    if retry is None or retry.get_retries() != 0:
        return None
    kwargs = getattr(pool, "connection_kwargs", {})
    if kwargs.get("decode_responses") or kwargs.get("protocol") not in (None, 2, "2"):
        return None
    return kwargs.get("encoding", "utf-8"), kwargs.get("encoding_errors", "strict")


def unwrapped(client: Any) -> bool:
    """True while nobody wraps ``client.execute_command`` (on its class or the instance):
    a wrapper must see every command, so then everything goes through it."""
    return type(client).execute_command is _EXECUTE_COMMAND and (
        "execute_command" not in client.__dict__
    )


def pack_mget(key: bytes, count: int, packed_keys: bytes) -> bytes:
    """``MGET key k_1 ... k_count``, the ``k_i`` already packed (``packed_keys``)."""
    return b"*%d\r\n$4\r\nMGET\r\n%b%b" % (count + 2, bulk(key), packed_keys)


def pack_mget_pttl(key: bytes, count: int, packed_keys: bytes) -> bytes:
    """``MULTI``, ``MGET key k_1 ... k_count``, ``PTTL key``, ``EXEC``: one packet, read
    with ``send(..., replies=EXEC_REPLIES)`` (atomic: the TTL is the one of the entry read)."""
    packed_key = bulk(key)
    return b"%b*%d\r\n$4\r\nMGET\r\n%b%b*2\r\n$4\r\nPTTL\r\n%b%b" % (
        _MULTI,
        count + 2,
        packed_key,
        packed_keys,
        packed_key,
        _EXEC,
    )


def pack_evalsha(sha: bytes, keys: Sequence[bytes], args: Sequence[bytes]) -> bytes:
    """``EVALSHA sha len(keys) *keys *args``; ``sha`` already packed with :func:`bulk`."""
    return b"*%d\r\n$7\r\nEVALSHA\r\n%b%b%b%b" % (
        len(keys) + len(args) + 3,
        sha,
        bulk(b"%d" % len(keys)),
        b"".join([bulk(k) for k in keys]),
        b"".join([bulk(a) for a in args]),
    )


def send(pool: Any, command: bytes, what: str, replies: int = 1) -> Any:
    """Send one pre-packed command on a connection of ``pool`` and read its reply.

    An error reply (``ResponseError``) is raised as is: the reply was read whole, the
    connection is clean. Any other error disconnects the connection (its state is
    unknown) and becomes a :class:`BackendError` naming ``what``; the connection always
    goes back to the pool. ``replies > 1``: ``command`` holds that many pipelined
    commands; their replies are returned as a list (all are read before an error reply
    is raised).
    """
    try:
        conn = pool.get_connection()  # releases the connection itself if it fails
    except Exception as exc:
        raise BackendError(f"redis {what} failed: {exc}") from exc
    try:
        # a list: send_packed_command iterates over its argument's chunks
        conn.send_packed_command([command])
        if replies == 1:
            return conn.read_response()
        out: list[Any] = []
        error: ResponseError | None = None
        for _ in range(replies):
            try:
                out.append(conn.read_response())
            except ResponseError as exc:
                error = error or exc
                out.append(None)
        if error is not None:
            raise error
        return out
    except ResponseError:
        raise
    except BaseException as exc:
        conn.disconnect()
        if isinstance(exc, Exception):
            raise BackendError(f"redis {what} failed: {exc}") from exc
        raise
    finally:
        pool.release(conn)
