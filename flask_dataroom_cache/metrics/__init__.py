"""Counters, the ``stats()`` dict, cross-process stats and optional Prometheus exposition.

* :mod:`.counters`: :class:`Metrics` (per-app counters, in total and per endpoint) and
  :func:`build_stats`, what ``cache.stats()`` and ``flask dataroom-cache stats`` show;
* :mod:`.publishing`: each process's snapshot published to Redis, read and merged by
  ``stats --all``;
* :mod:`.prometheus`: :func:`register_prometheus`, one collector per registry.
"""

from __future__ import annotations

from .counters import COUNTERS, OTHER_ENDPOINT, Metrics, backend_stats, build_stats
from .prometheus import register_prometheus
from .publishing import (
    PUBLISH_INTERVAL,
    StatsPublisher,
    install,
    merge_stats,
    read_published,
    stats_key_prefix,
)

__all__ = [
    "COUNTERS",
    "OTHER_ENDPOINT",
    "PUBLISH_INTERVAL",
    "Metrics",
    "StatsPublisher",
    "backend_stats",
    "build_stats",
    "install",
    "merge_stats",
    "read_published",
    "register_prometheus",
    "stats_key_prefix",
]
