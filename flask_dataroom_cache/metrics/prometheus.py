"""Prometheus exposition (``pip install flask-dataroom-cache[metrics]``).

:func:`register_prometheus` adds an app to *one* collector per registry; every sample
carries ``app`` and ``prefix`` labels, so several apps can share a registry (or each have
its own ``CollectorRegistry``) without a duplicated-timeseries error. Apps are held
weakly: a dropped app leaves the registry's samples.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .counters import OTHER_ENDPOINT, backend_stats

if TYPE_CHECKING:  # pragma: no cover
    from ..state import CacheState

__all__ = ["COUNTER_DOCS", "counter_doc", "register_prometheus"]

_BREAKER_STATES = ("closed", "open", "recovering")

#: The help text of each counter (``dataroom_cache_{name}_total``); a counter another
#: module adds gets a generic one.
COUNTER_DOCS = {
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


def counter_doc(name: str) -> str:
    return COUNTER_DOCS.get(name, f"Cache counter {name}")
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
        docs = dict(COUNTER_DOCS)
        states = self._states()
        for _, _, state in states:  # counters added by other modules: exported too
            for name in state.metrics.counts()[0]:
                docs.setdefault(name, counter_doc(name))
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
    ``prometheus_client.generate_latest(registry)``. In prometheus_client's multiprocess
    mode (``PROMETHEUS_MULTIPROC_DIR``), the sum over every worker instead
    (``multiprocess.register``).
    """
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "Prometheus metrics need prometheus_client: pip install 'flask-dataroom-cache[metrics]'"
        ) from None
    from .multiprocess import register, sink_of

    sink = sink_of(state)
    if sink is not None:  # PROMETHEUS_MULTIPROC_DIR: every worker's counters, summed
        if app_label != sink.app_label:
            raise ValueError(
                f"with PROMETHEUS_MULTIPROC_DIR the app label is the app's name "
                f"({sink.app_label!r}, fixed when init_app started counting), not {app_label!r}"
            )
        return register(sink, registry)
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
