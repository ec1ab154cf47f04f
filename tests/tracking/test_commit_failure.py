"""A COMMIT that raises: refused by the database, or in doubt.

Only the DBAPI's ``IntegrityError`` says the database refused the COMMIT (a deferred
constraint): the transaction rolled back, so nothing is sent, now or at check-in. Any other
error (a connection lost while the COMMIT's reply was on its way) leaves it in doubt: the
server may have committed, so the tags are sent at once (over-invalidating if it did not;
never a stale entry until the TTL).

The in-doubt COMMIT is made at the DBAPI boundary: the pool's connection proxy commits for
real, then raises the driver's ``OperationalError``, as a lost reply would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool.base import _ConnectionFairy

from .conftest import Env
from .models import File
from .test_commit_order import KEY, TAGS, _committed_name, _deferred_violation
from .test_semantics import seed


class LostReply:
    """While armed, every DBAPI COMMIT commits, then raises as if the reply were lost."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        lost = self

        def commit(fairy: Any) -> None:
            fairy.dbapi_connection.commit()
            if lost.armed:
                lost.armed = False
                dbapi = fairy._pool._dialect.loaded_dbapi
                raise dbapi.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(_ConnectionFairy, "commit", commit, raising=False)


@pytest.fixture
def lost_reply(monkeypatch: pytest.MonkeyPatch) -> Iterator[LostReply]:
    yield LostReply(monkeypatch)


def _fill(env: Env) -> None:
    env.store.get_or_set(KEY, lambda: _committed_name(env), tags=TAGS)
    assert env.store.get(KEY, TAGS) == "f1"


def test_an_in_doubt_session_commit_invalidates(env: Env, lost_reply: LostReply) -> None:
    seed(env)
    _fill(env)
    env.session.get(File, 100).name = "committed anyway"
    lost_reply.armed = True
    with pytest.raises(sa.exc.OperationalError):
        env.session.commit()
    env.session.rollback()
    assert _committed_name(env) == "committed anyway"  # the server did commit
    assert env.store.get(KEY, TAGS) is None, "an in-doubt COMMIT must invalidate"


def test_an_in_doubt_core_commit_invalidates(env: Env, lost_reply: LostReply) -> None:
    seed(env)
    env.session.commit()
    _fill(env)
    with env.db.engine.connect() as conn:
        conn.execute(sa.update(File.__table__).where(File.__table__.c.id == 100).values(name="x"))
        lost_reply.armed = True
        with pytest.raises(sa.exc.OperationalError):
            conn.commit()
        assert env.store.get(KEY, TAGS) is None, "sent at once, not at check-in"
    assert _committed_name(env) == "x"


def test_a_refused_core_commit_sends_nothing_even_at_checkin(env: Env) -> None:
    seed(env)
    env.session.commit()
    env.session.remove()
    if env.db.engine.dialect.name == "postgresql":
        with env.db.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE dfk (id INTEGER PRIMARY KEY, ref INTEGER REFERENCES "
                "datarooms(id) DEFERRABLE INITIALLY DEFERRED)"
            )
    _fill(env)
    env.backend.reset()
    with env.db.engine.connect() as conn:
        conn.execute(sa.update(File.__table__).where(File.__table__.c.id == 100).values(name="x"))
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("INSERT INTO dfk VALUES (1, 999)")
        else:
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            conn.execute(
                sa.insert(File.__table__).values(id=300, data_room_id=1, folder_id=9999, name="d")
            )
        with pytest.raises(sa.exc.IntegrityError):
            conn.commit()
        conn.rollback()
    # the connection is back in the pool: nothing was parked for its check-in
    assert env.backend.calls["invalidate"] == 0
    assert env.store.get(KEY, TAGS) == "f1"
    assert _committed_name(env) == "f1"


def test_refused_session_commit_still_sends_nothing(env: Env) -> None:
    """The old rule for a refused COMMIT holds (test_commit_order has the full case)."""
    seed(env)
    env.session.commit()
    if env.db.engine.dialect.name == "postgresql":
        with env.db.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE dfk (id INTEGER PRIMARY KEY, ref INTEGER REFERENCES "
                "datarooms(id) DEFERRABLE INITIALLY DEFERRED)"
            )
    _fill(env)
    env.backend.reset()
    env.session.get(File, 100).name = "never"
    _deferred_violation(env)
    with pytest.raises(sa.exc.IntegrityError):
        env.session.commit()
    env.session.rollback()
    env.session.remove()
    assert env.backend.calls["invalidate"] == 0
    assert env.store.get(KEY, TAGS) == "f1"
