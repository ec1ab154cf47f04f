"""cache.stats() counters (total, per endpoint, backend) and the Prometheus collector."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache, dataroom_tag, get_cache_key
from flask_dataroom_cache.metrics import OTHER_ENDPOINT, Metrics

prometheus_client = pytest.importorskip("prometheus_client")

MakeApp = Callable[..., tuple[Flask, DataRoomCache]]


def add_view(app: Flask, ext: DataRoomCache) -> None:
    from flask import jsonify, request

    @app.get("/rooms/<int:room>")
    def room(room: int) -> Any:
        store = ext.state(app).store
        value = store.get_or_set(
            get_cache_key("dataroom", room),
            lambda: {"room": room},
            tags=[dataroom_tag(room)],
            endpoint=request.endpoint,
        )
        return jsonify(value)


def test_stats_counts_per_endpoint_and_total(make_app: MakeApp) -> None:
    app, ext = make_app()
    add_view(app, ext)
    client = app.test_client()
    client.get("/rooms/1")
    client.get("/rooms/1")
    client.get("/rooms/1")
    with app.app_context():
        ext.invalidate_tags(dataroom_tag(1))
        ext.get("k-outside", ["x:1"])
        stats = ext.stats()
    room = stats["endpoints"]["room"]
    assert (room["hits"], room["misses"], room["sets"]) == (2, 1, 1)
    assert room["hit_ratio"] == pytest.approx(2 / 3, abs=1e-3)
    total = stats["total"]
    assert total["misses"] == 2  # the lookup outside a view counts in the total only
    assert total["invalidations"] == 1
    assert set(stats["backend"]) >= {
        "name",
        "prefix",
        "breaker",
        "pending_invalidations",
        "fallback_serves",
    }


def test_bypasses_are_counted(make_app: MakeApp) -> None:
    app, ext = make_app()
    add_view(app, ext)
    ext.state(app).store.bypass_checks.append(lambda: True)
    app.test_client().get("/rooms/1")
    with app.app_context():
        assert ext.stats()["endpoints"]["room"]["bypasses"] == 1


def test_hit_ratio_is_none_before_any_lookup(make_app: MakeApp) -> None:
    app, ext = make_app()
    with app.app_context():
        assert ext.stats()["total"]["hit_ratio"] is None


def test_endpoints_are_bounded() -> None:
    metrics = Metrics(max_endpoints=3)
    for i in range(10):
        metrics.incr("hits", endpoint=f"e{i}")
    snap = metrics.snapshot()
    assert len(snap["endpoints"]) == 3
    assert snap["total"]["hits"] == 10


def _text(registry: Any) -> str:
    return str(prometheus_client.generate_latest(registry).decode())


def _sample(registry: Any, name: str, **labels: str) -> float | None:
    value = registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def test_prometheus_per_app_registry(make_app: MakeApp) -> None:
    app1, ext1 = make_app()
    app2, ext2 = make_app()
    add_view(app1, ext1)
    app1.test_client().get("/rooms/1")
    app1.test_client().get("/rooms/1")
    reg1 = ext1.prometheus_registry(app1)
    reg2 = ext2.prometheus_registry(app2)
    assert reg1 is not reg2
    assert ext1.prometheus_registry(app1) is reg1  # idempotent
    p1 = app1.config["CACHE_KEY_PREFIX"]
    labels = {"app": app1.name, "prefix": p1, "endpoint": "room"}
    assert _sample(reg1, "dataroom_cache_hits_total", **labels) == 1
    assert _sample(reg1, "dataroom_cache_misses_total", **labels) == 1
    assert _sample(reg1, "dataroom_cache_hit_ratio", app=app1.name, prefix=p1) == 0.5
    assert app2.name not in _text(reg1)
    assert app1.name not in _text(reg2)
    backend = ext1.state(app1).store.backend.name
    state = {"app": app1.name, "prefix": p1, "backend": backend}
    assert _sample(reg1, "dataroom_cache_breaker_state", state="closed", **state) == 1
    assert _sample(reg1, "dataroom_cache_breaker_state", state="open", **state) == 0


def test_two_apps_share_one_registry_without_clashing(make_app: MakeApp) -> None:
    registry = prometheus_client.CollectorRegistry()
    app1, ext1 = make_app()
    app2, ext2 = make_app(CACHE_KEY_PREFIX=app1.config["CACHE_KEY_PREFIX"] + "b")
    for app, ext in ((app1, ext1), (app2, ext2)):
        add_view(app, ext)
        app.test_client().get("/rooms/1")
        assert ext.prometheus_registry(app, registry) is registry
    ext1.prometheus_registry(app1, registry)  # again: no duplicate collector
    text = _text(registry)
    assert sum(line.startswith("# TYPE dataroom_cache_hits") for line in text.splitlines()) == 1
    for app in (app1, app2):
        labels = {"app": app.name, "prefix": app.config["CACHE_KEY_PREFIX"], "endpoint": "room"}
        assert _sample(registry, "dataroom_cache_misses_total", **labels) == 1
    # an unrelated collector with its own names still registers fine
    prometheus_client.Counter("unrelated_total", "x", registry=registry)
    ext2.state(app2).store.clear()  # the sibling prefix on a shared server


def test_same_label_twice_on_one_registry_is_refused(make_app: MakeApp) -> None:
    registry = prometheus_client.CollectorRegistry()
    app1, ext1 = make_app()
    app2, ext2 = make_app(CACHE_KEY_PREFIX=app1.config["CACHE_KEY_PREFIX"])
    ext1.prometheus_registry(app1, registry, app_label="api")
    with pytest.raises(ValueError, match="already registered"):
        ext2.prometheus_registry(app2, registry, app_label="api")
    ext2.prometheus_registry(app2, registry, app_label="api-2")


def test_global_registry_works_for_two_apps() -> None:
    apps = []
    for _ in range(2):
        app = Flask(f"glob_{uuid.uuid4().hex[:6]}")
        app.config.update(CACHE_KEY_PREFIX="g" + uuid.uuid4().hex[:8], REDIS_URL="")
        ext = DataRoomCache(app)
        ext.prometheus_registry(app, prometheus_client.REGISTRY)
        apps.append(app)
    text = _text(prometheus_client.REGISTRY)
    assert all(a.name in text for a in apps)


def test_other_endpoint_carries_non_view_counts(make_app: MakeApp) -> None:
    app, ext = make_app()
    with app.app_context():
        ext.get("k", ["a:1"])
    registry = ext.prometheus_registry(app)
    labels = {"app": app.name, "prefix": app.config["CACHE_KEY_PREFIX"], "endpoint": OTHER_ENDPOINT}
    assert _sample(registry, "dataroom_cache_misses_total", **labels) == 1


def test_prometheus_exports_counters_added_by_other_modules(make_app: MakeApp) -> None:
    app, ext = make_app()
    ext.state(app).metrics.incr("stale_hits", endpoint="room")
    ext.state(app).metrics.incr("brand_new_counter", endpoint="room")
    registry = ext.prometheus_registry(app)
    labels = {"app": app.name, "prefix": app.config["CACHE_KEY_PREFIX"], "endpoint": "room"}
    assert _sample(registry, "dataroom_cache_stale_hits_total", **labels) == 1
    assert _sample(registry, "dataroom_cache_brand_new_counter_total", **labels) == 1
