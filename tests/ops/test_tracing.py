"""OpenTelemetry spans (``tracing.py``): one ``compute`` span per miss (views and
``get_or_set``), none on a hit unless ``CACHE_OTEL_TRACE_HITS``, one ``invalidate`` span per
delivery, exceptions recorded and re-raised; nothing recorded without a configured SDK.
(A commit's delivery: tests/tracking/test_tracing_delivery.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify, make_response

from flask_dataroom_cache import ConfigError, DataRoomCache, Settings
from flask_dataroom_cache import config as config_module

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.trace import StatusCode

MakeApp = Callable[..., tuple[Flask, DataRoomCache]]
A = "dataroom_cache."


def _views(app: Flask, ext: DataRoomCache) -> None:
    @app.get("/rooms/<int:room>")
    @ext.cached(shared=True, tags=lambda room: [f"dataroom:{room}"])
    def room(room: int) -> Any:
        return jsonify(room=room)

    @app.get("/cookie")
    @ext.cached(shared=True)
    def cookie() -> Any:
        resp = make_response("x")
        resp.set_cookie("c", "1")
        return resp


def _spans(exporter: Any) -> list[Any]:
    return list(exporter.get_finished_spans())


def test_a_view_miss_has_one_span_and_a_hit_none(make_app: MakeApp, span_exporter: Any) -> None:
    app, ext = make_app()
    _views(app, ext)
    client = app.test_client()
    assert client.get("/rooms/7").headers["X-Cache"] == "MISS"
    (span,) = _spans(span_exporter)
    assert span.name == "dataroom_cache.compute"
    attrs = dict(span.attributes)
    backend = ext.state(app).store.backend.name
    assert attrs[A + "hit"] is False
    assert attrs[A + "endpoint"] == "room"
    assert attrs[A + "key"].startswith(ext.state(app).settings.key_prefix + ":")
    assert attrs[A + "tag_count"] == 1
    assert attrs[A + "backend"] == backend
    assert attrs[A + "outcome"] == "MISS"
    assert attrs[A + "result"] == "kept"
    assert span.instrumentation_scope.name == "flask_dataroom_cache"
    span_exporter.clear()
    assert client.get("/rooms/7").headers["X-Cache"] == "HIT"
    assert _spans(span_exporter) == []


def test_a_refused_response_names_its_reason(make_app: MakeApp, span_exporter: Any) -> None:
    app, ext = make_app()
    _views(app, ext)
    app.test_client().get("/cookie")
    (span,) = _spans(span_exporter)
    assert span.attributes[A + "result"] == "not_stored"
    assert span.attributes[A + "reason"] == "Set-Cookie"


def test_hits_get_a_lookup_span_when_configured(make_app: MakeApp, span_exporter: Any) -> None:
    app, ext = make_app(CACHE_OTEL_TRACE_HITS=True)
    _views(app, ext)
    client = app.test_client()
    client.get("/rooms/1")
    names = sorted(s.name for s in _spans(span_exporter))
    assert names == ["dataroom_cache.compute", "dataroom_cache.lookup"]
    lookup = next(s for s in _spans(span_exporter) if s.name == "dataroom_cache.lookup")
    assert lookup.attributes[A + "hit"] is False
    span_exporter.clear()
    assert client.get("/rooms/1").headers["X-Cache"] == "HIT"
    (hit,) = _spans(span_exporter)
    assert hit.name == "dataroom_cache.lookup"
    assert hit.attributes[A + "hit"] is True
    assert hit.attributes[A + "endpoint"] == "room"
    assert hit.attributes[A + "tag_count"] == 1


def _get_or_set(kind: str, cache: DataRoomCache, key: str, compute: Any, **kw: Any) -> Any:
    """``get_or_set``, or ``aget_or_set`` with an ``async def`` compute (issue 14)."""
    if kind == "sync":
        return cache.get_or_set(key, compute, **kw)

    async def acompute() -> Any:
        await asyncio.sleep(0)
        return compute()

    return asyncio.run(cache.aget_or_set(key, acompute, **kw))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_get_or_set_miss_span_and_its_result(app: Flask, span_exporter: Any, kind: str) -> None:
    cache = DataRoomCache.state(app).extension
    assert _get_or_set(kind, cache, "k1", lambda: 1, tags=["a:1", "b:2"]) == 1
    (span,) = _spans(span_exporter)
    assert span.name == "dataroom_cache.compute"
    assert span.attributes[A + "key"] == "k1"
    assert span.attributes[A + "tag_count"] == 2
    assert span.attributes[A + "result"] == "stored"
    assert A + "endpoint" not in span.attributes
    span_exporter.clear()
    assert _get_or_set(kind, cache, "k1", lambda: 2, tags=["a:1", "b:2"]) == 1  # a hit
    assert _spans(span_exporter) == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_exception_in_the_compute_is_recorded_and_reraised(
    app: Flask, span_exporter: Any, kind: str
) -> None:
    cache = DataRoomCache.state(app).extension

    def boom() -> int:
        raise KeyError("no such room")

    with pytest.raises(KeyError, match="no such room"):
        _get_or_set(kind, cache, "k2", boom)
    (span,) = _spans(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert cache.get("k2") is None  # nothing stored


def test_aget_or_set_waiters_that_compute_have_their_span(app: Flask, span_exporter: Any) -> None:
    """The fallback path: a waiter whose leader failed computes, inside its own span."""
    cache = DataRoomCache.state(app).extension
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise RuntimeError("leader fails")
        return 5

    async def main() -> list[Any]:
        readers = [cache.aget_or_set("k4", compute, tags=["a:1"]) for _ in range(3)]
        return await asyncio.gather(*readers, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], RuntimeError) and results[1:] == [5, 5]
    spans = _spans(span_exporter)
    assert [s.name for s in spans] == ["dataroom_cache.compute"] * 3
    assert sorted(s.status.status_code.name for s in spans) == ["ERROR", "UNSET", "UNSET"]
    assert sorted(s.attributes[A + "result"] for s in spans if A + "result" in s.attributes) == [
        "stored",
        "stored",
    ]


def test_a_view_exception_is_recorded_too(make_app: MakeApp, span_exporter: Any) -> None:
    app, ext = make_app()

    @app.get("/broken")
    @ext.cached(shared=True)
    def broken() -> Any:
        raise RuntimeError("view bug")

    app.testing = False  # a 500, not the exception, reaches the client
    assert app.test_client().get("/broken").status_code == 500
    (span,) = _spans(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "RuntimeError"


def test_a_manual_invalidation_has_one_span(app: Flask, span_exporter: Any) -> None:
    cache = DataRoomCache.state(app).extension
    cache.invalidate_tags("room:1", "room:2", "room:1")
    (span,) = _spans(span_exporter)
    assert span.name == "dataroom_cache.invalidate"
    assert span.attributes[A + "tag_count"] == 2
    assert span.attributes[A + "source"] == "api"
    assert span.attributes[A + "result"] == "sent"


def test_tracing_off_records_nothing(make_app: MakeApp, span_exporter: Any) -> None:
    app, ext = make_app(CACHE_OTEL_ENABLED=False)
    assert ext.state(app).store.tracing is None
    _views(app, ext)
    app.test_client().get("/rooms/3")
    with app.app_context():
        ext.invalidate_tags("room:3")
    assert _spans(span_exporter) == []


def test_without_a_configured_provider_no_span_is_started(app: Flask) -> None:
    # opentelemetry-api installed, no SDK set up: the API's proxy provider
    from opentelemetry import trace

    tracing = DataRoomCache.state(app).store.tracing
    assert tracing is not None  # on by default when the API is importable
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not tracing.active()
    with tracing.compute("k") as span:
        assert span is None
    assert DataRoomCache.state(app).extension.get_or_set("k3", lambda: 3) == 3


def test_config_defaults_and_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_mapping({}, environ={}).otel is True  # the API is installed here
    assert Settings.from_mapping({}, environ={}).otel_trace_hits is False
    off = Settings.from_mapping({"CACHE_OTEL_ENABLED": "false", "CACHE_OTEL_TRACE_HITS": "1"}, {})
    assert (off.otel, off.otel_trace_hits) == (False, False)
    monkeypatch.setattr(config_module, "_otel_installed", lambda: False)
    assert Settings.from_mapping({}, environ={}).otel is False  # default: off without the API
    with pytest.raises(ConfigError, match=r"^CACHE_OTEL_ENABLED=True .*\[otel\]"):
        Settings.from_mapping({"CACHE_OTEL_ENABLED": True}, environ={})
    with pytest.raises(ConfigError, match=r"^DATAROOM_CACHE_OTEL_TRACE_HITS='on'"):
        Settings.from_mapping({}, environ={"DATAROOM_CACHE_OTEL_TRACE_HITS": "on"})
