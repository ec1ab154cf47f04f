"""One test per transaction-semantics bullet of issue 3, plus hierarchy and wiring."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from flask_dataroom_cache import (
    contents_tag,
    dataroom_tag,
    entity_tag,
    invalidate_cache,
    invalidate_tags,
    list_tag,
    user_tag,
)

from .conftest import Env
from .models import DataRoom, File, Folder, Membership, Note


def seed(env: Env) -> dict[str, Any]:
    s = env.session
    room = DataRoom(id=1, name="Room")
    s.add(room)
    a = Folder(id=10, data_room_id=1, name="A")
    b = Folder(id=20, data_room_id=1, name="B")
    s.add_all([a, b])
    s.flush()
    sub = Folder(id=11, data_room_id=1, parent_id=10, name="A1")
    f1 = File(id=100, data_room_id=1, folder_id=10, name="f1")
    f2 = File(id=101, data_room_id=1, folder_id=11, name="f2")
    s.add_all([sub, f1, f2, Membership(id=1000, data_room_id=1, user_id="u1")])
    s.commit()
    env.backend.reset()
    return {"room": 1}


def fill(env: Env, *scopes: int | None) -> None:
    for scope in scopes:
        env.contents(1, scope)


def is_cached(env: Env, scope: int | None) -> bool:
    calls = []
    key_scope = scope
    original = env.contents_fresh

    def spy(room: int, folder: int | None) -> Any:
        calls.append(1)
        return original(room, folder)

    env.contents_fresh = spy  # type: ignore[method-assign]
    try:
        env.contents(1, key_scope)
    finally:
        env.contents_fresh = original  # type: ignore[method-assign]
    return not calls


# -- transaction semantics ---------------------------------------------------------------


def test_tags_sent_once_after_outermost_commit(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.get(Folder, 10).name = "A-renamed"
    s.flush()
    s.get(Folder, 10).name = "A-again"
    s.flush()
    s.add(File(id=102, data_room_id=1, folder_id=10, name="f3"))
    s.flush()
    assert env.backend.calls["invalidate"] == 0, "nothing is sent before commit"
    s.commit()
    assert env.backend.calls["invalidate"] == 1
    batch = env.backend.invalidated[0]
    assert len(batch) == len(set(batch)), "each tag once"
    assert {
        entity_tag("folder", 10),
        list_tag("folder"),
        dataroom_tag(1),
        contents_tag(10),
        entity_tag("file", 102),
        list_tag("file"),
        "filename:f3",
    } <= set(batch)
    assert "type:folder" not in batch


def test_sent_before_commit_returns(any_env: Env) -> None:
    env = any_env
    seed(env)
    fill(env, None)
    assert is_cached(env, None)
    env.session.get(Folder, 10).name = "Z"
    env.session.commit()
    # no wait, no sleep: the very next read after commit() misses and sees the new name
    assert not is_cached(env, None)
    assert env.contents(1, None)["folders"] == ["B", "Z"]


def test_rollback_discards_everything(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.get(Folder, 10).name = "gone"
    s.flush()
    s.add(Folder(id=30, data_room_id=1, name="C"))
    s.flush()
    s.rollback()
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    assert env.backend.calls["invalidate"] == 0


def test_failed_commit_sends_nothing(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.get(Folder, 20).name = "B2"
    s.add(File(id=31, data_room_id=1, folder_id=9999, name="x"))  # no such folder
    with pytest.raises(sa.exc.IntegrityError):
        s.commit()
    s.rollback()
    assert env.backend.calls["invalidate"] == 0


def test_savepoint_rollback_discarded_release_kept(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.get(Folder, 10).name = "kept"
    with s.begin_nested():
        s.get(Folder, 20).name = "kept-too"
    sp = s.begin_nested()
    s.add(File(id=200, data_room_id=1, folder_id=11, name="dropped"))
    s.flush()
    sp.rollback()
    s.commit()
    sent = env.backend.all_invalidated()
    assert env.backend.calls["invalidate"] == 1
    assert {entity_tag("folder", 10), entity_tag("folder", 20)} <= sent
    assert entity_tag("file", 200) not in sent
    assert contents_tag(11) not in sent


def test_savepoints_nested_three_deep(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    with s.begin_nested():  # level 1, released
        s.get(Folder, 10).name = "L1"
        s.flush()
        with s.begin_nested():  # level 2, released
            s.get(Folder, 20).name = "L2"
            s.flush()
            sp3 = s.begin_nested()  # level 3, rolled back
            s.get(File, 101).name = "L3"
            s.flush()
            sp3.rollback()
            sp3b = s.begin_nested()  # level 3 again, released
            s.get(File, 100).name = "L3b"
            s.flush()
            sp3b.commit()
        sp2 = s.begin_nested()  # level 2, rolled back, with a level 3 released inside
        with s.begin_nested():
            s.add(Folder(id=40, data_room_id=1, parent_id=20, name="deep"))
        sp2.rollback()
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("folder", 10), entity_tag("folder", 20), entity_tag("file", 100)} <= sent
    assert entity_tag("file", 101) not in sent
    assert contents_tag(11) not in sent
    assert entity_tag("folder", 40) not in sent
    assert contents_tag(20) not in sent


def test_invalidate_deferred_inside_transaction_immediate_outside(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    env.call(invalidate_tags, "manual:1")  # no transaction with changes: now
    assert env.backend.invalidated == [("manual:1",)]
    env.backend.reset()
    s.add(Note(id=1, text="x"))  # an untracked change still counts as "changes"
    env.call(invalidate_tags, "manual:2")
    env.call(invalidate_cache, "file", 5, data_room_id=1)
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    assert env.backend.calls["invalidate"] == 1
    assert {"manual:2", entity_tag("file", 5), dataroom_tag(1)} <= env.backend.all_invalidated()
    # deferred into a savepoint that rolls back: dropped
    env.backend.reset()
    s.add(Note(id=2, text="y"))
    sp = s.begin_nested()
    env.call(invalidate_tags, "manual:3")
    sp.rollback()
    s.commit()
    assert "manual:3" not in env.backend.all_invalidated()
    # read-only transaction: immediate
    env.backend.reset()
    s.get(Folder, 10)
    env.call(invalidate_tags, "manual:4")
    assert env.backend.invalidated == [("manual:4",)]
    s.rollback()


def test_no_uncommitted_data_enters_the_cache(any_env: Env) -> None:
    env = any_env
    seed(env)
    fill(env, 10)
    s = env.session
    s.add(File(id=300, data_room_id=1, folder_id=10, name="uncommitted"))
    s.flush()
    env.backend.reset()
    # the transaction sees its own write (bypass), nothing is read from or written to cache
    assert "uncommitted" in env.contents(1, 10)["files"]
    assert env.contents(1, 20) == env.contents_fresh(1, 20)
    assert env.backend.calls["set"] == 0 and env.backend.calls["get"] == 0
    assert env.store.metrics.snapshot()["total"]["bypasses"] >= 2
    s.rollback()
    # no phantom for anyone
    assert "uncommitted" not in env.contents(1, 10)["files"]


@pytest.mark.auto_tags_off  # untracked writes send automatic tags otherwise (issue 17)
def test_commit_with_nothing_tracked_makes_zero_backend_calls(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.add(Note(id=5, text="untracked"))
    s.commit()
    s.get(Note, 5).text = "still untracked"
    s.commit()
    s.execute(sa.update(Note).values(text="bulk"))
    s.commit()
    s.commit()  # empty
    assert env.backend.total() == 0


# -- hierarchy ---------------------------------------------------------------------------


def test_move_invalidates_old_and_new_parent(env: Env) -> None:
    seed(env)
    fill(env, 10, 11, 20)
    s = env.session
    s.get(File, 100).folder_id = 20  # by foreign key
    s.commit()
    sent = env.backend.all_invalidated()
    assert {contents_tag(10), contents_tag(20), entity_tag("file", 100)} <= sent
    assert not is_cached(env, 10) and not is_cached(env, 20)
    assert env.contents(1, 20)["files"] == ["f1"]
    env.backend.reset()
    # by relationship, with an autoflush in between resetting history
    sub = s.get(Folder, 11)
    sub.parent = s.get(Folder, 20)
    s.execute(sa.select(Folder.id)).all()  # autoflush
    sub.name = "A1-moved"
    s.commit()
    sent = env.backend.all_invalidated()
    assert {contents_tag(10), contents_tag(20), entity_tag("folder", 11)} <= sent
    assert env.contents(1, 20)["folders"] == ["A1-moved"]
    assert env.contents(1, 10)["folders"] == []
    env.backend.reset()
    # an expired object moved through its relationship: the old parent is not loaded
    f2 = s.get(File, 101)
    s.expire(f2)
    f2.folder = s.get(Folder, 10)
    s.commit()
    assert {contents_tag(11), contents_tag(10)} <= env.backend.all_invalidated()


def test_orm_cascade_delete_invalidates_descendants(env: Env) -> None:
    seed(env)
    s = env.session
    s.delete(s.get(DataRoom, 1))
    s.commit()
    sent = env.backend.all_invalidated()
    for tag in (
        dataroom_tag(1),
        entity_tag("folder", 10),
        entity_tag("folder", 11),
        entity_tag("file", 100),
        entity_tag("file", 101),
        contents_tag(10),
        contents_tag(11),
        user_tag("u1"),  # a member lost the room
        entity_tag("membership", 1000),
    ):
        assert tag in sent, tag


def test_database_cascade_delete_invalidates_the_removed_rows(env: Env) -> None:
    """Deleting folder 10 makes the DATABASE delete 11, 100, 101 (ON DELETE CASCADE): the
    ORM never sees them, so the tracker reads them before the DELETE and bumps their own
    tags, not only the room's (tests/tracking/test_cascade.py has the full matrix)."""
    seed(env)
    fill(env, 10, 11)
    s = env.session
    s.execute(sa.delete(Folder).where(Folder.id == 10))  # no ORM cascade at all
    s.commit()
    sent = env.backend.all_invalidated()
    removed = {
        entity_tag("folder", 11),
        entity_tag("file", 100),
        entity_tag("file", 101),
        contents_tag(10),
        contents_tag(11),
        list_tag("file"),
        dataroom_tag(1),
    }
    assert removed <= sent, removed - sent
    assert s.get(File, 101) is None  # the database cascaded
    assert not is_cached(env, 11)
    assert env.contents(1, 11) == {"folders": [], "files": []}
    env.backend.reset()
    s.add(File(id=200, data_room_id=1, folder_id=20, name="f200"))
    s.commit()
    s.expunge_all()
    env.backend.reset()
    s.delete(s.get(Folder, 20))  # the ORM delete path with passive_deletes, file not loaded
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("folder", 20), entity_tag("file", 200), contents_tag(20)} <= sent


def test_membership_changes_invalidate_the_user(env: Env) -> None:
    seed(env)
    s = env.session
    s.add(Membership(id=1001, data_room_id=1, user_id="u2"))
    s.commit()
    assert user_tag("u2") in env.backend.all_invalidated()
    env.backend.reset()
    s.get(DataRoom, 1).name = "Renamed"  # members' room lists show the name
    s.commit()
    assert {user_tag("u1"), user_tag("u2"), dataroom_tag(1)} <= env.backend.all_invalidated()
    env.backend.reset()
    s.delete(s.get(Membership, 1000))
    s.commit()
    assert user_tag("u1") in env.backend.all_invalidated()
    env.backend.reset()
    m = s.get(Membership, 1001)
    m.user_id = "u3"  # reassigned: old and new user
    s.commit()
    assert {user_tag("u2"), user_tag("u3")} <= env.backend.all_invalidated()


# -- bulk paths ---------------------------------------------------------------------------


def test_bulk_orm_update_and_delete(any_env: Env) -> None:
    env = any_env
    seed(env)
    fill(env, 10, 11, 20)
    s = env.session
    s.execute(sa.update(File).where(File.folder_id == 11).values(name="bulk"))
    s.commit()
    sent = env.backend.all_invalidated()
    assert {"type:file", entity_tag("file", 101), contents_tag(11), dataroom_tag(1)} <= sent
    assert env.contents(1, 11)["files"] == ["bulk"]
    env.backend.reset()
    # a bulk move: old parent from the SELECT, new parent from the literal SET value
    s.execute(sa.update(File).where(File.id == 101).values(folder_id=20))
    s.commit()
    assert {contents_tag(11), contents_tag(20)} <= env.backend.all_invalidated()
    env.backend.reset()
    # a bulk move to a computed parent: re-read after the statement
    s.execute(sa.update(File).where(File.id == 101).values(folder_id=File.folder_id - 10))
    s.commit()
    assert {contents_tag(20), contents_tag(10)} <= env.backend.all_invalidated()
    env.backend.reset()
    s.execute(sa.delete(File).where(File.name == "f1"))
    s.commit()
    assert {"type:file", entity_tag("file", 100), contents_tag(10)} <= env.backend.all_invalidated()
    assert env.contents(1, 10)["files"] == ["f2"] or env.contents(1, 10) == env.contents_fresh(
        1, 10
    )


def test_legacy_query_update_and_delete(env: Env) -> None:
    seed(env)
    s = env.session
    s.query(Folder).filter(Folder.id == 20).update({"name": "B-q"})
    s.commit()
    assert {"type:folder", entity_tag("folder", 20), dataroom_tag(1)} <= (
        env.backend.all_invalidated()
    )
    env.backend.reset()
    s.query(File).filter(File.folder_id == 11).delete()
    s.commit()
    assert {entity_tag("file", 101), contents_tag(11)} <= env.backend.all_invalidated()


def test_bulk_orm_insert(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.execute(sa.insert(File), [{"id": 500, "data_room_id": 1, "folder_id": 20, "name": "i1"}])
    s.commit()
    assert {"type:file", entity_tag("file", 500), contents_tag(20), dataroom_tag(1)} <= (
        env.backend.all_invalidated()
    )


def test_core_statements_on_tracked_tables(env: Env) -> None:
    seed(env)
    fill(env, 10, 20)
    files = File.__table__
    s = env.session
    # Core through the session's connection: part of the session's transaction
    s.connection().execute(sa.insert(files).values(id=600, data_room_id=1, folder_id=20, name="c"))
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    assert {"type:file", contents_tag(20), dataroom_tag(1)} <= env.backend.all_invalidated()
    assert env.contents(1, 20)["files"] == ["c"]
    env.backend.reset()
    s.execute(sa.update(files).where(files.c.id == 600).values(name="c2"))
    s.rollback()
    assert env.backend.calls["invalidate"] == 0
    # Core on a standalone connection: sent with its commit
    with env.db.engine.begin() as conn:
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
        conn.execute(sa.delete(files).where(files.c.id == 600))
    sent = env.backend.all_invalidated()
    assert {"type:file", entity_tag("file", 100), contents_tag(10), contents_tag(20)} <= sent
    assert env.contents(1, 10)["files"] == ["core"]
    assert env.contents(1, 20)["files"] == []
    env.backend.reset()
    with env.db.engine.connect() as conn:
        conn.execute(sa.delete(files).where(files.c.id == 100))
        conn.rollback()
    assert env.backend.calls["invalidate"] == 0
    fill(env, 10, 11)
    env.session.rollback()  # end the read transaction (SQLite: its lock blocks COMMIT)
    with env.db.engine.connect() as conn:  # a computed new parent: re-read afterwards
        conn.execute(
            sa.update(files).where(files.c.id == 101).values(folder_id=files.c.folder_id - 1)
        )
        conn.commit()
        sent = env.backend.all_invalidated()
        assert {contents_tag(11), contents_tag(10)} <= sent, "sent before commit() returns"
    assert env.contents(1, 10)["files"] == ["core", "f2"]
    assert env.contents(1, 11)["files"] == []


def test_core_dml_through_the_session(any_env: Env) -> None:
    """Core statements on a tracked table run through the session (``session.execute``,
    ``session.connection().execute``): part of its transaction, sent with its commit,
    dropped by its rollback."""
    env = any_env
    seed(env)
    files = File.__table__
    s = env.session
    s.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    assert {"type:file", entity_tag("file", 100), contents_tag(10)} <= env.backend.all_invalidated()
    assert env.contents(1, 10)["files"] == ["core"]
    env.backend.reset()
    s.execute(sa.delete(files).where(files.c.id == 100))
    s.rollback()
    assert env.backend.calls["invalidate"] == 0
    s.connection().execute(sa.insert(files).values(id=601, data_room_id=1, folder_id=20, name="c"))
    s.commit()
    assert {"type:file", contents_tag(20), dataroom_tag(1)} <= env.backend.all_invalidated()
    assert env.contents(1, 20)["files"] == ["c"]


def test_commit_with_open_savepoints_keeps_their_tags(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.begin_nested()
    s.get(Folder, 10).name = "open-1"
    s.begin_nested()
    s.get(Folder, 20).name = "open-2"
    s.commit()  # commits the savepoints and the root
    assert env.backend.calls["invalidate"] == 1
    assert {entity_tag("folder", 10), entity_tag("folder", 20)} <= env.backend.all_invalidated()


# -- wiring ------------------------------------------------------------------------------


def test_cache_init_before_db_init(make_env: Any) -> None:
    env = make_env(order="cache-first")
    with env.app.app_context():
        seed(env)
        env.session.get(Folder, 10).name = "late"
        env.session.commit()
        assert entity_tag("folder", 10) in env.backend.all_invalidated()


def test_two_apps_in_one_process_do_not_interfere(make_env: Any) -> None:
    one = make_env()
    two = make_env()
    with one.app.app_context():
        seed(one)
    with two.app.app_context():
        two.session.get(Folder, 10).name = "two"
        two.session.commit()
        assert entity_tag("folder", 10) in two.backend.all_invalidated()
    assert one.backend.total() == 0
    with one.app.app_context():
        one.session.get(Folder, 20).name = "one"
        one.session.commit()
    assert entity_tag("folder", 20) in one.backend.all_invalidated()
    assert entity_tag("folder", 20) not in two.backend.all_invalidated()


def test_track_session_plain_sqlalchemy(make_env: Any, database_url: str) -> None:
    # declared tags only: an untracked factory's writes on the engine send automatic
    # tags otherwise (issue 17, test_auto_tags.py)
    env = make_env(CACHE_AUTO_TAGS=False)
    with env.app.app_context():
        seed(env)
    engine = sa.create_engine(database_url)
    from .conftest import sqlite_fk

    sqlite_fk(engine)
    factory = sa.orm.sessionmaker(engine)
    env.cache.track_session(factory, app=env.app)
    with factory() as s:
        s.get(Folder, 10).name = "plain"
        s.commit()
    assert entity_tag("folder", 10) in env.backend.all_invalidated()
    env.backend.reset()
    with factory() as s:  # another sessionmaker on the same engine is not tracked
        pass
    other = sa.orm.sessionmaker(engine)
    with other() as s:
        s.get(Folder, 20).name = "untracked factory"
        s.commit()
    assert env.backend.calls["invalidate"] == 0
    engine.dispose()


def test_track_decorator_and_subclass() -> None:
    from flask_dataroom_cache import DataRoomCache

    cache = DataRoomCache()

    @cache.track(entity="thing", parents={"owner_id": "user"})
    class Thing:
        pass

    class SubThing(Thing):
        pass

    from flask_dataroom_cache.tracking import registry_of

    rule = registry_of(cache).rule_for(SubThing)
    assert rule is not None and rule.entity == "thing"
    obj = SubThing()
    obj.__dict__.update(id=3, owner_id="u9")
    assert rule.tags(obj, "update", {"owner_id": "u8"}) == {
        "thing:3",
        "thing:list",
        "user:u9",
        "user:u8",
    }
    assert registry_of(cache).rule_for(int) is None


def test_bulk_executemany_paths(env: Env) -> None:
    seed(env)
    s = env.session
    # ORM bulk UPDATE by primary key (a list of dicts, no WHERE): rows are the ids
    s.execute(sa.update(File), [{"id": 100, "folder_id": 11}, {"id": 101, "name": "x"}])
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 100), entity_tag("file", 101)} <= sent
    assert {contents_tag(10), contents_tag(11)} <= sent  # old and new parent of 100
    env.backend.reset()
    # Core executemany with bindparam() criteria and a bound new parent
    files = File.__table__
    stmt = (
        sa.update(files)
        .where(files.c.id == sa.bindparam("b_id"))
        .values(folder_id=sa.bindparam("b_folder"))
    )
    s.connection().execute(stmt, [{"b_id": 100, "b_folder": 20}, {"b_id": 101, "b_folder": 20}])
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 100), entity_tag("file", 101)} <= sent
    assert {contents_tag(11), contents_tag(20)} <= sent
    env.backend.reset()
    s.connection().execute(
        sa.delete(files).where(files.c.id == sa.bindparam("b_id")), [{"b_id": 100}]
    )
    s.commit()
    assert {entity_tag("file", 100), contents_tag(20)} <= env.backend.all_invalidated()


def test_two_apps_sharing_one_flask_sqlalchemy_object(tmp_path: Any) -> None:
    """One ``SQLAlchemy()`` on two apps shares one session factory: each session belongs
    to the app whose context began its transaction."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_dataroom_cache import DataRoomCache

    from .conftest import CountingBackend
    from .models import Base, declare

    db = SQLAlchemy()
    apps, backends = [], []
    for n in (1, 2):
        app = Flask(f"shared_{n}")
        app.config.update(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / f'{n}.db'}",
            REDIS_URL="",  # memory, even with REDIS_URL in the environment
            CACHE_KEY_PREFIX=f"shared{n}",
        )
        cache = DataRoomCache()
        declare(cache)
        db.init_app(app)
        cache.init_app(app)
        store = cache.state(app).store
        store.backend = CountingBackend(store.backend)  # type: ignore[assignment]
        apps.append(app)
        backends.append(store.backend)
        with app.app_context():
            Base.metadata.create_all(db.engine)
        store.backend.reset()  # the schema's creation bumped the epoch (test_ddl.py)
    with apps[0].app_context():
        db.session.add(DataRoom(id=1, name="one"))
        db.session.commit()
    with apps[1].app_context():
        db.session.add(DataRoom(id=2, name="two"))
        db.session.commit()
    assert backends[0].all_invalidated() == {dataroom_tag(1), list_tag("dataroom")}
    assert backends[1].all_invalidated() == {dataroom_tag(2), list_tag("dataroom")}
    for app in apps:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_legacy_bulk_save_and_mappings(env: Env) -> None:
    seed(env)
    s = env.session
    s.bulk_insert_mappings(File, [{"id": 700, "data_room_id": 1, "folder_id": 20, "name": "m"}])
    s.commit()
    assert {entity_tag("file", 700), contents_tag(20), dataroom_tag(1)} <= (
        env.backend.all_invalidated()
    )
    env.backend.reset()
    s.bulk_update_mappings(File, [{"id": 700, "folder_id": 11}])
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 700), contents_tag(20), contents_tag(11)} <= sent
    env.backend.reset()
    s.bulk_save_objects([File(id=701, data_room_id=1, folder_id=10, name="o")])
    s.commit()
    assert {entity_tag("file", 701), contents_tag(10)} <= env.backend.all_invalidated()


def test_core_statement_after_an_empty_flush_is_tracked(env: Env) -> None:
    seed(env)
    s = env.session
    f = s.get(Folder, 10)
    f.name = "tmp"
    f.name = "A"  # back to the loaded value: a flush with nothing to do
    s.flush()
    s.connection().execute(
        sa.update(File.__table__).where(File.__table__.c.id == 100).values(name="core")
    )
    s.commit()
    assert entity_tag("file", 100) in env.backend.all_invalidated()


def test_declaration_errors_are_loud() -> None:
    from flask import Flask

    from flask_dataroom_cache import DataRoomCache

    cache = DataRoomCache()
    with pytest.raises(TypeError):
        cache.track("Folder", entity="folder")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cache.track(Folder, parents={"parent_id": ""})
    with pytest.raises(TypeError):
        cache.track(Folder, members=["u1"])  # type: ignore[arg-type]
    app = Flask("errors")
    app.config.update(REDIS_URL="")
    cache.init_app(app)
    with pytest.raises(TypeError, match="class"):
        cache.track_session(sa.orm.Session, app=app)  # would track every app
    with pytest.raises(RuntimeError):
        DataRoomCache().track_session(sa.orm.sessionmaker())


def test_move_of_an_object_expired_by_a_previous_commit(env: Env) -> None:
    """expire_on_commit: after one commit, setting the foreign key of an expired object
    records no old value; the old parent must still be invalidated."""
    seed(env)
    s = env.session
    f = s.get(File, 100)
    f.name = "first"
    s.commit()  # f is expired now
    env.backend.reset()
    f.folder_id = 20  # no load happens: the old value (10) is unknown to the ORM
    s.commit()
    assert {contents_tag(10), contents_tag(20)} <= env.backend.all_invalidated()
    env.backend.reset()
    sub = s.get(Folder, 11)
    s.commit()
    sub.parent_id = 20
    s.commit()
    assert {contents_tag(10), contents_tag(20)} <= env.backend.all_invalidated()


def test_changes_to_expired_objects_carry_all_their_tags(env: Env) -> None:
    """After a commit every loaded object is expired: a rename or a delete of one must
    still bump its id, its room and its parent, none of which is loaded."""
    seed(env)
    s = env.session
    f = s.get(File, 100)
    s.commit()  # expired
    f.name = "renamed"
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 100), dataroom_tag(1), contents_tag(10)} <= sent
    env.backend.reset()
    s.delete(f)  # still expired
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 100), dataroom_tag(1), contents_tag(10)} <= sent


def test_invalidate_after_textual_sql_is_deferred(env: Env) -> None:
    """Textual SQL is not parsed for tags, but it counts as a change: the manual
    invalidation that must follow it is delivered at the commit, not before."""
    seed(env)
    s = env.session
    s.execute(sa.text("/* note */ UPDATE files SET name = 'txt' WHERE id = 100"))
    invalidate_tags(entity_tag("file", 100))
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    assert entity_tag("file", 100) in env.backend.all_invalidated()
    env.backend.reset()
    s.execute(sa.text("SELECT 1"))  # a read: the invalidation is immediate
    invalidate_tags("manual:5")
    assert env.backend.invalidated == [("manual:5",)]
    s.rollback()


def test_primary_key_change_invalidates_the_old_id(env: Env) -> None:
    seed(env)
    s = env.session
    s.get(File, 101).id = 109
    s.commit()
    assert {entity_tag("file", 101), entity_tag("file", 109)} <= env.backend.all_invalidated()


def test_move_through_a_one_way_collection_of_expired_children(tmp_path: Any) -> None:
    """``box.items.append(item)`` with no backref, everything expired by the last commit:
    the child is not modified before the flush, its old parent is read from the database."""
    import uuid

    from flask import Flask
    from sqlalchemy.orm import DeclarativeBase, relationship

    from flask_dataroom_cache import DataRoomCache

    from .conftest import CountingBackend

    class B(DeclarativeBase):
        pass

    class Box(B):
        __tablename__ = "box"
        id = sa.Column(sa.Integer, primary_key=True)
        items = relationship("Item")  # one-way

    class Item(B):
        __tablename__ = "item"
        id = sa.Column(sa.Integer, primary_key=True)
        box_id = sa.Column(sa.Integer, sa.ForeignKey("box.id"))

    app = Flask("oneway")
    app.config.update(REDIS_URL="", CACHE_KEY_PREFIX="o" + uuid.uuid4().hex[:8])
    cache = DataRoomCache()
    cache.track(Item, entity="item", parents={"box_id": "folder"})
    cache.init_app(app)
    store = cache.state(app).store
    counting = CountingBackend(store.backend)
    store.backend = counting  # type: ignore[assignment]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'o.db'}")
    B.metadata.create_all(engine)
    factory = sa.orm.sessionmaker(engine)
    cache.track_session(factory, app=app)
    with factory() as s:
        s.add_all([Box(id=1), Box(id=2), Item(id=5, box_id=1)])
        s.commit()
        b1, b2, item = s.get(Box, 1), s.get(Box, 2), s.get(Item, 5)
        assert b1 is not None and b2 is not None and item is not None
        assert b1.items and not b2.items
        s.commit()  # expires everything
        counting.reset()
        b2.items.append(item)
        s.commit()
        assert {contents_tag(1), contents_tag(2)} <= counting.all_invalidated()
        counting.reset()
        b2.items.remove(item)  # unlinked: box_id -> NULL
        s.commit()
        assert contents_tag(2) in counting.all_invalidated()
    engine.dispose()
