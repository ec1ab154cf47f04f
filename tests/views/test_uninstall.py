"""``views.uninstall`` detaches what ``views.install`` attached, from one app only."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request_finished

from flask_dataroom_cache import DataRoomCache, views
from flask_dataroom_cache.views import context

from .conftest import ViewsApp


def _hooks(va: ViewsApp) -> tuple[bool, bool, bool]:
    """(the URL value preprocessor, the teardown, the request_finished receiver) attached."""
    app = va.app
    return (
        context.snapshot_view_args in app.url_value_preprocessors.get(None, []),
        context.end_request in app.teardown_request_funcs.get(None, []),
        any(r is context.request_finished for r in request_finished.receivers_for(app)),
    )


def test_uninstall_detaches_from_one_app_and_leaves_the_other_caching(views_app: Any) -> None:
    gone: ViewsApp = views_app()
    kept: ViewsApp = views_app()
    for va in (gone, kept):

        @va.app.get("/n")
        @va.cache.cached(shared=True)
        def n() -> Any:
            return jsonify(n=1)

    assert _hooks(gone) == (True, True, True)
    views.uninstall(gone.app, DataRoomCache.state(gone.app))
    assert _hooks(gone) == (False, False, False)
    assert DataRoomCache.state(gone.app).views is None
    assert _hooks(kept) == (True, True, True)
    assert kept.get("/n").headers["X-Cache"] == "MISS"
    assert kept.get("/n").headers["X-Cache"] == "HIT"
