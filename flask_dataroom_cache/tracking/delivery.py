"""Where committed tags leave the process: :meth:`Delivery.send`, the only path to the store.

Every delivery of a commit's tags goes through it, whoever noticed the commit: a session's
outermost commit (``session.py``), the ``do_commit`` wrapper right after a Core COMMIT, an
AUTOCOMMIT statement that has run, or a connection checked in with tags still pending
(``connection.py``). It bumps the commit sequence first (the snapshot rule,
``snapshot.py``), then invalidates now (``defer=False``: the commit already happened).
With automatic tags on, a commit's ``~r`` / ``~c`` tags of a table are first bounded
(``autorows.py``: above the row bound, that table's ``~e`` stands for them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..store import CacheStore
from ..tags import EPOCH_TAG
from .snapshot import SnapshotRules

__all__ = ["Delivery"]

log = logging.getLogger("flask_dataroom_cache")


class Delivery:
    """Sends one tracker's committed tags to its store."""

    def __init__(
        self,
        store: CacheStore,
        rules: SnapshotRules,
        bound: Callable[[Iterable[str]], Iterable[str]] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        #: Keeps a commit's automatic tags bounded (``AutoWrites.bounded``); None: off.
        self.bound = bound
        self._bad_tag_logged = False

    def send(self, tags: Iterable[str], source: str = "commit") -> None:
        """Deliver committed tags now (bumps the commit sequence first: snapshot rule).

        Called after a COMMIT that went through, so it never raises for a bad tag (a
        ``cache_tags`` hook returning a name with a newline...): the whole namespace is
        invalidated instead, and the mistake logged once."""
        self.rules.bump()
        if self.bound is not None:
            tags = self.bound(tags)
        tags = tuple(tags)
        try:
            self.store.invalidate(tags, defer=False, source=source)
        except (TypeError, ValueError) as exc:
            if not self._bad_tag_logged:
                self._bad_tag_logged = True
                log.error(
                    "dataroom cache: a commit produced an invalid tag (%s); invalidating "
                    "everything (the epoch) instead. Fix the cache_tags hook or declaration.",
                    exc,
                )
            self.store.invalidate((EPOCH_TAG,), defer=False, source=source)
