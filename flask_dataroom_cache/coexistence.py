"""Living beside Flask-Caching: the warning about its keys left in our app's config.

``Settings`` (``config.py``) finds the keys only Flask-Caching reads (``CACHE_TYPE``,
``CACHE_DEFAULT_TIMEOUT``...). Flask-Caching may be initialised after us, so unless it
already is on the app, :func:`warn_leftover_keys` checks once, at the app's first request,
whether it is there by then, and warns once if not (those keys then configure nothing).
Apps without such keys get no hook at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask

from .apphooks import remove_app_hook
from .config import Settings

__all__ = ["warn_leftover_keys"]

log = logging.getLogger("flask_dataroom_cache")

#: Flask-Caching registers itself as ``app.extensions["cache"]`` (flask_caching init_app).
FLASK_CACHING_EXTENSION = "cache"


def warn_leftover_keys(app: Flask, settings: Settings) -> Callable[[], None] | None:
    """Install the first-request check; returns its detach (None: nothing installed)."""
    if not settings.flask_caching_keys or FLASK_CACHING_EXTENSION in app.extensions:
        return None
    checked = False

    def _check_flask_caching_keys() -> None:
        nonlocal checked
        if checked:
            return
        checked = True
        if FLASK_CACHING_EXTENSION not in app.extensions:
            log.warning(settings.flask_caching_keys_message())

    app.before_request(_check_flask_caching_keys)
    return lambda: remove_app_hook(app.before_request_funcs, _check_flask_caching_keys)
