"""Cache warmer: ``flask --app example_app dataroom-cache warm`` (e.g. after a deploy).

It fills what every member sees first (their room list, each room, its root folder and file
listings) by sending those GETs through the app itself, so the entries are exactly the ones
the cached views would store: same keys, same tags, same per-user isolation. Bounded by
``WARM_MAX_MEMBERSHIPS`` (default 500) memberships, most recently created first.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from .extensions import cache, db
from .models import Membership


def warm_rooms() -> int:
    """Returns the number of responses filled (200s that were not already cached)."""
    limit = int(current_app.config.get("WARM_MAX_MEMBERSHIPS", 500))
    rows = db.session.execute(
        select(Membership.user_id, Membership.data_room_id)
        .order_by(Membership.created_at.desc(), Membership.id)
        .limit(limit)
    ).all()
    client = current_app.test_client()
    seen_users: set[str] = set()
    filled = 0
    for user_id, room_id in rows:
        paths = [
            f"/api/datarooms/{room_id}",
            f"/api/datarooms/{room_id}/folders",
            f"/api/datarooms/{room_id}/files",
        ]
        if user_id not in seen_users:
            seen_users.add(user_id)
            paths.insert(0, "/api/datarooms")
        for path in paths:
            resp = client.get(path, headers={"X-User-Id": user_id})
            filled += resp.status_code == 200 and resp.headers.get("X-Cache") == "MISS"
    return filled


# Registered with a plain call (same as the @cache.warmer(name=...) decorator).
cache.warmer(warm_rooms, name="example-rooms")
