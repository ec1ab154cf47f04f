"""Fixtures of the testing-helper tests: a small notes app (Flask-SQLAlchemy, tracked
model, cached views, one of which forgets the tag its writes send), on every cache kind
and database of ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_dataroom_cache import DataRoomCache, contents_tag, entity_tag


@dataclass
class NotesApp:
    app: Flask
    cache: DataRoomCache
    db: SQLAlchemy
    note: Any  # the mapped class

    def get(self, path: str) -> Any:
        return self.app.test_client().get(path)

    def add_note(self, folder_id: int, title: str) -> int:
        with self.app.app_context():
            note = self.note(folder_id=folder_id, title=title)
            self.db.session.add(note)
            self.db.session.commit()
            return int(note.id)

    def rename(self, note_id: int, title: str) -> None:
        with self.app.app_context():
            self.db.session.get(self.note, note_id).title = title
            self.db.session.commit()

    def titles(self, folder_id: int) -> list[str]:
        """The folder's titles, straight from the database (in an app context)."""
        rows = self.db.session.scalars(
            sa.select(self.note.title).where(self.note.folder_id == folder_id)
        )
        return sorted(rows)


@pytest.fixture
def notes_app(
    request: pytest.FixtureRequest,
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
    database_url: str,
) -> Iterator[NotesApp]:
    config: dict[str, Any] = {"SQLALCHEMY_DATABASE_URI": database_url}
    if request.node.get_closest_marker("auto_tags_off"):
        # declared tags only: what a view declares is all it depends on (issue 17)
        config["CACHE_AUTO_TAGS"] = False
    app, cache = make_app(**config)

    class Base(DeclarativeBase):  # one per app: a fresh metadata and class registry
        pass

    db = SQLAlchemy(model_class=Base)
    db.init_app(app)

    @cache.track(entity="note", parents={"folder_id": "folder"})
    class Note(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "plugin_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        folder_id: Mapped[int] = mapped_column(index=True)
        title: Mapped[str] = mapped_column(sa.String(100))

    notes = NotesApp(app, cache, db, Note)

    def listing(folder_id: int) -> Any:
        return jsonify(titles=notes.titles(folder_id))

    @app.get("/folders/<int:folder_id>/notes")
    @cache.cached(shared=True, tags=lambda folder_id: [contents_tag(folder_id)])
    def folder_notes(folder_id: int) -> Any:
        return listing(folder_id)

    # the bug assert_fresh_after exists to catch: the folder's own tag, not its contents'
    @app.get("/folders/<int:folder_id>/notes-forgetful")
    @cache.cached(shared=True, tags=lambda folder_id: [entity_tag("folder", folder_id)])
    def folder_notes_forgetful(folder_id: int) -> Any:
        return listing(folder_id)

    with app.app_context():
        db.create_all()
    yield notes
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()
