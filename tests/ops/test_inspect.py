"""``cache.inspect`` and ``flask dataroom-cache inspect``: one entry, read-only, on memory
(in-process: the CLI runner shares the app), fakeredis and (with REDIS_URL) a real Redis.

Cluster, Sentinel and the near cache: tests/scale/test_inspect_scale.py.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask, jsonify, request

from flask_dataroom_cache import DataRoomCache, dataroom_tag, get_cache_key
from flask_dataroom_cache.inspection import EntryReport
from flask_dataroom_cache.serialization import encode
from flask_dataroom_cache.views import fill

MakeApp = Callable[..., tuple[Flask, DataRoomCache]]
TAGS = ["dataroom:1", "folder:7/contents"]


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["dataroom-cache", "inspect", *args])


def backend_of(app: Flask) -> Any:
    backend = DataRoomCache.state(app).store.backend
    return getattr(backend, "primary", backend)


def snapshot(app: Flask) -> Any:
    """Everything the backend holds under the app's prefix, in order (memory: the LRU
    order of entries and tokens too), to prove an inspection changed nothing."""
    backend = backend_of(app)
    if backend.name == "memory":
        return list(backend._entries.items()), list(backend._tags.items())
    client = backend.client
    prefix = app.config["CACHE_KEY_PREFIX"]
    keys = sorted(client.scan_iter(match=f"{prefix}:*"))
    return [(k, client.get(k)) for k in keys]


def drop_token(app: Flask, tag: str) -> None:
    """Lose a tag's token (evicted, expired), as a backend can."""
    backend = backend_of(app)
    if backend.name == "memory":
        del backend._tags[tag]
    else:
        assert backend.client.delete(backend._tagv + tag) == 1


def fill_value(app: Flask, ext: DataRoomCache, value: Any = None, ttl: int = 120) -> str:
    with app.app_context():
        key = get_cache_key("report", 1)
        ext.get_or_set(key, lambda: value or {"rows": [1, 2, 3]}, ttl=ttl, tags=TAGS)
        return key


def report_of(app: Flask, ext: DataRoomCache, key: str | None = None, **kw: Any) -> EntryReport:
    with app.app_context():
        return ext.inspect(key, **kw)


# -- a plain entry ------------------------------------------------------------------------
def test_valid_entry(make_app: MakeApp) -> None:
    app, ext = make_app()
    value = {"rows": [1, 2, 3]}
    key = fill_value(app, ext, value, ttl=120)
    report = report_of(app, ext, key)
    assert report.found and report.served and report.state == "valid"
    assert report.key == key and report.kind == "value" and report.value_type == "dict"
    assert report.size_bytes == len(encode(value))
    assert report.ttl_seconds is not None and 100 < report.ttl_seconds <= 120
    assert [t.tag for t in report.tags] == sorted([*TAGS, "~epoch"])
    assert all(t.status == "current" and t.current == t.captured for t in report.tags)
    assert report.stale_tags == () and report.soft_expiry is None


def test_stale_by_one_tag_names_it(make_app: MakeApp) -> None:
    app, ext = make_app()
    key = fill_value(app, ext)
    with app.app_context():
        ext.invalidate_tags("folder:7/contents")
    report = report_of(app, ext, key)
    assert report.found and not report.served and report.state == "stale-by-tag"
    assert report.stale_tags == ("folder:7/contents",)
    by_tag = {t.tag: t for t in report.tags}
    changed = by_tag["folder:7/contents"]
    assert changed.status == "changed" and changed.current != changed.captured
    assert by_tag["dataroom:1"].status == "current"
    result = invoke(app, key)
    assert result.exit_code == 0, result.output
    assert "stale-by-tag" in result.stdout and "tag folder:7/contents changed" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if "folder:7/contents  " in ln)
    assert "CHANGED" in line
    assert "CHANGED" not in next(ln for ln in result.stdout.splitlines() if "dataroom:1  " in ln)
    with app.app_context():  # the report agrees with a read
        assert ext.get(key, TAGS) is None


def test_missing_token_is_reported_not_created(make_app: MakeApp) -> None:
    app, ext = make_app()
    key = fill_value(app, ext)
    drop_token(app, "dataroom:1")
    before = snapshot(app)
    report = report_of(app, ext, key)
    assert report.state == "stale-by-tag" and report.stale_tags == ("dataroom:1",)
    tag = next(t for t in report.tags if t.tag == "dataroom:1")
    assert tag.status == "missing" and tag.current is None
    result = invoke(app, key)
    assert "missing (would be recreated: the entry is stale)" in result.stdout
    assert invoke(app, key, "--json").exit_code == 0
    assert snapshot(app) == before  # the token was not recreated, the entry not dropped


def test_missing_key_exits_1(make_app: MakeApp) -> None:
    app, ext = make_app()
    key = get_cache_key("report", 404)
    report = report_of(app, ext, key)
    assert not report.found and report.state == "missing" and report.size_bytes is None
    result = invoke(app, key)
    assert result.exit_code == 1
    assert "missing: nothing stored under this key" in result.stdout
    data = json.loads(invoke(app, key, "--json").stdout)
    assert data["found"] is False and data["state"] == "missing" and data["key"] == key


def test_json_has_every_field(make_app: MakeApp) -> None:
    app, ext = make_app()
    key = fill_value(app, ext)
    result = invoke(app, key, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["key"] == key and data["found"] is True and data["served"] is True
    assert data["state"] == "valid" and data["kind"] == "value"
    assert data["size_bytes"] > 0 and 0 < data["ttl_seconds"] <= 120
    assert {t["tag"] for t in data["tags"]} == {*TAGS, "~epoch"}
    assert all(set(t) == {"tag", "captured", "current", "status"} for t in data["tags"])
    for field in ("backend", "headers", "status", "etag", "soft_expiry", "stale_tags", "notes"):
        assert field in data


def test_memory_backend_says_in_process_only(make_app: MakeApp, cache_kind: str) -> None:
    app, ext = make_app()
    key = fill_value(app, ext)
    report = report_of(app, ext, key)
    memory = cache_kind == "memory"
    assert any("in-process only" in n for n in report.notes) == memory
    assert ("in-process only" in invoke(app, key).stdout) == memory


def test_inspection_writes_nothing(make_app: MakeApp) -> None:
    app, ext = make_app()
    key = fill_value(app, ext)
    with app.app_context():
        ext.invalidate_tags("dataroom:1")  # stale: a read would drop it
    before = snapshot(app)
    assert report_of(app, ext, key).state == "stale-by-tag"
    assert report_of(app, ext, get_cache_key("report", 404)).state == "missing"
    assert invoke(app, key).exit_code == 0
    assert invoke(app, get_cache_key("x", 1), "--json").exit_code == 1
    assert snapshot(app) == before


def test_foreign_value_is_reported_and_kept(make_app: MakeApp, cache_kind: str) -> None:
    if cache_kind == "memory":
        pytest.skip("only Redis can hold a value this cache did not write")
    app, ext = make_app()
    key = f"{app.config['CACHE_KEY_PREFIX']}:foreign"
    backend_of(app).client.set(key, b"not ours")
    report = report_of(app, ext, key)
    assert report.found and report.state == "foreign" and not report.served
    assert backend_of(app).client.get(key) == b"not ours"  # not dropped


def test_undecodable_payload_is_foreign_and_kept(make_app: MakeApp) -> None:
    app, ext = make_app()
    backend = backend_of(app)
    key = f"{app.config['CACHE_KEY_PREFIX']}:broken"
    versions = backend.versions(("~epoch",))
    assert backend.set(key, b"Qnot a payload", 60, ("~epoch",), versions)
    before = snapshot(app)
    report = report_of(app, ext, key)
    assert report.state == "foreign" and not report.served and report.size_bytes == 14
    assert any("does not decode" in n for n in report.notes)
    assert snapshot(app) == before  # a read would drop it; an inspection does not


def test_function_value_entry(make_app: MakeApp) -> None:
    from flask_dataroom_cache.views import returns

    app, ext = make_app()
    key = f"{app.config['CACHE_KEY_PREFIX']}:fn"
    soft = time.time() + 30
    with app.app_context():
        assert DataRoomCache.state(app).store.set(
            key, returns.pack_value(encode([1, 2]), soft), 60, ["a:1"]
        )
        report = ext.inspect(key)
    assert report.state == "valid" and report.kind == "function"
    assert report.value_type == "list" and report.soft_expiry == soft


def test_usage_errors_exit_2(make_app: MakeApp) -> None:
    app, ext = make_app()
    assert invoke(app).exit_code == 2
    assert invoke(app, "k", "--view", "/x").exit_code == 2
    assert invoke(app, "k", "--user", "3").exit_code == 2
    assert invoke(app, "--view", "/x", "--header", "no colon").exit_code == 2
    with app.app_context(), pytest.raises(ValueError):
        ext.inspect()


def test_unreachable_backend_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = Flask(f"dead_{uuid.uuid4().hex[:6]}")
    app.config.update(
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        CACHE_KEY_PREFIX="dead",
        CACHE_REDIS_SOCKET_TIMEOUT=0.2,
    )
    ext = DataRoomCache(app)
    try:
        result = invoke(app, "dead:x")
        assert result.exit_code == 1 and "unreachable" in result.stderr
    finally:
        ext.state(app).store.backend.close()


# -- views: --view URL [--user ID] -------------------------------------------------------
@pytest.fixture
def views(make_app: MakeApp) -> Iterator[tuple[Flask, DataRoomCache]]:
    app, ext = make_app()

    @ext.identity
    def user_id() -> str | None:
        return request.headers.get("X-User-Id")

    @app.get("/rooms/<int:room_id>/items")
    @ext.cached(tags=lambda room_id: [dataroom_tag(room_id)], stale_while_revalidate=30)
    def items(room_id: int) -> Any:
        return jsonify(room=room_id, user=request.headers.get("X-User-Id"))

    @app.get("/public/<page>")
    @ext.cached(shared=True, tags=["public"], timeout=60)
    def public(page: str) -> Any:
        resp = jsonify(page=page)
        resp.headers["X-Page"] = page
        return resp

    @app.get("/plain")
    def plain() -> Any:
        return "not cached"

    yield app, ext


def test_view_shared_without_user(views: tuple[Flask, DataRoomCache]) -> None:
    app, _ = views
    client = app.test_client()
    assert client.get("/public/a?y=2&x=1").headers["X-Cache"] == "MISS"
    result = invoke(app, "--view", "/public/a?x=1&y=2", "--json")  # the query is normalised
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["state"] == "valid" and data["kind"] == "view" and data["status"] == 200
    assert data["endpoint"] == "public" and data["identity"] is None
    assert ["X-Page", "a"] in data["headers"]
    assert data["etag"] == client.get("/public/a?y=2&x=1").headers["ETag"]
    assert data["soft_expiry"] == pytest.approx(time.time() + 60, abs=5)
    assert {t["tag"] for t in data["tags"]} == {"public", "~epoch"} == set(data["expected_tags"])
    assert invoke(app, "--view", "/public/a").exit_code == 1  # another query: another key
    assert invoke(app, "--view", "/public/b?x=1&y=2").exit_code == 1
    with_user = invoke(app, "--view", "/public/a?x=1&y=2", "--user", "3")
    assert with_user.exit_code == 0 and "is shared: the user is not in its key" in with_user.stdout


def test_view_host_is_part_of_the_key(views: tuple[Flask, DataRoomCache]) -> None:
    app, _ = views
    app.test_client().get("/public/h", base_url="https://rooms.example.com")
    assert invoke(app, "--view", "https://rooms.example.com/public/h").exit_code == 0
    assert invoke(app, "--view", "/public/h").exit_code == 1  # localhost: another key


def test_view_identity_failure_is_a_usage_error(make_app: MakeApp) -> None:
    app, ext = make_app()

    @app.get("/mine")
    @ext.cached()
    def mine() -> Any:
        return "mine"

    result = invoke(app, "--view", "/mine")  # no identity function at all
    assert result.exit_code == 2 and "'mine'" in result.stderr and "--user" in result.stderr
    assert invoke(app, "--view", "/mine", "--user", "7").exit_code == 1  # keyed, not stored


def test_view_per_user(views: tuple[Flask, DataRoomCache]) -> None:
    app, ext = views
    client = app.test_client()
    assert client.get("/rooms/1/items", headers={"X-User-Id": "3"}).headers["X-Cache"] == "MISS"
    result = invoke(app, "--view", "/rooms/1/items", "--user", "3")
    assert result.exit_code == 0, result.output
    assert "valid: a read now is a hit" in result.stdout and "user 3" in result.stdout
    report = report_of(app, ext, view="/rooms/1/items", user=3)
    assert report.state == "valid" and report.identity == "3" and report.endpoint == "items"
    assert {t.tag for t in report.tags} == {"dataroom:1", "user:3", "~epoch"}
    # another user has no entry; the identity function's answer (a header) works too
    assert invoke(app, "--view", "/rooms/1/items", "--user", "4").exit_code == 1
    by_header = invoke(app, "--view", "/rooms/1/items", "--header", "X-User-Id: 3", "--json")
    assert by_header.exit_code == 0 and json.loads(by_header.stdout)["identity"] == "3"
    # the report names the tag a write invalidated
    with app.app_context():
        ext.invalidate_tags(dataroom_tag(1))
    report = report_of(app, ext, view="/rooms/1/items", user="3")
    assert report.state == "stale-by-tag" and report.stale_tags == ("dataroom:1",)


def test_view_anonymous_or_not_cached_is_a_usage_error(
    views: tuple[Flask, DataRoomCache],
) -> None:
    app, _ = views
    result = invoke(app, "--view", "/rooms/1/items")  # no --user, anonymous request
    assert result.exit_code == 2
    assert "/rooms/1/items" in result.stderr and "'items'" in result.stderr
    assert "--user" in result.stderr
    result = invoke(app, "--view", "/plain")
    assert result.exit_code == 2
    assert "/plain matches endpoint 'plain', which is not a cached view" in result.stderr
    result = invoke(app, "--view", "/nowhere")
    assert result.exit_code == 2 and "/nowhere: no route" in result.stderr


def test_view_soft_expired(views: tuple[Flask, DataRoomCache], monkeypatch: Any) -> None:
    app, ext = views
    # the entry is written as if 400 s ago: past its soft expiry (timeout 300), still
    # kept for the stale-while-revalidate window (its TTL is 330 s from now)
    monkeypatch.setattr(fill, "time", SimpleNamespace(time=lambda: time.time() - 400))
    app.test_client().get("/rooms/2/items", headers={"X-User-Id": "3"})
    monkeypatch.undo()
    report = report_of(app, ext, view="/rooms/2/items", user="3")
    assert report.state == "soft-expired" and report.served
    assert report.soft_expiry is not None and report.soft_expiry < time.time()
    result = invoke(app, "--view", "/rooms/2/items", "--user", "3")
    assert result.exit_code == 0 and "soft-expired: served stale" in result.stdout
    assert "s ago" in result.stdout
    resp = app.test_client().get("/rooms/2/items", headers={"X-User-Id": "3"})
    assert resp.headers["X-Cache"] in ("HIT", "MISS")  # served stale, or refreshed


def test_view_inspection_writes_nothing(views: tuple[Flask, DataRoomCache]) -> None:
    app, _ = views
    app.test_client().get("/rooms/1/items", headers={"X-User-Id": "3"})
    before = snapshot(app)
    assert invoke(app, "--view", "/rooms/1/items", "--user", "3").exit_code == 0
    assert invoke(app, "--view", "/rooms/9/items", "--user", "3").exit_code == 1
    assert snapshot(app) == before


def test_redis_frame_parser_reads_what_frame_writes() -> None:
    from flask_dataroom_cache.backends.redis.layout import frame, parse_frame

    tags, versions = ("a:1", "~epoch"), ("t1", "t2")
    assert parse_frame(frame(tags, versions, b"x\ny")) == (tags, versions, b"x\ny")
    assert parse_frame(frame((), (), b"lock")) == ((), (), b"lock")
    for bad in (b"", b"nope", b"2\na\n", b"-1\nx", b"65\n" + b"t\n" * 130, b" 1\na\nt\n"):
        assert parse_frame(bad) is None, bad


def test_view_key_follows_vary_preprocessors_and_class_views(make_app: MakeApp) -> None:
    from flask import g
    from flask.views import MethodView

    app, ext = make_app()

    @app.url_value_preprocessor
    def pop_lang(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and "lang" in values:
            g.lang = values.pop("lang")

    @app.get("/<lang>/docs/<int:page>")
    @ext.cached(shared=True, vary=["Accept-Encoding"], tags=lambda page: [f"page:{page}"])
    def docs(page: int) -> Any:
        return f"{g.lang} {page}"

    class Report(MethodView):
        @ext.cached(shared=True, tags=["reports"])
        def get(self, rid: int) -> Any:
            return f"report {rid}"

    app.add_url_rule("/reports/<int:rid>", view_func=Report.as_view("report"))
    client = app.test_client()
    client.get("/fr/docs/2", headers={"Accept-Encoding": "gzip"})
    client.get("/reports/4")
    found = invoke(app, "--view", "/fr/docs/2", "--header", "Accept-Encoding: gzip", "--json")
    assert found.exit_code == 0, found.output
    data = json.loads(found.stdout)
    assert set(data["expected_tags"]) == {"page:2", "~epoch"} == {t["tag"] for t in data["tags"]}
    assert invoke(app, "--view", "/fr/docs/2").exit_code == 1  # vary: another key
    assert invoke(app, "--view", "/en/docs/2", "--header", "Accept-Encoding: gzip").exit_code == 1
    report = invoke(app, "--view", "/reports/4", "--json")
    assert report.exit_code == 0 and json.loads(report.stdout)["endpoint"] == "report"
