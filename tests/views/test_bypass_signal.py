"""``cache_bypassed`` from the view decorator: each reason a request skips the cache (sent
with the app as sender, the key once it is built), each reason a miss is not stored, and
nothing on a plain hit or miss that is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import jsonify, make_response

from flask_dataroom_cache import signals
from flask_dataroom_cache.views import policy

from .conftest import ViewsApp

Listen = Callable[[Any, Any], list[dict[str, Any]]]


def test_a_stored_miss_and_its_hit_send_nothing(
    views_app: Callable[..., ViewsApp], listen: Listen
) -> None:
    va = views_app()
    seen = listen(signals.cache_bypassed, va.app)
    assert va.get("/rooms/r1/items").headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items").headers["X-Cache"] == "HIT"
    assert seen == []


@pytest.mark.parametrize(
    ("reason", "config", "request_kw"),
    [
        (policy.ANONYMOUS, {}, {"user": None}),
        (policy.DISABLED, {"CACHE_ENABLED": False}, {}),
    ],
)
def test_request_bypasses_name_their_reason(
    views_app: Callable[..., ViewsApp],
    listen: Listen,
    reason: str,
    config: dict[str, Any],
    request_kw: dict[str, Any],
) -> None:
    va = views_app(**config)
    seen = listen(signals.cache_bypassed, va.app)
    assert va.get("/rooms/r1/items", **request_kw).headers["X-Cache"] == "BYPASS"
    assert seen == [{"key": None, "reason": reason}]


def test_authorization_on_a_shared_view(
    views_app: Callable[..., ViewsApp], listen: Listen
) -> None:
    va = views_app()
    seen = listen(signals.cache_bypassed, va.app)
    resp = va.get("/public/1", headers={"Authorization": "Bearer x"})
    assert resp.headers["X-Cache"] == "BYPASS"
    assert seen == [{"key": None, "reason": policy.AUTHORIZATION}]


def test_unless_and_client_no_cache(views_app: Callable[..., ViewsApp], listen: Listen) -> None:
    va = views_app(CACHE_HONOR_NO_CACHE=True)
    skip = {"on": True}

    @va.app.get("/maybe")
    @va.cache.cached(shared=True, unless=lambda: skip["on"])
    def maybe() -> Any:
        return jsonify(ok=True)

    seen = listen(signals.cache_bypassed, va.app)
    assert va.get("/maybe").headers["X-Cache"] == "BYPASS"
    assert seen == [{"key": None, "reason": policy.UNLESS}]
    skip["on"] = False
    resp = va.get("/maybe", headers={"Cache-Control": "no-cache"})
    assert resp.headers["X-Cache"] == "BYPASS"
    assert seen[1]["reason"] == policy.CLIENT_NO_CACHE
    assert seen[1]["key"]  # built: the answer refills it
    assert len(seen) == 2


def test_a_miss_not_stored_names_its_key_and_the_policy_reason(
    views_app: Callable[..., ViewsApp], listen: Listen
) -> None:
    va = views_app()

    @va.app.get("/secret")
    @va.cache.cached(shared=True)
    def secret() -> Any:
        resp = make_response(jsonify(ok=True))
        resp.headers["Cache-Control"] = "no-store"
        return resp

    seen = listen(signals.cache_bypassed, va.app)
    assert va.get("/secret").headers["X-Cache"] == "MISS"
    assert len(seen) == 1 and seen[0]["reason"] == policy.NO_STORE
    assert seen[0]["key"] and "secret" in seen[0]["key"]
    assert va.get("/secret").headers["X-Cache"] == "MISS"  # never stored
    assert len(seen) == 2


def test_another_apps_bypass_is_not_heard(
    views_app: Callable[..., ViewsApp], listen: Listen
) -> None:
    mine, other = views_app(), views_app()
    seen = listen(signals.cache_bypassed, mine.app)
    assert other.get("/rooms/r1/items", user=None).headers["X-Cache"] == "BYPASS"
    assert seen == []


def test_store_bypasses_name_their_own_reason(
    views_app: Callable[..., ViewsApp], listen: Listen
) -> None:
    """Each bypass check says why: cache.disabled() is not 'uncommitted changes'."""
    va = views_app()
    seen = listen(signals.cache_bypassed, va.app)
    with va.cache.disabled():
        assert va.get("/rooms/r1/items").headers["X-Cache"] == "BYPASS"
    va.store.bypass_checks.append(lambda: True)
    try:
        assert va.get("/rooms/r1/items").headers["X-Cache"] == "BYPASS"
    finally:
        va.store.bypass_checks.pop()
    assert [s["reason"] for s in seen] == ["cache.disabled()", "bypass hook"]


def test_disconnecting_the_panel_recorder_leaves_no_receiver(
    views_app: Callable[..., ViewsApp],
) -> None:
    """The send sites' fast check (``signal.receivers``) is empty again once the debug
    recorder is detached (blinker keeps a receiver disconnected from one sender only)."""
    from flask_dataroom_cache.debug import recorder

    va = views_app()
    before = {s.name: len(s.receivers) for s, _ in recorder._RECEIVERS}
    detach = recorder.install(va.app)
    detach()
    assert {s.name: len(s.receivers) for s, _ in recorder._RECEIVERS} == before
