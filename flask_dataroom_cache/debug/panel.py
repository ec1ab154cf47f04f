""":class:`CachePanel`: the Flask-DebugToolbar panel showing what the cache did for a request.

The toolbar makes one panel per request: :meth:`CachePanel.process_request` (in the
toolbar's ``before_request``) starts the request's log (``recorder``), and the toolbar
renders :meth:`CachePanel.content` in its ``after_request``, before Flask sends
``request_finished``, which is when a miss's entry is written (``views/fill.py``): such an
entry shows as *pending* with its key and tags, and the next request's panel shows it read
as a ``HIT``. The template is ``templates/dataroom_cache_panel.html`` (shipped in the wheel),
rendered with an environment of its own (the toolbar's loader knows only its templates).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug import Request, Response

try:
    from flask_debugtoolbar.panels import DebugPanel
except ImportError as exc:  # the toolbar reports it ("Disabled ... due to ImportError")
    raise ImportError(
        "flask_dataroom_cache.debug needs Flask-DebugToolbar: "
        "pip install 'flask-dataroom-cache[debug]'"
    ) from exc

from ..state import EXTENSION_KEY, CacheState
from ..views.context import current_context
from ..views.recording import pending_entries
from . import recorder

__all__ = ["CachePanel"]

_templates = Environment(
    loader=PackageLoader("flask_dataroom_cache.debug", "templates"),
    autoescape=select_autoescape(default=True),
)


class CachePanel(DebugPanel):
    """``DEBUG_TB_PANELS = [..., "flask_dataroom_cache.debug.CachePanel"]``."""

    name = "DataroomCache"
    has_content = True

    @classmethod
    def init_app(cls, app: Flask) -> None:
        """Called once per app by the toolbar: connect the signal receivers for ``app``
        (undone by ``DataRoomCache.uninstall`` when the extension is already set up)."""
        detach = recorder.install(app)
        state: CacheState | None = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.on_uninstall(detach)

    def __init__(self, jinja_env: Environment, context: dict[str, Any] | None = None) -> None:
        super().__init__(jinja_env, context)
        self.log: recorder.RequestLog | None = None

    def process_request(self, request: Request) -> None:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        self.log = recorder.start(app, request.environ)

    def process_view(
        self, request: Request, view_func: Callable[..., Any], view_kwargs: dict[str, Any]
    ) -> Callable[..., Any] | None:
        """The toolbar calls the view itself, without Flask's ``ensure_sync``: an
        ``async def`` view (a cached one too) is handed back run to completion, as Flask
        would run it, so its lookups show instead of a "returned a coroutine" error."""
        if inspect.iscoroutinefunction(view_func):
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            return app.ensure_sync(view_func)
        return None

    def process_response(self, request: Request, response: Response) -> None:
        pass

    def _counts(self) -> dict[str, int]:
        counts = {"HIT": 0, "MISS": 0, "BYPASS": 0}
        for lookup in self.log.lookups if self.log is not None else ():
            counts[lookup.outcome] = counts.get(lookup.outcome, 0) + 1
        return counts

    def nav_title(self) -> str:
        return "Cache"

    def nav_subtitle(self) -> str:
        counts = self._counts()
        if not any(counts.values()):
            return "no lookups"
        return ", ".join(f"{n} {word}" for word, n in counts.items() if n).lower()

    def title(self) -> str:
        return "flask-dataroom-cache: this request"

    def url(self) -> str:
        return ""

    def content(self) -> str:
        log = self.log or recorder.RequestLog()
        ctx = current_context()
        stored_keys = {entry.key for entry in log.stored}
        waiting = pending_entries(ctx) if ctx is not None else []
        pending = [(key, tags) for key, tags in waiting if key not in stored_keys]
        return _templates.get_template("dataroom_cache_panel.html").render(
            log=log,
            counts=self._counts(),
            pending=pending,
            backend=recorder.backend_rows(current_app),
        )
