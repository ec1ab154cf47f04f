"""Prometheus in prometheus_client's multiprocess mode (``metrics/multiprocess.py``): the
registry reports the sum over every worker, dead ones included, and never goes backwards.

Worker processes are simulated in one process the way prometheus_client's own tests do:
its value class is given a process identifier we switch (each "pid" writes its own file).
The real thing, gunicorn with 3 workers, is tests/e2e/test_metrics_gunicorn.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_dataroom_cache import ConfigError, DataRoomCache
from flask_dataroom_cache.metrics import multiprocess

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import multiprocess as prom_mp  # noqa: E402
from prometheus_client import values  # noqa: E402

MakeApp = Callable[..., tuple[Flask, DataRoomCache]]


class Pids:
    """The simulated current process."""

    def __init__(self) -> None:
        self.current = 101

    def __call__(self) -> int:
        return self.current


@pytest.fixture
def pids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pids]:
    directory = tmp_path / "prom"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    pid = Pids()
    value_class = values.MultiProcessValue(pid)
    monkeypatch.setattr(values, "ValueClass", value_class)
    monkeypatch.setattr(multiprocess, "_METRICS", {})
    yield pid
    value_class.close_all_files()  # type: ignore[attr-defined]


def _view(app: Flask, ext: DataRoomCache) -> Callable[[], str]:
    @app.get("/rooms/<int:room>")
    @ext.cached(shared=True, tags=lambda room: [f"dataroom:{room}"])
    def room(room: int) -> Any:
        return jsonify(room=room)

    client = app.test_client()
    return lambda: str(client.get("/rooms/1").headers["X-Cache"])


def _value(registry: Any, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def test_the_registry_sums_every_worker_dead_ones_included(
    make_app: MakeApp, pids: Pids
) -> None:
    app, ext = make_app()
    get = _view(app, ext)
    labels = {"app": app.name, "prefix": ext.state(app).settings.key_prefix}
    with app.app_context():
        registry = ext.prometheus_registry()
    assert ext.state(app).metrics.sink is not None
    served = {"MISS": 0, "HIT": 0}
    for pid, requests in ((101, 4), (102, 3), (103, 5)):
        pids.current = pid
        for _ in range(requests):
            served[get()] += 1
    assert served == {"MISS": 1, "HIT": 11}

    def hits() -> float:
        return _value(registry, "dataroom_cache_hits_total", endpoint="room", **labels)

    assert hits() == 11
    assert _value(registry, "dataroom_cache_misses_total", endpoint="room", **labels) == 1
    assert _value(registry, "dataroom_cache_sets_total", endpoint="room", **labels) == 1
    assert _value(registry, "dataroom_cache_hit_ratio", **labels) == pytest.approx(11 / 12)
    # worker 102 dies (gunicorn's child_exit hook): its counts stay in the sum
    prom_mp.mark_process_dead(102)
    assert hits() == 11
    pids.current = 104  # its replacement
    assert get() == "HIT"
    assert hits() == 12
    # outside a view: the _other endpoint, as the per-process collector reports it
    with app.app_context():
        ext.get("k", ["x:1"])
    assert _value(registry, "dataroom_cache_misses_total", endpoint="_other", **labels) == 1


def test_live_gauges_count_live_workers(make_app: MakeApp, pids: Pids) -> None:
    app, ext = make_app()
    labels = {"app": app.name, "prefix": ext.state(app).settings.key_prefix}
    sink = ext.state(app).metrics.sink
    assert isinstance(sink, multiprocess.MultiprocessSink)
    backend = ext.state(app).store.backend.name
    for pid in (201, 202):
        pids.current = pid
        sink.update_gauges(force=True)
    with app.app_context():
        registry = ext.prometheus_registry()

    def closed() -> float:
        return _value(
            registry, "dataroom_cache_breaker_state", backend=backend, state="closed", **labels
        )

    assert closed() == 3  # 101 (init_app), 201, 202
    prom_mp.mark_process_dead(201)
    assert closed() == 2


def test_a_shared_registry_gets_the_hit_ratio_once(make_app: MakeApp, pids: Pids) -> None:
    app, ext = make_app()
    get = _view(app, ext)
    get()
    get()
    registry = prometheus_client.CollectorRegistry()
    prom_mp.MultiProcessCollector(registry)  # what prometheus_client documents
    with app.app_context():
        assert ext.prometheus_registry(app, registry) is registry
        ext.prometheus_registry(app, registry)  # idempotent
    text = prometheus_client.generate_latest(registry).decode()
    hits = [line for line in text.splitlines() if line.startswith("dataroom_cache_hits_total{")]
    ratios = [line for line in text.splitlines() if line.startswith("dataroom_cache_hit_ratio{")]
    assert len(hits) == 1 and hits[0].endswith(" 1.0")
    assert len(ratios) == 1 and ratios[0].endswith(" 0.5")
    with app.app_context(), pytest.raises(ValueError, match="app label"):
        ext.prometheus_registry(app, registry, app_label="other")


def test_uninstall_detaches_the_sink(make_app: MakeApp, pids: Pids) -> None:
    app, ext = make_app()
    metrics = ext.state(app).metrics
    assert metrics.sink is not None
    hooks = len(app.teardown_request_funcs.get(None, []))
    ext.uninstall(app)
    assert metrics.sink is None
    assert len(app.teardown_request_funcs.get(None, [])) < hooks


def test_a_directory_that_does_not_exist_fails_init_app(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^PROMETHEUS_MULTIPROC_DIR=.*not a directory"):
        make_app()


def test_prometheus_client_imported_before_the_variable_fails_init_app(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    with pytest.raises(ConfigError, match="imported before"):
        make_app()


def test_without_the_variable_nothing_is_mirrored(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    app, ext = make_app()
    assert ext.state(app).metrics.sink is None
