"""The redis-py client: whether it is installed, its errors, and a client built from a URL.

:func:`connect` builds a client with short timeouts and no silent retries for a standalone
(``redis://``, ``rediss://``, ``unix://``), a Cluster (``redis+cluster://h:p,h:p``) or a
Sentinel (``redis+sentinel://h:p,h:p/service[/db]``) URL; :func:`parse_multi_host_url` and
:func:`url_options` read those URLs (``config.py`` has validated their shape).

redis-py is an optional extra: without it :data:`HAVE_REDIS` is false, :data:`redis_py` is
``None``, and :data:`RedisError`, :class:`ResponseError` and :class:`NoScriptError` still
exist (never raised), so the rest of the package imports and catches them either way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "HAVE_REDIS",
    "NoScriptError",
    "RedisError",
    "ResponseError",
    "connect",
    "parse_multi_host_url",
    "redis_py",
    "url_options",
]

try:  # the ``redis`` extra is optional
    import redis as redis_py
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisClusterException, ResponseError
    from redis.retry import Retry

    #: What every call of this package catches (and turns into a ``BackendError``).
    RedisError: tuple[type[Exception], ...] = (redis_py.RedisError, RedisClusterException)
    HAVE_REDIS = True
except ImportError:  # pragma: no cover - exercised by the missing-extra test via monkeypatch
    redis_py = None  # type: ignore[assignment]
    RedisError = (OSError,)
    HAVE_REDIS = False

    class ResponseError(Exception):  # type: ignore[no-redef]  # never raised without redis
        pass

    class NoScriptError(ResponseError):  # type: ignore[no-redef]
        pass


def connect(url: str, socket_timeout: float) -> Any:
    """Build a redis-py client for ``url`` with short timeouts and no silent retries.

    Retries would multiply the cost of an outage; the circuit breaker decides instead.
    ``redis+cluster://`` gives a :class:`redis.cluster.RedisCluster`, ``redis+sentinel://``
    the master client of :meth:`redis.sentinel.Sentinel.master_for`.
    """
    if not HAVE_REDIS:
        raise ImportError("redis is not installed: pip install flask-dataroom-cache[redis]")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "redis+cluster":
        return _connect_cluster(url, socket_timeout)
    if scheme == "redis+sentinel":
        return _connect_sentinel(url, socket_timeout)
    return redis_py.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
    )


def parse_multi_host_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any], str]:
    """Split ``scheme://[user:pass@]h:p,h:p[/path][?query]`` into hosts, credentials, path.

    Returns ``(hosts, {"username": .., "password": ..}, path)``; ``config.py`` has already
    validated the shape. A host without a port gets 6379 (26379 for a sentinel URL).
    """
    scheme, _, rest = url.partition("://")
    default_port = 26379 if scheme.lower() == "redis+sentinel" else 6379
    rest = rest.split("?", 1)[0]
    netloc, slash, path = rest.partition("/")
    creds: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if sep:
            creds["password"] = unquote(password)
            if user:
                creds["username"] = unquote(user)
        elif user:
            creds["password"] = unquote(user)
    hosts: list[tuple[str, int]] = []
    for hostport in netloc.split(","):
        host, sep, port = hostport.strip().rpartition(":")
        if not sep:
            host, port = port, str(default_port)
        hosts.append((host.strip("[]"), int(port)))
    return hosts, creds, path if slash else ""


def url_options(url: str) -> dict[str, str]:
    """The query parameters of ``url`` (``?shard_groups=16&wait_replicas=1``)."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def _connect_cluster(url: str, socket_timeout: float) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    hosts, creds, _ = parse_multi_host_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts],  # type: ignore[no-untyped-call]
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        # One retry so a MOVED/ASK redirection after a resharding or failover is followed;
        # the breaker handles real outages.
        retry=Retry(NoBackoff(), 1),
        require_full_coverage=False,
        **creds,
    )


def _connect_sentinel(url: str, socket_timeout: float) -> Any:
    from redis.sentinel import Sentinel

    hosts, creds, path = parse_multi_host_url(url)
    parts = [p for p in path.split("/") if p]
    service = parts[0]
    db = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        socket_timeout=socket_timeout,
        sentinel_kwargs={
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        },
    )
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        service,
        db=db,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
        **creds,
    )
