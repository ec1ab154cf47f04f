"""An HTML page of the API: a data room's overview, ``GET /api/datarooms/<room_id>/overview``.

The one route answering HTML (the rest is JSON), cached like the others (per user, tagged
with the room: a rename, a member or a change at the room's root bumps ``dataroom:{id}``),
counting the members through a ``@cache.memoize`` helper shared by every user.
It is what a browser shows with the Flask-DebugToolbar on (the toolbar only injects itself
into HTML): ``docs/debug-toolbar.md`` and ``tests/debug/test_browser.py`` use it.
"""

from __future__ import annotations

from flask import Response
from markupsafe import escape
from sqlalchemy import func, select

from flask_dataroom_cache import dataroom_tag

from .api import bp, current_user, membership
from .extensions import cache, db
from .models import File, Folder, Membership

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{name} - data room</title></head>
<body>
<h1>{name}</h1>
<p>Your role: <strong>{role}</strong>. Members: {members}.</p>
<h2>Folders</h2>
<ul>{folders}</ul>
<h2>Files</h2>
<ul>{files}</ul>
</body>
</html>
"""


def _items(names: list[str]) -> str:
    return "".join(f"<li>{escape(n)}</li>" for n in names) or "<li><em>none</em></li>"


@cache.memoize(tags=lambda room_id: [dataroom_tag(room_id)])
def member_count(room_id: str) -> int:
    """How many members a room has: a memoized helper (its own entry, shared by every
    user, fresh through the room's tag, which a membership change bumps); the panel lists
    its lookup beside the page's."""
    count: int = (
        db.session.scalar(
            select(func.count(Membership.id)).where(Membership.data_room_id == room_id)
        )
        or 0
    )
    return count


@bp.get("/datarooms/<room_id>/overview")
@cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
def room_overview(room_id: str) -> Response:
    member = membership(room_id, current_user())
    room = member.data_room
    root = (Folder.data_room_id == room_id, Folder.parent_id.is_(None))
    folders = db.session.scalars(select(Folder.name).where(*root).order_by(Folder.name)).all()
    files = db.session.scalars(
        select(File.name)
        .where(File.data_room_id == room_id, File.folder_id.is_(None))
        .order_by(File.name)
    ).all()
    members = member_count(room_id)
    html = _PAGE.format(
        name=escape(room.name),
        role=escape(member.role),
        members=members,
        folders=_items(list(folders)),
        files=_items(list(files)),
    )
    return Response(html, mimetype="text/html")
