"""``flask dataroom-cache`` through Flask's CliRunner, on memory, fakeredis and (with
REDIS_URL) a real Redis; unreachable Redis gives exit code 1, usage errors 2."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache, dataroom_tag, get_cache_key

MakeApp = Callable[..., tuple[Flask, DataRoomCache]]


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["dataroom-cache", *args])


def fill(app: Flask, ext: DataRoomCache, room: int, value: Any = None) -> str:
    with app.app_context():
        key = get_cache_key("dataroom", room)
        ext.get_or_set(key, lambda: value or {"room": room}, tags=[dataroom_tag(room)])
        return key


def cached(app: Flask, ext: DataRoomCache, room: int) -> bool:
    with app.app_context():
        return ext.get(get_cache_key("dataroom", room), [dataroom_tag(room)]) is not None


def test_group_lists_its_commands(make_app: MakeApp) -> None:
    app, _ = make_app()
    result = invoke(app, "--help")
    assert result.exit_code == 0
    for name in ("stats", "ping", "invalidate", "clear", "warm"):
        assert name in result.output


def test_stats_table_and_json(make_app: MakeApp) -> None:
    app, ext = make_app()
    fill(app, ext, 1)
    fill(app, ext, 1)
    result = invoke(app, "stats")
    assert result.exit_code == 0, result.output
    assert "TOTAL" in result.output and "50.0%" in result.output
    assert "breaker closed" in result.output
    result = invoke(app, "stats", "--json")
    data = json.loads(result.stdout)
    assert data["total"]["hits"] == 1 and data["total"]["misses"] == 1
    assert data["total"]["hit_ratio"] == 0.5
    assert data["backend"]["prefix"] == app.config["CACHE_KEY_PREFIX"]
    with app.app_context():
        assert ext.stats()["total"] == data["total"]


def test_stats_prometheus(make_app: MakeApp) -> None:
    app, ext = make_app()
    fill(app, ext, 1)
    result = invoke(app, "stats", "--prometheus")
    assert result.exit_code == 0, result.output
    assert "dataroom_cache_misses_total{" in result.output
    assert invoke(app, "stats", "--json", "--prometheus").exit_code == 2


def test_ping(make_app: MakeApp, cache_kind: str) -> None:
    app, ext = make_app()
    fill(app, ext, 1)
    result = invoke(app, "ping", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == ("memory" if cache_kind == "memory" else "redis")
    assert data["latency_ms"] >= 0
    if cache_kind == "fakeredis":  # fakeredis has no INFO: reachable, facts unavailable
        assert "info_error" in data
    else:
        assert data["keys"] >= 1
        assert data["memory_bytes"] is not None
    text = invoke(app, "ping")
    assert text.exit_code == 0
    assert "latency" in text.output and "under prefix" in text.output
    if cache_kind == "memory":
        assert "per process" in text.stderr


def test_invalidate(make_app: MakeApp) -> None:
    app, ext = make_app()
    fill(app, ext, 1)
    fill(app, ext, 2)
    assert cached(app, ext, 1) and cached(app, ext, 2)
    result = invoke(app, "invalidate", dataroom_tag(1))
    assert result.exit_code == 0, result.output + result.stderr
    assert not cached(app, ext, 1)
    assert cached(app, ext, 2)


def test_invalidate_all_bumps_the_epoch(make_app: MakeApp) -> None:
    app, ext = make_app()
    fill(app, ext, 1)
    fill(app, ext, 2)
    result = invoke(app, "invalidate", "--all")
    assert result.exit_code == 0, result.output
    assert not cached(app, ext, 1) and not cached(app, ext, 2)


@pytest.mark.parametrize("args", [(), ("",), (" padded",), ("--all", "a:1")])
def test_invalidate_usage_errors(make_app: MakeApp, args: tuple[str, ...]) -> None:
    app, _ = make_app()
    assert invoke(app, "invalidate", *args).exit_code == 2


def test_clear_only_this_prefix(make_app: MakeApp, cache_kind: str) -> None:
    app, ext = make_app()
    other, other_ext = make_app(CACHE_KEY_PREFIX=app.config["CACHE_KEY_PREFIX"] + "x")
    for room in range(3):
        fill(app, ext, room)
        fill(other, other_ext, room)
    commands: list[str] = []
    client = getattr(ext.state(app).store.backend, "primary", None)
    if client is not None:
        redis_client = client.client
        original = redis_client.execute_command

        def spy(*args: Any, **kw: Any) -> Any:
            commands.append(str(args[0]).upper())
            return original(*args, **kw)

        redis_client.execute_command = spy
    try:
        result = invoke(app, "clear")
    finally:
        if client is not None:
            del client.client.execute_command
    assert result.exit_code == 0, result.output + result.stderr
    assert "removed" in result.output
    assert not any(cached(app, ext, r) for r in range(3))
    assert all(cached(other, other_ext, r) for r in range(3))  # the other prefix survives
    if cache_kind != "memory":
        assert "SCAN" in commands
        assert not {"KEYS", "FLUSHDB", "FLUSHALL"} & set(commands)
        # cleanup of the sibling prefix on a shared server
        other_ext.state(other).store.clear()


def test_clear_scans_in_batches(make_app: MakeApp, cache_kind: str) -> None:
    if cache_kind == "memory":
        pytest.skip("batching is a Redis concern")
    app, ext = make_app()
    backend = ext.state(app).store.backend.primary
    prefix = app.config["CACHE_KEY_PREFIX"]
    pipe = backend.client.pipeline(transaction=False)
    for i in range(1200):
        pipe.set(f"{prefix}:bulk:{i}", b"x")
    pipe.execute()
    unlinks: list[int] = []
    original = backend.client.unlink

    def spy(*keys: Any) -> Any:
        unlinks.append(len(keys))
        return original(*keys)

    backend.client.unlink = spy
    try:
        result = invoke(app, "clear")
    finally:
        del backend.client.unlink
    assert result.exit_code == 0
    assert "removed 1200" in result.stdout
    assert len(unlinks) >= 3 and max(unlinks) <= 500


def test_warm(make_app: MakeApp) -> None:
    app, ext = make_app()
    ran: list[str] = []

    @ext.warmer
    def rooms() -> int:
        for room in range(3):
            fill(app, ext, room)
        ran.append("rooms")
        return 3

    @ext.warmer(name="users")
    def _users() -> None:
        ran.append("users")

    result = invoke(app, "warm")
    assert result.exit_code == 0, result.output + result.stderr
    assert ran == ["rooms", "users"]
    assert "rooms: ok (3 entries)" in result.output
    assert all(cached(app, ext, r) for r in range(3))
    ran.clear()
    assert invoke(app, "warm", "users").exit_code == 0
    assert ran == ["users"]
    assert invoke(app, "warm", "nope").exit_code == 2


def test_warm_failure_and_none_registered(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app, ext = make_app()
    result = invoke(app, "warm")
    assert result.exit_code == 0 and "no warmers" in result.output

    @ext.warmer
    def broken() -> None:
        raise RuntimeError("boom")

    @ext.warmer
    def fine() -> None:
        pass

    result = invoke(app, "warm")
    assert result.exit_code == 1
    assert "fine: ok" in result.output
    assert any(
        r.name == "flask_dataroom_cache" and "broken" in r.getMessage() for r in caplog.records
    )


def test_warmer_names_are_unique(make_app: MakeApp) -> None:
    _, ext = make_app()

    def a() -> None: ...

    ext.warmer(a)
    ext.warmer(a)  # the same function again is fine
    with pytest.raises(ValueError):
        ext.warmer(lambda: None, name="a")


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there any more


@pytest.fixture
def dead_app() -> Iterator[tuple[Flask, DataRoomCache]]:
    app = Flask(f"dead_{uuid.uuid4().hex[:6]}")
    app.config.update(
        TESTING=True,
        REDIS_URL=_dead_url(),
        CACHE_KEY_PREFIX="dead",
        CACHE_REDIS_SOCKET_TIMEOUT=0.2,
    )
    ext = DataRoomCache(app)
    yield app, ext
    ext.state(app).store.backend.close()


@pytest.mark.parametrize(
    "args", [("ping",), ("ping", "--json"), ("invalidate", "a:1"), ("clear",), ("warm",)]
)
def test_unreachable_backend_exits_1(
    dead_app: tuple[Flask, DataRoomCache], args: tuple[str, ...]
) -> None:
    app, ext = dead_app

    @ext.warmer
    def w() -> None:
        raise AssertionError("must not run when the backend is unreachable")

    result = invoke(app, *args)
    assert result.exit_code == 1, result.output + result.stderr
    assert "unreachable" in result.stderr
    assert ext.state(app).store.backend.pending == 0  # nothing queued by the CLI


def test_stats_works_while_unreachable(dead_app: tuple[Flask, DataRoomCache]) -> None:
    app, _ = dead_app
    result = invoke(app, "stats", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["backend"]["breaker"] == "open"


def test_stats_all_sums_every_process(make_app: MakeApp, cache_kind: str) -> None:
    from flask import jsonify

    if cache_kind == "memory":
        app, _ = make_app()
        assert invoke(app, "stats", "--all").exit_code == 2
        return
    workers = [make_app() for _ in range(2)]
    for app, ext in workers:

        @app.get("/rooms/<int:room>")
        def room(room: int, ext: DataRoomCache = ext) -> Any:
            from flask import request

            store = ext.state().store
            key = get_cache_key("dataroom", room)
            value = store.get_or_set(
                key, lambda: {"room": room}, tags=[dataroom_tag(room)], endpoint=request.endpoint
            )
            return jsonify(value)

        client = app.test_client()
        client.get("/rooms/1")
        publisher = ext.state(app).stats_publisher
        publisher._next = 0.0  # as if an interval had passed: the next request publishes
        client.get("/rooms/1")
    cli_app, _ = make_app()
    result = invoke(cli_app, "stats", "--all", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["processes"]) == 2
    # worker 1: miss + hit; worker 2 shares the Redis prefix: two hits
    assert data["endpoints"]["room"]["hits"] == 3
    assert data["endpoints"]["room"]["misses"] == 1
    assert data["total"]["hit_ratio"] == 0.75
    text = invoke(cli_app, "stats", "--all")
    assert text.exit_code == 0 and "2 process(es)" in text.output and "TOTAL" in text.output
    assert invoke(cli_app, "stats", "--all", "--prometheus").exit_code == 2


def test_stats_all_unreachable_exits_1(dead_app: tuple[Flask, DataRoomCache]) -> None:
    app, ext = dead_app
    result = invoke(app, "stats", "--all")
    assert result.exit_code == 1
    assert ext.state(app).stats_publisher.publish() is False  # breaker open: skipped


# -- issue 12 item 9: beside Flask-Caching on the same Redis db ---------------------------


@pytest.mark.parametrize("shape", ["same_prefix", "flask_caching_style_prefix"])
def test_clear_never_touches_flask_caching_entries_and_vice_versa(
    cache_kind: str, cache_config: dict[str, Any], fake_server: Any, shape: str
) -> None:
    """Both extensions on one Redis db, configured with the one shared CACHE_KEY_PREFIX:
    ``flask dataroom-cache clear`` keeps Flask-Caching's entries (even a key that starts
    with ``:``), and Flask-Caching's ``cache.clear()`` (``KEYS prefix*``) keeps ours."""
    if cache_kind == "memory":
        pytest.skip("needs a Redis both extensions share")
    from flask_caching import Cache

    prefix = cache_config["CACHE_KEY_PREFIX"]
    app = Flask(f"both_{uuid.uuid4().hex[:6]}")
    app.config.update(cache_config)
    app.config.update(
        CACHE_TYPE="RedisCache",
        CACHE_KEY_PREFIX=prefix if shape == "same_prefix" else prefix + ":",
    )
    if cache_kind == "fakeredis":
        import fakeredis

        app.config["CACHE_REDIS_HOST"] = fakeredis.FakeRedis(server=fake_server)
    else:
        app.config["CACHE_REDIS_URL"] = cache_config["REDIS_URL"]
    flask_cache = Cache(app)
    ext = DataRoomCache(app)
    ours = ext.state(app).settings.key_prefix
    try:
        with app.app_context():
            for key in ("plain", ":colon", "view//api/rooms", "~tagv:x"):
                assert flask_cache.set(key, key)
        for room in range(3):
            fill(app, ext, room)
        result = invoke(app, "clear")
        assert result.exit_code == 0, result.output + result.stderr
        assert not any(cached(app, ext, r) for r in range(3))
        with app.app_context():
            for key in ("plain", ":colon", "view//api/rooms", "~tagv:x"):
                assert flask_cache.get(key) == key, key
        for room in range(3):
            fill(app, ext, room)
        with app.app_context():
            flask_cache.clear()
            assert flask_cache.get("plain") is None
        assert all(cached(app, ext, r) for r in range(3))
    finally:
        with app.app_context():
            flask_cache.clear()
        ext.state(app).store.clear()
    assert ours != prefix
