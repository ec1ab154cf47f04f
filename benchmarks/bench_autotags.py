"""Automatic read dependencies (issue 17): what they cost on a hit and on a miss, and what
they do to the hit ratio of the example app.

Same run, same Redis (``BenchEnv.redis_url``, a throwaway prefix), same database
(``DATABASE_URL`` in a throwaway schema, else a SQLite file):

* **hit**: ``get_or_set`` of an entry carrying 5 automatic dependency tags (unknown to the
  reader before it reads: the entry's own tags are checked) vs one carrying 5 declared
  tags (the reader names them: Redis's ``MGET`` fast path). One round trip both.
* **miss**: a computation running 3 ORM queries (``session.get``, a foreign-key listing,
  a join) under ``get_or_set``: declared tags (tokens read once, before) vs automatic
  (each statement's new tokens read before it runs: one ``versions()`` round trip per
  statement with new tags). Target: overhead < 10% of the miss.
* **miss, tokens at the end** (the alternative design, measured for the record): the
  same capture with one ``versions()`` call at the end instead of one per statement.
* **hit ratio** of the example app's workload (listings, folders, files; one write in
  ten) with ``EXAMPLE_AUTO_TAGS=1`` vs declared tags. Meaningful once the write side
  (the tracker bumping ``~r:`` / ``~c:`` / ``~t:`` / ``~e:``) is merged: without it no
  automatic tag is ever bumped. Target: >= 0.9x.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from . import BenchEnv, measure, pg_schema, ratio_row, row

GROUP = "autotags"


def _interleaved(
    first: Any, second: Any, number: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """``measure`` of two functions in alternating rounds (a loaded machine drifts: both
    figures see the same drift), medians over the rounds."""
    a: list[dict[str, float]] = []
    b: list[dict[str, float]] = []
    for _ in range(rounds):
        a.append(measure(first, number=number, repeats=1, warmup=0))
        b.append(measure(second, number=number, repeats=1, warmup=0))

    def stats(samples: list[dict[str, float]]) -> dict[str, float]:
        values = sorted(x["median_us"] for x in samples)
        return {
            "median_us": round(statistics.median(values), 3),
            "min_us": values[0],
            "max_us": values[-1],
        }

    return stats(a), stats(b)


@contextlib.contextmanager
def _database(env: BenchEnv) -> Iterator[str]:
    if env.database_url:
        with pg_schema(env.database_url) as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"


class _Base(DeclarativeBase):
    pass


class _Folder(_Base):
    __tablename__ = "bench_folders"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))


class _File(_Base):
    __tablename__ = "bench_files"
    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_folders.id"))
    name: Mapped[str] = mapped_column(sa.String(50))


def _store_figures(env: BenchEnv, url: str) -> list[dict[str, Any]]:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_dataroom_cache import DataRoomCache, readcapture

    Base, Folder, File = _Base, _Folder, _File
    app = Flask("bench_autotags")
    prefix = "bench" + uuid.uuid4().hex[:8]
    app.config.update(SQLALCHEMY_DATABASE_URI=url, REDIS_URL=env.redis_url, CACHE_KEY_PREFIX=prefix)
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    cache = DataRoomCache(app)
    rows: list[dict[str, Any]] = []
    number = 200 if env.quick else 1000
    with app.app_context():
        Base.metadata.create_all(db.engine)
        db.session.add(Folder(id=1, name="f"))
        db.session.flush()
        db.session.add_all(File(id=i, folder_id=1, name=f"n{i}") for i in range(1, 21))
        db.session.commit()
        store = cache.state(app).store
        s = db.session

        def compute() -> list[Any]:
            f = s.get(File, 3)
            names = s.scalars(sa.select(File.name).where(File.folder_id == 1)).all()
            joined = s.execute(
                sa.select(File.name, Folder.name).join(Folder).where(Folder.id == 1)
            ).all()
            s.rollback()
            return [f.name if f else None, len(names), len(joined)]

        declared = ["~e:bench_files", "~r:bench_files:3", "~e:bench_folders", "a", "b"]
        # -- hits
        store.get_or_set("hit-auto", compute)
        store.get_or_set("hit-declared", compute, tags=declared)
        hit_auto = measure(lambda: store.get_or_set("hit-auto", compute), number=number)
        hit_declared = measure(
            lambda: store.get_or_set("hit-declared", compute, tags=declared), number=number
        )
        rows.append(row(GROUP, "hit, automatic dependencies (5 tags)", hit_auto))
        rows.append(row(GROUP, "hit, declared tags (5 tags)", hit_declared))
        rows.append(
            ratio_row(
                GROUP,
                "hit: automatic / declared",
                hit_auto["median_us"] / hit_declared["median_us"],
                "informative",
                True,
            )
        )
        # -- misses: a fresh key each call
        keys = itertools.count()
        n_miss = 20 if env.quick else 60
        miss_declared, miss_auto = _interleaved(
            lambda: store.get_or_set(f"m{next(keys)}", compute, tags=declared),
            lambda: store.get_or_set(f"m{next(keys)}", compute),
            n_miss,
            5 if env.quick else 11,
        )
        rows.append(row(GROUP, "miss, declared tags (3 queries)", miss_declared))
        rows.append(row(GROUP, "miss, automatic dependencies (3 queries)", miss_auto))
        overhead = miss_auto["median_us"] / miss_declared["median_us"] - 1.0
        rows.append(
            ratio_row(
                GROUP, "store miss overhead (3 trivial queries)", overhead, "informative", True
            )
        )

        # the alternative: one token read at the end (what it would cost, for the record)
        def end_capture() -> None:
            with store.capture_reads() as capture:
                capture.versions = lambda tags: ("",) * len(tags)  # no per-statement read
                compute()
            store.backend.versions(capture.reads.capture_tags())

        def no_capture() -> None:
            compute()

        bare, alt = _interleaved(no_capture, end_capture, n_miss, 5 if env.quick else 11)
        rows.append(row(GROUP, "compute alone (3 queries)", bare))
        rows.append(row(GROUP, "compute + capture, tokens read once at the end", alt))
        assert readcapture.current() is None
        db.session.remove()
        Base.metadata.drop_all(db.engine)
        db.engine.dispose()
        with contextlib.suppress(Exception):
            store.clear()
    return rows


@contextlib.contextmanager
def _example(env: BenchEnv, url: str, auto: bool) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """The example app on ``url`` and Redis, seeded (one room, 4 folders, 12 files):
    ``(app, client, ids)``; ``auto``: ``EXAMPLE_AUTO_TAGS=1`` (automatic dependencies
    only), else ``CACHE_AUTO_TAGS=0`` (declared tags only, as before issue 17)."""
    import io

    from example_app import create_app
    from example_app.extensions import db

    with tempfile.TemporaryDirectory() as storage:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": env.redis_url,
                "CACHE_KEY_PREFIX": "bench" + uuid.uuid4().hex[:8],
                "CACHE_AUTO_TAGS": auto,
                "EXAMPLE_AUTO_TAGS": auto,
                "STORAGE_DIR": storage,
                "TESTING": True,
            }
        )
        with app.app_context():
            db.drop_all()
            db.create_all()
        client = app.test_client()
        user = client.post("/api/users", json={"name": "alice"}).get_json()["id"]
        h = {"X-User-Id": user}
        rid = client.post("/api/datarooms", json={"name": "room"}, headers=h).get_json()["id"]
        folders = [
            client.post(
                f"/api/datarooms/{rid}/folders", json={"name": f"f{i}"}, headers=h
            ).get_json()["id"]
            for i in range(4)
        ]
        files = []
        for i in range(12):
            resp = client.post(
                f"/api/datarooms/{rid}/files",
                data={"file": (io.BytesIO(b"x"), f"n{i}.txt"), "folderId": folders[i % 4]},
                headers=h,
                content_type="multipart/form-data",
            )
            files.append(resp.get_json()["id"])
        ids = {"headers": h, "room": rid, "folders": folders, "files": files}
        try:
            yield app, client, ids
        finally:
            store = app.extensions["dataroom_cache"].store
            with app.app_context():
                db.session.remove()
                db.drop_all()
                db.engine.dispose()
            with contextlib.suppress(Exception):
                store.clear()


def _hit_ratio(env: BenchEnv, url: str, auto: bool) -> float:
    """The example workload (listings, folders, files; one write in ten): hits / reads."""
    with _example(env, url, auto) as (app, client, ids):
        h, rid, folders, files = ids["headers"], ids["room"], ids["folders"], ids["files"]
        rng = random.Random(17)
        store = app.extensions["dataroom_cache"].store
        store.metrics.__init__()  # count the workload only
        for _ in range(300 if env.quick else 1200):
            r = rng.random()
            if r < 0.1:
                fid = rng.choice(files)
                client.patch(f"/api/files/{fid}", json={"name": f"r{rng.random()}.txt"}, headers=h)
            elif r < 0.4:
                client.get(f"/api/datarooms/{rid}/files?folderId={rng.choice(folders)}", headers=h)
            elif r < 0.6:
                client.get(f"/api/datarooms/{rid}/folders", headers=h)
            elif r < 0.8:
                client.get(f"/api/files/{rng.choice(files)}", headers=h)
            else:
                client.get(f"/api/folders/{rng.choice(folders)}", headers=h)
        counts = store.metrics.counts()[0]
        looked = counts.get("hits", 0) + counts.get("misses", 0)
        return counts.get("hits", 0) / looked if looked else 0.0


def _http_misses(
    env: BenchEnv, fresh: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """One miss of the example app's folder listing through Flask's test client, declared
    tags vs automatic, in alternating rounds (two apps, two schemas). ``fresh``: a new
    key each request (an unused query parameter: its tags are unknown, each statement
    reads its tokens); else the same key after an invalidation of every entry (the
    usual miss: the tokens of the tags it was last stored with come with the read)."""
    with (
        _database(env) as url_a,
        _database(env) as url_b,
        _example(env, url_a, False) as (app_a, client_a, ids_a),
        _example(env, url_b, True) as (app_b, client_b, ids_b),
    ):
        n = itertools.count()

        def miss(app: Any, client: Any, ids: dict[str, Any]) -> None:
            path = f"/api/datarooms/{ids['room']}/files?folderId={ids['folders'][0]}"
            if fresh:
                path = f"{path}&n={next(n)}"
            else:
                app.extensions["dataroom_cache"].store.invalidate(["~epoch"], defer=False)
            resp = client.get(path, headers=ids["headers"])
            assert resp.headers["X-Cache"] == "MISS", resp.headers

        return _interleaved(
            lambda: miss(app_a, client_a, ids_a),
            lambda: miss(app_b, client_b, ids_b),
            10 if env.quick else 30,
            5 if env.quick else 11,
        )


def run(env: BenchEnv) -> list[dict[str, Any]]:
    with _database(env) as url:
        rows = _store_figures(env, url)
    for fresh, what in ((False, "recomputed key"), (True, "first miss of a key")):
        miss_declared, miss_auto = _http_misses(env, fresh)
        overhead = miss_auto["median_us"] / miss_declared["median_us"] - 1.0
        rows.append(row(GROUP, f"example listing miss, {what}, declared", miss_declared))
        rows.append(row(GROUP, f"example listing miss, {what}, automatic", miss_auto))
        rows.append(
            ratio_row(
                GROUP, f"miss overhead of capture, {what}", overhead, "< 0.10", overhead < 0.10
            )
        )
    with _database(env) as url:
        declared = _hit_ratio(env, url, auto=False)
    with _database(env) as url:
        auto = _hit_ratio(env, url, auto=True)
    rows.append(
        row(GROUP, "example workload hit ratio, declared tags", None, value=round(declared, 4))
    )
    rows.append(row(GROUP, "example workload hit ratio, automatic", None, value=round(auto, 4)))
    rows.append(
        ratio_row(
            GROUP,
            "hit ratio: automatic / declared",
            auto / declared if declared else 0.0,
            ">= 0.9",
            declared > 0 and auto / declared >= 0.9,
        )
    )
    return rows
