"""The HTTP API (JSON, camelCase, UUID string ids). See docs/example-app.md for the reference.

Reads: every GET below is cached with ``@cache.cached``; its tags come from the library's
tag functions and name exactly what the response shows. The cache is per user (the
identity below), so the access check a view makes is part of what is cached, and the
``user:{id}`` tag (bumped when a membership changes) drops it.

Writes: validate, change rows, ``db.session.commit()``. Nothing here invalidates anything:
the models declare their tags (``models.py``), the extension bumps them inside ``commit()``,
and the response is sent after that, so any read that starts after a write's response sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import uuid
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from flask_dataroom_cache import contents_tag, dataroom_tag, entity_tag, type_tag, user_tag

from .errors import ApiError
from .extensions import cache, db
from .models import NAME_MAX, ROLES, DataRoom, File, Folder, Membership, User

bp = Blueprint("api", __name__, url_prefix="/api")

WRITE_ROLES = ("owner", "editor")
_CHUNK = 64 * 1024


# -- identity -------------------------------------------------------------------------------
@cache.identity
def current_user_id() -> str | None:
    """The caller's user id: the ``X-User-Id`` header (a stand-in for real authentication).

    Cached entries are keyed and tagged by this value; whether it names a real user is
    checked by the view (a 401 is never cached).
    """
    value = request.headers.get("X-User-Id")
    return value.strip() if value and value.strip() else None


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def current_user() -> User:
    uid = current_user_id()
    if uid is None:
        raise ApiError(401, "missing X-User-Id header")
    user = db.session.get(User, uid) if _is_uuid(uid) else None
    if user is None:
        raise ApiError(401, "unknown user in X-User-Id")
    return user


def _me_tag(**_: Any) -> list[str]:
    return [user_tag(current_user_id())]


def declared(tags: Any) -> Any:
    """A view's declared tags, or none when the app runs with ``EXAMPLE_AUTO_TAGS`` (its
    views then depend on what they read only: automatic dependencies, issue 17)."""

    def chosen(**kwargs: Any) -> list[str]:
        if current_app.config.get("EXAMPLE_AUTO_TAGS"):
            return []
        return list(tags(**kwargs))

    return chosen


# -- access ---------------------------------------------------------------------------------
def membership(room_id: str, user: User) -> Membership:
    """The caller's membership of the room; 404 when not a member (or no such room)."""
    found = None
    if _is_uuid(room_id):
        found = db.session.execute(
            select(Membership).where(
                Membership.data_room_id == room_id, Membership.user_id == user.id
            )
        ).scalar_one_or_none()
    if found is None:
        raise ApiError(404, "data room not found")
    return found


def require(member: Membership, roles: Iterable[str], action: str) -> None:
    if member.role not in roles:
        raise ApiError(403, f"a {member.role} cannot {action}")


def folder_for(folder_id: str, user: User) -> tuple[Folder, Membership]:
    folder = db.session.get(Folder, folder_id) if _is_uuid(folder_id) else None
    if folder is None:
        raise ApiError(404, "folder not found")
    try:
        return folder, membership(folder.data_room_id, user)
    except ApiError:
        raise ApiError(404, "folder not found") from None


def file_for(file_id: str, user: User) -> tuple[File, Membership]:
    item = db.session.get(File, file_id) if _is_uuid(file_id) else None
    if item is None:
        raise ApiError(404, "file not found")
    try:
        return item, membership(item.data_room_id, user)
    except ApiError:
        raise ApiError(404, "file not found") from None


# -- input ----------------------------------------------------------------------------------
def json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "bad_json")
    return data


def valid_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be a string", "invalid_field")
    name = value.strip()
    if not name:
        raise ApiError(400, f"{field} must not be empty", "invalid_field")
    if len(name) > NAME_MAX:
        raise ApiError(400, f"{field} must be at most {NAME_MAX} characters", "invalid_field")
    if any(ord(c) < 32 for c in name):
        raise ApiError(400, f"{field} must not contain control characters", "invalid_field")
    return name


def optional_id(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be a string or null", "invalid_field")
    return value


def target_folder(room_id: str, folder_id: str | None, field: str) -> Folder | None:
    """The folder ``folder_id`` of this room (None: the room's root); 400 if not there."""
    if folder_id is None:
        return None
    folder = db.session.get(Folder, folder_id) if _is_uuid(folder_id) else None
    if folder is None or folder.data_room_id != room_id:
        raise ApiError(400, f"{field} is not a folder of this data room", "invalid_field")
    return folder


def commit() -> None:
    """Commit; a unique-constraint race (two creates of one name) is a 409, not a 500."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, "a conflicting change was made at the same time") from None


def _name_taken(
    model: type[Folder] | type[File],
    room_id: str,
    parent: str | None,
    name: str,
    exclude: str | None = None,
) -> bool:
    parent_col = Folder.parent_id if model is Folder else File.folder_id
    query = select(model.id).where(model.data_room_id == room_id, model.name == name)
    query = query.where(parent_col.is_(None) if parent is None else parent_col == parent)
    if exclude is not None:
        query = query.where(model.id != exclude)
    return db.session.execute(query.limit(1)).first() is not None


def sorted_items(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in sorted(rows, key=lambda r: (r.name, r.id))]


# -- storage --------------------------------------------------------------------------------
def storage_path(storage_name: str) -> str:
    return os.path.join(current_app.config["STORAGE_DIR"], storage_name)


def remove_blobs(names: Iterable[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(storage_path(name))


def save_upload(upload: FileStorage) -> tuple[str, int, str]:
    """Write the bytes under a generated name; returns (storage name, size, sha256)."""
    storage_name = uuid.uuid4().hex
    digest = hashlib.sha256()
    size = 0
    final = storage_path(storage_name)
    partial = final + ".part"
    try:
        with open(partial, "wb") as out:
            while chunk := upload.stream.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        os.replace(partial, final)
    except BaseException:
        remove_blobs([storage_name + ".part", storage_name])
        raise
    return storage_name, size, digest.hexdigest()


def subtree_blobs(folder: Folder) -> list[str]:
    names: list[str] = []
    stack = [folder]
    while stack:
        node = stack.pop()
        names.extend(f.storage_name for f in node.files)
        stack.extend(node.children)
    return names


# -- users ----------------------------------------------------------------------------------
@bp.post("/users")
def create_user() -> tuple[Response, int]:
    user = User(name=valid_name(json_body().get("name")))
    db.session.add(user)
    commit()
    return jsonify(user.to_dict()), 201


# -- data rooms -----------------------------------------------------------------------------
@bp.get("/datarooms")
# A room enters or leaves my list through my membership (user:{me}); a rename or delete of a
# room I belong to bumps user:{member} for every member (DataRoom's `members=`).
@cache.cached(tags=declared(_me_tag))
def list_rooms() -> Response:
    user = current_user()
    rows = db.session.execute(
        select(DataRoom, Membership.role)
        .join(Membership, Membership.data_room_id == DataRoom.id)
        .where(Membership.user_id == user.id)
        .order_by(DataRoom.name, DataRoom.id)
    ).all()
    return jsonify({"items": [room.to_dict(role) for room, role in rows]})


@bp.post("/datarooms")
def create_room() -> tuple[Response, int]:
    user = current_user()
    room = DataRoom(name=valid_name(json_body().get("name")))
    db.session.add(room)
    db.session.add(Membership(data_room=room, user=user, role="owner"))
    commit()
    return jsonify(room.to_dict("owner")), 201


@bp.get("/datarooms/<room_id>")
@cache.cached(tags=declared(lambda room_id: [dataroom_tag(room_id)]))
def get_room(room_id: str) -> Response:
    member = membership(room_id, current_user())
    return jsonify(member.data_room.to_dict(member.role))


@bp.patch("/datarooms/<room_id>")
def update_room(room_id: str) -> Response:
    member = membership(room_id, current_user())
    require(member, WRITE_ROLES, "rename a data room")
    data = json_body()
    if "name" not in data:
        raise ApiError(400, "nothing to change: send name", "invalid_field")
    room = member.data_room
    room.name = valid_name(data["name"])
    commit()
    return jsonify(room.to_dict(member.role))


@bp.delete("/datarooms/<room_id>")
def delete_room(room_id: str) -> tuple[str, int]:
    member = membership(room_id, current_user())
    require(member, ("owner",), "delete a data room")
    room = member.data_room
    blobs = [f.storage_name for f in room.files]
    db.session.delete(room)  # ORM cascade: memberships, folders, files (each one tracked)
    commit()
    remove_blobs(blobs)
    return "", 204


# -- members --------------------------------------------------------------------------------
@bp.get("/datarooms/<room_id>/members")
@cache.cached(tags=declared(lambda room_id: [dataroom_tag(room_id)]))
def list_members(room_id: str) -> Response:
    membership(room_id, current_user())
    rows = db.session.execute(
        select(Membership, User.name)
        .join(User, User.id == Membership.user_id)
        .where(Membership.data_room_id == room_id)
        .order_by(User.name, User.id)
    ).all()
    return jsonify({"items": [m.to_dict(name) for m, name in rows]})  # no N+1


def _owners(room_id: str) -> int:
    return len(
        db.session.execute(
            select(Membership.id).where(
                Membership.data_room_id == room_id, Membership.role == "owner"
            )
        ).all()
    )


@bp.post("/datarooms/<room_id>/members")
def add_member(room_id: str) -> tuple[Response, int]:
    member = membership(room_id, current_user())
    require(member, ("owner",), "manage members")
    data = json_body()
    user_id = data.get("userId")
    role = data.get("role")
    if role not in ROLES:
        raise ApiError(400, f"role must be one of {', '.join(ROLES)}", "invalid_field")
    user = db.session.get(User, user_id) if _is_uuid(user_id) else None
    if user is None:
        raise ApiError(400, "userId does not name a user", "invalid_field")
    existing = db.session.execute(
        select(Membership).where(Membership.data_room_id == room_id, Membership.user_id == user.id)
    ).scalar_one_or_none()
    if existing is not None:
        if existing.role == "owner" and role != "owner" and _owners(room_id) == 1:
            raise ApiError(409, "a data room must keep at least one owner")
        existing.role = role
        commit()
        return jsonify(existing.to_dict()), 200
    created = Membership(data_room_id=room_id, user=user, role=role)
    db.session.add(created)
    commit()
    return jsonify(created.to_dict()), 201


@bp.delete("/datarooms/<room_id>/members/<user_id>")
def remove_member(room_id: str, user_id: str) -> tuple[str, int]:
    me = current_user()
    member = membership(room_id, me)
    if user_id != me.id:  # anyone may leave; only owners remove others
        require(member, ("owner",), "manage members")
    target = db.session.execute(
        select(Membership).where(Membership.data_room_id == room_id, Membership.user_id == user_id)
    ).scalar_one_or_none()
    if target is None:
        raise ApiError(404, "member not found")
    if target.role == "owner" and _owners(room_id) == 1:
        raise ApiError(409, "a data room must keep at least one owner")
    db.session.delete(target)
    commit()
    return "", 204


# -- folders --------------------------------------------------------------------------------
def _list_tags(room_id: str, parent: str | None) -> list[str]:
    # Root lists: every folder/file change in a room bumps dataroom:{room}. Folder lists also
    # carry the folder's contents tag (what a change inside that one folder bumps).
    tags = [dataroom_tag(room_id)]
    if parent:
        tags.append(contents_tag(parent))
    return tags


@bp.get("/datarooms/<room_id>/folders")
@cache.cached(tags=declared(lambda room_id: _list_tags(room_id, request.args.get("parentId"))))
def list_folders(room_id: str) -> Response:
    membership(room_id, current_user())
    parent = target_folder_or_404(room_id, request.args.get("parentId") or None)
    query = select(Folder).where(Folder.data_room_id == room_id)
    query = query.where(
        Folder.parent_id.is_(None) if parent is None else Folder.parent_id == parent
    )
    return jsonify({"items": sorted_items(db.session.execute(query).scalars())})


def target_folder_or_404(room_id: str, folder_id: str | None) -> str | None:
    if folder_id is None:
        return None
    folder = db.session.get(Folder, folder_id) if _is_uuid(folder_id) else None
    if folder is None or folder.data_room_id != room_id:
        raise ApiError(404, "folder not found")
    return folder.id


@bp.post("/datarooms/<room_id>/folders")
def create_folder(room_id: str) -> tuple[Response, int]:
    member = membership(room_id, current_user())
    require(member, WRITE_ROLES, "create folders")
    data = json_body()
    name = valid_name(data.get("name"))
    parent = target_folder(room_id, optional_id(data, "parentId"), "parentId")
    parent_id = parent.id if parent else None
    if _name_taken(Folder, room_id, parent_id, name):
        raise ApiError(409, f"a folder named {name!r} already exists here")
    folder = Folder(data_room_id=room_id, parent_id=parent_id, name=name)
    db.session.add(folder)
    commit()
    return jsonify(folder.to_dict()), 201


@bp.get("/folders/<folder_id>")
# type:folder: what a bulk statement, textual SQL or an oversized database cascade bumps
# when the rows it touched are not read one by one (docs/tags.md)
@cache.cached(
    tags=declared(lambda folder_id: [entity_tag("folder", folder_id), type_tag("folder")])
)
def get_folder(folder_id: str) -> Response:
    folder, _ = folder_for(folder_id, current_user())
    return jsonify(folder.to_dict())


@bp.patch("/folders/<folder_id>")
def update_folder(folder_id: str) -> Response:
    folder, member = folder_for(folder_id, current_user())
    require(member, WRITE_ROLES, "change folders")
    data = json_body()
    if "name" not in data and "parentId" not in data:
        raise ApiError(400, "nothing to change: send name and/or parentId", "invalid_field")
    name = valid_name(data["name"]) if "name" in data else folder.name
    parent_id = folder.parent_id
    if "parentId" in data:
        new_parent = target_folder(folder.data_room_id, optional_id(data, "parentId"), "parentId")
        node, seen = new_parent, set()
        while node is not None and node.id not in seen:  # the new parent and its ancestors
            if node.id == folder.id:
                raise ApiError(409, "a folder cannot be moved into itself or a descendant")
            seen.add(node.id)
            node = node.parent
        parent_id = new_parent.id if new_parent else None
    if _name_taken(Folder, folder.data_room_id, parent_id, name, exclude=folder.id):
        raise ApiError(409, f"a folder named {name!r} already exists there")
    folder.name = name
    folder.parent_id = parent_id
    commit()
    return jsonify(folder.to_dict())


@bp.delete("/folders/<folder_id>")
def delete_folder(folder_id: str) -> tuple[str, int]:
    folder, member = folder_for(folder_id, current_user())
    require(member, WRITE_ROLES, "delete folders")
    blobs = subtree_blobs(folder)
    db.session.delete(folder)  # ORM cascade: the whole subtree, each folder and file tracked
    commit()
    remove_blobs(blobs)
    return "", 204


# -- files ----------------------------------------------------------------------------------
@bp.get("/datarooms/<room_id>/files")
@cache.cached(tags=declared(lambda room_id: _list_tags(room_id, request.args.get("folderId"))))
def list_files(room_id: str) -> Response:
    membership(room_id, current_user())
    folder = target_folder_or_404(room_id, request.args.get("folderId") or None)
    query = select(File).where(File.data_room_id == room_id)
    query = query.where(File.folder_id.is_(None) if folder is None else File.folder_id == folder)
    return jsonify({"items": sorted_items(db.session.execute(query).scalars())})


@bp.post("/datarooms/<room_id>/files")
def upload_file(room_id: str) -> tuple[Response, int]:
    member = membership(room_id, current_user())
    require(member, WRITE_ROLES, "upload files")
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "send the bytes as multipart form field 'file'", "invalid_field")
    raw_name = request.form.get("name") or os.path.basename(
        (upload.filename or "").replace("\\", "/")
    )
    name = valid_name(raw_name)
    folder = target_folder(room_id, request.form.get("folderId") or None, "folderId")
    folder_id = folder.id if folder else None
    if _name_taken(File, room_id, folder_id, name):
        raise ApiError(409, f"a file named {name!r} already exists here")
    content_type = (
        upload.mimetype
        if upload.mimetype and upload.mimetype != "application/octet-stream"
        else mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    storage_name, size, sha256 = save_upload(upload)
    item = File(
        data_room_id=room_id,
        folder_id=folder_id,
        name=name,
        size=size,
        content_type=content_type,
        sha256=sha256,
        storage_name=storage_name,
    )
    db.session.add(item)
    try:
        commit()
    except BaseException:
        remove_blobs([storage_name])
        raise
    return jsonify(item.to_dict()), 201


@bp.get("/files/<file_id>")
@cache.cached(tags=declared(lambda file_id: [entity_tag("file", file_id), type_tag("file")]))
def get_file(file_id: str) -> Response:
    item, _ = file_for(file_id, current_user())
    return jsonify(item.to_dict())


@bp.patch("/files/<file_id>")
def update_file(file_id: str) -> Response:
    item, member = file_for(file_id, current_user())
    require(member, WRITE_ROLES, "change files")
    data = json_body()
    if "name" not in data and "folderId" not in data:
        raise ApiError(400, "nothing to change: send name and/or folderId", "invalid_field")
    name = valid_name(data["name"]) if "name" in data else item.name
    folder_id = item.folder_id
    if "folderId" in data:
        folder = target_folder(item.data_room_id, optional_id(data, "folderId"), "folderId")
        folder_id = folder.id if folder else None
    if _name_taken(File, item.data_room_id, folder_id, name, exclude=item.id):
        raise ApiError(409, f"a file named {name!r} already exists there")
    item.name = name
    item.folder_id = folder_id
    commit()
    return jsonify(item.to_dict())


@bp.delete("/files/<file_id>")
def delete_file(file_id: str) -> tuple[str, int]:
    item, member = file_for(file_id, current_user())
    require(member, WRITE_ROLES, "delete files")
    blob = item.storage_name
    db.session.delete(item)
    commit()
    remove_blobs([blob])
    return "", 204


@bp.get("/files/<file_id>/content")
def file_content(file_id: str) -> Response:
    """The bytes, streamed from storage. Not cached: the access check runs every time."""
    item, _ = file_for(file_id, current_user())
    path = storage_path(item.storage_name)
    if not os.path.exists(path):
        raise ApiError(404, "the file's content is missing from storage")
    resp = send_file(
        path,
        mimetype=item.content_type,
        download_name=item.name,
        conditional=True,
        etag=item.sha256,
        max_age=0,
    )
    resp.headers["Cache-Control"] = "private, no-cache"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
