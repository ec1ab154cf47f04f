"""Choose and build an app's backend from its settings (the extension only calls this)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Settings
from .base import Backend, BackendError
from .memory import MemoryBackend
from .resilient import ResilientBackend

__all__ = ["create_backend"]

log = logging.getLogger("flask_dataroom_cache")


def create_backend(
    settings: Settings,
    *,
    on_event: Callable[[str], None] | None = None,
) -> Backend:
    """Redis when ``REDIS_URL`` is set and reachable, else the bounded memory backend.

    * no ``REDIS_URL``: :class:`MemoryBackend` bounded by ``CACHE_MAX_ENTRIES``;
    * ``redis`` not installed: one warning naming the extra, memory backend;
    * unreachable at start: one warning; a memory cache with the short
      ``CACHE_FALLBACK_TTL`` serves while the breaker keeps probing Redis, and Redis takes
      over (the local cache is dropped) as soon as it answers. The short TTL bounds how
      long several workers, each with its own memory cache, can disagree;
    * reachable: Redis behind :class:`ResilientBackend` (breaker, queued invalidations,
      optional ``CACHE_FALLBACK=memory``), probing in the background while open.

    ``on_event(name)`` receives the resilient backend's ``"errors"`` and
    ``"fallback_serves"`` events (the metrics hook).
    """
    if not settings.redis_url or not settings.enabled:
        # Disabled: every call is a no-op miss in the store; build no client, send no PING.
        return MemoryBackend(settings.max_entries)
    try:
        from .redis import HAVE_REDIS, RedisBackend

        if not HAVE_REDIS:
            raise ImportError("redis")
    except ImportError:
        log.warning(
            "REDIS_URL is set but the redis package is not installed; using the in-memory "
            "cache. Install it with: pip install flask-dataroom-cache[redis]"
        )
        return MemoryBackend(settings.max_entries)

    primary: Backend = RedisBackend.from_url(
        settings.redis_url,
        prefix=settings.key_prefix,
        tag_ttl=settings.tag_ttl,
        socket_timeout=settings.redis_socket_timeout,
    )
    if settings.l1_max_entries > 0:
        primary = _near(primary, settings)
    reachable = True
    try:
        _ping_at_start(primary)
    except BackendError as exc:
        reachable = False
        log.warning(
            "REDIS_URL %s is unreachable (%s); using a local in-memory cache (TTL %ss) "
            "until it answers",
            _redact(settings.redis_url),
            exc,
            settings.fallback_ttl,
        )
    fallback: Backend | None = None
    if not reachable or settings.fallback == "memory":
        fallback = MemoryBackend(settings.fallback_max_entries)
    # Unreachable at start: the warning above says so (with the URL and the local cache);
    # the breaker opens silently and logs only when Redis is back.
    return ResilientBackend(
        primary,
        fallback=fallback,
        fallback_ttl=settings.fallback_ttl,
        threshold=settings.breaker_threshold,
        cooldown=settings.breaker_cooldown,
        pending_max=settings.pending_max,
        on_event=on_event,
        start_open=not reachable,
    )


#: Start-up PINGs before Redis is declared unreachable. One PING with the 0.25 s request
#: timeout is too strict here: a busy host (workers starting together) can miss it, and a
#: process that wrongly starts on its local memory cache misses the other processes'
#: invalidations until the breaker probes again. A refused connection fails at once, so a
#: really absent Redis still costs only milliseconds.
_START_PINGS = 3


def _ping_at_start(primary: Backend) -> None:
    for attempt in range(_START_PINGS):
        try:
            primary.ping()
            return
        except BackendError:
            if attempt == _START_PINGS - 1:
                raise


def _near(primary: Backend, settings: Settings) -> Backend:
    """Put the per-process L1 in front of Redis (inside the breaker, so that re-delivered
    invalidations are broadcast too)."""
    from .near import NearCache
    from .redis import ClusterRedisBackend, RedisBackend

    assert isinstance(primary, RedisBackend)
    channel = f"{settings.key_prefix}:~l1"
    script_client: Callable[[], Any] | None = None
    if isinstance(primary, ClusterRedisBackend):
        cluster = primary

        def channel_client() -> Any:
            # Every process subscribes on the node owning the channel's slot, so PUBLISH
            # (run there by the publish script) counts every subscriber. Resolved again
            # by the subscriber after each registration: once the cluster client has
            # followed a MOVED (reshard, failover), this is the new owner.
            client = cluster.client
            return client.get_redis_connection(client.get_node_from_key(channel))

        def cluster_client() -> Any:
            # The registry and publish scripts (keys in the channel's slot) go through
            # the RedisCluster client: routed by key, MOVED/ASK followed.
            return cluster.client

        script_client = cluster_client

    else:
        standalone = primary

        def channel_client() -> Any:
            return standalone.client

    return NearCache(
        primary,
        channel_client,
        script_client=script_client,
        prefix=settings.key_prefix,
        max_entries=settings.l1_max_entries,
        ttl=float(settings.ttl),
    )


def _redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log line."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
