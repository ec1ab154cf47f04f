"""The Flask-DebugToolbar panel, rendered by the toolbar through the test client: the rows
of each section for a miss then a hit, every kind of lookup (views, memoized functions,
``get_or_set``, ``cache.get``, ``aget_or_set``), a commit's invalidations, a bypass, and
no recording for a request (or an app) the panel does not watch."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request
from flask_debugtoolbar import DebugToolbarExtension
from markupsafe import escape

from flask_dataroom_cache import DataRoomCache, dataroom_tag
from flask_dataroom_cache.views.recording import RECORDER_KEY

PANEL = "flask_dataroom_cache.debug.CachePanel"
PAGE = "<!doctype html><html><head><title>room</title></head><body><h1>{}</h1></body></html>"


def toolbar_config(**extra: Any) -> dict[str, Any]:
    return {
        "DEBUG_TB_ENABLED": True,
        "SECRET_KEY": "test",
        "DEBUG_TB_INTERCEPT_REDIRECTS": False,
        "DEBUG_TB_PANELS": [PANEL],
        **extra,
    }


@pytest.fixture
def site(make_app: Callable[..., tuple[Flask, DataRoomCache]]) -> tuple[Flask, DataRoomCache]:
    app, cache = make_app(**toolbar_config())

    @cache.identity
    def user() -> str | None:
        return request.headers.get("X-User-Id")

    @app.get("/rooms/<room_id>")
    @cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
    def room(room_id: str) -> str:
        return PAGE.format(escape(room_id))

    @app.post("/rooms/<room_id>")
    def rename(room_id: str) -> str:
        cache.invalidate_tags(dataroom_tag(room_id))
        return PAGE.format("renamed")

    DebugToolbarExtension(app)
    return app, cache


def panel_html(body: str) -> str:
    """The panel's content in a toolbar page."""
    match = re.search(
        r'id="flDebugDataroomCachePanel-content".*?<div class="flDebugScroll">'
        r"(.*?)</div>\s*</div>\s*</div>",
        body,
        re.S,
    )
    assert match, "the panel is not in the page"
    return match.group(1)


def rows(html: str, table: str) -> list[str]:
    found = re.search(rf'<table id="dataroom-cache-{table}">(.*?)</table>', html, re.S)
    assert found, table
    body = found.group(1)
    return [re.sub(r"\s+", " ", r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)][1:]


def test_a_miss_then_a_hit(site: tuple[Flask, DataRoomCache]) -> None:
    app, _ = site
    client = app.test_client()
    first = client.get("/rooms/r1", headers={"X-User-Id": "u1"})
    assert first.headers["X-Cache"] == "MISS"
    html = panel_html(first.get_data(as_text=True))
    lookups = rows(html, "lookups")
    assert len(lookups) == 1 and "MISS" in lookups[0] and "view <code>room</code>" in lookups[0]
    assert "dataroom:r1" in lookups[0]
    stored = rows(html, "stored")
    assert len(stored) == 1 and "pending" in stored[0] and "dataroom:r1" in stored[0]
    key = re.search(r"<code>([^<]*room[^<]*)</code>", stored[0])
    assert key is not None

    second = client.get("/rooms/r1", headers={"X-User-Id": "u1"})
    assert second.headers["X-Cache"] == "HIT"
    html = panel_html(second.get_data(as_text=True))
    lookups = rows(html, "lookups")
    assert len(lookups) == 1 and "<strong>HIT</strong>" in lookups[0]
    assert f"<code>{key.group(1)}</code>" in lookups[0]  # the key the miss stored
    (nothing,) = rows(html, "stored")
    assert "Nothing stored" in nothing
    backend = " ".join(rows(html, "backend"))
    assert "breaker" in backend and "near cache (L1)" in backend


def test_a_bypass_and_an_invalidation(site: tuple[Flask, DataRoomCache]) -> None:
    app, _ = site
    client = app.test_client()
    html = panel_html(client.get("/rooms/r1").get_data(as_text=True))  # anonymous
    lookups = rows(html, "lookups")
    assert "BYPASS" in lookups[0] and "anonymous" in lookups[0] and "(not built)" in lookups[0]
    assert "anonymous" in rows(html, "skipped")[0]
    html = panel_html(client.post("/rooms/r1").get_data(as_text=True))
    (inv,) = rows(html, "invalidations")
    assert "api" in inv and "dataroom:r1" in inv


def test_every_lookup_of_the_request_is_listed(site: tuple[Flask, DataRoomCache]) -> None:
    """Not only cached views: a memoized function, ``get_or_set``, ``cache.get`` and
    ``aget_or_set`` are lookups of the request too (issue 16: "view or function"), with
    their key, result and why (a ``cache.disabled()`` block: a bypass)."""
    app, cache = site

    @cache.memoize(tags=["room:r1"])
    def title(room_id: str) -> str:
        return room_id.upper()

    @app.get("/mixed/<room_id>")
    def mixed(room_id: str) -> str:
        name = title(room_id)
        count = cache.get_or_set(f"count:{room_id}", lambda: 3, tags=[dataroom_tag(room_id)])
        loose = cache.get(f"loose:{room_id}")
        with cache.disabled():
            title(room_id)
        return PAGE.format(f"{name} {count} {loose}")

    @app.get("/async/<room_id>")
    async def async_page(room_id: str) -> str:
        # the toolbar calls views without Flask's ensure_sync: the panel's process_view
        # hands an async view back wrapped by it
        async def compute() -> int:
            return 4

        count = await cache.aget_or_set(f"acount:{room_id}", compute, tags=["room:r1"])
        return PAGE.format(str(count))

    client = app.test_client()
    for outcome in ("MISS", "HIT"):
        html = panel_html(client.get("/mixed/r1").get_data(as_text=True))
        memo, get_or_set, get, bypassed = rows(html, "lookups")
        assert re.search(r'data-kind="memoize">memoized <code>[^<]*\.title(#\d+)?</code>', memo)
        assert f"<strong>{outcome}</strong>" in memo and "~memo:" in memo
        assert "<code>room:r1</code>" in memo  # the tags, the declared one among them
        assert '"get_or_set"><code>get_or_set</code>' in get_or_set
        assert f"<strong>{outcome}</strong>" in get_or_set and "<code>count:r1</code>" in get_or_set
        assert "<code>dataroom:r1</code>" in get_or_set
        assert '"cache_get"><code>cache_get</code>' in get and "<code>loose:r1</code>" in get
        assert "<strong>MISS</strong>" in get  # never set
        assert "<strong>BYPASS</strong>" in bypassed and "cache.disabled()" in bypassed
        assert 'data-kind="memoize">memoized' in bypassed
        assert "memoize, get_or_set" not in html
        html = panel_html(client.get("/async/r1").get_data(as_text=True))
        (awaited,) = rows(html, "lookups")
        assert '"aget_or_set"><code>aget_or_set</code>' in awaited
        assert f"<strong>{outcome}</strong>" in awaited and "<code>acount:r1</code>" in awaited


def test_a_cached_async_view_under_the_toolbar(site: tuple[Flask, DataRoomCache]) -> None:
    app, cache = site

    @app.get("/async-room/<room_id>")
    @cache.cached(shared=True, tags=["room:r1"])
    async def async_room(room_id: str) -> str:
        return PAGE.format(escape(room_id))

    client = app.test_client()
    for outcome in ("MISS", "HIT"):
        resp = client.get("/async-room/r1")
        assert resp.status_code == 200 and resp.headers["X-Cache"] == outcome
        (lookup,) = rows(panel_html(resp.get_data(as_text=True)), "lookups")
        assert "view <code>async_room</code>" in lookup and f"<strong>{outcome}</strong>" in lookup


def test_nothing_is_recorded_without_the_panel(
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
) -> None:
    app, cache = make_app(**toolbar_config(DEBUG_TB_PANELS=[]))
    seen: list[Any] = []

    @app.get("/page")
    @cache.cached(shared=True)
    def page() -> str:
        seen.append(request.environ.get(RECORDER_KEY))
        return PAGE.format("x")

    @cache.memoize
    def helper() -> int:
        return 1

    @app.get("/plain")
    def plain() -> str:
        return PAGE.format(helper() + cache.get_or_set("k", lambda: 1))

    DebugToolbarExtension(app)
    assert app.test_client().get("/page").headers["X-Cache"] == "MISS"
    assert seen == [None]
    assert app.test_client().get("/plain").status_code == 200
    # no recorder on the app: the store's lookups check one attribute, and record nothing
    assert DataRoomCache.state(app).store.lookup_log is None


def test_two_apps_record_their_own_requests(
    site: tuple[Flask, DataRoomCache], make_app: Callable[..., tuple[Flask, DataRoomCache]]
) -> None:
    app, _ = site
    other, other_cache = make_app(**toolbar_config())

    @other.get("/other")
    @other_cache.cached(shared=True, tags=["other:1"])
    def other_page() -> str:
        return PAGE.format("other")

    DebugToolbarExtension(other)

    @app.get("/both")
    def both() -> str:
        # a request of the first app that writes to the second app's cache: the
        # first app's panel must not list the second app's entry
        with other.app_context():
            other_cache.set("from-first", 1, tags=["other:1"])
        return PAGE.format("both")

    html = panel_html(app.test_client().get("/both").get_data(as_text=True))
    assert "from-first" not in html
    html = panel_html(other.test_client().get("/other").get_data(as_text=True))
    assert "MISS" in rows(html, "lookups")[0]


def test_the_recorder_connects_the_app_behind_a_proxy(
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
) -> None:
    from flask import current_app

    from flask_dataroom_cache import signals
    from flask_dataroom_cache.debug import recorder

    app, _ = make_app()
    kinds = (signals.entry_stored, signals.cache_bypassed, signals.tags_invalidated)
    before = [len(list(s.receivers_for(app))) for s in kinds]
    with app.app_context():
        detach = recorder.install(current_app)
    try:
        assert [len(list(s.receivers_for(app))) for s in kinds] == [n + 1 for n in before]
    finally:
        detach()
