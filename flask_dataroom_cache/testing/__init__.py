"""Testing helpers for apps that use flask-dataroom-cache; usable with or without pytest.

* :func:`capture_invalidations`, :func:`capture_entries` (``captures.py``): what a block
  invalidated and stored;
* :func:`assert_hit`, :func:`assert_miss`, :func:`assert_bypass` (``responses.py``): a
  cached view's ``X-Cache``;
* :func:`assert_fresh_after` (``freshness.py``): a write makes a cached read fresh, or
  the failure names the missing tag;
* :func:`fresh_memory_cache`, :func:`fresh_redis_cache`, :class:`CacheUnderTest`
  (``isolation.py``): one test's cache on a fresh backend.

``cache.disabled()`` is on the extension (``disabling.py``). The pytest fixtures built on
these are in ``flask_dataroom_cache.pytest_plugin``, loaded by pytest automatically
(entry point ``pytest11``). See docs/testing.md.
"""

from __future__ import annotations

from .captures import (
    Batch,
    SentInvalidations,
    StoredEntries,
    StoredEntry,
    capture_entries,
    capture_invalidations,
)
from .freshness import assert_fresh_after
from .isolation import CacheUnderTest, RedisUnavailable, fresh_memory_cache, fresh_redis_cache
from .responses import assert_bypass, assert_hit, assert_miss, x_cache

__all__ = [
    "Batch",
    "CacheUnderTest",
    "RedisUnavailable",
    "SentInvalidations",
    "StoredEntries",
    "StoredEntry",
    "assert_bypass",
    "assert_fresh_after",
    "assert_hit",
    "assert_miss",
    "capture_entries",
    "capture_invalidations",
    "fresh_memory_cache",
    "fresh_redis_cache",
    "x_cache",
]
