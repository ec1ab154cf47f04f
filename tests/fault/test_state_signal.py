"""``backend_state_changed``: the resilient backend's breaker tells the store, which sends
the signal with the app as sender, once per transition: scripted (a flaky primary, a fake
clock) and against a real redis-server that is killed and restarted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache, signals
from flask_dataroom_cache.config import Settings
from flask_dataroom_cache.store import CacheStore

from .conftest import Server, Site
from .test_breaker import TAGS, Clock, make

Listen = Callable[[Any, Any], list[dict[str, Any]]]


def test_the_breaker_tells_each_transition_once() -> None:
    clock = Clock()
    primary, backend = make(clock)
    heard: list[tuple[str, str | None]] = []
    remove = backend.on_state_change(lambda state, error: heard.append((state, error)))
    primary.down = True
    for _ in range(10):
        backend.get("k", TAGS)  # opens at the third error, then skips
    clock.now += 5.1
    backend.get("k", TAGS)  # a failed probe: still open, nothing new
    assert heard == [("open", "get: connection refused")]
    primary.down = False
    clock.now += 5.1
    backend.get("k", TAGS)  # the probe succeeds: closed
    assert heard[1:] == [("closed", None)]
    remove()
    primary.down = True
    for _ in range(3):
        backend.get("k", TAGS)
    assert len(heard) == 2  # removed: not called again
    assert backend.state == "open"


def test_a_raising_listener_never_breaks_the_backend() -> None:
    clock = Clock()
    primary, backend = make(clock)

    def bad(state: str, error: str | None) -> None:
        raise RuntimeError("observer bug")

    backend.on_state_change(bad)
    primary.down = True
    for _ in range(3):
        assert backend.get("k", TAGS) == (None, None)
    assert backend.state == "open"


def test_the_store_sends_the_signal_with_its_app(listen: Listen) -> None:
    clock = Clock()
    primary, backend = make(clock)
    app = Flask("state_signal")
    store = CacheStore(backend, Settings.from_mapping({}))
    store.app_ref = lambda: app
    detach = store.watch_backend()
    assert detach is not None
    seen = listen(signals.backend_state_changed, app)
    primary.down = True
    for _ in range(3):
        store.get("k", TAGS)
    assert seen == [{"state": "open", "error": "get: connection refused"}]
    primary.down = False
    clock.now += 5.1
    store.get("k", TAGS)
    assert seen[1:] == [{"state": "closed", "error": None}]
    detach()
    primary.down = True
    for _ in range(3):
        store.get("k", TAGS)
    assert len(seen) == 2


def test_a_memory_backend_has_no_breaker_to_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = Flask("no_breaker")
    app.config["REDIS_URL"] = None
    cache = DataRoomCache(app)
    assert cache.state(app).store.watch_backend() is None


@pytest.mark.redis_server
@pytest.mark.timeout(60)
def test_redis_killed_opens_and_restarted_closes(
    redis_server: Server, make_site: Callable[..., Site], listen: Listen
) -> None:
    site = make_site(redis_server.url)
    seen = listen(signals.backend_state_changed, site.app)
    client = site.app.test_client()
    assert client.get("/rooms/1").status_code == 200
    redis_server.kill()
    site.wait_state("open")
    assert [s["state"] for s in seen] == ["open"]
    assert seen[0]["error"]  # the error that opened it
    redis_server.start()
    site.wait_state("closed")
    assert [s["state"] for s in seen] == ["open", "closed"]
    assert seen[1]["error"] is None
