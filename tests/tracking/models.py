"""Test models (plain declarative, so each test can build its own Flask-SQLAlchemy object).

* DataRoom -> folders/files/memberships: ORM cascade (``all, delete-orphan``).
* Folder -> subfolders and files: the database's ``ON DELETE CASCADE`` (passive_deletes).
* Shortcut -> folder: the database's ``ON DELETE SET NULL`` (untracked by default).
* Note: an untracked model.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flask_dataroom_cache import DataRoomCache


class Base(DeclarativeBase):
    pass


class DataRoom(Base):
    __tablename__ = "datarooms"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="room", cascade="all, delete-orphan"
    )
    folders: Mapped[list[Folder]] = relationship(
        cascade="all, delete-orphan", foreign_keys="Folder.data_room_id"
    )
    files: Mapped[list[File]] = relationship(
        cascade="all, delete-orphan", foreign_keys="File.data_room_id"
    )


class Folder(Base):
    __tablename__ = "folders"
    id: Mapped[int] = mapped_column(primary_key=True)
    data_room_id: Mapped[int] = mapped_column(ForeignKey("datarooms.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    parent: Mapped[Folder | None] = relationship(remote_side="Folder.id", back_populates="children")
    children: Mapped[list[Folder]] = relationship(back_populates="parent", passive_deletes=True)
    files: Mapped[list[File]] = relationship(back_populates="folder", passive_deletes=True)
    __table_args__ = (UniqueConstraint("data_room_id", "parent_id", "name"),)


class File(Base):
    __tablename__ = "files"
    id: Mapped[int] = mapped_column(primary_key=True)
    data_room_id: Mapped[int] = mapped_column(ForeignKey("datarooms.id", ondelete="CASCADE"))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    folder: Mapped[Folder | None] = relationship(back_populates="files")

    def cache_tags(self, change: Any) -> list[str]:
        return [f"filename:{self.name}"] if change.kind == "insert" else []


class Membership(Base):
    __tablename__ = "memberships"
    id: Mapped[int] = mapped_column(primary_key=True)
    data_room_id: Mapped[int] = mapped_column(ForeignKey("datarooms.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))
    room: Mapped[DataRoom] = relationship(back_populates="memberships")


class Shortcut(Base):
    """A link to a folder that outlives it (``ON DELETE SET NULL``); untracked unless a
    test tracks it."""

    __tablename__ = "shortcuts"
    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int | None] = mapped_column(
        ForeignKey("folders.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(100))


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


def declare(cache: DataRoomCache) -> None:
    """The BRIEF's declarations, as plain calls."""
    cache.track(
        Folder, entity="folder", parents={"data_room_id": "dataroom", "parent_id": "folder"}
    )
    cache.track(File, entity="file", parents={"data_room_id": "dataroom", "folder_id": "folder"})
    cache.track(
        DataRoom, entity="dataroom", members=lambda room: [m.user_id for m in room.memberships]
    )
    cache.track(
        Membership,
        entity="membership",
        parents={"data_room_id": "dataroom", "user_id": "user"},
        list_tag=False,
    )
