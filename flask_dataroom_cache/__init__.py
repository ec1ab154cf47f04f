"""flask-dataroom-cache: transaction-aware, tag-versioned caching for Flask + SQLAlchemy.

Public names only; see ``docs/`` for the guide.

The names are imported on first use (PEP 562 ``__getattr__``): importing the package
alone, as pytest does when it loads the package's plugin (``pytest_plugin.py``, entry point
``pytest11``) in every test run of every project installed next to it, costs no Flask or
SQLAlchemy import. ``from flask_dataroom_cache import DataRoomCache`` works as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import (
        aget_or_set,
        cache_delete,
        cache_get,
        cache_set,
        get_cache_key,
        get_cache_tags,
        get_or_set,
        invalidate_cache,
        invalidate_tags,
    )
    from .config import ConfigError, Settings
    from .extension import DataRoomCache
    from .state import CacheState
    from .store import MISSING, CacheStore
    from .tags import contents_tag, dataroom_tag, entity_tag, list_tag, type_tag, user_tag
    from .views import MissingIdentityError

__version__ = "0.1.0"

#: Each public name and the module it is imported from on first use.
_EXPORTS: dict[str, str] = {
    "aget_or_set": "api",
    "cache_delete": "api",
    "cache_get": "api",
    "cache_set": "api",
    "get_cache_key": "api",
    "get_cache_tags": "api",
    "get_or_set": "api",
    "invalidate_cache": "api",
    "invalidate_tags": "api",
    "ConfigError": "config",
    "Settings": "config",
    "DataRoomCache": "extension",
    "CacheState": "state",
    "MISSING": "store",
    "CacheStore": "store",
    "contents_tag": "tags",
    "dataroom_tag": "tags",
    "entity_tag": "tags",
    "list_tag": "tags",
    "type_tag": "tags",
    "user_tag": "tags",
    "MissingIdentityError": "views",
}

__all__ = [
    "MISSING",
    "CacheState",
    "CacheStore",
    "ConfigError",
    "DataRoomCache",
    "MissingIdentityError",
    "Settings",
    "aget_or_set",
    "cache_delete",
    "cache_get",
    "cache_set",
    "contents_tag",
    "dataroom_tag",
    "entity_tag",
    "get_cache_key",
    "get_cache_tags",
    "get_or_set",
    "invalidate_cache",
    "invalidate_tags",
    "list_tag",
    "type_tag",
    "user_tag",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute read
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
