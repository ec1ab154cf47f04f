"""A test suite's database reset while the cache outlives it (issue 12 item 3b, the real
app's failing test): test 1 caches a profile (200), the fixture runs ``db.drop_all()`` /
``db.create_all()``, test 2 asks for the same URL and must get 404, not the cached 200."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, abort, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_dataroom_cache import DataRoomCache, entity_tag


def build(cache_config: dict[str, Any], database_url: str) -> tuple[Flask, SQLAlchemy, Any]:
    """What an app factory does: models, extensions, a cached shared view."""

    class Base(DeclarativeBase):  # one per app, as each test process has its own
        pass

    db = SQLAlchemy(model_class=Base)

    class Profile(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "profiles"
        id: Mapped[int] = mapped_column(primary_key=True)
        username: Mapped[str] = mapped_column(sa.String(40), unique=True)
        bio: Mapped[str] = mapped_column(sa.String(100), default="")

    app = Flask(f"reset_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=database_url, **cache_config)
    cache = DataRoomCache()
    cache.track(Profile, entity="profile", id_attr="username")
    db.init_app(app)
    cache.init_app(app)

    @app.get("/profiles/<username>")
    @cache.cached(shared=True, tags=lambda username: [entity_tag("profile", username)])
    def profile(username: str) -> Any:
        found = db.session.scalar(sa.select(Profile).where(Profile.username == username))
        if found is None:
            abort(404)
        return jsonify(username=found.username, bio=found.bio)

    @app.teardown_appcontext
    def remove(_exc: BaseException | None) -> None:
        db.session.remove()

    return app, db, Profile


@pytest.fixture
def app_factory(cache_config: dict[str, Any], database_url: str) -> Iterator[Callable[[], Any]]:
    """A per-test app, as an app's conftest builds it: create_all before, drop_all after."""
    made: list[tuple[Flask, SQLAlchemy]] = []

    def setup() -> Any:
        app, db, profile = build(cache_config, database_url)
        with app.app_context():
            db.create_all()
        made.append((app, db))
        return app, db, profile

    def teardown() -> None:
        app, db = made[-1]
        with app.app_context():
            db.session.remove()
            db.drop_all()

    yield lambda: (setup, teardown)
    for app, db in made:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def test_per_test_app_reset_while_redis_outlives_it(
    app_factory: Callable[[], Any], cache_kind: str
) -> None:
    if cache_kind == "memory":
        pytest.skip("a memory cache does not outlive its app")
    setup, teardown = app_factory()
    # test 1
    app, db, Profile = setup()
    with app.app_context():
        db.session.add(Profile(username="alice", bio="hi"))
        db.session.commit()
    client = app.test_client()
    assert client.get("/profiles/alice").status_code == 200
    assert client.get("/profiles/alice").status_code == 200  # served from the cache
    teardown()
    # test 2: a new app on the same database and the same Redis
    app2, _db2, _ = setup()
    assert app2.test_client().get("/profiles/alice").status_code == 404
    teardown()


def test_one_app_database_reset_between_tests(app_factory: Callable[[], Any]) -> None:
    """A session-wide app whose fixture resets the database for every test."""
    setup, _ = app_factory()
    app, db, Profile = setup()
    client = app.test_client()
    with app.app_context():
        db.session.add(Profile(username="alice", bio="hi"))
        db.session.commit()
    assert client.get("/profiles/alice").get_json() == {"username": "alice", "bio": "hi"}
    with app.app_context():  # the fixture between test 1 and test 2
        db.drop_all()
        db.create_all()
    assert client.get("/profiles/alice").status_code == 404
    with app.app_context():
        db.session.add(Profile(username="alice", bio="new"))
        db.session.commit()
    assert client.get("/profiles/alice").get_json() == {"username": "alice", "bio": "new"}
