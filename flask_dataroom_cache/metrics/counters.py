"""The per-app counters and the ``stats()`` dict built from them.

Counters (hits, misses, bypasses, sets, invalidations, errors, fallback serves, ...) are
kept per app (no module-level counters, so two apps in one process never mix their
numbers), in total and per endpoint (bounded: ``max_endpoints``; the rest is counted in
the total only and reported under :data:`OTHER_ENDPOINT`). :func:`build_stats` is what
``cache.stats()`` and ``flask dataroom-cache stats`` show.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..state import CacheState

__all__ = [
    "COUNTERS",
    "OTHER_ENDPOINT",
    "Metrics",
    "backend_stats",
    "build_stats",
    "hit_ratio",
]

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


def hit_ratio(counts: dict[str, int]) -> float | None:
    """``hits / (hits + misses)``, rounded; ``None`` before the first lookup."""
    looked = counts.get("hits", 0) + counts.get("misses", 0)
    return round(counts.get("hits", 0) / looked, 4) if looked else None


class Metrics:
    """Thread-safe counters, in total and per endpoint (bounded: ``max_endpoints``)."""

    def __init__(self, max_endpoints: int = 1000) -> None:
        self.max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self._total: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._by_endpoint: dict[str, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COUNTERS, 0)
        )
        #: Also given every increment, after it was counted: ``sink(name, amount,
        #: endpoint)``, the endpoint as exported (``OTHER_ENDPOINT`` for the total only).
        #: Prometheus's multiprocess mode (``multiprocess.py``); None: nothing.
        self.sink: Callable[[str, int, str], None] | None = None

    def incr(self, name: str, amount: int = 1, endpoint: str | None = None) -> None:
        with self._lock:
            self._total[name] = self._total.get(name, 0) + amount
            if endpoint is not None:
                if (
                    endpoint not in self._by_endpoint
                    and len(self._by_endpoint) >= self.max_endpoints
                ):
                    endpoint = None  # counted in the total only (reported under OTHER_ENDPOINT)
                else:
                    per = self._by_endpoint[endpoint]
                    per[name] = per.get(name, 0) + amount
        if self.sink is not None:
            self.sink(name, amount, OTHER_ENDPOINT if endpoint is None else endpoint)

    def backend_event(self, name: str) -> None:
        """Hook for the backend (``errors``, ``fallback_serves``): attributed to the
        current request's endpoint, if any."""
        self.incr(name, endpoint=_request_endpoint())

    def reset(self) -> None:
        with self._lock:
            self._total = dict.fromkeys(COUNTERS, 0)
            self._by_endpoint.clear()

    def counts(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Raw ``(total, per_endpoint)`` copies."""
        with self._lock:
            return dict(self._total), {n: dict(c) for n, c in self._by_endpoint.items()}

    def snapshot(self) -> dict[str, Any]:
        total, per = self.counts()
        return {
            "total": {**total, "hit_ratio": hit_ratio(total)},
            "endpoints": {n: {**c, "hit_ratio": hit_ratio(c)} for n, c in per.items()},
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
