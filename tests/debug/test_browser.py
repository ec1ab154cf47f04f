"""The debug panel in a real browser: the example app served with the Flask-DebugToolbar on,
its HTML room overview opened twice in headless Chromium (Playwright), the panel opened,
its rows checked (first load: the lookups MISS, the memoized helper the view calls and the
view, the helper's entry stored and the view's about to be stored with its tags; second
load: the view's lookup HIT with the same key, the helper not called), and screenshots
taken.

The screenshots go to the test's temporary directory; with ``DEBUG_PANEL_SCREENSHOTS=docs``
they replace ``docs/img/debug-toolbar-*.png``, the pictures of docs/debug-toolbar.md.

Skipped only where no browser is installed (no ``playwright`` module or no Chromium at
``CHROMIUM``, default ``/usr/bin/chromium``); with ``REQUIRE_BROWSER=1`` (``.ci/run``) a
missing browser is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import dataroom_tag

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PANEL = "flask_dataroom_cache.debug.CachePanel"


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright module is not installed"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium binary at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser_ok() -> None:
    missing = _browser_missing()
    if missing is None:
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {missing}")
    pytest.skip(f"no browser: {missing}")


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Flask]]:
    """The example app (SQLite, memory cache, demo data) with the toolbar and the panel,
    on a free 127.0.0.1 port."""
    from flask_debugtoolbar import DebugToolbarExtension
    from werkzeug.serving import make_server

    from example_app import create_app
    from example_app.cli import _seed
    from example_app.extensions import db

    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'browser.db'}",
            "REDIS_URL": None,
            "STORAGE_DIR": str(tmp_path / "storage"),
            "SECRET_KEY": "browser-test",
            "DEBUG_TB_ENABLED": True,
            "DEBUG_TB_INTERCEPT_REDIRECTS": False,
            "DEBUG_TB_PANELS": [
                "flask_debugtoolbar.panels.timer.TimerDebugPanel",
                "flask_debugtoolbar.panels.headers.HeaderDebugPanel",
                "flask_debugtoolbar.panels.route_list.RouteListDebugPanel",
                PANEL,
            ],
        }
    )
    DebugToolbarExtension(app)
    with app.app_context():
        db.create_all()
        _seed()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _open_panel(page: Any) -> Any:
    """Show the toolbar's cache panel; returns its content element."""
    page.wait_for_selector("#flDebugToolbar", state="visible")
    page.click("a.flDebugDataroomCachePanel")
    content = page.locator("#flDebugDataroomCachePanel-content")
    content.wait_for(state="visible")
    return content


def _rows(content: Any, table: str) -> list[str]:
    return [
        " ".join(text.split())
        for text in content.locator(f"#dataroom-cache-{table} tbody tr").all_inner_texts()
    ]


def test_the_panel_in_chromium(browser_ok: None, served: tuple[str, Flask], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from example_app.openapi import ALICE, ROOM

    base, _app = served
    url = f"{base}/api/datarooms/{ROOM}/overview"
    tag = dataroom_tag(ROOM)
    to_docs = os.environ.get("DEBUG_PANEL_SCREENSHOTS") == "docs"
    shots = ROOT / "docs" / "img" if to_docs else tmp_path
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 860}, extra_http_headers={"X-User-Id": ALICE}
            )
            page = context.new_page()
            # no browser cache: a revisit would send If-None-Match and get the cache's 304
            # (X-Cache: HIT), and the browser would show its copy of the first page
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})

            first = page.goto(url)
            assert first is not None and first.status == 200
            assert first.headers["x-cache"] == "MISS"
            content = _open_panel(page)
            # in the order they ended: the memoized helper the view called, then the view
            memo, lookup = _rows(content, "lookups")
            assert "memoized example_app.pages.member_count" in memo and "MISS" in memo
            assert tag in memo and "~memo:" in memo
            assert "view api.room_overview" in lookup and "MISS" in lookup and tag in lookup
            stored_memo, stored = _rows(content, "stored")
            assert "member_count" in stored_memo and "stored" in stored_memo
            assert tag in stored and "pending" in stored
            pending = content.locator('#dataroom-cache-stored tr[data-state="pending"] td code')
            key = pending.first.inner_text()
            assert "room_overview" in key
            assert "breaker" in " ".join(_rows(content, "backend"))
            page.screenshot(path=str(shots / "debug-toolbar-miss.png"))

            second = page.goto(url)
            assert second is not None and second.headers["x-cache"] == "HIT"
            content = _open_panel(page)
            (lookup,) = _rows(content, "lookups")
            assert "HIT" in lookup and key in lookup
            (nothing,) = _rows(content, "stored")
            assert "Nothing stored" in nothing
            page.screenshot(path=str(shots / "debug-toolbar-hit.png"))
        finally:
            browser.close()
    for name in ("debug-toolbar-miss.png", "debug-toolbar-hit.png"):
        png = (shots / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
