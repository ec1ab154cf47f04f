"""What the store answers instead of a value: :data:`MISSING` (a miss) and the reasons
it skipped a lookup or a fill.

The reasons are the ``reason`` of ``cache_bypassed`` (``signals.py``) and of a recorded
lookup (``lookups.py``); the views add theirs in ``views/policy.py``. Importable from
``store.py`` too, where most callers take them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BYPASS_HOOK", "DISABLED", "DISABLED_BLOCK", "MISSING", "SNAPSHOT", "UNCOMMITTED"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: The value :meth:`CacheStore.read` returns on a miss (``None`` is a cacheable value).
MISSING: Any = _Missing()

# Why the store skipped a lookup or a fill (``cache_bypassed``'s ``reason``; the views add
# theirs in ``views/policy.py``).
#: The cache is disabled (``CACHE_ENABLED=False``).
DISABLED = "disabled"
#: This thread's session holds uncommitted tracked changes (the tracker's bypass check).
UNCOMMITTED = "uncommitted changes"
#: The value may predate a version it would be stamped with (the tracker's snapshot rule:
#: a ``fill_checks`` hook, or its bypass check for a transaction older than a commit).
SNAPSHOT = "snapshot rule"
#: Inside a ``cache.disabled()`` block (``disabling.py``).
DISABLED_BLOCK = "cache.disabled()"
#: A ``bypass_checks`` hook that answered ``True`` without naming its reason.
BYPASS_HOOK = "bypass hook"
