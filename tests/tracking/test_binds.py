"""Bulk ORM statements on a model bound to another database (``__bind_key__`` under
``SQLALCHEMY_BINDS``): every SELECT the tracker runs (matched rows, cascades, re-selects)
goes to the statement's own bind, never the default engine (issue 12 item 1).

Two shapes of the default database: without a same-named table the tracker's SELECT used
to fail (``no such table``; PostgreSQL: the user's transaction aborted), with one it read
the wrong rows and the entry stayed a stale hit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import pg_schema
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_dataroom_cache import DataRoomCache, entity_tag, get_cache_key

from .conftest import sqlite_fk


class OtherBase(DeclarativeBase):
    # Flask-SQLAlchemy picks the engine of a table from its metadata's bind key
    metadata = sa.MetaData(info={"bind_key": "other"})


class Shelf(OtherBase):
    __tablename__ = "shelves"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))


class Archive(OtherBase):
    __tablename__ = "archives"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(sa.ForeignKey("shelves.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(50))


#: a same-named table in the default database (another app's, or a leftover)
default_md = sa.MetaData()
default_archives = sa.Table(
    "archives",
    default_md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("shelf_id", sa.Integer),
    sa.Column("name", sa.String(50)),
)


@pytest.fixture
def other_url(database_url: str, tmp_path: Any) -> Iterator[str]:
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / f'other_{uuid.uuid4().hex[:6]}.db'}"
        return
    base = database_url.split("?", 1)[0]
    with pg_schema(base, prefix="o_") as url:
        yield url


class BindEnv:
    def __init__(self, app: Flask, db: SQLAlchemy, cache: DataRoomCache) -> None:
        self.app, self.db, self.cache = app, db, cache
        self.store = cache.state(app).store
        self.computed = 0

    def archive(self, archive_id: int) -> str | None:
        """A cached read of one archive's name, tagged with its entity tag."""

        def compute() -> str | None:
            self.computed += 1
            return self.db.session.scalar(sa.select(Archive.name).where(Archive.id == archive_id))

        key = get_cache_key("archive", archive_id)
        return self.store.get_or_set(key, compute, tags=[entity_tag("archive", archive_id)])


@pytest.fixture(params=["default-has-table", "default-lacks-table"])
def benv(
    request: pytest.FixtureRequest, cache_config: dict[str, Any], database_url: str, other_url: str
) -> Iterator[BindEnv]:
    app = Flask(f"t_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, **cache_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    app.config["SQLALCHEMY_BINDS"] = {"other": other_url}
    db = SQLAlchemy()
    cache = DataRoomCache()
    cache.track(Shelf, entity="shelf")
    cache.track(Archive, entity="archive", parents={"shelf_id": "shelf"})
    db.init_app(app)
    cache.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            sqlite_fk(engine)
        OtherBase.metadata.create_all(db.engines["other"])
        if request.param == "default-has-table":
            default_md.create_all(db.engine)
            with db.engine.begin() as conn:  # other rows: their tags are the wrong ones
                conn.execute(
                    default_archives.insert(),
                    [
                        {"id": 7, "shelf_id": 1, "name": "decoy"},
                        {"id": 8, "shelf_id": 9, "name": "x"},
                    ],
                )
        s = db.session
        s.add_all([Shelf(id=1, name="s1"), Shelf(id=2, name="s2")])
        s.flush()
        s.add_all([Archive(id=1, shelf_id=1, name="old"), Archive(id=2, shelf_id=2, name="two")])
        s.commit()
        env = BindEnv(app, db, cache)
        try:
            yield env
        finally:
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


WHERES = {
    "none": None,
    "orm": lambda: Archive.id == 1,
    "core": lambda: Archive.__table__.c.id == 1,
}


@pytest.mark.parametrize("where", list(WHERES))
@pytest.mark.parametrize("op", ["update", "delete"])
def test_bulk_statement_on_second_bind(benv: BindEnv, op: str, where: str) -> None:
    assert benv.archive(1) == "old"
    assert benv.archive(1) == "old" and benv.computed == 1  # a hit
    stmt: Any = sa.update(Archive).values(name="new") if op == "update" else sa.delete(Archive)
    cond = WHERES[where]
    if cond is not None:
        stmt = stmt.where(cond())
    s = benv.db.session
    s.execute(stmt.execution_options(synchronize_session=False))
    s.commit()
    assert benv.archive(1) == ("new" if op == "update" else None)
    assert benv.computed == 2


def test_update_with_reselect_on_second_bind(benv: BindEnv) -> None:
    """An UPDATE moving rows to a parent computed in SQL: re-read after it, on its bind."""
    seen = []

    def shelf_list() -> list[int]:
        seen.append(1)
        return sorted(benv.db.session.scalars(sa.select(Archive.id).where(Archive.shelf_id == 2)))

    key = get_cache_key("shelf-archives", 2)
    tags = ["shelf:2"]
    assert benv.store.get_or_set(key, shelf_list, tags=tags) == [2]
    s = benv.db.session
    s.execute(
        sa.update(Archive)
        .where(Archive.id == 1)
        .values(shelf_id=Archive.shelf_id + 1)
        .execution_options(synchronize_session=False)
    )
    s.commit()
    assert benv.store.get_or_set(key, shelf_list, tags=tags) == [1, 2]
    assert len(seen) == 2


@pytest.mark.parametrize("where", ["orm", "core"])
def test_cascade_delete_on_second_bind(benv: BindEnv, where: str) -> None:
    """Deleting a shelf: the database cascades to its archives, read on the same bind."""
    assert benv.archive(1) == "old"
    s = benv.db.session
    cond = Shelf.id == 1 if where == "orm" else Shelf.__table__.c.id == 1
    s.execute(sa.delete(Shelf).where(cond))
    s.commit()
    assert benv.archive(1) is None
    assert benv.computed == 2


def test_flush_moving_expired_object_on_second_bind(benv: BindEnv) -> None:
    """An expired object moved to another parent: its old parent is read before the
    flush, on the model's bind."""
    seen = []

    def shelf_list() -> list[int]:
        seen.append(1)
        return sorted(benv.db.session.scalars(sa.select(Archive.id).where(Archive.shelf_id == 1)))

    key = get_cache_key("shelf-archives", 1)
    assert benv.store.get_or_set(key, shelf_list, tags=["shelf:1"]) == [1]
    s = benv.db.session
    archive = s.get(Archive, 1)
    assert archive is not None
    s.commit()  # expires it
    archive.shelf_id = 2  # set on an expired object: the old value is unknown to the ORM
    s.commit()
    assert benv.store.get_or_set(key, shelf_list, tags=["shelf:1"]) == []
    assert len(seen) == 2
