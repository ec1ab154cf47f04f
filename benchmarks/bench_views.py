"""The cached-GET decorator end to end: requests per second through the WSGI app.

One Flask app, one view body (a JSON list of 200 rows read from SQLite with SQLAlchemy
Core), one real Redis (``BenchEnv.redis_url``, under a throwaway prefix removed by SCAN
afterwards), four routes driven by the same in-process WSGI loop (a prebuilt environ,
``app(environ, start_response)``, the body joined and the iterator closed):

* ``uncached``: the view itself, every request;
* ``flask-caching``: Flask-Caching's ``@cache.cached`` on its ``RedisCache``;
* ``ours``: ``@cache.cached(tags=...)``, per user (identity from a header), with tags,
  version checks, ETag and ``X-Cache``;
* ``floor``: a view returning one raw redis-py ``GET`` of the same body as bytes.

Ratios compare figures of this run only.
"""

from __future__ import annotations

import gc
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from . import BenchEnv, ratio_row, row, temp_prefix

GROUP = "views"
ROWS = 200


def _database(path: str) -> Any:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    meta = sa.MetaData()
    files = sa.Table(
        "files",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("size", sa.Integer),
        sa.Column("folder_id", sa.Integer),
        sa.Column("data_room_id", sa.Integer),
        sa.Column("mime_type", sa.String(100)),
        sa.Column("created_at", sa.String(40)),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            files.insert(),
            [
                {
                    "id": i,
                    "name": f"quarterly-report-{i:04d}.pdf",
                    "size": 1024 * i + 17,
                    "folder_id": 7,
                    "data_room_id": 1,
                    "mime_type": "application/pdf",
                    "created_at": f"2024-01-{1 + i % 28:02d}T03:04:05",
                }
                for i in range(1, ROWS + 1)
            ],
        )
    query = sa.select(files).where(files.c.folder_id == 7).order_by(files.c.id)
    return engine, query


def _driver(app: Any, path: str) -> Callable[[], bytes]:
    """One request through the WSGI app, as a server would make it (same for every route)."""
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path, method="GET", headers={"X-User-Id": "user-42"})
    base = builder.get_environ()
    builder.close()
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return None

    def call() -> bytes:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO()
        it = app(environ, start_response)
        try:
            return b"".join(it)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    call.status = status  # type: ignore[attr-defined]
    return call


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis
    from flask import Flask, Response, jsonify, request
    from flask_caching import Cache

    from flask_dataroom_cache import DataRoomCache, contents_tag, dataroom_tag

    client = redis.Redis.from_url(env.redis_url)
    client.ping()
    tmp = tempfile.mkdtemp(prefix="bench_views")
    engine, query = _database(os.path.join(tmp, "bench.db"))
    rows: list[dict[str, Any]] = []
    try:
        with temp_prefix(client) as prefix:
            app = Flask(f"bench_views_{prefix}")
            app.config.update(REDIS_URL=env.redis_url, CACHE_KEY_PREFIX=prefix)
            ours = DataRoomCache()
            ours.init_app(app)
            fc = Cache(
                app,
                config={
                    "CACHE_TYPE": "RedisCache",
                    "CACHE_REDIS_URL": env.redis_url,
                    "CACHE_KEY_PREFIX": f"{prefix}:fc:",
                    "CACHE_DEFAULT_TIMEOUT": 300,
                },
            )

            @ours.identity
            def current_user_id() -> str | None:
                return request.headers.get("X-User-Id")

            def listing(room_id: int = 1, folder_id: int = 7) -> Any:
                with engine.connect() as conn:
                    items = [dict(r._mapping) for r in conn.execute(query)]
                return jsonify(items=items, total=len(items))

            # the same URL shape (two int converters) for all four routes
            app.add_url_rule("/uncached/<int:room_id>/<int:folder_id>", "uncached", listing)
            app.add_url_rule(
                "/fc/<int:room_id>/<int:folder_id>", "fc", fc.cached(timeout=300)(listing)
            )
            app.add_url_rule(
                "/ours/<int:room_id>/<int:folder_id>",
                "ours",
                ours.cached(
                    timeout=300,
                    tags=lambda room_id, folder_id: [
                        dataroom_tag(room_id),
                        contents_tag(folder_id),
                    ],
                )(listing),
            )
            raw_key = f"{prefix}:floor"

            def floor(room_id: int, folder_id: int) -> Any:
                return Response(client.get(raw_key), mimetype="application/json")

            app.add_url_rule("/floor/<int:room_id>/<int:folder_id>", "floor", floor)

            # The same decorated view on a second app with the near cache (L1) on: an
            # extra, informational figure (no Redis round trip on a hit).
            l1_app = Flask(f"bench_views_l1_{prefix}")
            l1_app.config.update(
                REDIS_URL=env.redis_url, CACHE_KEY_PREFIX=f"{prefix}l1", CACHE_L1_MAX_ENTRIES=1000
            )
            l1_cache = DataRoomCache()
            l1_cache.init_app(l1_app)
            l1_cache.identity(current_user_id)
            l1_app.add_url_rule(
                "/ours/<int:room_id>/<int:folder_id>",
                "ours",
                l1_cache.cached(
                    timeout=300,
                    tags=lambda room_id, folder_id: [
                        dataroom_tag(room_id),
                        contents_tag(folder_id),
                    ],
                )(listing),
            )
            near = DataRoomCache.state(l1_app).store.backend.primary  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5
            while not near.l1_active and time.monotonic() < deadline:
                time.sleep(0.01)

            drivers = {
                "uncached": _driver(app, "/uncached/1/7"),
                "flask-caching": _driver(app, "/fc/1/7"),
                "ours": _driver(app, "/ours/1/7"),
                "floor": _driver(app, "/floor/1/7"),
                "ours + L1": _driver(l1_app, "/ours/1/7"),
            }
            body = drivers["uncached"]()
            client.set(raw_key, body)
            for name, drive in drivers.items():
                for _ in range(2):  # fill, then check that the hit is the same body
                    assert drive() == body, name
                    assert drive.status[-1].startswith("200"), (name, drive.status[-1])  # type: ignore[attr-defined]
            stats = ours.stats.__func__  # type: ignore[attr-defined]
            with app.app_context():
                hits_before = stats(ours)["endpoints"]["ours"]["hits"]

            notes = {
                "uncached": f"SQLAlchemy Core SELECT of {ROWS} rows + jsonify",
                "flask-caching": "Flask-Caching @cache.cached, RedisCache (pickle)",
                "ours": "@cache.cached per user, 2 tags + epoch, ETag, X-Cache",
                "floor": "view returning one raw redis-py GET of the same body",
                "ours + L1": "the same, CACHE_L1_MAX_ENTRIES=1000 (near cache, info only)",
            }
            # Interleaved rounds: every round measures the routes back to back, so a noisy
            # neighbour slows all of them alike.
            rounds = 20 if env.quick else 80
            batch = {n: 5 if n == "uncached" else 50 for n in drivers}
            samples: dict[str, list[float]] = {n: [] for n in drivers}
            for drive in drivers.values():
                for _ in range(20):
                    drive()
            gc_was = gc.isenabled()
            gc.disable()
            try:
                for _ in range(rounds):
                    for name, drive in drivers.items():
                        start = time.perf_counter()
                        for _ in range(batch[name]):
                            drive()
                        samples[name].append((time.perf_counter() - start) / batch[name] * 1e6)
            finally:
                if gc_was:
                    gc.enable()
            for name in drivers:
                us = samples[name]
                stats_us = {
                    "median_us": round(statistics.median(us), 3),
                    "min_us": round(min(us), 3),
                    "max_us": round(max(us), 3),
                }
                rows.append(
                    row(
                        GROUP,
                        f"GET {name}",
                        stats_us,
                        rps=round(1e6 / stats_us["median_us"], 1),
                        note=f"{notes[name]}; {len(body)} B body",
                    )
                )
            with app.app_context():
                served = stats(ours)["endpoints"]["ours"]["hits"] - hits_before
            assert served >= batch["ours"] * rounds, "our view was not served from the cache"

            # Verdicts use the fastest round of each route (timeit's advice: the minimum is
            # the run least disturbed by other processes; on a shared 2-core machine the
            # medians mostly measure the neighbours). The per-round median ratios follow as
            # information: on a quiet machine the two agree.
            best = {n: min(v) for n, v in samples.items()}

            def ratio(other: str, mine: str = "ours") -> float:
                return best[other] / best[mine]  # req/s ratio mine/other

            def median_ratio(other: str, mine: str = "ours") -> float:
                return statistics.median(
                    o / u for o, u in zip(samples[other], samples[mine], strict=True)
                )

            r_floor, r_fc, r_unc = ratio("floor"), ratio("flask-caching"), ratio("uncached")
            # Targets are ratios to what the same run measures (issue 13): the raw-GET floor
            # view (one redis-py GET, no cache logic) and Flask-Caching. Against the uncached
            # view the floor itself bounds what any cache can reach: reported, not targeted.
            rows += [
                ratio_row(GROUP, "ours / floor (req/s)", r_floor, ">= 0.95x", r_floor >= 0.95),
                ratio_row(GROUP, "ours / Flask-Caching (req/s)", r_fc, ">= 1.1x", r_fc >= 1.1),
                ratio_row(GROUP, "ours / uncached (req/s)", r_unc,
                          f"info (floor / uncached: {ratio('uncached', 'floor'):.2f}x)", True),
                ratio_row(GROUP, "ours + L1 / floor (req/s)", ratio("floor", "ours + L1"),
                          "info", True),
            ]
            for other in ("floor", "flask-caching", "uncached"):
                rows.append(ratio_row(GROUP, f"ours / {other}, median of per-round ratios",
                                      median_ratio(other), "info", True))
            DataRoomCache.state(l1_app).store.backend.close()
            DataRoomCache.state(app).store.backend.close()
    finally:
        engine.dispose()
        client.close()
    return rows
