"""The whole stack through an outage: Flask-SQLAlchemy + session tracking + @cache.cached
on a real redis-server with an AOF. A folder renamed (and committed) while Redis is down
is never shown with its old name afterwards, in this process, after Redis restarts with
the old listing still in it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from scale.servers import wait_until
from tracking.models import Base, DataRoom, Folder, Membership, declare

from flask_dataroom_cache import DataRoomCache, dataroom_tag

from .conftest import Server

pytestmark = [pytest.mark.redis_server, pytest.mark.timeout(120)]


@pytest.fixture
def tracked_app(aof_server: Server, tmp_path: Path) -> Iterator[tuple[Flask, DataRoomCache]]:
    app = Flask(f"ft_{uuid.uuid4().hex[:6]}")
    app.config.update(
        TESTING=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'rooms.db'}",
        REDIS_URL=aof_server.url,
        CACHE_KEY_PREFIX="ft" + uuid.uuid4().hex[:8],
        CACHE_BREAKER_THRESHOLD=3,
        CACHE_BREAKER_COOLDOWN=0.3,
        CACHE_REDIS_SOCKET_TIMEOUT=0.5,
    )
    db = SQLAlchemy(engine_options={"connect_args": {"timeout": 10}})
    cache = DataRoomCache()
    declare(cache)
    db.init_app(app)
    cache.init_app(app)

    @cache.identity
    def current_user_id() -> str | None:
        return request.headers.get("X-User-Id")

    @app.get("/rooms/<int:room_id>/folders")
    @cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
    def list_folders(room_id: int) -> Any:
        q = sa.select(Folder.name).where(Folder.data_room_id == room_id).order_by(Folder.id)
        return jsonify(list(db.session.scalars(q)))

    @app.patch("/folders/<int:folder_id>")
    def rename(folder_id: int) -> Any:
        folder = db.session.get(Folder, folder_id)
        assert folder is not None
        folder.name = request.get_json()["name"]
        db.session.commit()  # tracking sends folder:{id}, dataroom:{room}, ... after this
        return jsonify(ok=True)

    @app.teardown_request
    def cleanup(_exc: BaseException | None) -> None:
        db.session.remove()

    with app.app_context():
        Base.metadata.create_all(db.engine)
        db.session.add(DataRoom(id=1, name="r"))
        db.session.add(Folder(id=10, data_room_id=1, parent_id=None, name="Q1"))
        db.session.add(Membership(data_room_id=1, user_id="u1"))
        db.session.commit()
    yield app, cache
    cache.state(app).store.backend.close()
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_commit_while_redis_is_down_is_never_undone_by_its_aof(
    aof_server: Server, tracked_app: tuple[Flask, DataRoomCache]
) -> None:
    app, cache = tracked_app
    backend = cache.state(app).store.backend
    client = app.test_client()
    headers = {"X-User-Id": "u1"}
    first = client.get("/rooms/1/folders", headers=headers)
    assert first.get_json() == ["Q1"] and first.headers["X-Cache"] == "MISS"
    hit = client.get("/rooms/1/folders", headers=headers)
    assert hit.get_json() == ["Q1"] and hit.headers["X-Cache"] == "HIT"

    aof_server.kill()  # the cached ["Q1"] listing is in the AOF
    resp = client.patch("/folders/10", json={"name": "Q1 final"}, headers=headers)
    assert resp.status_code == 200  # the commit succeeds; its tags are queued
    assert backend.state == "open" and backend.pending >= 1

    seen: list[tuple[int, Any, str]] = []
    stop = threading.Event()

    def reader() -> None:
        c = app.test_client()
        while not stop.is_set():
            r = c.get("/rooms/1/folders", headers=headers)
            seen.append((r.status_code, r.get_json(), r.headers.get("X-Cache", "")))

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        aof_server.start()
        wait_until(lambda: backend.state == "closed", 10, "breaker closed")
        wait_until(lambda: any(x == "HIT" for _, _, x in seen[-20:]), 10, "hits again")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert seen
    assert all(status == 200 for status, _, _ in seen)
    stale = [s for s in seen if s[1] != ["Q1 final"]]
    assert not stale, f"{len(stale)} stale responses, e.g. {stale[:3]}"
