"""Single flight, the cross-process lock and stale-while-revalidate."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache import flights as flights_module
from flask_dataroom_cache.keys import build_key
from flask_dataroom_cache.views import call as call_module
from flask_dataroom_cache.views import flight as flight_module

from .conftest import ViewsApp, flavour


class CountingFlights(flight_module.Flights):
    """Counts how many requests reached the single-flight registry."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = 0
        self.cond = threading.Condition()

    def lead(self, key: str) -> threading.Event | None:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()
        return super().lead(key)

    def wait_for(self, n: int, timeout: float = 30) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.arrived >= n, timeout)


def _flights(va: ViewsApp) -> CountingFlights:
    flights = CountingFlights()
    DataRoomCache.state(va.app).views.flights = flights
    return flights


def test_fifty_threads_missing_one_key_run_the_view_once(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    flights = _flights(va)
    threads_n = 50

    @va.app.get("/slow")
    @va.cache.cached(tags=["slow"])
    @flavour(view_kind)
    def slow() -> Any:
        va.calls["slow"] += 1
        # hold the flight until every request has reached it
        assert flights.wait_for(threads_n)
        return jsonify(n=va.calls["slow"])

    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker() -> None:
        try:
            client = va.app.test_client()
            start.wait()
            resp = client.get("/slow", headers={"X-User-Id": "u1"})
            results.append((resp.status_code, resp.headers["X-Cache"], resp.get_json()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert va.calls["slow"] == 1
    assert len(results) == threads_n
    assert all(r[0] == 200 and r[2] == {"n": 1} for r in results)
    assert sorted(r[1] for r in results).count("MISS") == 1


def test_followers_compute_themselves_when_nothing_was_stored(
    views_app: Any, monkeypatch: pytest.MonkeyPatch, view_kind: str
) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    flights = _flights(va)

    @va.app.get("/skipme")
    @va.cache.cached()
    @flavour(view_kind)
    def skipme() -> Any:
        va.calls["skipme"] += 1
        va.cache.skip()
        assert flights.wait_for(2)
        return jsonify(n=1)

    out: list[str] = []

    def worker() -> None:
        out.append(va.get("/skipme").headers["X-Cache"])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == ["MISS", "MISS"]
    assert va.calls["skipme"] == 2


def test_follower_stops_waiting_after_the_flight_timeout(
    views_app: Any, monkeypatch: pytest.MonkeyPatch, view_kind: str
) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    monkeypatch.setattr(flight_module, "FLIGHT_WAIT", 0.05)
    release = threading.Event()
    flights = _flights(va)

    @va.app.get("/stuck")
    @va.cache.cached(shared=True)
    @flavour(view_kind)
    def stuck() -> Any:
        va.calls["stuck"] += 1
        if va.calls["stuck"] == 1:
            assert release.wait(30)
        return jsonify(n=va.calls["stuck"])

    leader = threading.Thread(target=lambda: va.get("/stuck"))
    leader.start()
    assert flights.wait_for(1)
    follower = va.get("/stuck")  # the leader is stuck: computes itself after the timeout
    assert follower.headers["X-Cache"] == "MISS"
    assert follower.get_json() == {"n": 2}
    release.set()
    leader.join(30)


def test_cached_view_calling_another_cached_view_runs_it_directly(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A legacy alias route returning another cached view function: the inner call has
    no caching layer of its own (it used to key itself by the outer endpoint and wait
    FLIGHT_WAIT on the outer's own single flight)."""
    va: ViewsApp = views_app()
    monkeypatch.setattr(flight_module, "FLIGHT_WAIT", 3.0)
    flights = _flights(va)

    @va.app.get("/v2/rooms")
    @va.cache.cached(shared=True, tags=["rooms"])
    def rooms_v2() -> Any:
        va.calls["v2"] += 1
        return jsonify(rooms=[1, 2])

    @va.app.get("/rooms")
    @va.cache.cached(shared=True, tags=["rooms"])
    def rooms_legacy() -> Any:
        va.calls["legacy"] += 1
        return rooms_v2()

    started = time.monotonic()
    first = va.get("/rooms")
    assert time.monotonic() - started < 1.5
    assert first.status_code == 200
    assert first.get_json() == {"rooms": [1, 2]}
    assert first.headers["X-Cache"] == "MISS"
    assert flights.arrived == 1  # the inner call never joined a flight
    hit = va.get("/rooms")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.get_json() == {"rooms": [1, 2]}
    assert va.calls == {"legacy": 1, "v2": 1}
    # the inner view's own route is still cached under its own key
    assert va.get("/v2/rooms").headers["X-Cache"] == "MISS"
    assert va.get("/v2/rooms").headers["X-Cache"] == "HIT"
    assert va.calls == {"legacy": 1, "v2": 2}


def _lock_key(app: Flask, path_key: str) -> str:
    prefix = DataRoomCache.state(app).settings.key_prefix
    return f"{prefix}:~lock:{path_key[len(prefix) + 1 :]}"


def test_lock_true_takes_and_releases_the_backend_lock(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    seen: list[bool] = []

    @va.app.get("/locked")
    @va.cache.cached(shared=True, lock=True)
    @flavour(view_kind)
    def locked() -> Any:
        va.calls["locked"] += 1
        key = build_key(va.store.settings.key_prefix, "~view", "locked", {"~h": "localhost"})
        seen.append(not va.store.add(_lock_key(va.app, key), 1, 5))  # held by us
        return jsonify(n=1)

    assert va.get("/locked").headers["X-Cache"] == "MISS"
    assert seen == [True]
    key = build_key(va.store.settings.key_prefix, "~view", "locked", {"~h": "localhost"})
    with va.app.app_context():
        assert va.store.add(_lock_key(va.app, key), 1, 5)  # released after the fill
    assert va.get("/locked").headers["X-Cache"] == "HIT"


def test_lock_held_elsewhere_waits_then_computes(
    views_app: Any, monkeypatch: pytest.MonkeyPatch, view_kind: str
) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    monkeypatch.setattr(flight_module, "LOCK_WAIT", 0.1)

    @va.app.get("/locked")
    @va.cache.cached(shared=True, lock=True)
    @flavour(view_kind)
    def locked() -> Any:
        va.calls["locked"] += 1
        return jsonify(n=va.calls["locked"])

    key = build_key(va.store.settings.key_prefix, "~view", "locked", {"~h": "localhost"})
    assert va.store.add(_lock_key(va.app, key), 1, 5)  # another process holds it
    resp = va.get("/locked")
    assert resp.headers["X-Cache"] == "MISS"
    assert va.calls["locked"] == 1
    assert va.get("/locked").headers["X-Cache"] == "HIT"


def test_lock_waiter_reads_what_the_other_process_stored(
    cache_kind: str, cache_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    if cache_kind == "memory":
        pytest.skip("two apps share nothing on the memory backend")
    calls = {"a": 0, "b": 0}
    apps: dict[str, Flask] = {}
    for name in ("a", "b"):
        app = Flask(f"lock_{name}_{uuid.uuid4().hex[:6]}")
        app.config.update(TESTING=True, **cache_config)
        cache = DataRoomCache()
        cache.init_app(app)

        def view(name: str = name) -> Any:
            calls[name] += 1
            return jsonify(by=name)

        app.add_url_rule("/locked", "locked", cache.cached(shared=True, lock=True)(view))
        apps[name] = app

    store_a = DataRoomCache.state(apps["a"]).store
    key = build_key(store_a.settings.key_prefix, "~view", "locked", {"~h": "localhost"})
    assert store_a.add(_lock_key(apps["a"], key), 1, 5)  # process A is "computing"

    real_sleep = flights_module.time.sleep
    filled = []

    def sleep_and_let_a_finish(seconds: float) -> None:
        if not filled:
            filled.append(True)
            store_a.delete(_lock_key(apps["a"], key))
            assert apps["a"].test_client().get("/locked").headers["X-Cache"] == "MISS"
        real_sleep(0)

    monkeypatch.setattr(flights_module.time, "sleep", sleep_and_let_a_finish)
    resp = apps["b"].test_client().get("/locked")
    assert resp.headers["X-Cache"] == "HIT"
    assert resp.get_json() == {"by": "a"}
    assert calls == {"a": 1, "b": 0}


def test_lock_waiter_takes_the_lock_when_the_holder_stored_nothing(
    cache_kind: str, cache_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process A holds the lock and answers a 404 (not stored), then releases it: process
    B, polling, takes the lock at its next poll and computes, instead of polling an entry
    that never comes until LOCK_WAIT runs out."""
    if cache_kind == "memory":
        pytest.skip("two apps share nothing on the memory backend")
    from flask import abort

    calls = {"a": 0, "b": 0}
    held_by_b: list[bool] = []
    apps: dict[str, Flask] = {}
    for name in ("a", "b"):
        app = Flask(f"lock_{name}_{uuid.uuid4().hex[:6]}")
        app.config.update(TESTING=True, **cache_config)
        cache = DataRoomCache()
        cache.init_app(app)

        def view(rid: str, name: str = name) -> Any:
            calls[name] += 1
            if name == "b":
                held_by_b.append(not store_a.add(_lock_key(apps["a"], key), 1, 5))
            abort(404)

        app.add_url_rule("/rooms/<rid>", "room", cache.cached(shared=True, lock=True)(view))
        apps[name] = app

    store_a = DataRoomCache.state(apps["a"]).store
    key = build_key(store_a.settings.key_prefix, "~view", "room", {"rid": "x", "~h": "localhost"})
    assert store_a.add(_lock_key(apps["a"], key), 1, 5)  # process A is "computing"

    real_sleep = flights_module.time.sleep
    sleeps: list[float] = []

    def sleep_and_let_a_finish(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            store_a.delete(_lock_key(apps["a"], key))
            assert apps["a"].test_client().get("/rooms/x").status_code == 404
        real_sleep(0)

    monkeypatch.setattr(flights_module.time, "sleep", sleep_and_let_a_finish)
    started = time.monotonic()
    resp = apps["b"].test_client().get("/rooms/x")
    assert resp.status_code == 404
    assert time.monotonic() - started < flight_module.LOCK_WAIT / 2
    assert len(sleeps) == 1  # took the lock at the first poll after A released it
    assert calls == {"a": 1, "b": 1}
    assert held_by_b == [True]  # B computed holding the lock...
    with apps["a"].app_context():
        assert store_a.add(_lock_key(apps["a"], key), 1, 5)  # ...and released it


# -- stale-while-revalidate ---------------------------------------------------------------------
class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr(call_module.time, "time", lambda: self.now)


def _swr_app(views_app: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[ViewsApp, Clock, str]:
    va: ViewsApp = views_app()
    clock = Clock(monkeypatch)

    @va.app.get("/swr")
    @va.cache.cached(timeout=10, stale_while_revalidate=300, tags=["swr"], shared=True)
    def swr() -> Any:
        va.calls["swr"] += 1
        return jsonify(n=va.calls["swr"])

    key = build_key(va.store.settings.key_prefix, "~view", "swr", {"~h": "localhost"})
    return va, clock, key


def test_swr_fresh_within_timeout_then_one_request_refreshes(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    va, clock, _ = _swr_app(views_app, monkeypatch)
    assert va.get("/swr").headers["X-Cache"] == "MISS"
    clock.now += 5
    assert va.get("/swr").headers["X-Cache"] == "HIT"
    clock.now += 10  # past the soft expiry: this request recomputes (nobody else is)
    resp = va.get("/swr")
    assert resp.headers["X-Cache"] == "MISS"
    assert resp.get_json() == {"n": 2}
    hit = va.get("/swr")
    assert hit.headers["X-Cache"] == "HIT"
    assert "X-Cache-Stale" not in hit.headers


def test_swr_serves_stale_while_another_request_recomputes(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    va, clock, key = _swr_app(views_app, monkeypatch)
    va.get("/swr")
    clock.now += 60
    # another process is refreshing: its lock is held
    prefix = va.store.settings.key_prefix
    assert va.store.add(f"{prefix}:~swr:{key[len(prefix) + 1 :]}", 1, 5)
    stale = va.get("/swr")
    assert stale.headers["X-Cache"] == "HIT"
    assert stale.headers["X-Cache-Stale"] == "1"
    assert stale.get_json() == {"n": 1}
    assert va.calls["swr"] == 1


def test_swr_serves_stale_to_other_threads_during_the_refresh(
    views_app: Any, monkeypatch: pytest.MonkeyPatch, view_kind: str
) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    clock = Clock(monkeypatch)
    inside = threading.Event()
    release = threading.Event()

    @va.app.get("/swr2")
    @va.cache.cached(timeout=10, stale_while_revalidate=300, shared=True)
    @flavour(view_kind)
    def swr2() -> Any:
        va.calls["swr2"] += 1
        if va.calls["swr2"] == 2:
            inside.set()
            assert release.wait(30)
        return jsonify(n=va.calls["swr2"])

    va.get("/swr2")
    clock.now += 60
    out: list[Any] = []
    refresher = threading.Thread(target=lambda: out.append(va.get("/swr2")))
    refresher.start()
    assert inside.wait(30)
    stale = va.get("/swr2")
    assert stale.headers["X-Cache"] == "HIT"
    assert stale.get_json() == {"n": 1}
    release.set()
    refresher.join(30)
    assert out[0].headers["X-Cache"] == "MISS"
    assert out[0].get_json() == {"n": 2}
    assert va.get("/swr2").get_json() == {"n": 2}


def test_swr_never_serves_after_invalidation(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    va, clock, key = _swr_app(views_app, monkeypatch)
    va.get("/swr")
    clock.now += 60  # stale, and a refresh lock is held elsewhere: stale would be served...
    prefix = va.store.settings.key_prefix
    assert va.store.add(f"{prefix}:~swr:{key[len(prefix) + 1 :]}", 1, 5)
    with va.app.app_context():
        va.cache.invalidate_tags("swr")  # ...but the tag was invalidated: gone
    resp = va.get("/swr")
    assert resp.headers["X-Cache"] == "MISS"
    assert "X-Cache-Stale" not in resp.headers
    assert resp.get_json() == {"n": 2}
    # and a fresh (not expired) entry invalidated is a miss too
    with va.app.app_context():
        va.cache.invalidate_tags("swr")
    assert va.get("/swr").get_json() == {"n": 3}


def test_swr_entry_lives_timeout_plus_window_in_the_backend(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    va, _, _key = _swr_app(views_app, monkeypatch)
    ttls: list[int] = []
    real_set = va.store.set

    def spy(key_: str, value: Any, ttl: int | None = None, *a: Any, **kw: Any) -> bool:
        ttls.append(ttl or 0)
        return real_set(key_, value, ttl, *a, **kw)

    monkeypatch.setattr(va.store, "set", spy)
    va.get("/swr")
    assert ttls == [310]


def test_stale_serves_are_counted(views_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    va, clock, key = _swr_app(views_app, monkeypatch)
    va.get("/swr")
    clock.now += 60
    prefix = va.store.settings.key_prefix
    assert va.store.add(f"{prefix}:~swr:{key[len(prefix) + 1 :]}", 1, 5)
    va.get("/swr")
    with va.app.app_context():
        assert va.cache.stats()["endpoints"]["swr"]["stale_hits"] == 1
