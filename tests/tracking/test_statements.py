"""Statements outside the unit of work: textual SQL, driver-level SQL, Core connections
(transactional and AUTOCOMMIT), INSERT variants, bulk statements on member-tracked rows,
unbound session factories. Each test failed before its fix (an audit's reproductions)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_dataroom_cache import (
    DataRoomCache,
    contents_tag,
    dataroom_tag,
    entity_tag,
    get_cache_key,
    invalidate_tags,
    list_tag,
    type_tag,
    user_tag,
)
from flask_dataroom_cache.tags import EPOCH_TAG

from .conftest import CountingBackend, Env, sqlite_fk
from .models import Base, DataRoom, File, Folder, declare
from .test_semantics import fill, seed

files = File.__table__


@pytest.mark.parametrize("how", ["text", "exec_driver_sql"])
def test_textual_dml_is_never_cached_and_rollback_leaves_no_trace(env: Env, how: str) -> None:
    seed(env)
    fill(env, 10)
    s = env.session
    s.rollback()
    sql = "UPDATE files SET name='PHANTOM' WHERE id=100"
    if how == "text":
        s.execute(sa.text(sql))
    else:
        s.connection().exec_driver_sql(sql)
    # the transaction sees its own write (the cache is bypassed) ...
    assert env.contents(1, 10)["files"] == ["PHANTOM"]
    s.rollback()
    # ... and nothing of it was stored for anyone else
    assert env.contents(1, 10)["files"] == ["f1"]
    assert env.backend.calls["invalidate"] == 0


@pytest.mark.parametrize("how", ["text", "exec_driver_sql"])
def test_textual_dml_commit_bumps_the_type_and_list_tags(env: Env, how: str) -> None:
    seed(env)
    s = env.session
    sql = "UPDATE files SET name='T' WHERE id=100"
    if how == "text":
        s.execute(sa.text(sql))
    else:
        s.connection().exec_driver_sql(sql)
    invalidate_tags(entity_tag("file", 100))  # deferred: the session wrote
    assert env.backend.calls["invalidate"] == 0
    s.commit()
    sent = env.backend.all_invalidated()
    assert {type_tag("file"), list_tag("file"), entity_tag("file", 100)} <= sent
    assert type_tag("folder") not in sent  # the statement names its table


@pytest.mark.auto_tags_off  # untracked writes send automatic tags otherwise (issue 17)
def test_textual_dml_on_other_tables_or_unparsed(env: Env) -> None:
    seed(env)
    s = env.session
    s.execute(sa.text('UPDATE "notes" SET text = :t'), {"t": "x"})  # untracked table
    s.commit()
    assert env.backend.calls["invalidate"] == 0
    s.execute(sa.text("/* hint */ DELETE FROM Files WHERE id = 999"))  # case, comment
    s.commit()
    assert type_tag("file") in env.backend.all_invalidated()
    env.backend.reset()
    # a data-modifying CTE: the target is not parsed; every tracked type is bumped
    s.execute(sa.text("WITH x AS (SELECT 1 AS one) UPDATE folders SET name = name WHERE id = 0"))
    s.commit()
    sent = env.backend.all_invalidated()
    assert {type_tag("file"), type_tag("folder"), type_tag("dataroom")} <= sent


def test_core_connection_sends_after_the_database_commit(env: Env) -> None:
    """Not before: a reader between an early send and the COMMIT would store the old row
    under the new tokens."""
    seed(env)
    env.session.rollback()
    seen: list[str] = []
    real = env.store.invalidate
    reader = sa.create_engine(env.db.engine.url)

    def spy(tags: Any, *a: Any, **k: Any) -> Any:
        with reader.connect() as c:  # another connection: what a concurrent request sees
            seen.append(c.scalar(sa.select(files.c.name).where(files.c.id == 100)))
        return real(tags, *a, **k)

    env.store.invalidate = spy  # type: ignore[method-assign]
    try:
        with env.db.engine.connect() as conn:
            conn.execute(sa.update(files).where(files.c.id == 100).values(name="NEW"))
            conn.commit()
            assert seen == ["NEW"], "sent once, after the COMMIT, before commit() returned"
        assert seen == ["NEW"], "not sent again at check-in"
    finally:
        env.store.invalidate = real  # type: ignore[method-assign]
        reader.dispose()


@pytest.mark.parametrize("statement", ["update", "delete", "update_model"])
def test_core_statement_naming_an_orm_attribute_is_tracked(env: Env, statement: str) -> None:
    """``conn.execute(update(table).where(Model.id == 100))``: the ORM attribute makes the
    statement "ORM-enabled", yet no Session runs it (no ``do_orm_execute``); it was skipped
    as the Session's and invalidated nothing (a stale hit)."""
    seed(env)
    env.session.rollback()
    env.backend.reset()
    table = File.__table__
    stmt: Any
    if statement == "update":
        stmt = sa.update(table).where(File.id == 100).values(name="NEW")
    elif statement == "delete":
        stmt = sa.delete(table).where(File.id == 100)
    else:
        stmt = sa.update(File).where(File.id == 100).values(name="NEW")
    with env.db.engine.begin() as conn:
        conn.execute(stmt)
    assert entity_tag("file", 100) in env.backend.all_invalidated()


@pytest.mark.auto_tags_off  # untracked writes send automatic tags otherwise (issue 17)
def test_autocommit_connection_invalidates_each_statement(env: Env) -> None:
    seed(env)
    fill(env, 10)
    env.session.rollback()
    with env.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="auto"))
        assert contents_tag(10) in env.backend.all_invalidated()
        conn.exec_driver_sql("UPDATE files SET name='auto2' WHERE id=100")
        assert env.backend.calls["invalidate"] == 2
    assert env.contents(1, 10)["files"] == ["auto2"]


def _upsert(env: Env, **values: Any) -> Any:
    if env.db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(files).values(**values)
    return stmt.on_conflict_do_update(
        index_elements=["id"], set_={"folder_id": stmt.excluded.folder_id}
    )


def test_insert_variants_tag_every_row(env: Env) -> None:
    seed(env)
    fill(env, 10, 20)
    s = env.session
    rows = [
        {"id": 300, "data_room_id": 1, "folder_id": 20, "name": "m1"},
        {"id": 301, "data_room_id": 1, "folder_id": 20, "name": "m2"},
    ]
    s.execute(sa.insert(files).values(rows))  # Core multi-row VALUES
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 300), entity_tag("file", 301), contents_tag(20)} <= sent
    assert env.contents(1, 20)["files"] == ["m1", "m2"]
    env.backend.reset()
    s.execute(sa.insert(File).values([{**rows[0], "id": 302, "name": "m3"}]))  # ORM
    s.commit()
    assert {entity_tag("file", 302), contents_tag(20)} <= env.backend.all_invalidated()
    env.backend.reset()
    fill(env, 10, 11)
    src = sa.select(files.c.id + 1000, files.c.data_room_id, files.c.folder_id, files.c.name)
    s.execute(
        sa.insert(files).from_select(
            ["id", "data_room_id", "folder_id", "name"], src.where(files.c.id == 101)
        )
    )
    s.commit()
    assert {entity_tag("file", 1101), contents_tag(11)} <= env.backend.all_invalidated()
    assert env.contents(1, 11)["files"] == ["f2", "f2"]
    env.backend.reset()
    fill(env, 10, 20)
    # an upsert that moves file 100 from folder 10 to 20: both folders
    s.execute(_upsert(env, id=100, data_room_id=1, folder_id=20, name="f1"))
    s.commit()
    assert {contents_tag(10), contents_tag(20)} <= env.backend.all_invalidated()
    assert "f1" not in env.contents(1, 10)["files"]
    assert "f1" in env.contents(1, 20)["files"]


def test_bulk_update_of_the_primary_key_tags_the_new_id(env: Env) -> None:
    seed(env)
    env.session.execute(sa.update(File).where(File.id == 101).values(id=109))
    env.session.commit()
    assert {entity_tag("file", 101), entity_tag("file", 109)} <= env.backend.all_invalidated()


def test_bulk_statements_on_member_tracked_rows_invalidate_the_members(env: Env) -> None:
    seed(env)
    s = env.session
    s.execute(sa.update(DataRoom).where(DataRoom.id == 1).values(name="Renamed"))
    s.commit()
    assert {user_tag("u1"), dataroom_tag(1)} <= env.backend.all_invalidated()
    env.backend.reset()
    rooms = DataRoom.__table__
    with env.db.engine.begin() as conn:  # Core, on a standalone connection
        conn.execute(sa.update(rooms).where(rooms.c.id == 1).values(name="Core"))
    assert user_tag("u1") in env.backend.all_invalidated()
    env.backend.reset()
    s.execute(sa.delete(DataRoom).where(DataRoom.id == 1))  # members read before the delete
    s.commit()
    assert user_tag("u1") in env.backend.all_invalidated()


def _app_with_cache(name: str) -> tuple[Flask, DataRoomCache, CountingBackend]:
    app = Flask(name)
    app.config.update(REDIS_URL="", CACHE_KEY_PREFIX="p" + uuid.uuid4().hex[:8])
    cache = DataRoomCache()
    declare(cache)
    cache.init_app(app)
    store = cache.state(app).store
    counting = CountingBackend(store.backend)
    store.backend = counting  # type: ignore[assignment]
    return app, cache, counting


def test_unbound_factory_tracks_core_statements(tmp_path: Any) -> None:
    app, cache, counting = _app_with_cache("unbound")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'u.db'}")
    sqlite_fk(engine)
    Base.metadata.create_all(engine)
    factory = sa.orm.sessionmaker()  # bound per session, not per factory
    cache.track_session(factory, app=app)
    with factory(bind=engine) as s:
        s.add_all([DataRoom(id=1, name="r"), Folder(id=10, data_room_id=1, name="A")])
        s.flush()
        s.add(File(id=100, data_room_id=1, folder_id=10, name="f"))
        s.commit()
        counting.reset()
        s.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
        s.commit()
    assert {entity_tag("file", 100), contents_tag(10)} <= counting.all_invalidated()
    engine.dispose()


def test_tracked_factory_is_owned_under_another_apps_context(tmp_path: Any) -> None:
    api, cache_api, counting = _app_with_cache("api")
    admin, _cache_admin, admin_counting = _app_with_cache("admin")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'o.db'}")
    Base.metadata.create_all(engine)
    factory = sa.orm.sessionmaker(engine)
    cache_api.track_session(factory, app=api)
    with factory() as s:
        s.add_all([DataRoom(id=1, name="r"), Folder(id=10, data_room_id=1, name="A")])
        s.commit()
    counting.reset()
    with admin.app_context(), factory() as s:  # e.g. an admin app in the same process
        s.get(Folder, 10).name = "renamed by admin"
        s.commit()
    assert entity_tag("folder", 10) in counting.all_invalidated()
    assert admin_counting.calls["invalidate"] == 0
    engine.dispose()


def test_core_dml_run_by_a_flush_event_is_tracked(env: Env) -> None:
    """A mapper event denormalising into another tracked table during the flush: not the
    flush's own statement, so it is tracked like any Core statement in the session."""
    seed(env)

    def touch_files(mapper: Any, connection: Any, target: Any) -> None:
        connection.execute(
            sa.update(files).where(files.c.folder_id == target.id).values(name=files.c.name + "*")
        )

    sa.event.listen(Folder, "after_update", touch_files)
    try:
        fill(env, 10)
        env.session.get(Folder, 10).name = "A-renamed"
        env.session.commit()
    finally:
        sa.event.remove(Folder, "after_update", touch_files)
    assert {entity_tag("file", 100), contents_tag(10)} <= env.backend.all_invalidated()
    assert env.contents(1, 10)["files"] == ["f1*"]


def _sent_when(env: Env, file_id: int) -> tuple[list[Any], Any]:
    """Spy on deliveries: what another connection reads for ``file_id`` at each send."""
    seen: list[Any] = []
    real = env.store.invalidate
    reader = sa.create_engine(env.db.engine.url)

    def spy(tags: Any, *a: Any, **k: Any) -> Any:
        with reader.connect() as c:
            seen.append(c.scalar(sa.select(files.c.name).where(files.c.id == file_id)))
        return real(tags, *a, **k)

    env.store.invalidate = spy  # type: ignore[method-assign]

    def undo() -> None:
        env.store.invalidate = real  # type: ignore[method-assign]
        reader.dispose()

    return seen, undo


def test_a_failed_core_commit_does_not_break_the_next_commit(env: Env) -> None:
    """A COMMIT that raises (a deferred constraint) must not leave state behind that makes
    the next commit in the thread raise after its data is committed."""
    if env.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps the transaction open after a failed COMMIT (pysqlite)")
    seed(env)
    env.session.rollback()
    with env.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE dfk (id INTEGER PRIMARY KEY, ref INTEGER REFERENCES datarooms(id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(sa.exc.IntegrityError), env.db.engine.connect() as conn:
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
        conn.exec_driver_sql("INSERT INTO dfk VALUES (1, 999)")
        conn.commit()
    env.backend.reset()
    fill(env, 11)
    env.session.get(File, 101).name = "renamed"
    env.session.commit()  # raised ResourceClosedError after committing
    assert entity_tag("file", 101) in env.backend.all_invalidated()
    assert env.contents(1, 11)["files"] == ["renamed"]


def test_autocommit_batches_send_after_the_whole_statement(env: Env) -> None:
    seed(env)
    env.session.rollback()
    seen, undo = _sent_when(env, 305)
    try:
        with env.db.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT", insertmanyvalues_page_size=2
        ) as conn:
            rows = [
                {"id": i, "data_room_id": 1, "folder_id": 20, "name": f"b{i}"}
                for i in range(300, 306)
            ]
            conn.execute(sa.insert(files).returning(files.c.id), rows).all()
    finally:
        undo()
    assert seen and seen[0] == "b305", "sent once the last batch is in, not after the first"


def test_textual_targets_truncate_several_statements_quoted_names(env: Env) -> None:
    seed(env)
    s = env.session
    if env.db.engine.dialect.name == "sqlite":
        s.execute(sa.text("UPDATE \"Files\" SET name='Q' WHERE id=100"))  # same table
        s.commit()
        assert type_tag("file") in env.backend.all_invalidated()
        return
    s.execute(sa.text("UPDATE notes SET text='n'; UPDATE files SET name='NEW' WHERE id=100"))
    s.commit()
    assert type_tag("file") in env.backend.all_invalidated()
    env.backend.reset()
    s.execute(sa.text("TRUNCATE notes, files"))
    s.commit()
    assert EPOCH_TAG in env.backend.all_invalidated()  # a reset: every entry (test_ddl.py)


def test_read_only_cte_is_not_a_write(env: Env) -> None:
    seed(env)
    s = env.session
    lock = " FOR UPDATE" if env.db.engine.dialect.name == "postgresql" else ""
    s.execute(
        sa.text(f"WITH c AS (SELECT id FROM folders) SELECT * FROM files WHERE id = 100{lock}")
    )
    s.execute(sa.text("SELECT 'delete' AS action, ') update' AS x"))
    invalidate_tags(entity_tag("file", 100))  # nothing written: sent at once, not deferred
    assert env.backend.calls["invalidate"] == 1
    assert env.backend.all_invalidated() == {entity_tag("file", 100)}


@pytest.mark.parametrize("mode", ["create_savepoint", "rollback_only"])
def test_session_joined_to_an_outer_transaction_sends_at_the_outer_commit(
    env: Env, mode: str
) -> None:
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker(join_transaction_mode=mode)
    env.cache.track_session(factory, app=env.app)
    seen, undo = _sent_when(env, 100)
    try:
        with env.db.engine.connect() as conn:
            trans = conn.begin()
            s = factory(bind=conn)
            s.get(File, 100).name = "NEW"
            s.commit()  # the outer transaction is still open: nothing committed yet
            s.close()
            assert seen == []
            trans.commit()
        assert seen == ["NEW"]
    finally:
        undo()


def test_core_tags_pending_when_a_session_takes_over_the_connection(env: Env) -> None:
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker(join_transaction_mode="control_fully")
    env.cache.track_session(factory, app=env.app)
    with env.db.engine.connect() as conn:
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
        s = factory(bind=conn)
        s.get(File, 101).name = "session"
        s.commit()  # commits the Core statement too
        s.close()
    sent = env.backend.all_invalidated()
    assert {entity_tag("file", 100), entity_tag("file", 101)} <= sent


def test_two_phase_core_commit_sends(env: Env) -> None:
    """No ``commit`` event for a two-phase COMMIT (the dialect hooks are simulated with a
    plain COMMIT: the tracker does not depend on them)."""
    seed(env)
    env.session.rollback()
    engine = env.db.engine
    d = engine.dialect
    saved = {n: d.__dict__.get(n) for n in ("do_begin_twophase", "do_prepare_twophase",
                                            "do_commit_twophase")}  # fmt: skip
    d.do_begin_twophase = lambda conn, xid: conn.exec_driver_sql("BEGIN")  # type: ignore[method-assign]
    d.do_prepare_twophase = lambda conn, xid: None  # type: ignore[method-assign]
    d.do_commit_twophase = (  # type: ignore[method-assign]
        lambda conn, xid, is_prepared=True, recover=False: conn.exec_driver_sql("COMMIT")
    )
    try:
        with engine.connect() as conn:
            tx = conn.begin_twophase()
            conn.execute(sa.update(files).where(files.c.id == 100).values(name="2pc"))
            tx.prepare()
            tx.commit()
    finally:
        for name, value in saved.items():
            if value is None:
                d.__dict__.pop(name, None)
            else:
                setattr(d, name, value)
    assert entity_tag("file", 100) in env.backend.all_invalidated()


def test_outer_core_tags_survive_a_joined_session_rolling_back(env: Env) -> None:
    """create_savepoint: the session's rollback undoes only its savepoint; the outer
    transaction's own Core statement still commits and must still be sent."""
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker(join_transaction_mode="create_savepoint")
    env.cache.track_session(factory, app=env.app)
    with env.db.engine.connect() as conn:
        trans = conn.begin()
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="outer"))
        s = factory(bind=conn)
        s.get(File, 101).name = "rolled back"
        s.rollback()
        s.close()
        trans.commit()
    assert entity_tag("file", 100) in env.backend.all_invalidated()


def test_connection_taken_over_with_a_savepoint_first_keeps_the_core_tags(env: Env) -> None:
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker(join_transaction_mode="control_fully")
    env.cache.track_session(factory, app=env.app)
    with env.db.engine.connect() as conn:
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
        s = factory(bind=conn)
        sp = s.begin_nested()  # the session's first transaction event is the savepoint's
        s.get(File, 101)
        sp.rollback()  # rolls back nothing of the Core write
        s.commit()  # commits it
        s.close()
    assert entity_tag("file", 100) in env.backend.all_invalidated()


@pytest.mark.parametrize("mode", ["control_fully", "conservative"])
def test_session_on_a_connection_with_core_writes_never_fills(env: Env, mode: str) -> None:
    """The Core write on the connection is uncommitted: the session reads it and must not
    store it (a rollback would leave it in the cache)."""
    seed(env)
    env.session.rollback()
    kwargs = {"join_transaction_mode": "control_fully"} if mode == "control_fully" else {}
    factory = sa.orm.sessionmaker(**kwargs)
    env.cache.track_session(factory, app=env.app)
    with env.db.engine.connect() as conn:
        conn.begin()
        conn.execute(sa.update(files).where(files.c.folder_id == 10).values(name="phantom"))
        s = factory(bind=conn)
        s.get(File, 101)
        key = get_cache_key("phantom", 10)
        read = env.store.get_or_set(
            key, lambda: s.scalars(sa.select(File.name).where(File.folder_id == 10)).all(),
            tags=[contents_tag(10)],
        )  # fmt: skip
        assert read == ["phantom"]  # the session sees its connection's write
        s.close()
        conn.rollback()
    assert env.store.get(key, [contents_tag(10)]) is None, "nothing was stored"


def test_executemany_update_above_the_row_cap_tags_the_new_parents(env: Env) -> None:
    from flask_dataroom_cache.tracking import BULK_ROW_CAP

    seed(env)
    env.session.rollback()
    n = BULK_ROW_CAP + 5
    with env.db.engine.begin() as conn:
        conn.execute(
            sa.insert(files),
            [
                {"id": 1000 + i, "name": f"n{i}", "folder_id": 10, "data_room_id": 1}
                for i in range(n)
            ],
        )
    env.backend.reset()
    stmt = (
        sa.update(files)
        .where(files.c.id == sa.bindparam("b_id"))
        .values(folder_id=sa.bindparam("b_f"))
    )
    with env.db.engine.begin() as conn:  # Core: parameters named after bindparams
        conn.execute(stmt, [{"b_id": 1000 + i, "b_f": 20} for i in range(n)])
    assert {contents_tag(10), contents_tag(20)} <= env.backend.all_invalidated()
    env.backend.reset()
    env.session.execute(  # ORM bulk UPDATE by primary key: parameters named after columns
        sa.update(File), [{"id": 1000 + i, "folder_id": 11} for i in range(n)]
    )
    env.session.commit()
    assert {contents_tag(20), contents_tag(11)} <= env.backend.all_invalidated()
    env.backend.reset()
    with env.db.engine.begin() as conn:  # computed new parents, too many rows to re-read
        conn.execute(
            sa.update(files).where(files.c.id >= 1000).values(folder_id=files.c.id * 0 + 20)
        )
    assert "~epoch" in env.backend.all_invalidated()


def test_insert_values_given_as_bindparams_or_sql(env: Env) -> None:
    seed(env)
    env.session.rollback()
    stmt = sa.insert(files).values(
        id=sa.bindparam("i"), name=sa.bindparam("n"),
        folder_id=sa.bindparam("f"), data_room_id=sa.bindparam("r"),
    )  # fmt: skip
    with env.db.engine.begin() as conn:
        conn.execute(
            stmt, [{"i": 501, "n": "x", "f": 20, "r": 1}, {"i": 502, "n": "y", "f": 20, "r": 1}]
        )
    assert {
        entity_tag("file", 501),
        contents_tag(20),
        dataroom_tag(1),
    } <= env.backend.all_invalidated()
    env.backend.reset()
    folders = Folder.__table__
    sub = sa.select(folders.c.id).where(folders.c.name == "B").scalar_subquery()
    with env.db.engine.begin() as conn:
        conn.execute(sa.insert(files).values(id=503, name="z", folder_id=sub, data_room_id=1))
    assert {entity_tag("file", 503), contents_tag(20)} <= env.backend.all_invalidated()


def test_rolled_back_core_savepoint_drops_its_tags(env: Env) -> None:
    seed(env)
    env.session.rollback()
    with env.db.engine.connect() as conn:
        conn.begin()
        conn.execute(sa.update(files).where(files.c.id == 101).values(name="kept"))
        sp = conn.begin_nested()
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="undone"))
        sp.rollback()
        conn.commit()
    sent = env.backend.all_invalidated()
    assert entity_tag("file", 101) in sent and entity_tag("file", 100) not in sent


def test_joined_session_beginning_again_does_not_hold_back_the_outer_commit(env: Env) -> None:
    """After its commit (tags parked for the outer COMMIT) a joined session reloads an
    expired attribute, begins again on the connection and owns it: the outer COMMIT must
    still send the parked tags."""
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker()
    env.cache.track_session(factory, app=env.app)
    seen, undo = _sent_when(env, 100)
    try:
        with env.db.engine.connect() as conn:
            conn.begin()
            s = factory(bind=conn)
            f = s.get(File, 100)
            f.name = "renamed"
            s.commit()
            assert f.name == "renamed"  # reload: the session begins again on conn
            assert seen == []
            conn.commit()
            assert seen == ["renamed"], "sent by the outer COMMIT"
            s.close()
    finally:
        undo()


def test_core_savepoint_marks_stay_paired_with_session_savepoints(env: Env) -> None:
    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker()
    env.cache.track_session(factory, app=env.app)
    with env.db.engine.connect() as conn:
        conn.begin()
        sp1 = conn.begin_nested()
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="core"))
        s = factory(bind=conn)
        s.get(File, 101)
        with s.begin_nested():  # the session's own savepoint on the same connection
            s.get(File, 100)
        s.rollback()
        s.close()
        sp1.commit()
        conn.commit()
    assert entity_tag("file", 100) in env.backend.all_invalidated()


def test_insert_with_raw_sql_values_still_runs(env: Env) -> None:
    seed(env)
    env.session.rollback()
    with env.db.engine.begin() as conn:
        conn.execute(sa.insert(files).values(id=700, name="d", data_room_id=1, folder_id=sa.null()))
        conn.execute(
            sa.insert(files).values(
                id=701, name="d", data_room_id=1, folder_id=sa.literal_column("NULL")
            )
        )
    assert entity_tag("file", 700) in env.backend.all_invalidated()


def test_textual_sql_patterns_are_linear_in_leading_comments() -> None:
    import time as _time

    from flask_dataroom_cache.tracking.textual import MORE_STATEMENTS as _MORE_STATEMENTS
    from flask_dataroom_cache.tracking.textual import TEXT_TARGET as _TEXT_TARGET
    from flask_dataroom_cache.tracking.textual import WRITE_SQL as _WRITE_SQL

    sql = "/**/" * 40 + " SELECT 1"  # exponential with a comment pattern that can span */
    started = _time.perf_counter()
    assert _WRITE_SQL.match(sql) is None and _TEXT_TARGET.match(sql) is None
    assert _MORE_STATEMENTS.search("SELECT 1;" + "/**/" * 40) is None
    assert _time.perf_counter() - started < 2.0
    assert _WRITE_SQL.match("/* a **/ DELETE FROM files") is not None


def test_multi_bind_session_sends_what_really_committed(env: Env) -> None:
    """One bind joined to an outer transaction, the other committed by the session: the
    committed bind's tags go out at the session's commit (and stay parked for the outer)."""
    if env.db.engine.dialect.name != "postgresql":
        pytest.skip("two writing connections at once: SQLite would lock")
    seed(env)
    env.session.rollback()
    other = sa.create_engine(env.db.engine.url)  # a second engine: its own connection
    factory = sa.orm.sessionmaker()
    env.cache.track_session(factory, app=env.app, engines=[other])
    try:
        with env.db.engine.connect() as outer:
            outer.begin()
            s = factory(binds={Folder: outer, File: other})
            s.get(Folder, 20).name = "joined"
            s.get(File, 100).name = "committed"
            s.commit()
            assert entity_tag("file", 100) in env.backend.all_invalidated()
            s.close()
            outer.rollback()
    finally:
        other.dispose()


def test_session_handed_to_another_thread_never_fills_uncommitted_rows(env: Env) -> None:
    import threading

    seed(env)
    env.session.rollback()
    factory = sa.orm.sessionmaker(bind=env.db.engine)
    env.cache.track_session(factory, app=env.app)
    key, tags = get_cache_key("handover", 100), [entity_tag("file", 100)]
    s = factory()
    s.get(File, 100)  # begins in this thread

    def worker() -> None:  # another thread carries on with the same session
        s.get(File, 100).name = "UNCOMMITTED"
        s.flush()
        assert env.store.get_or_set(key, lambda: s.get(File, 100).name, tags=tags) == (
            "UNCOMMITTED"
        )
        s.rollback()
        s.close()

    with env.app.app_context():
        t = threading.Thread(target=lambda: env.app.app_context().push() or worker())
        t.start()
        t.join()
    assert env.store.get(key, tags) is None, "the uncommitted row was stored"


def test_delete_with_an_expanding_bindparam(env: Env) -> None:
    seed(env)
    env.session.rollback()
    folders = Folder.__table__
    with env.db.engine.begin() as conn:  # cascades: folder 11's file goes with it
        conn.execute(
            sa.delete(folders).where(folders.c.id.in_(sa.bindparam("ids", expanding=True))),
            {"ids": [11]},
        )
        conn.execute(  # a WHERE parameter named like a column is not a new value
            sa.delete(files).where(files.c.id.in_(sa.bindparam("id", expanding=True))),
            {"id": [100]},
        )
    sent = env.backend.all_invalidated()
    assert {entity_tag("folder", 11), entity_tag("file", 101), entity_tag("file", 100)} <= sent


def test_invalid_hook_tag_never_fails_a_commit_that_went_through(env: Env) -> None:
    seed(env)
    fill(env, 10)
    env.session.add(File(id=900, data_room_id=1, folder_id=10, name="evil\nname.txt"))
    env.session.commit()  # the hook's filename:... tag is invalid: the epoch stands in
    assert "~epoch" in env.backend.all_invalidated()
    assert "evil\nname.txt" in env.contents(1, 10)["files"]


def test_insert_id_from_a_function_is_not_evaluated_twice(env: Env) -> None:
    if env.db.engine.dialect.name != "postgresql":
        pytest.skip("sequences")
    seed(env)
    env.session.rollback()
    with env.db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE fseq START 500")
        conn.execute(
            sa.insert(files).values(
                id=sa.func.nextval("fseq"), name="s", data_room_id=1, folder_id=10
            )
        )
        assert conn.scalar(sa.select(sa.func.max(files.c.id))) == 500  # no value burnt
    assert "~epoch" in env.backend.all_invalidated()


def test_unflushed_change_read_from_the_session_is_never_cached(env: Env) -> None:
    """``session.get`` of a loaded object runs no SQL (no autoflush): the compute reads the
    pending change from memory, and it must not be stored."""
    seed(env)
    key, tags = get_cache_key("unflushed", 100), [entity_tag("file", 100)]
    s = env.session
    s.get(File, 100).name = "UNCOMMITTED"  # dirty, not flushed
    assert env.store.get_or_set(key, lambda: s.get(File, 100).name, tags=tags) == "UNCOMMITTED"
    s.rollback()
    assert env.store.get_or_set(key, lambda: s.get(File, 100).name, tags=tags) == "f1"
