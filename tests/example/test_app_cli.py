"""The factory's configuration, the CLI (init-db, seed), and the cache warmer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from example_app import create_app, normalize_database_url
from example_app.extensions import db
from example_app.models import DataRoom, File, Folder, Membership, User

from .conftest import Api


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_DIR", "MAX_CONTENT_LENGTH"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"TESTING": True})
    instance = Path(app.instance_path)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance / 'dataroom.db'}"
    assert app.config["STORAGE_DIR"] == str(instance / "storage")
    assert app.config["MAX_CONTENT_LENGTH"] == 32 * 1024 * 1024
    assert app.config["REDIS_URL"] is None


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("STORAGE_DIR", str(tmp_path / "blobs"))
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "1234")
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app({"TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'env.db'}"
    assert app.config["STORAGE_DIR"] == str(tmp_path / "blobs")
    assert os.path.isdir(tmp_path / "blobs")
    assert app.config["MAX_CONTENT_LENGTH"] == 1234
    # an explicit config wins over the environment
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'cfg.db'}"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'cfg.db'}"


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgresql://u@h/db?x=1") == "postgresql+psycopg://u@h/db?x=1"
    assert normalize_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def _counts(app: Flask) -> tuple[int, ...]:
    with app.app_context():
        return tuple(
            db.session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (User, DataRoom, Membership, Folder, File)
        )


def test_init_db_and_seed_are_idempotent(example_app: Flask) -> None:
    runner = example_app.test_cli_runner()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "database ready" in result.output
    first = runner.invoke(args=["seed", "--base-url", "http://127.0.0.1:5057"])
    assert first.exit_code == 0, first.output
    ids = re.findall(r"X-User-Id: ([0-9a-f-]{36})", first.output)
    assert len(set(ids)) == 2
    assert f"curl -s -H 'X-User-Id: {ids[0]}' http://127.0.0.1:5057/api/datarooms" in first.output
    counts = _counts(example_app)
    assert counts == (2, 2, 4, 7, 6)
    again = runner.invoke(args=["seed"])
    assert again.exit_code == 0, again.output
    assert _counts(example_app) == counts
    assert re.findall(r"X-User-Id: ([0-9a-f-]{36})", again.output)[:2] == ids[:2]
    assert len(os.listdir(example_app.config["STORAGE_DIR"])) == 6

    # the seeded data serves: alice sees both rooms, bob is a viewer of Acme
    client = example_app.test_client()
    alice, bob = Api(client, ids[0]), Api(client, ids[1])
    rooms = {r["name"]: r for r in alice.items("/api/datarooms")}
    assert {n: r["role"] for n, r in rooms.items()} == {
        "Acme acquisition": "owner",
        "Project Falcon": "editor",
    }
    acme = rooms["Acme acquisition"]["id"]
    assert alice.names(f"/api/datarooms/{acme}/folders") == ["Financials", "Legal"]
    assert alice.names(f"/api/datarooms/{acme}/files") == ["README.txt"]
    readme = alice.items(f"/api/datarooms/{acme}/files")[0]["id"]
    assert bob.get(f"/api/files/{readme}/content").data == b"Welcome to the Acme data room.\n"
    assert bob.post(f"/api/datarooms/{acme}/folders", json={"name": "x"}).status_code == 403


def test_warmer_fills_what_members_see_first(example_app: Flask) -> None:
    runner = example_app.test_cli_runner()
    seeded = runner.invoke(args=["seed"])
    alice_id = re.findall(r"X-User-Id: ([0-9a-f-]{36})", seeded.output)[0]
    result = runner.invoke(args=["dataroom-cache", "warm", "example-rooms"])
    assert result.exit_code == 0, result.output
    # 2 users x (room list) + 4 memberships x (room, folders, files) = 14 responses
    assert "14" in result.output, result.output
    client = example_app.test_client()
    headers = {"X-User-Id": alice_id}
    rooms = client.get("/api/datarooms", headers=headers)
    assert rooms.headers["X-Cache"] == "HIT"
    for room in rooms.get_json()["items"]:
        for path in ("", "/folders", "/files"):
            resp = client.get(f"/api/datarooms/{room['id']}{path}", headers=headers)
            assert resp.headers["X-Cache"] == "HIT", path
