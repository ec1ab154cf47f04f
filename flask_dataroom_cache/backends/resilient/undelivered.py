"""Invalidations the backend could not take: kept until delivered, never dropped.

Tags (``invalidate``) and keys (``delete``) are kept with the sequence number of their
latest queueing: a delivery removes an item only if it was not queued again meanwhile
(that later write needs its own delivery: the first one may have reached Redis before it).
Beyond ``max_items`` the whole queue is replaced by one namespace epoch bump, which
invalidates every entry of the prefix (safe, merely cold). The resilient backend delivers
a :class:`Batch` (:meth:`UndeliveredInvalidations.batch`, epoch first) and then reports
it :meth:`~UndeliveredInvalidations.delivered`. Thread-safe; it never does I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Batch", "UndeliveredInvalidations"]

T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """What was queued when a delivery started."""

    #: The overflow generation this batch covers, and whether its epoch bump is due.
    epoch: int
    epoch_due: bool
    #: Tags and keys with the sequence number of their latest queueing.
    tags: dict[str, int]
    keys: dict[str, int]

    @property
    def size(self) -> int:
        return len(self.tags) + len(self.keys) + int(self.epoch_due)


class UndeliveredInvalidations:
    """The queue of invalidations waiting for the backend; see the module docstring."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("pending_max must be >= 1")
        self.max_items = max_items
        self._lock = threading.Lock()
        self._tags: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self._seq = 0
        self._epoch_wanted = 0  # overflow generations
        self._epoch_done = 0
        #: Epoch bumps delivered (``stats()``).
        self.epoch_bumps = 0

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held it)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Items waiting: tags + keys, + 1 for a due epoch bump."""
        return len(self._tags) + len(self._keys) + int(self._epoch_wanted > self._epoch_done)

    def has_pending(self) -> bool:
        return bool(self._tags or self._keys or self._epoch_wanted > self._epoch_done)

    def add(self, tags: Sequence[str] = (), keys: Sequence[str] = ()) -> bool:
        """Queue tags and keys. True if the queue overflowed into an epoch bump just now
        (the first overflow since the last delivered bump)."""
        with self._lock:
            self._seq += 1
            self._tags.update(dict.fromkeys(tags, self._seq))
            self._keys.update(dict.fromkeys(keys, self._seq))
            if len(self._tags) + len(self._keys) <= self.max_items:
                return False
            # One epoch bump replaces the whole queue: everything misses after recovery.
            self._tags.clear()
            self._keys.clear()
            overflow = self._epoch_wanted <= self._epoch_done
            self._epoch_wanted += 1
            return overflow

    def batch(self) -> Batch:
        """A copy of what is queued now."""
        with self._lock:
            return Batch(
                epoch=self._epoch_wanted,
                epoch_due=self._epoch_wanted > self._epoch_done,
                tags=dict(self._tags),
                keys=dict(self._keys),
            )

    def delivered(self, batch: Batch) -> None:
        """``batch`` reached the backend: remove what was not queued again since."""
        with self._lock:
            if batch.epoch_due:
                self._epoch_done = max(self._epoch_done, batch.epoch)
                self.epoch_bumps += 1
            for queued, done in ((self._tags, batch.tags), (self._keys, batch.keys)):
                for item, seq in done.items():
                    if queued.get(item) == seq:  # not queued again since the batch
                        del queued[item]

    def if_empty(self, action: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``action`` only if nothing is queued, atomically with that check (nothing
        can be queued in between). Returns ``(ran, its result)``."""
        with self._lock:
            if self.has_pending():
                return False, None
            return True, action()
