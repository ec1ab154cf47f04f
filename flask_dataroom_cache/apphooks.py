"""Undoing what was added to a Flask app's hook lists: the detach of ``app.before_request(fn)``,
``app.teardown_request(fn)``, ``app.url_value_preprocessor(fn)`` and their kin.

Flask keeps each kind of hook in a dict of lists keyed by blueprint name (``None`` for the
app itself) and has no public way to remove one; every ``init_app`` step that adds one
registers ``remove_app_hook`` as its detach (``CacheState.on_uninstall``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["remove_app_hook"]


def remove_app_hook(registry: dict[Any, list[Any]], fn: object) -> None:
    """Remove ``fn`` from the app-level list of ``registry`` (e.g. ``app.teardown_request_funcs``),
    if it is there."""
    hooks = registry.get(None)
    if hooks is not None and fn in hooks:
        hooks.remove(fn)
