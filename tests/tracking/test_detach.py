"""Every listener and patch the tracker installs has its detach (``DataRoomCache.uninstall``).

After one app's cache is uninstalled, its session factory and engines carry none of the
tracker's listeners, its engine's ``dialect.do_commit`` is the original again, and a second
app (its own engine) in the same process keeps tracking as before.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from flask_dataroom_cache import entity_tag
from flask_dataroom_cache.tracking import Tracker, tracker_for
from flask_dataroom_cache.tracking.connection import TRANSACTION_EVENTS
from flask_dataroom_cache.tracking.core import STATEMENT_EVENTS
from flask_dataroom_cache.tracking.session import SESSION_EVENTS

from .conftest import Env, sqlite_fk
from .models import Folder
from .test_semantics import seed

ENGINE_EVENTS = {**STATEMENT_EVENTS, **TRANSACTION_EVENTS}
folders = Folder.__table__


def _is_original(dialect: Any) -> bool:
    """``dialect.do_commit`` is the dialect class's own method (no instance override)."""
    return (
        "do_commit" not in vars(dialect)
        and getattr(dialect.do_commit, "__func__", None) is type(dialect).do_commit
    )


def _listening(tracker: Tracker, factory: Any, engine: sa.Engine) -> list[str]:
    """The names of the tracker's events still listened on ``factory`` / ``engine``."""
    found = [
        name
        for name, method in SESSION_EVENTS.items()
        if event.contains(factory, name, getattr(tracker.session_events, method))
    ]
    for events, listeners in (
        (STATEMENT_EVENTS, tracker.core_statements),
        (TRANSACTION_EVENTS, tracker.connection_events),
    ):
        found += [
            name
            for name, method in events.items()
            if event.contains(engine, name, getattr(listeners, method))
        ]
    return found


def test_uninstall_detaches_everything_and_leaves_the_other_app_alone(make_env: Any) -> None:
    one, two = make_env(), make_env()
    with one.app.app_context():
        seed(one)
        engine_one, factory_one = one.db.engine, one.db.session.session_factory
    with two.app.app_context():
        engine_two, factory_two = two.db.engine, two.db.session.session_factory
    assert engine_one.dialect is not engine_two.dialect
    tracker_one = tracker_for(one.cache, one.app)
    tracker_two = tracker_for(two.cache, two.app)
    assert not _is_original(engine_one.dialect)  # wrapped while tracked
    assert len(_listening(tracker_one, factory_one, engine_one)) == len(SESSION_EVENTS) + len(
        ENGINE_EVENTS
    )

    one.cache.uninstall(one.app)

    assert _is_original(engine_one.dialect)
    assert _listening(tracker_one, factory_one, engine_one) == []
    store_one = one.store
    assert tracker_one.snapshot.must_bypass not in store_one.bypass_checks
    assert tracker_one.snapshot.defer not in store_one.deferrers
    assert tracker_one.snapshot.refuse_fill not in store_one.fill_checks
    assert "dataroom_cache" not in one.app.extensions  # the whole state is gone with it
    one.cache.uninstall(one.app)  # twice: nothing left to do

    # the first app no longer tracks anything: ORM, Core
    one.backend.reset()
    with one.app.app_context():
        one.session.get(Folder, 10).name = "after uninstall"
        one.session.commit()
        with one.db.engine.begin() as conn:
            conn.execute(sa.update(folders).where(folders.c.id == 20).values(name="core"))
    assert one.backend.all_invalidated() == set()

    # the second app, in the same process, is unaffected
    assert not _is_original(engine_two.dialect)
    assert len(_listening(tracker_two, factory_two, engine_two)) == len(SESSION_EVENTS) + len(
        ENGINE_EVENTS
    )
    with two.app.app_context():
        two.session.get(Folder, 10).name = "two"
        two.session.commit()
        assert entity_tag("folder", 10) in two.backend.all_invalidated()
        two.backend.reset()
        with two.db.engine.begin() as conn:  # Core: sent by the commit hook
            conn.execute(sa.update(folders).where(folders.c.id == 20).values(name="c2"))
        assert entity_tag("folder", 20) in two.backend.all_invalidated()


def test_shared_engine_keeps_its_hook_until_the_last_tracker_detaches(
    make_env: Any, database_url: str
) -> None:
    """Two apps tracking one plain engine share its ``do_commit`` wrapper: uninstalling one
    leaves the other delivering Core commits; uninstalling both restores the original."""
    one, two = make_env(), make_env()
    with one.app.app_context():
        seed(one)
    engine = sa.create_engine(database_url)
    sqlite_fk(engine)
    factory = sa.orm.sessionmaker(engine)
    one.cache.track_session(factory, app=one.app)
    two.cache.track_session(factory, app=two.app)
    assert not _is_original(engine.dialect)

    def core_update(env: Env, name: str) -> set[str]:
        env.backend.reset()
        with engine.begin() as conn:
            conn.execute(sa.update(folders).where(folders.c.id == 10).values(name=name))
        return env.backend.all_invalidated()

    one.cache.uninstall(one.app)
    assert not _is_original(engine.dialect)
    assert core_update(one, "x") == set()
    assert entity_tag("folder", 10) in core_update(two, "y")

    two.cache.uninstall(two.app)
    assert _is_original(engine.dialect)
    assert core_update(two, "z") == set()
    engine.dispose()
