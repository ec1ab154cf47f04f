"""The write cost of automatic tags (issue 17): a commit of 1 and of 500 changed rows with
``CACHE_AUTO_TAGS`` on and off, same run, same engine and tables, memory backend.

Both variants track the same models with ``cache.track`` (declared tags); "on" adds the
automatic tags of every written row (``~t``, ``~r``, ``~c`` of old and new values:
``docs/auto-tags.md``). Rows are renamed (one ``~r`` and one ``~c`` per foreign key per
row) or moved to another folder (the old and the new folder's ``~c``). Also reported: the
automatic tags one commit sends per row (counted through ``tags_invalidated``). Ratios are
information (no target is set yet: issue 17 asks for the figure).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from . import BenchEnv, pg_schema, ratio_row, row
from .bench_tracking import _interleaved, _models

GROUP = "autowrite"


def _bench_db(env: BenchEnv, db_name: str, url: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa
    from flask import Flask
    from sqlalchemy.orm import sessionmaker

    from flask_dataroom_cache import DataRoomCache, signals

    Base, Folder, File = _models()
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    n_files = 500
    with sessionmaker(engine)() as s:
        s.add_all([Folder(id=i, data_room_id=1, name=f"d{i}") for i in (1, 2)])
        s.flush()
        s.add_all(
            [File(id=i, data_room_id=1, folder_id=1 + i % 2, name=f"f{i}") for i in range(n_files)]
        )
        s.commit()
    variants: dict[str, Any] = {}
    apps = []
    for name, auto in (("off", False), ("on", True)):
        app = Flask(f"bench_autowrite_{uuid.uuid4().hex[:6]}")
        app.config.update(
            REDIS_URL="", CACHE_KEY_PREFIX="bench" + uuid.uuid4().hex[:8], CACHE_AUTO_TAGS=auto
        )
        cache = DataRoomCache()
        cache.track(
            Folder, entity="folder", parents={"data_room_id": "dataroom", "parent_id": "folder"}
        )
        cache.track(
            File, entity="file", parents={"data_room_id": "dataroom", "folder_id": "folder"}
        )
        cache.init_app(app)
        factory = sessionmaker(engine, expire_on_commit=False)
        cache.track_session(factory, app=app)
        variants[name] = factory
        apps.append(app)
    sessions = {name: factory() for name, factory in variants.items()}
    loaded = {
        name: s.scalars(sa.select(File).order_by(File.id)).all() for name, s in sessions.items()
    }
    counter = [0]

    def rename(name: str, k: int) -> Any:
        session, files = sessions[name], loaded[name][:k]

        def fn() -> None:
            counter[0] += 1
            for f in files:
                f.name = f"r{counter[0]}"
            session.commit()

        return fn

    def move(name: str, k: int) -> Any:
        session, files = sessions[name], loaded[name][:k]

        def fn() -> None:
            for f in files:
                f.folder_id = 3 - f.folder_id
            session.commit()

        return fn

    rows: list[dict[str, Any]] = []
    rounds = 5 if env.quick else 11
    plan = [
        ("rename 1", rename, 1, 40 if env.quick else 100),
        ("rename 500", rename, 500, 2 if env.quick else 4),
        ("move 500", move, 500, 2 if env.quick else 4),
    ]
    for label, make, k, number in plan:
        sent: list[int] = []

        def count(app: Any, tags: tuple[str, ...], source: str, sent: list[int] = sent) -> None:
            sent.append(sum(1 for t in tags if t.startswith(("~t:", "~r:", "~c:", "~e:"))))

        signals.tags_invalidated.connect(count, sender=apps[1])
        make("on", k)()
        signals.tags_invalidated.disconnect(count, sender=apps[1])
        rows.append(
            ratio_row(GROUP, f"{db_name} {label}: auto tags per row", sum(sent) / k, "info", True)
        )
        wall, cpu = _interleaved({n: make(n, k) for n in variants}, number, rounds)
        for kind, got in (("wall", wall), ("cpu", cpu)):
            for name, stats in got.items():
                rows.append(row(GROUP, f"{db_name} commit {label} auto {name} ({kind})", stats))
            ratio = got["on"]["median_us"] / got["off"]["median_us"]
            rows.append(
                ratio_row(GROUP, f"{db_name} {label}: auto on / off ({kind})", ratio, "info", True)
            )
    for s in sessions.values():
        s.close()
    Base.metadata.drop_all(engine)
    engine.dispose()
    return rows


def run(env: BenchEnv) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += _bench_db(env, "sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}")
    if env.database_url:
        with pg_schema(env.database_url) as url:
            rows += _bench_db(env, "postgresql", url)
    return rows
