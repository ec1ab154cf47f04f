"""Benchmark harness: one entry point (``python -m benchmarks`` / ``make bench``).

Each ``bench_*.py`` module listed in :data:`MODULES` exposes ``run(env) -> list[dict]``;
every row is one measured figure (median, min and max over repeated runs) or one ratio
computed from figures of the *same* run. The harness prints a table and writes
``benchmarks/results/latest.json`` plus one ``{group}.json`` per module.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODULES = [
    "bench_core",
    "bench_tracking",
    "bench_views",
    "bench_example",
    "bench_scale",
    "bench_ops",
]


@dataclass
class BenchEnv:
    """What a benchmark module may use: the real services and the run's size."""

    redis_url: str = field(
        default_factory=lambda: (
            os.environ.get("BENCH_REDIS_URL")
            or os.environ.get("REDIS_URL")
            or "redis://127.0.0.1:6379/15"
        )
    )
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL"))
    quick: bool = field(default_factory=lambda: os.environ.get("BENCH_QUICK") == "1")
    repeats: int = 7


def measure(
    fn: Callable[[], Any], *, number: int, repeats: int = 7, warmup: int = 1
) -> dict[str, float]:
    """Run ``fn`` ``number`` times per repeat; return median/min/max µs per call."""
    for _ in range(warmup):
        for _ in range(max(1, number // 10)):
            fn()
    samples = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number * 1e6)
    finally:
        if gc_was:
            gc.enable()
    return {
        "median_us": round(statistics.median(samples), 3),
        "min_us": round(min(samples), 3),
        "max_us": round(max(samples), 3),
    }


def row(group: str, name: str, stats: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One result row."""
    out: dict[str, Any] = {"group": group, "name": name}
    if stats:
        out.update(stats)
    out.update(extra)
    return out


def ratio_row(group: str, name: str, value: float, target: str, ok: bool) -> dict[str, Any]:
    """A ratio between two figures of the same run, with its target and verdict."""
    return {"group": group, "name": name, "ratio": round(value, 3), "target": target, "ok": ok}
