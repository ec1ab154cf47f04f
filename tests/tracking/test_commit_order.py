"""Issue 12 item 2: a commit's invalidation is delivered before any ``after_commit``
listener runs, whatever the order the listeners were registered in.

An app's own listeners are usually registered before ``cache.init_app`` (models and
their listeners are imported first). Such a listener that hands the change to another
reader (a worker thread, a push to clients) must never let that reader be served the
entry the commit just made stale. The reader here is another thread: this thread's own
reads bypass the cache until its transaction has ended anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from flask_dataroom_cache import entity_tag, get_cache_key

from .conftest import Env
from .models import File
from .test_semantics import seed

KEY = get_cache_key("file", 100)
TAGS = [entity_tag("file", 100)]


def _committed_name(env: Env) -> str:
    with env.db.engine.connect() as conn:
        return str(conn.scalar(sa.select(File.name).where(File.id == 100)))


class Probe:
    """An ``after_commit`` listener: when armed, another thread reads the cached entry of
    file 100 (computing it from a fresh connection on a miss) and records what it got."""

    def __init__(self) -> None:
        self.env: Env | None = None
        self.armed = False
        self.seen: list[Any] = []

    def __call__(self, session: Any) -> None:
        if not self.armed or self.env is None:
            return
        env = self.env

        def read() -> None:
            with env.app.app_context():
                self.seen.append(env.store.get_or_set(KEY, lambda: _committed_name(env), tags=TAGS))

        t = threading.Thread(target=read)
        t.start()
        t.join(10)

    def run(self, env: Env, change: Callable[[], None]) -> None:
        """Fill the entry, make ``change`` (which commits) with the probe armed."""
        self.env = env
        assert env.store.get_or_set(KEY, lambda: _committed_name(env), tags=TAGS) == "f1"
        assert env.store.get(KEY, TAGS) == "f1"  # a hit now
        self.armed = True
        try:
            change()
        finally:
            self.armed = False


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield Probe()


def _rename_with_db_session(env: Env) -> None:
    env.session.get(File, 100).name = "renamed"
    env.session.commit()


@pytest.mark.parametrize("where", ["db.session", "Session class", "session factory"])
def test_listener_registered_before_init_app_sees_the_invalidation(
    make_env: Callable[..., Env], probe: Probe, where: str
) -> None:
    def before_init(db: SQLAlchemy) -> None:
        if where == "db.session":
            sa.event.listen(db.session, "after_commit", probe)
        elif where == "Session class":
            sa.event.listen(sa.orm.Session, "after_commit", probe)
        else:
            sa.event.listen(db.session.session_factory, "after_commit", probe)

    env = make_env(before_init=before_init)
    try:
        with env.app.app_context():
            seed(env)
            probe.run(env, lambda: _rename_with_db_session(env))
            assert probe.seen == ["renamed"], "the listener's reader was served a stale entry"
            assert env.store.get(KEY, TAGS) == "renamed"
    finally:
        if where == "Session class":
            sa.event.remove(sa.orm.Session, "after_commit", probe)


def test_listener_on_a_tracked_sessionmaker_registered_first(env: Env, probe: Probe) -> None:
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker(bind=env.db.engine)
    sa.event.listen(factory, "after_commit", probe)  # before track_session
    env.cache.track_session(factory, app=env.app)

    def change() -> None:
        with factory() as s:
            s.get(File, 100).name = "renamed"
            s.commit()

    probe.run(env, change)
    assert probe.seen == ["renamed"]


def test_listener_inserted_first_after_init_app_sees_the_invalidation(
    env: Env, probe: Probe
) -> None:
    """``insert=True`` does not win against the delivery: it is not a listener."""
    seed(env)
    sa.event.listen(env.db.session, "after_commit", probe, insert=True)
    probe.run(env, lambda: _rename_with_db_session(env))
    assert probe.seen == ["renamed"]


def test_listener_sees_a_savepoint_release_only_after_the_outer_commit(
    env: Env, probe: Probe
) -> None:
    """``after_commit`` also fires when a savepoint is released: nothing is committed
    then, so nothing is delivered (the reader keeps the old, still committed, value)."""
    seed(env)
    sa.event.listen(env.db.session, "after_commit", probe)
    s = env.session

    def change() -> None:
        with s.begin_nested():
            s.get(File, 100).name = "renamed"
        assert probe.seen == ["f1"] and env.backend.calls["invalidate"] == 0
        s.commit()

    probe.run(env, change)
    assert probe.seen == ["f1", "renamed"]


def _deferred_violation(env: Env) -> None:
    """Make this transaction's COMMIT fail: a foreign key checked only at COMMIT."""
    s = env.session
    if env.db.engine.dialect.name == "postgresql":
        s.execute(sa.text("INSERT INTO dfk VALUES (1, 999)"))
    else:
        s.execute(sa.text("PRAGMA defer_foreign_keys = ON"))
        s.add(File(id=300, data_room_id=1, folder_id=9999, name="dangling"))
        s.flush()


def test_a_failed_commit_delivers_nothing(env: Env, probe: Probe) -> None:
    seed(env)
    env.session.rollback()
    if env.db.engine.dialect.name == "postgresql":
        with env.db.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE dfk (id INTEGER PRIMARY KEY, ref INTEGER REFERENCES "
                "datarooms(id) DEFERRABLE INITIALLY DEFERRED)"
            )
    sa.event.listen(env.db.session, "after_commit", probe)
    env.store.get_or_set(KEY, lambda: _committed_name(env), tags=TAGS)
    env.backend.reset()
    s = env.session
    s.get(File, 100).name = "never"
    _deferred_violation(env)
    with pytest.raises(sa.exc.IntegrityError):
        s.commit()
    s.rollback()
    assert env.backend.calls["invalidate"] == 0, "the COMMIT failed: nothing is sent"
    assert probe.seen == [], "after_commit never ran"
    assert _committed_name(env) == "f1"
    assert env.store.get(KEY, TAGS) == "f1"
    # and the next commit in this thread delivers normally
    _rename_with_db_session(env)
    assert env.store.get(KEY, TAGS) is None
