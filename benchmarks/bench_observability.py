"""What tracing and Prometheus's multiprocess mode cost on the hit path: a cached view's hit
with OpenTelemetry off, installed but not configured, configured (an SDK provider), and
configured with a span on every hit; and with the counters also written to
``PROMETHEUS_MULTIPROC_DIR`` (gunicorn) or not.

Every figure is a hit of the same cached view through the WSGI app (a prebuilt environ, as
``bench_views`` drives it) on the memory backend, so nothing but the cache and Flask is
measured: the smallest hit, where an added cost shows most. Apps differ only in
``CACHE_OTEL_ENABLED`` / ``CACHE_OTEL_TRACE_HITS``. Two phases, because the global tracer
provider can be set once per process: first no provider (the API's proxy: what an app with
``opentelemetry-api`` installed and no SDK runs), then an SDK ``TracerProvider`` with one
span processor that drops everything. In each phase the apps run in alternating short
rounds (A B A B ...), and each ratio is the median of the per-round ratios to the app with
tracing off *of the same phase*. The multiprocess figures come from a child process (the
variable must be set before prometheus_client is imported): two apps there, one of them with
its counters' sink detached, in alternating rounds.

On a hit, an app with tracing on but hits not traced runs the very code of the app with
tracing off (one ``is None`` check on ``CacheStore.lookup_tracing``, None in both): its
ratio is the measurement noise, and the ``<= 1.05x`` target bounds it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import BenchEnv, measure, ratio_row, row

GROUP = "observability"


def _app(**config: Any) -> Callable[[], bytes]:
    from flask import Flask, jsonify

    from flask_dataroom_cache import DataRoomCache

    from .bench_views import _driver

    app = Flask(f"bench_otel_{uuid.uuid4().hex[:6]}")
    app.config.update(REDIS_URL=None, CACHE_KEY_PREFIX="benchotel", **config)
    cache = DataRoomCache(app)

    @app.get("/rooms/<int:room>")
    @cache.cached(shared=True, tags=lambda room: [f"dataroom:{room}"])
    def room(room: int) -> Any:
        return jsonify(room=room, items=list(range(20)))

    call = _driver(app, "/rooms/1")
    call()  # the miss that stores the entry
    status: list[str] = call.status  # type: ignore[attr-defined]
    status.clear()
    call()
    assert status == ["200 OK"]
    call.app = app  # type: ignore[attr-defined]
    return call


def _rounds(
    apps: dict[str, Callable[[], bytes]], rounds: int, number: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, call in apps.items():
            out[name].append(measure(call, number=number, repeats=1, warmup=0)["median_us"])
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_us": round(statistics.median(samples), 3),
        "min_us": round(min(samples), 3),
        "max_us": round(max(samples), 3),
    }


def _ratio(times: dict[str, list[float]], mine: str, base: str) -> float:
    return statistics.median(m / b for m, b in zip(times[mine], times[base], strict=True))


def _multiprocess_child(rounds: int, number: int) -> dict[str, list[float]]:
    """In a process started with ``PROMETHEUS_MULTIPROC_DIR``: hits with and without the
    counters written to the directory."""
    from flask_dataroom_cache import DataRoomCache

    mirrored = _app(CACHE_OTEL_ENABLED=False)
    plain = _app(CACHE_OTEL_ENABLED=False)
    assert DataRoomCache.state(mirrored.app).metrics.sink is not None  # type: ignore[attr-defined]
    DataRoomCache.state(plain.app).metrics.sink = None  # type: ignore[attr-defined]
    apps = {"mirrored": mirrored, "plain": plain}
    return _rounds(apps, rounds, number)


def _multiprocess(rounds: int, number: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as path:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=path)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_observability", str(rounds), str(number)],
            env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
            timeout=300, check=True,
        )
    times: dict[str, list[float]] = json.loads(done.stdout.splitlines()[-1])
    return times


def run(env: BenchEnv) -> list[dict[str, Any]]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    rounds = 7 if env.quick else 15
    number = 300 if env.quick else 1500
    rows: list[dict[str, Any]] = []
    note = f"view hit, memory backend, {rounds} rounds of {number}"
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        raise RuntimeError("a tracer provider is already set: run this module in its own process")

    # phase 1: opentelemetry-api installed, no SDK configured
    phase1 = _rounds(
        {"off": _app(CACHE_OTEL_ENABLED=False), "default": _app(), "hits": _app(
            CACHE_OTEL_TRACE_HITS=True)},
        rounds,
        number,
    )
    rows.append(row(GROUP, "hit, tracing off (CACHE_OTEL_ENABLED=false)", _summary(phase1["off"]),
                    note=note))
    rows.append(row(GROUP, "hit, API installed, no SDK configured", _summary(phase1["default"]),
                    note=note))
    rows.append(row(GROUP, "hit, API only, CACHE_OTEL_TRACE_HITS=true",
                    _summary(phase1["hits"]), note=note))

    # phase 2: an SDK provider configured (one processor that drops every span)
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    trace.set_tracer_provider(provider)
    phase2 = _rounds(
        {"off": _app(CACHE_OTEL_ENABLED=False), "sdk": _app(), "hits": _app(
            CACHE_OTEL_TRACE_HITS=True)},
        rounds,
        number,
    )
    rows.append(row(GROUP, "hit, tracing off, SDK configured", _summary(phase2["off"]), note=note))
    rows.append(row(GROUP, "hit, SDK configured (spans on misses only)", _summary(phase2["sdk"]),
                    note=note))
    rows.append(row(GROUP, "hit, SDK configured, CACHE_OTEL_TRACE_HITS=true (a span per hit)",
                    _summary(phase2["hits"]), note=note))
    provider.shutdown()

    multi = _multiprocess(rounds, number)
    rows.append(row(GROUP, "hit, counters only in memory (no PROMETHEUS_MULTIPROC_DIR)",
                    _summary(multi["plain"]), note=note))
    rows.append(row(GROUP, "hit, counters also in PROMETHEUS_MULTIPROC_DIR (gunicorn)",
                    _summary(multi["mirrored"]), note=note))
    mirrored = _ratio(multi, "mirrored", "plain")

    no_sdk = _ratio(phase1, "default", "off")
    with_sdk = _ratio(phase2, "sdk", "off")
    hits = _ratio(phase2, "hits", "off")
    rows += [
        ratio_row(GROUP, "hit time: API installed, no SDK / tracing off (median of rounds)",
                  no_sdk, "<= 1.05x", no_sdk <= 1.05),
        ratio_row(GROUP, "hit time: SDK configured / tracing off (median of rounds)",
                  with_sdk, "<= 1.05x", with_sdk <= 1.05),
        ratio_row(GROUP, "hit time: a span per hit / tracing off (info)", hits, "info", True),
        ratio_row(GROUP, "hit time: multiprocess counters / in-memory only (info)", mirrored,
                  "info", True),
    ]
    return rows


if __name__ == "__main__":  # the multiprocess child (see _multiprocess)
    print(json.dumps(_multiprocess_child(int(sys.argv[1]), int(sys.argv[2]))))
