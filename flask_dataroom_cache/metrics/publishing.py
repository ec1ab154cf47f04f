"""Cross-process stats: each process publishes its ``stats()`` to Redis, the CLI sums them.

``flask dataroom-cache stats --all`` reads the snapshots every live process sharing the
prefix has written (:class:`StatsPublisher`, hooked in at the end of requests by
:func:`install`) and merges them (:func:`merge_stats`). Redis (standalone or Sentinel)
only: a memory backend is per process, and Cluster has no cross-slot ``SCAN`` here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ..apphooks import remove_app_hook
from .counters import COUNTERS, build_stats, hit_ratio

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from ..state import CacheState

__all__ = [
    "PUBLISH_INTERVAL",
    "StatsPublisher",
    "install",
    "merge_stats",
    "read_published",
    "stats_key_prefix",
]

log = logging.getLogger("flask_dataroom_cache")

#: Seconds between two snapshots a process publishes to Redis (for ``stats --all``).
PUBLISH_INTERVAL = 10.0


def _raw_redis(backend: Any) -> Any:
    """The redis-py client of a standalone/Sentinel backend behind the breaker, else None."""
    inner = getattr(backend, "primary", backend)
    inner = getattr(inner, "inner", inner)  # the near cache wraps the Redis backend
    if getattr(inner, "name", None) != "redis":
        return None  # memory (per process) or Cluster (no cross-slot SCAN here)
    return getattr(inner, "client", None)


def stats_key_prefix(state: CacheState) -> str:
    return f"{state.settings.key_prefix}:~stats:"


class StatsPublisher:
    """Every ``interval`` seconds, at the end of a request, write this process's
    ``build_stats`` snapshot to Redis (``{prefix}:~stats:{host}:{pid}``, expiring after
    three intervals). One small ``SET`` per process per interval; skipped while the
    breaker is not closed, so it never waits for an unreachable Redis."""

    def __init__(
        self, state: CacheState, label: str = "app", interval: float = PUBLISH_INTERVAL
    ) -> None:
        self.state = state
        self.label = label
        self.interval = interval
        self._next = time.monotonic() + interval  # the first snapshot after one interval
        self._lock = threading.Lock()

    def maybe_publish(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        with self._lock:
            if now < self._next:
                return
            self._next = now + self.interval
        self.publish()

    def publish(self) -> bool:
        backend = self.state.store.backend
        client = _raw_redis(backend)
        if client is None or getattr(backend, "state", "closed") != "closed":
            return False
        snap = build_stats(self.state)
        host, pid = socket.gethostname(), os.getpid()
        snap["process"] = {"host": host, "pid": pid, "app": self.label, "at": time.time()}
        key = f"{stats_key_prefix(self.state)}{host}:{pid}:{self.label}"
        try:
            client.set(key, json.dumps(snap), ex=max(1, int(self.interval * 3)))
        except Exception as exc:  # never let metrics break a request
            log.debug("could not publish cache stats: %s", exc)
            return False
        return True


def install(app: Flask, state: CacheState) -> StatsPublisher:
    """Publish this app's stats periodically at the end of requests (Redis only).

    The key ends with ``{host}:{pid}:{app.name}``, so several apps of one process sharing a
    prefix do not overwrite each other's snapshot.
    """
    publisher = StatsPublisher(state, app.name)
    state.stats_publisher = publisher

    def _publish_stats(_exc: BaseException | None) -> None:
        publisher.maybe_publish()

    app.teardown_request(_publish_stats)

    def detach() -> None:
        remove_app_hook(app.teardown_request_funcs, _publish_stats)
        state.stats_publisher = None

    state.on_uninstall(detach)
    return publisher


def read_published(state: CacheState) -> list[dict[str, Any]] | None:
    """The snapshots published by every live process sharing this prefix (``None`` if
    the backend cannot hold them). Raises the client's error if Redis is unreachable."""
    client = _raw_redis(state.store.backend)
    if client is None:
        return None
    pattern = stats_key_prefix(state) + "*"  # the prefix has no glob characters
    out = []
    for key in client.scan_iter(match=pattern, count=500):
        raw = client.get(key)
        if raw:
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


def merge_stats(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum counters of several ``build_stats`` snapshots (hit ratios recomputed)."""
    total: dict[str, int] = dict.fromkeys(COUNTERS, 0)
    endpoints: dict[str, dict[str, int]] = {}
    processes = []
    for snap in snapshots:
        for name in COUNTERS:
            total[name] += int(snap.get("total", {}).get(name, 0) or 0)
        for ep, counts in snap.get("endpoints", {}).items():
            per = endpoints.setdefault(ep, dict.fromkeys(COUNTERS, 0))
            for name in COUNTERS:
                per[name] += int(counts.get(name, 0) or 0)
        be = snap.get("backend", {})
        processes.append(
            {
                **snap.get("process", {}),
                "breaker": be.get("breaker"),
                "pending_invalidations": be.get("pending_invalidations", 0),
            }
        )
    return {
        "total": {**total, "hit_ratio": hit_ratio(total)},
        "endpoints": {n: {**c, "hit_ratio": hit_ratio(c)} for n, c in endpoints.items()},
        "processes": sorted(processes, key=lambda p: (str(p.get("host")), p.get("pid", 0))),
    }
