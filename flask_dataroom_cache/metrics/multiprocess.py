"""Prometheus under several worker processes (gunicorn): prometheus_client's multiprocess mode.

Behind one port, each scrape reaches one worker; a collector reading that worker's own
counters (``prometheus.py``) reports a different, partial number on every scrape. When the
environment names ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's switch, read by
``config.prometheus_multiproc_dir``), :func:`install` makes every increment of the app's
:class:`~.counters.Metrics` also increment a prometheus_client ``Counter`` (labels
``app``, ``prefix``, ``endpoint``), which in that mode lives in a per-process file of the
directory; :func:`register` builds the registry whose ``MultiProcessCollector`` sums the
files of every worker, alive or dead, at each scrape.

Why this and not the snapshots each worker publishes to Redis for ``stats --all``
(``publishing.py``): those are written every 10 s (a scrape misses up to 10 s of every
worker's counts), they expire 30 s after their worker stops (the sum would go *down* when a
worker is restarted: Prometheus would read a counter reset, and ``rate()`` would count the
remaining workers' totals again), and the memory backend has none. The files are written
at each increment (before the response leaves the worker, so a scrape sees every hit
already served), a dead worker's file stays and keeps counting in the sum (counters never
go backwards while the directory lives), and it works with any backend.

Per-process facts are live gauges (``multiprocess_mode="livesum"``, written by each worker
at the end of a request at most once a second, and at :func:`install`):
``dataroom_cache_breaker_state{state}`` is the number of live workers in each state and
``dataroom_cache_pending_invalidations`` their sum; the gunicorn ``child_exit`` hook
(``prometheus_client.multiprocess.mark_process_dead(worker.pid)``) drops a dead worker's.
``dataroom_cache_hit_ratio`` is computed at the scrape from the summed counters.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..apphooks import remove_app_hook
from ..config import ConfigError, prometheus_multiproc_dir
from .counters import backend_stats
from .prometheus import counter_doc

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from ..state import CacheState

__all__ = ["GAUGE_INTERVAL", "MultiprocessSink", "install", "register", "sink_of"]

#: Seconds between two updates of a worker's live gauges (breaker state, pending).
GAUGE_INTERVAL = 1.0
_LABELS = ("app", "prefix", "endpoint")
_BACKEND_LABELS = ("app", "prefix", "backend")
_BREAKER_STATES = ("closed", "open", "recovering")

# prometheus_client metrics are per process by nature (each one's values live in this
# process's file): one per name, whichever app of the process counts under it (the
# ``app`` and ``prefix`` labels keep the apps apart). Two metric objects of one name would
# each hold their own value for the same sample of the file and overwrite each other.
_METRICS_LOCK = threading.Lock()
_METRICS: dict[str, Any] = {}


def _metric(kind: str, name: str, doc: str, labels: tuple[str, ...]) -> Any:
    with _METRICS_LOCK:
        metric = _METRICS.get(name)
        if metric is None:
            import prometheus_client

            if kind == "counter":
                metric = prometheus_client.Counter(name, doc, labels, registry=None)
            else:
                metric = prometheus_client.Gauge(
                    name, doc, labels, registry=None, multiprocess_mode="livesum"
                )
            _METRICS[name] = metric
        return metric


class MultiprocessSink:
    """The :attr:`Metrics.sink <.counters.Metrics.sink>` of one app: each increment also
    goes to this process's file, and the live gauges are refreshed now and then."""

    def __init__(self, state: CacheState, app_label: str, path: str) -> None:
        self.state = state
        self.app_label = app_label
        self.prefix = state.settings.key_prefix
        #: The directory (``PROMETHEUS_MULTIPROC_DIR``).
        self.path = path
        self._children: dict[tuple[str, str], Any] = {}
        self._next_gauges = 0.0
        self._opened_seen = 0
        self._gauge_lock = threading.Lock()

    def __call__(self, name: str, amount: int, endpoint: str) -> None:
        child = self._children.get((name, endpoint))
        if child is None:
            counter = _metric("counter", f"dataroom_cache_{name}", counter_doc(name), _LABELS)
            child = self._children[(name, endpoint)] = counter.labels(
                self.app_label, self.prefix, endpoint
            )
        child.inc(amount)

    def update_gauges(self, force: bool = False) -> None:
        """Write this worker's breaker state and pending invalidations (and the breaker
        openings since the last update), at most every :data:`GAUGE_INTERVAL` seconds."""
        now = time.monotonic()
        if not force and now < self._next_gauges:
            return
        with self._gauge_lock:
            if not force and now < self._next_gauges:
                return
            self._next_gauges = now + GAUGE_INTERVAL
            be = backend_stats(self.state)
            labels = (self.app_label, self.prefix, be["name"])
            breaker = _metric(
                "gauge",
                "dataroom_cache_breaker_state",
                "Live worker processes whose breaker is in each state (closed, open, recovering)",
                (*_BACKEND_LABELS, "state"),
            )
            for s in _BREAKER_STATES:
                breaker.labels(*labels, s).set(float(be["breaker"] == s))
            pending = _metric(
                "gauge",
                "dataroom_cache_pending_invalidations",
                "Invalidations queued while the backend is unreachable, over the live workers",
                _BACKEND_LABELS,
            )
            pending.labels(*labels).set(be.get("pending_invalidations", 0))
            opened = int(be.get("times_opened", 0))
            if opened > self._opened_seen:
                _metric(
                    "counter", "dataroom_cache_breaker_opened", "Times the breaker opened",
                    _BACKEND_LABELS,
                ).labels(*labels).inc(opened - self._opened_seen)
                self._opened_seen = opened


def sink_of(state: CacheState) -> MultiprocessSink | None:
    """The app's sink when its counters are in multiprocess mode, else None."""
    sink = state.metrics.sink
    return sink if isinstance(sink, MultiprocessSink) else None


def install(app: Flask, state: CacheState) -> MultiprocessSink | None:
    """Mirror the app's counters into prometheus_client's multiprocess files when
    ``PROMETHEUS_MULTIPROC_DIR`` is set and prometheus_client is installed (else nothing).

    prometheus_client chooses its mode when it is imported: imported before the variable
    was set, it keeps each process's values in memory, and the sum would silently be
    one worker's; that is a :class:`ConfigError` here."""
    path = prometheus_multiproc_dir()
    if path is None:
        return None
    try:
        from prometheus_client import values
    except ImportError:  # pragma: no cover - depends on the installed extras
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} is set, but prometheus_client was imported "
            "before it was and keeps each process's counters in memory: set it in the "
            "environment of the process (e.g. gunicorn's) before it starts"
        )
    sink = MultiprocessSink(state, app.name, path)
    state.metrics.sink = sink
    sink.update_gauges(force=True)

    def _gauges(_exc: BaseException | None) -> None:
        sink.update_gauges()

    app.teardown_request(_gauges)

    def detach() -> None:
        remove_app_hook(app.teardown_request_funcs, _gauges)
        if state.metrics.sink is sink:
            state.metrics.sink = None

    state.on_uninstall(detach)
    return sink


class _SummedCollector:
    """Every worker's samples, summed by prometheus_client (``MultiProcessCollector``),
    and the hit ratio of each app computed from the sums. ``everything``: also yield the
    summed metrics (off: the registry has its own ``MultiProcessCollector``)."""

    def __init__(self, path: str, everything: bool) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._inner = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]
        self._everything = everything

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families = list(self._inner.collect())  # type: ignore[no-untyped-call]
        looked: dict[tuple[str, str], list[float]] = {}
        for family in families:
            if family.name not in ("dataroom_cache_hits", "dataroom_cache_misses"):
                continue
            slot = 0 if family.name == "dataroom_cache_hits" else 1
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels.get("app", ""), sample.labels.get("prefix", ""))
                    looked.setdefault(key, [0.0, 0.0])[slot] += sample.value
        ratio = GaugeMetricFamily(
            "dataroom_cache_hit_ratio",
            "hits / (hits + misses) over every worker since the directory was created",
            labels=["app", "prefix"],
        )
        for (app_label, prefix), (hits, misses) in sorted(looked.items()):
            total = hits + misses
            ratio.add_metric([app_label, prefix], hits / total if total else 0.0)
        if self._everything:
            yield from families
        yield ratio


def register(sink: MultiprocessSink, registry: Any = None) -> Any:
    """The registry of the summed metrics: without ``registry``, a new one (kept on the
    state: same one on every call) with every worker's samples in the directory, ours and
    the app's own; with one, only the hit ratio is added to it (its own
    ``MultiProcessCollector``, as prometheus_client documents, brings the counters)."""
    from prometheus_client import CollectorRegistry

    state = sink.state
    if registry is None:
        registry = state.prometheus_registry
        if registry is None:
            registry = state.prometheus_registry = CollectorRegistry()
            registry.register(_SummedCollector(sink.path, everything=True))
        return registry
    with _METRICS_LOCK:
        done = _REGISTERED.setdefault(registry, set())
        if sink.path not in done:
            done.add(sink.path)
            registry.register(_SummedCollector(sink.path, everything=False))
    return registry


#: The directories whose hit ratio a registry already has (one collector each).
_REGISTERED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
