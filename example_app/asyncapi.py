"""The one async route of the example app: a data room's whole folder tree (issue 14).

``GET /api/datarooms/<room_id>/tree`` is an ``async def`` view reading through a tracked
``AsyncSession`` (``asyncdb.py``), cached with ``@cache.cached`` exactly like the sync
GETs of ``api.py``: per user, tagged ``dataroom:{room}`` (every folder and file change in
the room bumps it) and ``user:{id}`` (a membership change). The rest of the API stays
sync; a write through either session invalidates this entry before its response is sent.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlalchemy import select

from flask_dataroom_cache import dataroom_tag

from .api import _is_uuid, bp, current_user_id
from .asyncdb import sessions
from .errors import ApiError
from .extensions import cache
from .models import File, Folder, Membership, User


def _tree(folders: list[Folder], files: list[File]) -> dict[str, Any]:
    """The nested tree: each level's folders then files, each sorted by name, then id."""
    nodes: dict[str | None, dict[str, Any]] = {None: {"folders": [], "files": []}}
    for folder in folders:
        nodes[folder.id] = {"id": folder.id, "name": folder.name, "folders": [], "files": []}
    for folder in folders:
        nodes[folder.parent_id]["folders"].append(nodes[folder.id])
    for item in files:
        nodes[item.folder_id]["files"].append({"id": item.id, "name": item.name, "size": item.size})
    for node in nodes.values():
        node["folders"].sort(key=lambda n: (n["name"], n["id"]))
        node["files"].sort(key=lambda n: (n["name"], n["id"]))
    return nodes[None]


@bp.get("/datarooms/<room_id>/tree")
@cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
async def room_tree(room_id: str) -> Response:
    uid = current_user_id()
    if uid is None:
        raise ApiError(401, "missing X-User-Id header")
    async with sessions()() as session:
        user = await session.get(User, uid) if _is_uuid(uid) else None
        if user is None:
            raise ApiError(401, "unknown user in X-User-Id")
        member = None
        if _is_uuid(room_id):
            member = await session.scalar(
                select(Membership).where(
                    Membership.data_room_id == room_id, Membership.user_id == user.id
                )
            )
        if member is None:
            raise ApiError(404, "data room not found")
        folders = (
            await session.scalars(select(Folder).where(Folder.data_room_id == room_id))
        ).all()
        files = (await session.scalars(select(File).where(File.data_room_id == room_id))).all()
    return jsonify(_tree(list(folders), list(files)))
