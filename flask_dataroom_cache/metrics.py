"""In-process counters: hits, misses, bypasses, sets, invalidations, errors.

Counters are kept per app (no module-level state, so two apps in one process never mix
their numbers), in total and per endpoint. ``snapshot()`` is what ``cache.stats()`` and
``flask dataroom-cache stats`` show.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

__all__ = ["COUNTERS", "Metrics"]

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
)


class Metrics:
    """Thread-safe counters, in total and per endpoint (``None`` = not in a view)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._by_endpoint: dict[str, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COUNTERS, 0)
        )

    def incr(self, name: str, amount: int = 1, endpoint: str | None = None) -> None:
        with self._lock:
            self._total[name] = self._total.get(name, 0) + amount
            if endpoint is not None:
                per = self._by_endpoint[endpoint]
                per[name] = per.get(name, 0) + amount

    def reset(self) -> None:
        with self._lock:
            self._total = dict.fromkeys(COUNTERS, 0)
            self._by_endpoint.clear()

    @staticmethod
    def _ratio(counts: dict[str, int]) -> float | None:
        looked = counts.get("hits", 0) + counts.get("misses", 0)
        return round(counts.get("hits", 0) / looked, 4) if looked else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            total = dict(self._total)
            per = {name: dict(c) for name, c in self._by_endpoint.items()}
        return {
            "total": {**total, "hit_ratio": self._ratio(total)},
            "endpoints": {n: {**c, "hit_ratio": self._ratio(c)} for n, c in per.items()},
        }
