"""The snapshot rule: a transaction that began before a commit-invalidation must not fill.

The reader's database snapshot is real on both databases: SQLite in WAL mode with an
explicit BEGIN at transaction start (conftest.sqlite_fk: pysqlite's default would only
BEGIN before a write),
PostgreSQL at REPEATABLE READ.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .conftest import Env
from .models import DataRoom, Folder


def snapshot_engine(engine: sa.Engine) -> None:
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _rec: Any) -> None:
            # BEGIN is emitted at transaction start already (conftest.sqlite_fk), so a
            # reader holds its snapshot from its first statement on
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

    else:
        engine.update_execution_options(isolation_level="REPEATABLE READ")


def test_reader_with_older_snapshot_does_not_fill(make_env: Any) -> None:
    env: Env = make_env()
    with env.app.app_context():
        snapshot_engine(env.db.engine)
        env.db.engine.dispose()
        s = env.session
        s.add(DataRoom(id=1, name="R"))
        s.add(Folder(id=10, data_room_id=1, name="old"))
        s.commit()
    env.backend.reset()

    reader = env.app.app_context()
    reader.push()
    try:
        # the reader's transaction takes its snapshot
        assert env.session.scalars(sa.select(Folder.name)).all() == ["old"]
        with env.app.app_context():  # another request commits a rename
            env.session.get(Folder, 10).name = "new"
            env.session.commit()
        assert env.backend.calls["invalidate"] == 1
        env.backend.reset()
        # the reader still sees its snapshot: correct for it, but must not be stored
        # under the new versions (the next reader would get "old" for good)
        assert env.contents(1, None)["folders"] == ["old"]
        assert env.backend.calls["set"] == 0
    finally:
        reader.pop()
    with env.app.app_context():  # a transaction that begins after the commit
        assert env.contents(1, None)["folders"] == ["new"]
        assert env.backend.calls["set"] == 1
        assert env.contents(1, None)["folders"] == ["new"]  # and a hit


def test_reader_capture_before_commit_is_rejected(make_env: Any) -> None:
    """The other interleaving: versions captured, commit + invalidation, then the fill."""
    env: Env = make_env()
    with env.app.app_context():
        snapshot_engine(env.db.engine)
        env.db.engine.dispose()
        env.session.add(DataRoom(id=1, name="R"))
        env.session.add(Folder(id=10, data_room_id=1, name="old"))
        env.session.commit()

        def compute() -> Any:
            value = env.contents_fresh(1, None)
            with env.app.app_context():
                env.session.get(Folder, 10).name = "new"
                env.session.commit()
            return value

        from flask_dataroom_cache import contents_tag, dataroom_tag

        tags = [dataroom_tag(1), contents_tag("root:1")]
        assert env.store.get_or_set("k", compute, tags=tags)["folders"] == ["old"]
        env.session.rollback()
        assert env.store.get_or_set("k", lambda: env.contents_fresh(1, None), tags=tags)[
            "folders"
        ] == ["new"]


def test_reader_in_another_process_does_not_fill(make_env: Any, cache_kind: str) -> None:
    """Two apps sharing one backend stand for two processes: the writer's tracker is not
    the reader's, so only the token times can tell the reader its snapshot is too old."""
    import pytest

    if cache_kind == "memory":
        pytest.skip("the memory backend is per process: nothing is shared")
    reader_env: Env = make_env()
    writer_env: Env = make_env()
    for e in (reader_env, writer_env):
        with e.app.app_context():
            snapshot_engine(e.db.engine)
            e.db.engine.dispose()
    with writer_env.app.app_context():
        writer_env.session.add(DataRoom(id=1, name="R"))
        writer_env.session.add(Folder(id=10, data_room_id=1, name="old"))
        writer_env.session.commit()
    reader = reader_env.app.app_context()
    reader.push()
    try:
        assert reader_env.session.scalars(sa.select(Folder.name)).all() == ["old"]
        with writer_env.app.app_context():
            writer_env.session.get(Folder, 10).name = "new"
            writer_env.session.commit()
        reader_env.backend.reset()
        assert reader_env.contents(1, None)["folders"] == ["old"]  # its snapshot
        assert reader_env.backend.calls["set"] == 0, "an old snapshot must not fill"
    finally:
        reader.pop()
    with reader_env.app.app_context():
        assert reader_env.contents(1, None)["folders"] == ["new"]


def test_clock_skew_setting_is_validated(make_env: Any) -> None:
    import pytest

    from flask_dataroom_cache import ConfigError

    with pytest.raises(ConfigError, match="CACHE_SNAPSHOT_CLOCK_SKEW_MS"):
        make_env(CACHE_SNAPSHOT_CLOCK_SKEW_MS="soon")
    env: Env = make_env(CACHE_SNAPSHOT_CLOCK_SKEW_MS=250)
    assert env.app.extensions["dataroom_cache"].tracker.snapshot.skew == 0.25
