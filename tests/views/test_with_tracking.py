"""Cached views + session tracking: a commit makes the next request a miss; uncommitted
changes bypass; a membership change drops that user's per-user entries."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from tracking.models import Base, DataRoom, Folder, Membership, declare

from flask_dataroom_cache import DataRoomCache, contents_tag, dataroom_tag


@pytest.fixture
def tracked(cache_config: dict[str, Any], database_url: str) -> Iterator[Any]:
    app = Flask(f"vt_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=database_url, **cache_config)
    db = SQLAlchemy()
    cache = DataRoomCache()
    declare(cache)
    db.init_app(app)
    cache.init_app(app)
    calls: Counter[str] = Counter()

    @cache.identity
    def current_user_id() -> str | None:
        return request.headers.get("X-User-Id")

    @app.before_request
    def dirty() -> None:
        if request.headers.get("X-Dirty"):  # uncommitted tracked change in this request
            db.session.add(Folder(data_room_id=1, parent_id=None, name="uncommitted"))
            db.session.flush()

    @app.teardown_request
    def rollback(_exc: BaseException | None) -> None:
        db.session.rollback()

    @app.get("/rooms/<int:room_id>/folders")
    @cache.cached(
        tags=lambda room_id: [
            dataroom_tag(room_id),
            contents_tag(request.args.get("parentId") or f"root:{room_id}"),
        ]
    )
    def list_folders(room_id: int) -> Any:
        calls["folders"] += 1
        q = sa.select(Folder.name).where(
            Folder.data_room_id == room_id, Folder.parent_id.is_(None)
        )
        return jsonify(sorted(db.session.scalars(q).all()))

    with app.app_context():
        Base.metadata.create_all(db.engine)
        room = DataRoom(id=1, name="r")
        db.session.add(room)
        db.session.add(Folder(data_room_id=1, parent_id=None, name="a"))
        db.session.add(Membership(data_room_id=1, user_id="u1"))
        db.session.commit()
    client = app.test_client()

    def get(user: str = "u1", **headers: str) -> Any:
        return client.get("/rooms/1/folders", headers={"X-User-Id": user, **headers})

    yield app, db, get, calls
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def test_commit_makes_the_next_request_a_miss(tracked: Any) -> None:
    app, db, get, calls = tracked
    assert get().get_json() == ["a"]
    assert get().headers["X-Cache"] == "HIT"
    with app.app_context():
        db.session.add(Folder(data_room_id=1, parent_id=None, name="b"))
        db.session.commit()
    resp = get()
    assert resp.headers["X-Cache"] == "MISS"
    assert resp.get_json() == ["a", "b"]
    assert calls["folders"] == 2


def test_uncommitted_changes_bypass_and_are_never_stored(tracked: Any) -> None:
    _app, _db, get, _calls = tracked
    assert get().headers["X-Cache"] == "MISS"
    dirty = get(**{"X-Dirty": "1"})
    assert dirty.headers["X-Cache"] == "BYPASS"
    assert dirty.get_json() == ["a", "uncommitted"]
    clean = get()
    assert clean.headers["X-Cache"] == "HIT"
    assert clean.get_json() == ["a"]
    assert get(user="u2", **{"X-Dirty": "1"}).headers["X-Cache"] == "BYPASS"
    fresh = get(user="u2")
    assert fresh.headers["X-Cache"] == "MISS"
    assert fresh.get_json() == ["a"]


def test_membership_change_drops_that_users_entries_only(tracked: Any) -> None:
    app, db, get, _calls = tracked
    get(user="u1")
    get(user="u2")
    with app.app_context():
        db.session.add(Membership(data_room_id=1, user_id="u2"))
        db.session.commit()
    # the membership's room tag changed too (parents: data_room_id -> dataroom), so both
    # users' room listings miss; a change scoped to u2 alone is the user tag:
    assert get(user="u2").headers["X-Cache"] == "MISS"
    assert get(user="u1").headers["X-Cache"] == "MISS"
    with app.app_context():
        app.extensions["dataroom_cache"].store.invalidate(["user:u2"], defer=False)
    assert get(user="u2").headers["X-Cache"] == "MISS"
    assert get(user="u1").headers["X-Cache"] == "HIT"


def test_async_view_flushing_uncommitted_changes_is_not_stored(tracked: Any) -> None:
    """An async view runs in asgiref's thread (app.ensure_sync): what it flushes without
    committing must keep its response out of the cache, as for a sync view."""
    pytest.importorskip("asgiref")
    app, db, get, calls = tracked
    cache = DataRoomCache.state(app).extension

    @app.get("/async/rooms/<int:room_id>/folders")
    @cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
    async def folders_after_a_write(room_id: int) -> Any:
        calls["async"] += 1
        db.session.add(Folder(data_room_id=room_id, parent_id=None, name="uncommitted"))
        db.session.flush()
        q = sa.select(Folder.name).where(Folder.data_room_id == room_id)
        return jsonify(sorted(db.session.scalars(q).all()))

    client = app.test_client()
    first = client.get("/async/rooms/1/folders", headers={"X-User-Id": "u1"})
    assert first.get_json() == ["a", "uncommitted"]
    with app.app_context():  # rolled back at teardown: nothing of it may be cached
        assert db.session.scalars(sa.select(Folder.name)).all() == ["a"]
    assert get().get_json() == ["a"]
    again = client.get("/async/rooms/1/folders", headers={"X-User-Id": "u1"})
    assert again.headers["X-Cache"] != "HIT"
    assert calls["async"] == 2


def test_async_view_writing_through_an_async_session(tracked: Any, database_url: str) -> None:
    """An async view reads and writes through a tracked ``AsyncSession`` (issue 14): its
    cached reads hit; inside the view, after a flush, its own reads bypass; the commit's
    invalidations are out before ``await session.commit()`` returns, so the next GET, of
    the sync view too, misses and sees the change. ``NullPool``: under Flask each async
    view runs in an event loop of its own, and a pooled async connection belongs to the
    loop that opened it (``docs/async.md``)."""
    pytest.importorskip("asgiref")
    pytest.importorskip("greenlet")
    pytest.importorskip("aiosqlite" if database_url.startswith("sqlite") else "psycopg")
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.pool import NullPool
    from tracking.asyncenv import async_url

    app, _db, get, calls = tracked
    cache = DataRoomCache.state(app).extension
    engine = create_async_engine(async_url(database_url), poolclass=NullPool)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    cache.track_session(maker, app=app)
    seen: dict[str, Any] = {}

    async def names(session: Any, room_id: int) -> list[str]:
        q = sa.select(Folder.name).where(Folder.data_room_id == room_id)
        return sorted((await session.scalars(q)).all())

    @app.get("/async/rooms/<int:room_id>/names")
    @cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
    async def room_names(room_id: int) -> Any:
        calls["async names"] += 1
        async with maker() as session:
            return jsonify(await names(session, room_id))

    @app.post("/async/rooms/<int:room_id>/folders")
    async def add_folder(room_id: int) -> Any:
        async with maker() as session:
            session.add(Folder(data_room_id=room_id, parent_id=None, name=request.args["name"]))
            await session.flush()
            seen["bypass after flush"] = cache.store.must_bypass()
            seen["read after flush"] = await cache.aget_or_set(
                "names-in-view", lambda: names(session, room_id), tags=[dataroom_tag(room_id)]
            )
            await session.commit()
            seen["bypass after commit"] = cache.store.must_bypass()
        return "", 201

    client = app.test_client()
    user = {"X-User-Id": "u1"}
    assert client.get("/async/rooms/1/names", headers=user).get_json() == ["a"]
    assert client.get("/async/rooms/1/names", headers=user).headers["X-Cache"] == "HIT"
    assert get().get_json() == ["a"]  # the sync view's entry
    assert client.post("/async/rooms/1/folders?name=b", headers=user).status_code == 201
    assert seen == {
        "bypass after flush": True,
        "read after flush": ["a", "b"],  # its own write, read past the cache
        "bypass after commit": False,
    }
    with app.app_context():
        assert cache.store.get("names-in-view", [dataroom_tag(1)]) is None  # never stored
    after = client.get("/async/rooms/1/names", headers=user)
    assert after.headers["X-Cache"] == "MISS" and after.get_json() == ["a", "b"]
    assert get().get_json() == ["a", "b"]
    assert calls["async names"] == 2
    import asyncio

    asyncio.run(engine.dispose())
