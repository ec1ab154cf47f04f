"""Counters (hits, misses, bypasses, sets, invalidations, errors, fallback serves), the
``stats()`` dict, and optional Prometheus exposition.

Counters are kept per app (no module-level counters, so two apps in one process never mix
their numbers), in total and per endpoint. :func:`build_stats` is what ``cache.stats()``
and ``flask dataroom-cache stats`` show.

Prometheus (``pip install flask-dataroom-cache[metrics]``): :func:`register_prometheus`
adds the app to *one* collector per registry; every sample carries ``app`` and ``prefix``
labels, so several apps can share a registry (or each have its own
``CollectorRegistry``) without a duplicated-timeseries error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .state import CacheState

__all__ = [
    "COUNTERS",
    "OTHER_ENDPOINT",
    "PUBLISH_INTERVAL",
    "Metrics",
    "StatsPublisher",
    "build_stats",
    "merge_stats",
    "read_published",
    "register_prometheus",
]

log = logging.getLogger("flask_dataroom_cache")

#: Seconds between two snapshots a process publishes to Redis (for ``stats --all``).
PUBLISH_INTERVAL = 10.0

COUNTERS = (
    "hits",
    "misses",
    "bypasses",
    "sets",
    "set_rejected",
    "invalidations",
    "deferred_invalidations",
    "errors",
    "fallback_serves",
    "stale_hits",
)

#: Endpoint label for counts made outside a view, or beyond ``max_endpoints``.
OTHER_ENDPOINT = "_other"


def _request_endpoint() -> str | None:
    from flask import has_request_context, request

    if has_request_context():
        return request.endpoint
    return None


class Metrics:
    """Thread-safe counters, in total and per endpoint (bounded: ``max_endpoints``)."""

    def __init__(self, max_endpoints: int = 1000) -> None:
        self.max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self._total: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._by_endpoint: dict[str, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COUNTERS, 0)
        )

    def incr(self, name: str, amount: int = 1, endpoint: str | None = None) -> None:
        with self._lock:
            self._total[name] = self._total.get(name, 0) + amount
            if endpoint is not None:
                if (
                    endpoint not in self._by_endpoint
                    and len(self._by_endpoint) >= self.max_endpoints
                ):
                    return  # counted in the total only (reported under OTHER_ENDPOINT)
                per = self._by_endpoint[endpoint]
                per[name] = per.get(name, 0) + amount

    def backend_event(self, name: str) -> None:
        """Hook for the backend (``errors``, ``fallback_serves``): attributed to the
        current request's endpoint, if any."""
        self.incr(name, endpoint=_request_endpoint())

    def reset(self) -> None:
        with self._lock:
            self._total = dict.fromkeys(COUNTERS, 0)
            self._by_endpoint.clear()

    @staticmethod
    def _ratio(counts: dict[str, int]) -> float | None:
        looked = counts.get("hits", 0) + counts.get("misses", 0)
        return round(counts.get("hits", 0) / looked, 4) if looked else None

    def counts(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Raw ``(total, per_endpoint)`` copies."""
        with self._lock:
            return dict(self._total), {n: dict(c) for n, c in self._by_endpoint.items()}

    def snapshot(self) -> dict[str, Any]:
        total, per = self.counts()
        return {
            "total": {**total, "hit_ratio": self._ratio(total)},
            "endpoints": {n: {**c, "hit_ratio": self._ratio(c)} for n, c in per.items()},
        }


def backend_stats(state: CacheState) -> dict[str, Any]:
    """The backend section of ``stats()``: kind, breaker state and counters."""
    backend = state.store.backend
    out: dict[str, Any] = {
        "name": backend.name,
        "prefix": state.settings.key_prefix,
        "enabled": state.settings.enabled,
        "breaker": "closed",
        "pending_invalidations": 0,
        "fallback_serves": 0,
    }
    breaker = getattr(backend, "breaker_stats", None)
    if callable(breaker):
        info = breaker()
        out["breaker"] = info.pop("state")
        out.update(info)
    return out


def build_stats(state: CacheState) -> dict[str, Any]:
    """``cache.stats()``: ``{"total": {...}, "endpoints": {name: {...}}, "backend": {...}}``.

    ``total`` and each endpoint hold every counter of :data:`COUNTERS` plus ``hit_ratio``
    (``None`` before the first lookup); ``backend`` holds the backend's name, prefix and
    breaker state (``closed``/``open``/``recovering``), consecutive failures, errors,
    times opened, pending invalidations, epoch bumps and fallback serves.
    """
    snap = state.metrics.snapshot()
    snap["backend"] = backend_stats(state)
    return snap


# -- cross-process stats (``flask dataroom-cache stats --all``) ---------------------------


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

    @app.teardown_request
    def _publish_stats(_exc: BaseException | None) -> None:
        publisher.maybe_publish()

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
    ratio = Metrics._ratio
    return {
        "total": {**total, "hit_ratio": ratio(total)},
        "endpoints": {n: {**c, "hit_ratio": ratio(c)} for n, c in endpoints.items()},
        "processes": sorted(processes, key=lambda p: (str(p.get("host")), p.get("pid", 0))),
    }


# -- Prometheus -----------------------------------------------------------------------

_BREAKER_STATES = ("closed", "open", "recovering")
_COLLECTORS: weakref.WeakKeyDictionary[Any, _AppsCollector] = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


class _AppsCollector:
    """One custom collector per registry, yielding the samples of every app added to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apps: dict[tuple[str, str], weakref.ReferenceType[CacheState]] = {}

    def add(self, app_label: str, state: CacheState) -> None:
        key = (app_label, state.settings.key_prefix)
        with self._lock:
            current = self._apps.get(key)
            existing = current() if current is not None else None
            if existing is not None and existing is not state:
                raise ValueError(
                    f"another app is already registered on this Prometheus registry as "
                    f"app={app_label!r} prefix={key[1]!r}; pass a different app_label"
                )
            self._apps[key] = weakref.ref(state)

    def _states(self) -> list[tuple[str, str, CacheState]]:
        with self._lock:
            out = []
            for (label, prefix), ref in list(self._apps.items()):
                state = ref()
                if state is None:
                    del self._apps[(label, prefix)]
                else:
                    out.append((label, prefix, state))
            return out

    def describe(self) -> list[Any]:
        return []  # samples vary per app: no fixed names to reserve in the registry

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ep_labels = ["app", "prefix", "endpoint"]
        be_labels = ["app", "prefix", "backend"]
        docs = {
            "hits": "Cache lookups answered from the cache",
            "misses": "Cache lookups that went to the database",
            "bypasses": "Lookups/fills skipped (uncommitted changes, no-cache)",
            "sets": "Entries stored",
            "set_rejected": "Fills refused because a tag changed during the computation",
            "invalidations": "Tags invalidated (delivered or queued)",
            "deferred_invalidations": "Tags deferred to the end of a transaction",
            "errors": "Cache backend errors",
            "fallback_serves": "Hits served by the local fallback while the backend was down",
            "stale_hits": "Stale entries served while revalidating (stale_while_revalidate)",
        }
        states = self._states()
        for _, _, state in states:  # counters added by other modules: exported too
            for name in state.metrics.counts()[0]:
                docs.setdefault(name, f"Cache counter {name}")
        families = {
            name: CounterMetricFamily(f"dataroom_cache_{name}", doc, labels=ep_labels)
            for name, doc in docs.items()
        }
        ratio = GaugeMetricFamily(
            "dataroom_cache_hit_ratio",
            "hits / (hits + misses) since start",
            labels=["app", "prefix"],
        )
        breaker = GaugeMetricFamily(
            "dataroom_cache_breaker_state",
            "1 for the breaker's current state (closed, open, recovering)",
            labels=[*be_labels, "state"],
        )
        pending = GaugeMetricFamily(
            "dataroom_cache_pending_invalidations",
            "Invalidations queued while the backend is unreachable",
            labels=be_labels,
        )
        opened = CounterMetricFamily(
            "dataroom_cache_breaker_opened", "Times the breaker opened", labels=be_labels
        )
        for label, prefix, state in states:
            total, per = state.metrics.counts()
            rest = dict(total)
            for endpoint, counts in per.items():
                for name in docs:
                    value = counts.get(name, 0)
                    families[name].add_metric([label, prefix, endpoint], value)
                    rest[name] = rest.get(name, 0) - value
            for name in docs:
                families[name].add_metric([label, prefix, OTHER_ENDPOINT], rest.get(name, 0))
            looked = total.get("hits", 0) + total.get("misses", 0)
            ratio.add_metric([label, prefix], total.get("hits", 0) / looked if looked else 0.0)
            be = backend_stats(state)
            for s in _BREAKER_STATES:
                breaker.add_metric([label, prefix, be["name"], s], float(be["breaker"] == s))
            pending.add_metric([label, prefix, be["name"]], be.get("pending_invalidations", 0))
            opened.add_metric([label, prefix, be["name"]], be.get("times_opened", 0))
        yield from families.values()
        yield from (ratio, breaker, pending, opened)


def register_prometheus(state: CacheState, app_label: str, registry: Any = None) -> Any:
    """Expose ``state``'s counters on ``registry`` (default: a new per-app registry).

    Idempotent per (registry, app). Returns the registry, e.g. for
    ``prometheus_client.generate_latest(registry)``.
    """
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "Prometheus metrics need prometheus_client: pip install 'flask-dataroom-cache[metrics]'"
        ) from None
    if registry is None:
        registry = state.prometheus_registry
        if registry is None:
            registry = state.prometheus_registry = CollectorRegistry()
    with _COLLECTORS_LOCK:
        collector = _COLLECTORS.get(registry)
        if collector is None:
            collector = _COLLECTORS[registry] = _AppsCollector()
            registry.register(collector)
    collector.add(app_label, state)
    return registry
