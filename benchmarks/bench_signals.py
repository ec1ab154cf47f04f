"""Signals cost nothing on the hit path when nobody listens to what a hit does.

One cached view (``@cache.cached`` per user, two tags, the memory backend: the hit path
with the least around it, where any added cost shows most), driven through the WSGI app
as ``bench_views`` does. Interleaved rounds: each round times a batch of hits with no
receiver connected to any of the extension's signals, then a batch with a receiver
connected to ``tags_invalidated`` (another signal than any a hit could send), so a
noisy neighbour slows both alike. The ratio of the fastest rounds is the verdict
(target: no measurable difference); the median of the per-round ratios follows as
information.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from . import BenchEnv, ratio_row, row
from .bench_views import _driver

GROUP = "signals"


def run(env: BenchEnv) -> list[dict[str, Any]]:
    from flask import Flask, jsonify, request

    from flask_dataroom_cache import DataRoomCache, contents_tag, dataroom_tag, signals

    app = Flask("bench_signals")
    app.config.update(REDIS_URL=None, CACHE_KEY_PREFIX="benchsig")
    cache = DataRoomCache(app)

    @cache.identity
    def current_user_id() -> str | None:
        return request.headers.get("X-User-Id")

    items = [{"id": i, "name": f"report-{i:03d}.pdf", "size": 1024 * i} for i in range(20)]

    @app.get("/rooms/<int:room_id>/folders/<int:folder_id>")
    @cache.cached(tags=lambda room_id, folder_id: [dataroom_tag(room_id), contents_tag(folder_id)])
    def listing(room_id: int, folder_id: int) -> Any:
        return jsonify(items=items)

    drive = _driver(app, "/rooms/1/folders/7")
    drive()  # the miss that fills
    heard: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    for name in signals.signals:  # nobody listens to anything at the start
        assert not signals.signals[name].receivers, f"{name} has a receiver"
    rounds = 15 if env.quick else 40
    batch = 200
    samples: dict[str, list[float]] = {"none": [], "other": []}
    for _ in range(batch):
        drive()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name in samples:
                if name == "other":
                    signals.tags_invalidated.connect(receiver, sender=app, weak=False)
                try:
                    start = time.perf_counter()
                    for _ in range(batch):
                        drive()
                    samples[name].append((time.perf_counter() - start) / batch * 1e6)
                finally:
                    if name == "other":
                        signals.tags_invalidated.disconnect(receiver)
    finally:
        if gc_was:
            gc.enable()
    hits = cache.state(app).stats()["total"]["hits"]
    assert hits >= rounds * batch * 2, "the view was not served from the cache"
    assert heard == [], "a hit sent tags_invalidated"
    notes = {
        "none": "no receiver",
        "other": "receiver on tags_invalidated",
    }
    rows = []
    for name, us in samples.items():
        stats = {
            "median_us": round(statistics.median(us), 3),
            "min_us": round(min(us), 3),
            "max_us": round(max(us), 3),
        }
        rows.append(row(GROUP, f"view hit (memory), {notes[name]}", stats))
    best = min(samples["other"]) / min(samples["none"])
    per_round = statistics.median(
        o / n for o, n in zip(samples["other"], samples["none"], strict=True)
    )
    rows += [
        ratio_row(GROUP, "hit, receiver of another signal / none (time)", best,
                  "<= 1.05x (no measurable difference)", best <= 1.05),
        ratio_row(GROUP, "hit, other receiver / none, median per-round ratio", per_round,
                  "info", True),
    ]
    cache.state(app).store.backend.close()
    return rows
