"""Fixtures of the example app's HTTP tests: the app on every database x cache combination
of ``tests/conftest.py`` (SQLite, PostgreSQL when ``DATABASE_URL`` is set; memory, fakeredis,
real Redis when ``REDIS_URL`` is set), and a small client that sends ``X-User-Id``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app
from example_app.extensions import db

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture
def example_app(database_url: str, cache_config: dict[str, Any], tmp_path: Path) -> Iterator[Flask]:
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "STORAGE_DIR": str(tmp_path / "storage"),
        "MAX_CONTENT_LENGTH": UPLOAD_LIMIT,
        **cache_config,
    }
    app = create_app(config)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def dataroom_cache_app(example_app: Flask) -> Flask:
    """The app of the package's ``dataroom_cache`` fixture (pytest_plugin.py)."""
    return example_app


class Api:
    """A test client acting as one user (``user_id=None``: no header at all)."""

    def __init__(self, client: FlaskClient, user_id: str | None) -> None:
        self.client = client
        self.user_id = user_id

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"X-User-Id": self.user_id} if self.user_id is not None else {}
        return {**headers, **(extra or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self._headers(headers), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=json, headers=self._headers(), **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(path, json=json, headers=self._headers(), **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers=self._headers(), **kw)

    def upload(
        self,
        room_id: str,
        name: str,
        data: bytes,
        folder_id: str | None = None,
        content_type: str = "text/plain",
    ) -> Any:
        form: dict[str, Any] = {"file": (io.BytesIO(data), name, content_type)}
        if folder_id is not None:
            form["folderId"] = folder_id
        return self.client.post(
            f"/api/datarooms/{room_id}/files",
            data=form,
            headers=self._headers(),
            content_type="multipart/form-data",
        )

    # shortcuts that assert success and return the JSON
    def ok(self, resp: Any, status: int = 200) -> Any:
        assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
        return resp.get_json()

    def items(self, path: str) -> list[dict[str, Any]]:
        resp = self.get(path)
        assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True))
        assert resp.headers.get("X-Cache") in ("HIT", "MISS"), resp.headers
        items: list[dict[str, Any]] = resp.get_json()["items"]
        return items

    def names(self, path: str) -> list[str]:
        return [item["name"] for item in self.items(path)]


@pytest.fixture
def client(example_app: Flask) -> FlaskClient:
    return example_app.test_client()


def make_user(client: FlaskClient, name: str) -> Api:
    resp = client.post("/api/users", json={"name": name})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return Api(client, resp.get_json()["id"])


@pytest.fixture
def alice(client: FlaskClient) -> Api:
    return make_user(client, "Alice")


@pytest.fixture
def bob(client: FlaskClient) -> Api:
    return make_user(client, "Bob")


@pytest.fixture
def room(alice: Api) -> str:
    room_id: str = alice.ok(alice.post("/api/datarooms", json={"name": "Deal"}), 201)["id"]
    return room_id


def error_code(resp: Any, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    code: str = body["error"]["code"]
    return code
