"""Deletes the DATABASE cascades (``ON DELETE CASCADE`` / ``SET NULL``): the rows it removes
or changes never reach Python, so the tracker reads them before the DELETE runs and
invalidates their own tags (issue 3: "a delete that cascades invalidates what it removed").

The views here are tagged ONLY with ``file:{id}`` / ``folder:{id}`` /
``folder:{id}/contents`` (no room tag), like the example app's detail views, so a missed
descendant would serve deleted data.

Tree used by most tests (room 1; the database cascades below folder 10)::

    folder 10 "A"  ── folder 11 "A1" ── folder 12 "A1a" ── file 103
      │                  └── file 101
      └── files 100, 102
    folder 20 "B"  ── file 200        (untouched by the deletes)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_dataroom_cache import (
    DataRoomCache,
    contents_tag,
    dataroom_tag,
    entity_tag,
    get_cache_key,
    list_tag,
    type_tag,
    user_tag,
)
from flask_dataroom_cache import tracking as tracking_module
from flask_dataroom_cache.tracking import BULK_ROW_CAP, cascades, rows

from .conftest import Env, sqlite_fk
from .models import DataRoom, File, Folder, Membership, Shortcut

DESCENDANT_TAGS = {
    # everything below folder 10 that the database removes with it
    entity_tag("folder", 11),
    entity_tag("folder", 12),
    entity_tag("file", 100),
    entity_tag("file", 101),
    entity_tag("file", 102),
    entity_tag("file", 103),
    contents_tag(10),
    contents_tag(11),
    contents_tag(12),
    list_tag("file"),
    list_tag("folder"),
    dataroom_tag(1),
}


def seed(env: Env) -> None:
    s = env.session
    s.add(DataRoom(id=1, name="Room"))
    s.add_all([Folder(id=10, data_room_id=1, name="A"), Folder(id=20, data_room_id=1, name="B")])
    s.flush()
    s.add(Folder(id=11, data_room_id=1, parent_id=10, name="A1"))
    s.flush()
    s.add(Folder(id=12, data_room_id=1, parent_id=11, name="A1a"))
    s.flush()
    s.add_all(
        [
            File(id=100, data_room_id=1, folder_id=10, name="f100"),
            File(id=101, data_room_id=1, folder_id=11, name="f101"),
            File(id=102, data_room_id=1, folder_id=10, name="f102"),
            File(id=103, data_room_id=1, folder_id=12, name="f103"),
            File(id=200, data_room_id=1, folder_id=20, name="f200"),
            Membership(id=1000, data_room_id=1, user_id="u1"),
        ]
    )
    s.commit()
    s.expunge_all()  # nothing loaded: the ORM cannot know the descendants
    env.backend.reset()


class Views:
    """Detail views tagged with their own entity tag only; counts recomputations."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.computed: list[tuple[str, int]] = []

    def file(self, file_id: int) -> Any:
        def fresh() -> Any:
            self.computed.append(("file", file_id))
            return self.env.session.scalar(sa.select(File.name).where(File.id == file_id))

        key = get_cache_key("cascade-file", file_id)
        return self.env.store.get_or_set(key, fresh, tags=[entity_tag("file", file_id)])

    def folder(self, folder_id: int) -> Any:
        def fresh() -> Any:
            self.computed.append(("folder", folder_id))
            return self.env.session.scalar(sa.select(Folder.name).where(Folder.id == folder_id))

        key = get_cache_key("cascade-folder", folder_id)
        return self.env.store.get_or_set(key, fresh, tags=[entity_tag("folder", folder_id)])

    def contents(self, folder_id: int) -> Any:
        def fresh() -> Any:
            self.computed.append(("contents", folder_id))
            return self.env.contents_fresh(1, folder_id)

        key = get_cache_key("cascade-contents", folder_id)
        return self.env.store.get_or_set(key, fresh, tags=[contents_tag(folder_id)])

    def fill(self) -> None:
        for fid in (100, 101, 102, 103, 200):
            assert self.file(fid) == f"f{fid}"
        for folder_id in (11, 12, 20):
            assert self.folder(folder_id) is not None
            self.contents(folder_id)
        self.env.session.rollback()  # end the read transaction (snapshot rule)
        self.computed.clear()

    def assert_descendants_gone(self) -> None:
        """Every view of a removed row recomputes (a miss) and shows it gone; the
        untouched folder 20 and file 200 stay cached."""
        for fid in (100, 101, 102, 103):
            assert self.file(fid) is None, fid
        for folder_id in (11, 12):
            assert self.folder(folder_id) is None, folder_id
            assert self.contents(folder_id) == {"folders": [], "files": []}
        assert self.file(200) == "f200"
        assert self.folder(20) == "B"
        missed = set(self.computed)
        assert {("file", f) for f in (100, 101, 102, 103)} <= missed
        assert {("folder", 11), ("folder", 12), ("contents", 11), ("contents", 12)} <= missed
        assert ("file", 200) not in missed and ("folder", 20) not in missed
        self.env.session.rollback()


@pytest.fixture
def views(env: Env) -> Iterator[Views]:
    seed(env)
    v = Views(env)
    v.fill()
    yield v


def deleters(env: Env) -> dict[str, Callable[[], None]]:
    s = env.session
    folders = Folder.__table__
    return {
        # ORM: passive_deletes=True, nothing loaded; the database removes the subtree
        "orm": lambda: s.delete(s.get(Folder, 10)),
        "orm-bulk": lambda: s.execute(sa.delete(Folder).where(Folder.id == 10)),
        "query-delete": lambda: s.query(Folder).filter(Folder.name == "A").delete(),
        "core-session": lambda: s.execute(sa.delete(folders).where(folders.c.id == 10)),
        "core-executemany": lambda: s.connection().execute(
            sa.delete(folders).where(folders.c.id == sa.bindparam("fid")), [{"fid": 10}]
        ),
    }


@pytest.mark.parametrize(
    "how", ["orm", "orm-bulk", "query-delete", "core-session", "core-executemany"]
)
def test_database_cascade_invalidates_every_removed_descendant(
    env: Env, views: Views, how: str
) -> None:
    s = env.session
    deleters(env)[how]()
    assert env.backend.calls["invalidate"] == 0, "nothing before the commit"
    s.commit()
    sent = env.backend.all_invalidated()
    assert DESCENDANT_TAGS | {entity_tag("folder", 10)} <= sent, DESCENDANT_TAGS - sent
    assert entity_tag("file", 200) not in sent and contents_tag(20) not in sent
    assert s.get(File, 103) is None  # the database did cascade
    views.assert_descendants_gone()


def test_core_delete_on_a_plain_connection(env: Env, views: Views) -> None:
    folders = Folder.__table__
    with env.db.engine.begin() as conn:
        conn.execute(sa.delete(folders).where(folders.c.id == 10))
        assert env.backend.calls["invalidate"] == 0
    assert env.backend.all_invalidated() >= DESCENDANT_TAGS
    views.assert_descendants_gone()


@pytest.mark.parametrize("how", ["orm", "orm-bulk", "core-session"])
def test_rolled_back_cascade_sends_nothing(env: Env, views: Views, how: str) -> None:
    s = env.session
    deleters(env)[how]()
    s.flush()
    s.rollback()
    assert env.backend.calls["invalidate"] == 0
    assert env.backend.all_invalidated() == set()
    # a rolled-back savepoint drops its cascade's tags; the outer commit sends none of them
    with s.begin_nested():
        s.get(Folder, 20).name = "B2"
    sp = s.begin_nested()
    deleters(env)[how]()
    s.flush()
    sp.rollback()
    s.commit()
    sent = env.backend.all_invalidated()
    assert entity_tag("folder", 20) in sent
    assert not ({entity_tag("file", 103), entity_tag("folder", 12)} & sent)
    assert s.get(File, 103) is not None
    assert views.file(103) == "f103"
    assert ("file", 103) not in views.computed, "still cached: nothing was invalidated"


def test_released_savepoint_keeps_the_cascade(env: Env, views: Views) -> None:
    s = env.session
    with s.begin_nested():
        s.delete(s.get(Folder, 10))
    s.commit()
    assert env.backend.all_invalidated() >= DESCENDANT_TAGS
    views.assert_descendants_gone()


def test_failed_commit_sends_nothing(env: Env, views: Views) -> None:
    s = env.session
    s.delete(s.get(Folder, 10))
    s.flush()  # the cascade's tags are pending now
    s.add(Folder(id=20, data_room_id=1, name="duplicate id"))  # IntegrityError at flush
    with pytest.raises(sa.exc.IntegrityError):
        s.commit()
    s.rollback()
    assert env.backend.calls["invalidate"] == 0
    assert views.file(103) == "f103"


def test_bulk_room_delete_cascades_to_folders_files_and_members(env: Env, views: Views) -> None:
    s = env.session
    s.execute(sa.delete(DataRoom).where(DataRoom.id == 1))
    s.commit()
    sent = env.backend.all_invalidated()
    expected = DESCENDANT_TAGS | {
        entity_tag("folder", 10),
        entity_tag("folder", 20),
        entity_tag("file", 200),
        contents_tag(20),
        entity_tag("membership", 1000),
        user_tag("u1"),  # the member's room list showed the room
        dataroom_tag(1),
    }
    assert expected <= sent, expected - sent
    assert views.file(200) is None and views.folder(20) is None


def test_bulk_room_delete_evaluates_members(env: Env, views: Views) -> None:
    """``members`` of rows a bulk statement deletes are read before the DELETE (here
    distinct from the memberships' own ``user:`` tags)."""
    env.cache.track(
        DataRoom,
        entity="dataroom",
        members=lambda room: [f"via-members-{m.user_id}" for m in room.memberships],
    )
    s = env.session
    s.execute(sa.delete(DataRoom).where(DataRoom.id == 1))
    s.commit()
    assert {user_tag("via-members-u1"), user_tag("u1")} <= env.backend.all_invalidated()


def test_set_null_children_are_tagged_with_their_old_parent(env: Env, views: Views) -> None:
    """``ON DELETE SET NULL``: the rows survive with a NULL parent; their own tags and
    their OLD parent are bumped (and ``members`` evaluated on the loaded rows)."""
    env.cache.track(
        Shortcut,
        entity="shortcut",
        parents={"target_id": "folder"},
        members=lambda sc: [f"owner-{sc.id}"],
    )
    s = env.session
    s.add_all([Shortcut(id=1, target_id=12, name="to A1a"), Shortcut(id=2, target_id=20, name="B")])
    s.commit()
    env.backend.reset()
    s.execute(sa.delete(Folder).where(Folder.id == 10))
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("shortcut", 1), list_tag("shortcut"), contents_tag(12)} <= sent
    assert user_tag("owner-1") in sent
    assert entity_tag("shortcut", 2) not in sent and user_tag("owner-2") not in sent
    assert s.get(Shortcut, 1).target_id is None  # the database set it NULL


@pytest.mark.auto_tags_off  # untracked writes send automatic tags otherwise (issue 17)
def test_nothing_extra_without_cascading_dependents(env: Env) -> None:
    """A delete of a table nothing cascades from runs no extra SELECT (the hot path)."""
    seed(env)
    s = env.session
    file = s.get(File, 100)
    statements: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(env.db.engine, "before_cursor_execute", spy)
    try:
        s.delete(file)
        s.flush()
        s.execute(sa.delete(Membership).where(Membership.id == 1000))
    finally:
        sa.event.remove(env.db.engine, "before_cursor_execute", spy)
    s.commit()
    selects = [x for x in statements if x.lstrip().upper().startswith("SELECT")]
    # the bulk statement's own row SELECT only; no cascade SELECT for either delete
    assert len(selects) == 1, selects
    assert "memberships" in selects[0]


def test_cascade_above_the_row_cap_uses_the_type_tag(env: Env) -> None:
    """More than BULK_ROW_CAP files removed by the database: ``type:file`` stands for
    their ``file:{id}`` tags; the parent tags stay exact."""
    seed(env)
    s = env.session
    s.execute(
        sa.insert(File.__table__),
        [
            {"id": 5000 + n, "data_room_id": 1, "folder_id": 12, "name": f"many{n}"}
            for n in range(BULK_ROW_CAP + 1)
        ],
    )
    s.commit()
    env.backend.reset()
    s.delete(s.get(Folder, 10))
    s.commit()
    sent = env.backend.all_invalidated()
    assert type_tag("file") in sent
    assert {contents_tag(12), contents_tag(11), contents_tag(10), dataroom_tag(1)} <= sent
    assert {entity_tag("folder", 11), entity_tag("folder", 12)} <= sent  # few folders: exact
    assert entity_tag("file", 5000) not in sent  # above the cap: not one tag per row
    assert type_tag("folder") not in sent


def test_cascade_descends_below_a_level_above_the_cap(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tiny cap: a level of folders above it gets ``type:folder`` and the next
    level (their files) is still read, through a subquery, and tagged exactly."""
    seed(env)
    monkeypatch.setattr(rows, "BULK_ROW_CAP", 3)
    s = env.session
    s.add_all([Folder(id=13 + n, data_room_id=1, parent_id=10, name=f"sub{n}") for n in range(3)])
    s.flush()
    s.add(File(id=104, data_room_id=1, folder_id=14, name="f104"))
    s.commit()
    env.backend.reset()
    s.execute(sa.delete(Folder).where(Folder.id == 10))
    s.commit()
    sent = env.backend.all_invalidated()
    # level 1: folders 11, 13, 14, 15 (> 3) and files 100, 102 (<= 3)
    assert {type_tag("folder"), contents_tag(10), entity_tag("file", 100)} <= sent
    # level 2 (below the capped level): files 101, 104 and folder 12; level 3: file 103
    assert {entity_tag("file", 101), entity_tag("file", 104), entity_tag("folder", 12)} <= sent
    assert {contents_tag(11), contents_tag(14), contents_tag(12), entity_tag("file", 103)} <= sent


def test_cascade_graph_is_built_once_and_follows_track(env: Env) -> None:
    tracker = tracking_module.tracker_for(env.cache, env.app)
    folders, files = Folder.__table__, File.__table__
    edges = tracker.cascades.edges(folders)
    assert {(e.child.name, e.action) for e in edges} == {("folders", "delete"), ("files", "delete")}
    assert tracker.cascades.edges(folders) is edges  # cached
    assert tracker.cascades.edges(files) == ()
    env.cache.track(Shortcut, entity="shortcut", parents={"target_id": "folder"})
    assert ("shortcuts", "null") in {
        (e.child.name, e.action) for e in tracker.cascades.edges(folders)
    }


def test_cascade_deeper_than_the_limit_falls_back_to_type_tags(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past CASCADE_MAX_DEPTH levels (a pathological tree) the walk stops and
    ``type:{entity}`` of every table it could still reach stands for the rest."""
    seed(env)
    monkeypatch.setattr(cascades, "CASCADE_MAX_DEPTH", 1)
    s = env.session
    s.delete(s.get(Folder, 10))  # the flush path: no type tag of its own
    s.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("folder", 11), entity_tag("file", 100)} <= sent  # level 1: exact
    assert {type_tag("file"), type_tag("folder"), list_tag("file")} <= sent  # the rest
    assert entity_tag("file", 101) not in sent


def test_nested_subqueries_stop_at_the_nesting_limit(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below a level above the cap the next levels are selected through nested
    subqueries; past CASCADE_MAX_NESTING of them, type tags stand for what is below."""
    seed(env)
    monkeypatch.setattr(rows, "BULK_ROW_CAP", 1)
    monkeypatch.setattr(cascades, "CASCADE_MAX_NESTING", 0)
    tracker = tracking_module.tracker_for(env.cache, env.app)
    fallbacks: list[Any] = []
    original = tracker.cascades.reachable_type_tags

    def spy(tables: Any, tags: set[str], include_self: bool = True) -> None:
        fallbacks.append([t.name for t in tables])
        original(tables, tags, include_self)

    monkeypatch.setattr(tracker.cascades, "reachable_type_tags", spy)
    s = env.session
    s.add(Folder(id=13, data_room_id=1, parent_id=10, name="A2"))
    s.commit()
    s.expunge_all()
    env.backend.reset()
    s.delete(s.get(Folder, 10))
    s.commit()
    sent = env.backend.all_invalidated()
    assert ["folders"] in fallbacks  # folders 11, 13 (> 1): their children by type
    assert {type_tag("folder"), type_tag("file"), contents_tag(10)} <= sent


class _OtherBase(DeclarativeBase):
    pass


class Shelf(_OtherBase):  # tracked
    __tablename__ = "shelves"
    id: Mapped[int] = mapped_column(primary_key=True)


class Box(_OtherBase):  # NOT tracked: the cascade passes through it
    __tablename__ = "boxes"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id", ondelete="CASCADE"))


class Item(_OtherBase):  # tracked, two levels below a shelf
    __tablename__ = "items"
    # a composite primary key; the tag id is another column
    box_id: Mapped[int] = mapped_column(
        ForeignKey("boxes.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)


def test_cascade_through_an_untracked_table(
    cache_config: dict[str, Any], database_url: str
) -> None:
    """Shelf (tracked) -> Box (untracked) -> Item (tracked): deleting a shelf with Core
    tags the items the database removes two levels down."""
    app = Flask(f"t_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, **cache_config, SQLALCHEMY_DATABASE_URI=database_url)
    db = SQLAlchemy()
    cache = DataRoomCache()
    cache.track(Shelf, entity="shelf")
    cache.track(Item, entity="item", id_attr="code", parents={"box_id": "box"})
    db.init_app(app)
    cache.init_app(app)
    with app.app_context():
        sqlite_fk(db.engine)
        _OtherBase.metadata.create_all(db.engine)
        try:
            s = db.session
            s.add(Shelf(id=1))
            s.add(Shelf(id=2))
            s.flush()
            s.add_all([Box(id=10, shelf_id=1), Box(id=20, shelf_id=2)])
            s.flush()
            s.add_all(
                [
                    Item(box_id=10, slot=1, code="a"),
                    Item(box_id=10, slot=2, code="b"),
                    Item(box_id=20, slot=1, code="c"),
                ]
            )
            s.commit()
            store = cache.state(app).store
            sent: list[str] = []
            original = store.invalidate

            def spy(tags: Any, *args: Any, **kwargs: Any) -> Any:
                sent.extend(tags)
                return original(tags, *args, **kwargs)

            store.invalidate = spy  # type: ignore[method-assign]
            shelves = Shelf.__table__
            s.execute(sa.delete(shelves).where(shelves.c.id == 1))
            s.commit()
            assert {"item:a", "item:b", "box:10", "item:list", "shelf:1"} <= set(sent)
            assert "item:c" not in sent and "box:20" not in sent
            assert s.scalar(sa.select(sa.func.count()).select_from(Item)) == 1
        finally:
            db.session.remove()
            _OtherBase.metadata.drop_all(db.engine)
            db.engine.dispose()
