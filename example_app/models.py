"""The data model: users, data rooms, memberships, folders and files.

Every cached view of the app depends on these rows, so every model *declares* which cache
tags a change to it must invalidate (``@cache.track``). The views never invalidate
anything by hand: a commit that touches a tracked row invalidates its tags before
``commit()`` returns.

* ``Folder`` and ``File`` name their parents: a change bumps ``dataroom:{room}`` and the
  ``folder:{parent}/contents`` tag of the folder they are in, both the old and the new one
  when they move.
* ``DataRoom`` names its members: a rename or delete bumps ``user:{id}`` of every member, so
  each member's room list (a per-user entry) is rebuilt.
* ``Membership`` bumps its room and its user: a revoked member's cached entries die at once.

Ids are UUID strings, created in Python so they are known before the flush. Deletes cascade
twice: in the ORM (so every deleted folder and file is seen, and its tags bumped) and in the
database (``ON DELETE CASCADE``, so a row deleted outside the ORM leaves no orphans).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import cache, db

ROLES = ("owner", "editor", "viewer")
NAME_MAX = 255


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime) -> str:
    """Timestamps are stored naive UTC; the API shows them as ISO 8601 with ``Z``."""
    return value.isoformat(timespec="microseconds") + "Z"


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)


# A change of the user's row invalidates their per-user entries (``user:{id}``, through
# ``parents``); the entity itself needs another name: ``user`` is that reserved namespace.
@cache.track(entity="account", parents={"id": "user"}, list_tag=False)
class User(TimestampMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete"
    )

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@cache.track(entity="dataroom", members=lambda room: [m.user_id for m in room.memberships])
class DataRoom(TimestampMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "data_rooms"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="data_room", cascade="all, delete"
    )
    folders: Mapped[list[Folder]] = relationship(back_populates="data_room", cascade="all, delete")
    files: Mapped[list[File]] = relationship(back_populates="data_room", cascade="all, delete")

    def to_dict(self, role: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "role": role,
        }


@cache.track(
    entity="membership",
    parents={"data_room_id": "dataroom", "user_id": "user"},
    list_tag=False,
)
class Membership(TimestampMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("data_room_id", "user_id", name="uq_membership_room_user"),
        CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="ck_membership_role"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    data_room_id: Mapped[str] = mapped_column(
        ForeignKey("data_rooms.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)

    data_room: Mapped[DataRoom] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")

    def to_dict(self, user_name: str | None = None) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "name": self.user.name if user_name is None else user_name,
            "role": self.role,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@cache.track(entity="folder", parents={"data_room_id": "dataroom", "parent_id": "folder"})
class Folder(TimestampMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "folders"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    data_room_id: Mapped[str] = mapped_column(
        ForeignKey("data_rooms.id", ondelete="CASCADE"), nullable=False, index=True
    )
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("folders.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)

    data_room: Mapped[DataRoom] = relationship(back_populates="folders")
    parent: Mapped[Folder | None] = relationship(back_populates="children", remote_side="Folder.id")
    children: Mapped[list[Folder]] = relationship(back_populates="parent", cascade="all, delete")
    files: Mapped[list[File]] = relationship(back_populates="folder", cascade="all, delete")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "dataRoomId": self.data_room_id,
            "parentId": self.parent_id,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@cache.track(entity="file", parents={"data_room_id": "dataroom", "folder_id": "folder"})
class File(TimestampMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "files"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    data_room_id: Mapped[str] = mapped_column(
        ForeignKey("data_rooms.id", ondelete="CASCADE"), nullable=False, index=True
    )
    folder_id: Mapped[str | None] = mapped_column(
        ForeignKey("folders.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)
    size: Mapped[int] = mapped_column(nullable=False)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    #: Generated name of the bytes in ``STORAGE_DIR``; never derived from client input.
    storage_name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)

    data_room: Mapped[DataRoom] = relationship(back_populates="files")
    folder: Mapped[Folder | None] = relationship(back_populates="files")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "dataRoomId": self.data_room_id,
            "folderId": self.folder_id,
            "size": self.size,
            "contentType": self.content_type,
            "sha256": self.sha256,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


# One name per parent folder (and per room at the root, where the parent is NULL: NULLs are
# never equal in a unique index, so the key uses COALESCE(parent, '')). Both SQLite and
# PostgreSQL support unique expression indexes. The API checks first and answers 409; the
# index catches the race between two concurrent creates.
Index(
    "uq_folder_name_per_parent",
    Folder.data_room_id,
    func.coalesce(Folder.parent_id, ""),
    Folder.name,
    unique=True,
)
Index(
    "uq_file_name_per_folder",
    File.data_room_id,
    func.coalesce(File.folder_id, ""),
    File.name,
    unique=True,
)
