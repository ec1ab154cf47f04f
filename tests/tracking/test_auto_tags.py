"""Automatic write tags (issue 17, docs/auto-tags.md, write side): the exact ``~t`` /
``~r`` / ``~c`` / ``~e`` tags each kind of write sends at its commit, for tracked and
untracked models and tables, and none on rollback, savepoint rollback or when switched off.
The scenarios written through a session run on a sync session and on an ``AsyncSession``
(``any_env``): the same tags, exactly.

Seed (``test_semantics.seed``): room 1; folders 10, 20 (room 1, no parent), 11 (parent
10); files 100 (folder 10), 101 (folder 11); membership 1000.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flask_dataroom_cache import signals
from flask_dataroom_cache.autotags import column_tag, epoch_tag, row_tag, table_tag
from flask_dataroom_cache.tags import EPOCH_TAG

from .conftest import Env
from .models import File, Folder, Note, Shortcut
from .test_semantics import seed


def file_tags(pk: int, room: int, folder: int | None) -> set[str]:
    return {
        table_tag("files"),
        row_tag("files", [pk]),
        column_tag("files", "data_room_id", room),
        column_tag("files", "folder_id", folder),
    }


def folder_tags(pk: int, room: int, parent: int | None) -> set[str]:
    return {
        table_tag("folders"),
        row_tag("folders", [pk]),
        column_tag("folders", "data_room_id", room),
        column_tag("folders", "parent_id", parent),
    }


def note_tags(pk: int) -> set[str]:
    return {table_tag("notes"), row_tag("notes", [pk])}


def sent(env: Env) -> set[str]:
    return env.backend.auto_invalidated()


# -- ORM flush -----------------------------------------------------------------------------


def test_flush_insert_update_move_delete(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.add(File(id=102, data_room_id=1, folder_id=20, name="new"))
    s.commit()
    assert sent(env) == file_tags(102, 1, 20)
    env.backend.reset()
    f = s.get(File, 100)
    s.expire(f)  # not loaded: its value columns are read before the flush
    f.name = "renamed"
    s.commit()
    assert sent(env) == file_tags(100, 1, 10), "a rename bumps its folder's column tag"
    env.backend.reset()
    s.get(File, 100).folder_id = 20
    s.commit()
    assert sent(env) == file_tags(100, 1, 10) | file_tags(100, 1, 20), "old and new folder"
    env.backend.reset()
    s.delete(s.get(File, 100))
    s.commit()
    assert sent(env) == file_tags(100, 1, 20)


def test_flush_move_through_relationship_and_key_change(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.get(File, 101).folder = s.get(Folder, 20)
    s.commit()
    assert sent(env) == file_tags(101, 1, 11) | file_tags(101, 1, 20)
    env.backend.reset()
    s.get(File, 101).id = 555  # the key itself
    s.commit()
    assert sent(env) == file_tags(101, 1, 20) | file_tags(555, 1, 20)


def test_untracked_model(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.add(Note(id=5, text="a"))
    s.commit()
    assert sent(env) == note_tags(5)
    env.backend.reset()
    s.get(Note, 5).text = "b"
    s.commit()
    assert sent(env) == note_tags(5)


def test_declared_indexable_column(any_env: Env) -> None:
    env = any_env
    env.cache.index_columns(Note, "text")
    seed(env)
    s = env.session
    s.add(Note(id=5, text="a b"))
    s.commit()
    env.backend.reset()
    s.get(Note, 5).text = "c"
    s.commit()
    assert sent(env) == note_tags(5) | {
        column_tag("notes", "text", "a b"),
        column_tag("notes", "text", "c"),
    }


def test_index_columns_names_the_table_and_column(env: Env) -> None:
    with pytest.raises(ValueError, match=r"'notes'.*'nope'"):
        env.cache.index_columns(Note, "nope")


# -- ORM bulk and Core -----------------------------------------------------------------------


def test_orm_bulk_update_where(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.execute(sa.update(File).where(File.folder_id == 10).values(folder_id=20))
    s.commit()
    assert sent(env) == file_tags(100, 1, 10) | file_tags(100, 1, 20)


def test_orm_bulk_update_by_primary_key_and_delete(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.execute(sa.update(File), [{"id": 101, "folder_id": 20}])
    s.commit()
    assert sent(env) == file_tags(101, 1, 11) | file_tags(101, 1, 20)
    env.backend.reset()
    s.execute(sa.delete(File).where(File.id == 101))
    s.commit()
    assert sent(env) == file_tags(101, 1, 20)


def test_orm_bulk_insert_list(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.execute(sa.insert(Note), [{"id": 7, "text": "x"}, {"id": 8, "text": "y"}])
    s.commit()
    assert sent(env) == note_tags(7) | note_tags(8)


def test_core_dml_on_a_connection(env: Env) -> None:
    seed(env)
    files = File.__table__
    with env.db.engine.begin() as conn:
        conn.execute(sa.update(files).where(files.c.id == 100).values(name="x"))
    assert sent(env) == file_tags(100, 1, 10)
    env.backend.reset()
    with env.db.engine.begin() as conn:
        conn.execute(files.insert(), {"id": 300, "data_room_id": 1, "folder_id": 20, "name": "n"})
        conn.execute(
            files.insert(),
            [
                {"id": 301, "data_room_id": 1, "folder_id": None, "name": "a"},
                {"id": 302, "data_room_id": 1, "folder_id": 10, "name": "b"},
            ],
        )
    assert sent(env) == file_tags(300, 1, 20) | file_tags(301, 1, None) | file_tags(302, 1, 10)
    env.backend.reset()
    with env.db.engine.begin() as conn:
        conn.execute(sa.delete(files).where(files.c.folder_id == 10))
    assert sent(env) == file_tags(100, 1, 10) | file_tags(302, 1, 10)


def test_core_insert_with_unknown_keys_bumps_the_table_epoch(env: Env) -> None:
    seed(env)
    notes = Note.__table__
    with env.db.engine.begin() as conn:
        conn.execute(notes.insert(), [{"text": "a"}, {"text": "b"}])  # executemany
    assert epoch_tag("notes") in sent(env)
    assert not any(t.startswith("~r:notes") for t in sent(env))


def test_textual_writes(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.execute(sa.text("UPDATE notes SET text = 'x'"))
    s.commit()
    assert sent(env) == {epoch_tag("notes"), table_tag("notes")}
    env.backend.reset()
    s.execute(sa.text("DELETE FROM notes"))
    s.rollback()
    assert sent(env) == set()
    with env.db.engine.begin() as conn:
        conn.exec_driver_sql("WITH x AS (SELECT 1) UPDATE notes SET text = 'w'")
    assert EPOCH_TAG in {t for batch in env.backend.invalidated for t in batch}, "unknown target"


# -- database cascades -----------------------------------------------------------------------


def test_database_cascade_and_set_null(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.add(Shortcut(id=1, target_id=10, name="link"))
    s.commit()
    env.backend.reset()
    s.delete(s.get(Folder, 10))  # passive_deletes: the database deletes 11, 100, 101
    s.commit()
    expected = (
        folder_tags(10, 1, None)
        | folder_tags(11, 1, 10)
        | file_tags(100, 1, 10)
        | file_tags(101, 1, 11)
        | {
            table_tag("shortcuts"),
            row_tag("shortcuts", [1]),
            column_tag("shortcuts", "target_id", 10),
            column_tag("shortcuts", "target_id", None),
        }
    )
    assert sent(env) == expected


# -- inheritance and many-to-many (their own tables) -------------------------------------------


class AwBase(DeclarativeBase):
    pass


aw_links = sa.Table(
    "aw_links",
    AwBase.metadata,
    sa.Column("emp_id", ForeignKey("aw_emp.id"), primary_key=True),
    sa.Column("label_id", ForeignKey("aw_label.id"), primary_key=True),
)


class AwLabel(AwBase):
    __tablename__ = "aw_label"
    id: Mapped[int] = mapped_column(primary_key=True)


class AwEmp(AwBase):
    __tablename__ = "aw_emp"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(20))
    labels: Mapped[list[AwLabel]] = relationship(secondary=aw_links)
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "emp"}


class AwEng(AwEmp):
    __tablename__ = "aw_eng"
    id: Mapped[int] = mapped_column(ForeignKey("aw_emp.id"), primary_key=True)
    lang: Mapped[str] = mapped_column(String(10))
    __mapper_args__ = {"polymorphic_identity": "eng"}


@pytest.fixture
def aw(any_env: Env) -> Env:
    env = any_env
    AwBase.metadata.create_all(env.db.engine)
    env.session.add(AwLabel(id=1))
    env.session.commit()
    env.backend.reset()
    return env


def test_joined_inheritance_one_tag_set_per_table(aw: Env) -> None:
    s = aw.session
    s.add(AwEng(id=3, name="a", lang="py"))
    s.commit()
    eng = {table_tag("aw_eng"), row_tag("aw_eng", [3]), column_tag("aw_eng", "id", 3)}
    assert sent(aw) == {table_tag("aw_emp"), row_tag("aw_emp", [3])} | eng
    aw.backend.reset()
    s.get(AwEng, 3).lang = "go"  # only the subclass table is written
    s.commit()
    assert sent(aw) == eng


def test_many_to_many_secondary_rows(aw: Env) -> None:
    s = aw.session
    emp = AwEmp(id=4, name="b")
    s.add(emp)
    s.commit()
    aw.backend.reset()
    s.refresh(emp, ["labels"])  # loaded before the change (an AsyncSession cannot lazy-load)
    emp.labels.append(s.get(AwLabel, 1))
    s.commit()
    link = {
        table_tag("aw_links"),
        row_tag("aw_links", [4, 1]),
        column_tag("aw_links", "emp_id", 4),
        column_tag("aw_links", "label_id", 1),
    }
    assert sent(aw) == link
    aw.backend.reset()
    s.refresh(emp, ["labels"])
    emp.labels.clear()
    s.commit()
    assert sent(aw) == link


# -- the transaction -------------------------------------------------------------------------


def test_rollback_and_savepoint_rollback_send_nothing(any_env: Env) -> None:
    env = any_env
    seed(env)
    s = env.session
    s.get(File, 100).name = "gone"
    s.flush()
    s.rollback()
    assert sent(env) == set()
    with s.begin_nested():
        s.add(Note(id=9, text="kept"))
    sp = s.begin_nested()
    s.get(File, 101).folder_id = 20
    s.flush()
    sp.rollback()
    s.commit()
    assert sent(env) == note_tags(9), "the rolled-back savepoint's tags are dropped"


def test_core_savepoint_rollback(env: Env) -> None:
    seed(env)
    with env.db.engine.begin() as conn:
        sp = conn.begin_nested()
        conn.execute(sa.update(Note.__table__).values(text="x"))
        conn.execute(Note.__table__.insert(), {"id": 6, "text": "z"})
        sp.rollback()
        conn.execute(Note.__table__.insert(), {"id": 7, "text": "y"})
    assert sent(env) == note_tags(7)


def test_signal_reports_the_commit(any_env: Env) -> None:
    env = any_env
    seed(env)
    seen: list[tuple[str, ...]] = []

    def receiver(app: Any, tags: tuple[str, ...], source: str) -> None:
        seen.append(tags)

    signals.tags_invalidated.connect(receiver, sender=env.app)
    try:
        env.session.add(Note(id=5, text="a"))
        env.session.commit()
    finally:
        signals.tags_invalidated.disconnect(receiver, sender=env.app)
    assert seen and note_tags(5) <= set(seen[-1])


def test_over_the_bound_switches_to_the_table_epoch(make_env: Any) -> None:
    env = make_env(CACHE_AUTO_TAGS_MAX_ROWS=3)
    with env.app.app_context():
        seed(env)
        s = env.session
        s.add_all([Note(id=i, text="t") for i in range(1, 6)])
        s.commit()
        assert sent(env) == {epoch_tag("notes"), table_tag("notes")}
        env.backend.reset()
        s.add_all([Note(id=i, text="t") for i in range(10, 12)])
        s.commit()
        assert sent(env) == note_tags(10) | note_tags(11), "under the bound: exact"


def test_switched_off_sends_none(make_env: Any) -> None:
    env = make_env(CACHE_AUTO_TAGS=False)
    with env.app.app_context():
        seed(env)
        s = env.session
        s.add(Note(id=5, text="a"))
        s.get(File, 100).folder_id = 20
        s.commit()
        with env.db.engine.begin() as conn:
            conn.execute(sa.delete(File.__table__))
        assert sent(env) == set()
        assert env.app.extensions["dataroom_cache"].tracker.auto is None


def test_untracked_session_on_a_tracked_engine(env: Env) -> None:
    seed(env)
    other = sa.orm.sessionmaker(env.db.engine)
    with other() as s:
        s.get(File, 100).folder_id = 20
        s.commit()
    assert sent(env) == file_tags(100, 1, 10) | file_tags(100, 1, 20)
