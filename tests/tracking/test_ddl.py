"""Schema resets: DDL on a tracked engine (``drop_all``/``create_all``, ``TRUNCATE``,
``ALTER``, ``DROP TABLE``, ``CREATE INDEX``, as elements or text) bumps the namespace
epoch once it is committed; a rolled-back one (transactional DDL) bumps nothing; DDL that
commits by itself (pysqlite's default mode) is sent at once (issue 12 item 3b)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from flask_dataroom_cache.tags import EPOCH_TAG

from .conftest import Env
from .models import Base, Note
from .test_semantics import fill, is_cached, seed


def test_drop_all_create_all_invalidates_everything(env: Env) -> None:
    seed(env)
    fill(env, 10)
    assert is_cached(env, 10)
    env.session.remove()
    Base.metadata.drop_all(env.db.engine)
    assert EPOCH_TAG in env.backend.all_invalidated()
    env.backend.reset()
    Base.metadata.create_all(env.db.engine)
    assert EPOCH_TAG in env.backend.all_invalidated()
    assert env.contents(1, 10) == {"folders": [], "files": []}


def _statements(dialect: str) -> list[str]:
    found = [
        "DROP TABLE notes",
        "ALTER TABLE notes ADD COLUMN extra INTEGER",
        "CREATE INDEX ix_notes_text ON notes (text)",
        "/* a comment */ drop table notes",
    ]
    if dialect == "postgresql":
        found += [
            "TRUNCATE notes",
            "TRUNCATE TABLE files, notes CASCADE",
            "COMMENT ON TABLE notes IS 'x'",
        ]
    return found


DDL_KINDS = ["drop", "alter", "index", "comment-drop", "truncate", "truncate-several", "comment-on"]


def _sql(env: Env, kind: str) -> str:
    found = _statements(env.db.engine.dialect.name)
    index = DDL_KINDS.index(kind)
    if index >= len(found):
        pytest.skip("PostgreSQL only")
    return found[index]


@pytest.mark.parametrize("kind", DDL_KINDS)
def test_textual_ddl_in_session_sent_at_commit(env: Env, kind: str) -> None:
    seed(env)
    fill(env, 10)
    sql = _sql(env, kind)
    s = env.session
    s.add(Note(id=1, text="n"))
    s.commit()
    env.backend.reset()
    s.execute(sa.text(sql))
    assert EPOCH_TAG not in env.backend.all_invalidated(), "not before the commit"
    s.commit()
    assert EPOCH_TAG in env.backend.all_invalidated()
    assert not is_cached(env, 10)


@pytest.mark.parametrize("kind", DDL_KINDS)
@pytest.mark.parametrize("how", ["text", "exec_driver_sql"])
def test_textual_ddl_on_connection(env: Env, kind: str, how: str) -> None:
    seed(env)
    fill(env, 10)
    sql = _sql(env, kind)
    env.session.remove()
    with env.db.engine.connect() as conn:
        if how == "text":
            conn.execute(sa.text(sql))
        else:
            conn.exec_driver_sql(sql)
        assert EPOCH_TAG not in env.backend.all_invalidated(), "not before the commit"
        conn.commit()
    assert EPOCH_TAG in env.backend.all_invalidated()
    assert not is_cached(env, 10)


def test_ddl_element_through_session(env: Env) -> None:
    seed(env)
    fill(env, 10)
    s = env.session
    s.execute(sa.schema.DropTable(Note.__table__))
    assert EPOCH_TAG not in env.backend.all_invalidated()
    s.commit()
    assert EPOCH_TAG in env.backend.all_invalidated()
    assert not is_cached(env, 10)


@pytest.mark.parametrize("where", ["session", "connection"])
def test_rolled_back_ddl_bumps_nothing(env: Env, where: str) -> None:
    """Transactional DDL (PostgreSQL; SQLite with SQLAlchemy emitting BEGIN, as here)."""
    seed(env)
    fill(env, 10)
    if where == "session":
        env.session.execute(sa.text("DROP TABLE notes"))
        env.session.rollback()
    else:
        env.session.remove()
        with env.db.engine.connect() as conn:
            conn.execute(sa.schema.DropTable(Note.__table__))
            conn.rollback()
    assert EPOCH_TAG not in env.backend.all_invalidated()
    assert is_cached(env, 10)
    assert sa.inspect(env.db.engine).has_table("notes")


def test_ddl_that_commits_itself_is_sent_even_if_rolled_back(env: Env, tmp_path: Any) -> None:
    """pysqlite's default mode runs DDL outside any transaction: it is committed when it
    returns, whatever rollback follows, so it is sent then."""
    if env.db.engine.dialect.name != "sqlite":
        pytest.skip("pysqlite's autocommitting DDL")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    try:
        env.cache.track_session(sessionmaker(bind=engine), app=env.app)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        env.backend.reset()
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP TABLE t")
            assert EPOCH_TAG in env.backend.all_invalidated(), "committed already: sent"
            conn.rollback()
        assert not sa.inspect(engine).has_table("t")
    finally:
        engine.dispose()


def test_temporary_table_is_not_a_schema_change(env: Env) -> None:
    seed(env)
    fill(env, 10)
    s = env.session
    s.execute(sa.text("CREATE TEMPORARY TABLE scratch (id INTEGER)"))
    s.commit()
    assert EPOCH_TAG not in env.backend.all_invalidated()


def test_invalidate_all(env: Env) -> None:
    seed(env)
    fill(env, 10)
    assert is_cached(env, 10)
    env.cache.invalidate_all()
    assert EPOCH_TAG in env.backend.all_invalidated()
    assert not is_cached(env, 10)


def test_invalidate_all_with_uncommitted_changes_is_sent_now_and_at_commit(env: Env) -> None:
    """Now (a fixture resetting the database may roll back next) and again at the
    commit (a read before it could refill what the transaction is changing)."""
    seed(env)
    fill(env, 10)
    s = env.session
    s.add(Note(id=5, text="x"))
    s.flush()
    env.cache.invalidate_all()
    assert EPOCH_TAG in env.backend.all_invalidated()
    env.backend.reset()
    s.commit()
    assert EPOCH_TAG in env.backend.all_invalidated()
