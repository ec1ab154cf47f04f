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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MODULES = [
    "bench_core",
    "bench_tracking",
    "bench_autowrite",
    "bench_views",
    "bench_async",
    "bench_example",
    "bench_scale",
    "bench_ops",
    "bench_signals",
    "bench_observability",
    "bench_memoize",
    "bench_autotags",
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


# -- shared by the Redis benchmarks (bench_core, bench_scale) ---------------------------

#: A typical cached listing: 20 files of a folder (about 2 KB of JSON).
PAYLOAD: dict[str, Any] = {
    "items": [
        {
            "id": i,
            "name": f"quarterly-report-{i:03d}.pdf",
            "size": 1024 * i,
            "folder_id": 7,
            "data_room_id": 1,
            "created_at": "2024-01-02T03:04:05",
        }
        for i in range(20)
    ],
    "total": 20,
}


def make_app(redis_url: str, prefix: str, **extra: Any) -> Any:
    """A Flask app with the cache on ``redis_url`` under ``prefix``."""
    from flask import Flask

    from flask_dataroom_cache import DataRoomCache

    app = Flask(f"bench_{prefix}")
    app.config.update(REDIS_URL=redis_url, CACHE_KEY_PREFIX=prefix, **extra)
    DataRoomCache().init_app(app)
    return app


@contextmanager
def pg_schema(base_url: str, prefix: str = "bench_") -> Iterator[str]:
    """A URL for a throwaway PostgreSQL schema on ``base_url``, dropped afterwards."""
    import sqlalchemy

    for scheme in ("postgres://", "postgresql://"):
        if base_url.startswith(scheme):
            base_url = "postgresql+psycopg://" + base_url[len(scheme) :]
    schema = prefix + uuid.uuid4().hex[:10]
    admin = sqlalchemy.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def temp_prefix(client: Any) -> Iterator[str]:
    """A random key prefix; every key under it is removed afterwards (SCAN + UNLINK)."""
    prefix = "bench" + uuid.uuid4().hex[:8]
    try:
        yield prefix
    finally:
        batch = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(batch), 5000):
            client.unlink(*batch[i : i + 5000])


def time_once(
    setup: Callable[[], None], op: Callable[[], None], repeats: int
) -> dict[str, float]:
    """``op`` timed once per repeat, after an untimed ``setup``; median/min/max µs."""
    samples = []
    for _ in range(repeats):
        setup()
        start = time.perf_counter()
        op()
        samples.append((time.perf_counter() - start) * 1e6)
    return {
        "median_us": round(statistics.median(samples), 3),
        "min_us": round(min(samples), 3),
        "max_us": round(max(samples), 3),
    }


def fill_raw(client: Any, store: Any, keys: list[str], tags: tuple[str, ...], body: bytes) -> None:
    """Write ``keys`` as valid entries stamped with the current tokens of ``tags``, fast
    (pipelined raw SETs of the backend's frame format, no per-key script call)."""
    from flask_dataroom_cache.backends.redis.layout import frame

    blob = frame(tags, store.backend.versions(tags), body)
    pipe = client.pipeline(transaction=False)
    for i, k in enumerate(keys):
        pipe.set(k, blob, ex=600)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
