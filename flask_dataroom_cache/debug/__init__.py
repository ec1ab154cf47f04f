"""Flask-DebugToolbar integration (extra ``debug``): :class:`CachePanel`.

For the current request the panel lists every cached view or function called (key, tags,
``HIT`` / ``MISS`` / ``BYPASS`` and why, time spent), every entry stored or about to be
stored with its tags, every lookup or fill skipped, every invalidation sent (by the
request's commits or by the API), and the backend's state (breaker, near cache). Enable it
with the toolbar's ``DEBUG_TB_PANELS`` (see docs/debug-toolbar.md)::

    app.config["DEBUG_TB_PANELS"] = [
        *DebugToolbarExtension._default_config(app)["DEBUG_TB_PANELS"],
        "flask_dataroom_cache.debug.CachePanel",
    ]

``panel`` holds the toolbar panel; ``recorder`` what is recorded per request (through the
signals and the views' ``recording`` hook), without importing the toolbar.
"""

from __future__ import annotations

from .panel import CachePanel

__all__ = ["CachePanel"]
