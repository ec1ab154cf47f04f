"""The near cache's local copies (L1) and the lease that says whether they may serve.

:class:`LocalCopies` owns, under one lock:

* the copies: an LRU bounded by ``max_entries`` (evicted in fill order: a hit takes no lock
  to reorder, so the hit path stays a dict lookup), with an index tag -> keys so that an
  invalidation drops exactly the copies stamped with its tags;
* ``seq``, the number of invalidations this process has handled: a fill that started
  before one of them is discarded (rule 3, "no stale fill");
* the lease (rule 2): ``healthy`` (the subscription is up), ``lease_until`` (the newest
  pong's send time + ``lease``, capped by ``registered_until``, the end of this process's
  registration in the peer registry). Copies serve only while :meth:`usable`.

It never does I/O: the subscriber thread renews and cuts the lease, the cache fills and
reads the copies.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ...tags import EPOCH_TAG

__all__ = ["Copy", "LocalCopies"]

_NEVER = float("-inf")


class Copy(NamedTuple):
    """One L1 copy of a Redis entry."""

    payload: bytes
    tags: tuple[str, ...]
    #: Local monotonic time after which the copy is not served (the Redis entry's end).
    expires: float


class LocalCopies:
    """This process's L1 copies and lease; see the module docstring."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self.entries: OrderedDict[str, Copy] = OrderedDict()
        self._keys_by_tag: dict[str, set[str]] = {}
        #: Invalidations handled (and copies dropped) so far: fills compare it.
        self.seq = 0
        self.healthy = False
        #: Send time of the newest pong: every message published before it was handled.
        self.lease_from = _NEVER
        #: Copies may serve until then: min(lease_from + lease, registered_until).
        self.lease_until = _NEVER
        #: Local time until which our registration in the peer registry surely holds.
        self.registered_until = _NEVER

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held it), no copies."""
        self._lock = threading.Lock()
        self.turn_off()

    # -- reads (no lock: a dict lookup and a few attribute reads) ---------------------------
    def usable(self) -> bool:
        """True while L1 may serve (subscription healthy and lease fresh)."""
        return self.healthy and self._clock() < self.lease_until

    def hit(self, key: str, tags: Sequence[str]) -> bytes | None:
        """The payload of a copy of ``key`` stamped with ``tags`` that may serve now."""
        copy = self.entries.get(key)
        if copy is not None and self.healthy:
            now = self._clock()
            if now < self.lease_until and copy[2] > now and copy[1] == tuple(tags):
                return copy[0]
        return None

    # -- copies -----------------------------------------------------------------------------
    def fill(
        self, key: str, payload: bytes, tags: tuple[str, ...], seq: int, expires: float
    ) -> None:
        """Keep a copy, unless an invalidation was handled since ``seq`` was read (the copy
        may be stale) or the subscription is down."""
        with self._lock:
            if seq != self.seq or not self.healthy:
                return
            self._remove(key)
            self.entries[key] = Copy(payload, tags, expires)
            for tag in tags:
                self._keys_by_tag.setdefault(tag, set()).add(key)
            while len(self.entries) > self.max_entries:
                self._remove(next(iter(self.entries)))

    def apply(self, tags: Sequence[str], keys: Sequence[str], clear: bool) -> None:
        """Drop the copies an invalidation, a delete or a clear kills (the epoch tag: all)."""
        with self._lock:
            self.seq += 1
            if clear or EPOCH_TAG in tags:
                self._drop_all()
                return
            for tag in tags:
                for key in list(self._keys_by_tag.get(tag, ())):
                    self._remove(key)
            for key in keys:
                self._remove(key)

    def _drop_all(self) -> None:
        self.seq += 1
        self.entries.clear()
        self._keys_by_tag.clear()

    def _remove(self, key: str) -> None:
        copy = self.entries.pop(key, None)
        if copy is not None:
            for tag in copy.tags:
                keys = self._keys_by_tag.get(tag)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._keys_by_tag[tag]

    # -- the lease --------------------------------------------------------------------------
    def pong(self, sent: float, lease: float, *, closed: bool) -> None:
        """A pong for a ping sent at ``sent``: every message published before was handled,
        so the lease runs until ``sent + lease`` (never past the registration's end)."""
        with self._lock:
            if sent > self.lease_from and not closed:
                self.lease_from = sent
                self.lease_until = min(sent + lease, self.registered_until)
            self.healthy = True

    def registered(self, until: float) -> None:
        """This process's registration in the peer registry surely holds until ``until``."""
        with self._lock:
            self.registered_until = until

    def turn_off(self) -> bool:
        """Subscription lost, new identity or leaving: drop every copy, end the lease.
        True if L1 was healthy until now."""
        with self._lock:
            was = self.healthy
            self.healthy = False
            self.lease_from = self.lease_until = self.registered_until = _NEVER
            self._drop_all()
        return was
