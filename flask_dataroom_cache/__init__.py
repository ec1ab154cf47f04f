"""flask-dataroom-cache: transaction-aware, tag-versioned caching for Flask + SQLAlchemy.

Public names only; see ``docs/`` for the guide.
"""

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
