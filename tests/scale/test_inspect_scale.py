"""``inspect`` on a real Redis Cluster, a Sentinel-managed master and behind the near cache
(L1): the entry in its shard group, the stale tag named, nothing written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.backends.near import NearCache
from flask_dataroom_cache.backends.redis import ClusterRedisBackend

from .servers import Cluster, RedisProcess, running_sentinel, wait_until

pytestmark = pytest.mark.redis_server
TAGS = ["room:1", "folder:2"]


def _app(url: str, **extra: Any) -> tuple[Flask, DataRoomCache]:
    app = Flask(f"inspect_{uuid.uuid4().hex[:6]}")
    app.config.update(
        REDIS_URL=url,
        CACHE_KEY_PREFIX="i" + uuid.uuid4().hex[:10],
        CACHE_REDIS_SOCKET_TIMEOUT=2.0,
        **extra,
    )
    ext = DataRoomCache()
    ext.init_app(app)

    @app.get("/rooms/<int:room_id>")
    @ext.cached(shared=True, tags=lambda room_id: [f"room:{room_id}"])
    def room(room_id: int) -> Any:
        return jsonify(room=room_id)

    return app, ext


def _inspect(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["dataroom-cache", "inspect", *args])


def _exercise(app: Flask, ext: DataRoomCache, snapshot: Any) -> str:
    """What every deployment must show: a valid entry, the tag that made it stale, a view
    by URL, a missing key, and no write by any of it. Returns the entry's key."""
    prefix = app.config["CACHE_KEY_PREFIX"]
    key = f"{prefix}:report:1"
    with app.app_context():
        ext.get_or_set(key, lambda: {"v": 1}, ttl=60, tags=TAGS)
        report = ext.inspect(key)
        assert report.state == "valid" and report.size_bytes and report.ttl_seconds
        assert {t.tag for t in report.tags} == {*TAGS, "~epoch"}
        ext.invalidate_tags("folder:2")
    assert app.test_client().get("/rooms/5").headers["X-Cache"] == "MISS"
    before = snapshot()
    result = _inspect(app, key, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["state"] == "stale-by-tag" and data["stale_tags"] == ["folder:2"]
    view = _inspect(app, "--view", "/rooms/5", "--json")
    assert view.exit_code == 0, view.output
    data = json.loads(view.stdout)
    assert data["state"] == "valid" and data["kind"] == "view" and data["endpoint"] == "room"
    assert {t["tag"] for t in data["tags"]} == {"room:5", "~epoch"}
    assert _inspect(app, f"{prefix}:nothing").exit_code == 1
    assert snapshot() == before
    return key


@pytest.fixture
def cluster_app(redis_cluster: Cluster) -> Iterator[tuple[Flask, DataRoomCache]]:
    app, ext = _app(redis_cluster.url)
    yield app, ext
    ext.state(app).store.clear()
    ext.uninstall(app)


def test_cluster(cluster_app: tuple[Flask, DataRoomCache]) -> None:
    app, ext = cluster_app
    backend = ext.state(app).store.backend.primary  # type: ignore[attr-defined]
    assert isinstance(backend, ClusterRedisBackend)

    def snapshot() -> list[tuple[bytes, Any]]:
        out = []
        for node in backend.client.get_primaries():
            conn = node.redis_connection
            for k in conn.scan_iter(match="{" + backend.prefix + ":s*"):
                out.append((k, conn.get(k)))
        return sorted(out)

    key = _exercise(app, ext, snapshot)
    # the token copy of the entry's own shard group is the one a read checks
    group = backend._group(key)
    backend.client.delete(backend._group_tagv[group] + "room:1")
    before = snapshot()
    with app.app_context():
        report = ext.inspect(key)
        stored = ext.inspect(backend._groups[group] + key)  # the key as stored works too
    assert report.state == "stale-by-tag" and set(report.stale_tags) == {"room:1", "folder:2"}
    assert {t.tag: t.status for t in report.tags}["room:1"] == "missing"
    assert stored.tags == report.tags
    assert snapshot() == before  # the missing token was not recreated


def test_sentinel(tmp_path: Path) -> None:
    with running_sentinel(tmp_path) as setup:
        app, ext = _app(setup.url + "?wait_timeout_ms=1000")
        client = setup.master.client()
        prefix = app.config["CACHE_KEY_PREFIX"]

        def snapshot() -> list[tuple[bytes, Any]]:
            return sorted((k, client.get(k)) for k in client.scan_iter(match=f"{prefix}:*"))

        try:
            _exercise(app, ext, snapshot)
        finally:
            ext.uninstall(app)


def test_near_cache(own_redis: RedisProcess) -> None:
    app, ext = _app(f"redis://127.0.0.1:{own_redis.port}/0", CACHE_L1_MAX_ENTRIES=100)
    near = ext.state(app).store.backend.primary  # type: ignore[attr-defined]
    assert isinstance(near, NearCache)
    wait_until(lambda: near.l1_active, 5, "L1 subscription")
    client = own_redis.client()
    prefix = app.config["CACHE_KEY_PREFIX"]

    def snapshot() -> list[tuple[bytes, Any]]:
        return sorted((k, client.get(k)) for k in client.scan_iter(match=f"{prefix}:*"))

    try:
        _exercise(app, ext, snapshot)
    finally:
        ext.state(app).store.clear()
        ext.uninstall(app)
