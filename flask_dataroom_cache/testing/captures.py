"""What a block of code made the cache do, from the extension's signals (``signals.py``):
``capture_invalidations`` (the tags delivered, batch by batch) and ``capture_entries``
(the entries stored).

Both listen to one app (the signals' sender): the ``app`` given (``current_app`` works
too: the app behind the proxy), else the current app when an app context is pushed, else
every app in the process. The receivers run in the
thread that did the work, so a commit made by a request of the Flask test client is
captured like one made by the test itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from blinker import ANY, NamedSignal

from .. import signals
from ..autotags import AUTO_PREFIXES

__all__ = [
    "Batch",
    "SentInvalidations",
    "StoredEntries",
    "StoredEntry",
    "capture_entries",
    "capture_invalidations",
    "listen_target",
]


def listen_target(app: Any = None) -> Any:
    """The sender to listen to: ``app`` (the app behind it when it is the ``current_app``
    proxy: blinker keys senders by identity), else the current app, else every app
    (``ANY``)."""
    if app is not None:
        return signals.real_app(app)
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    return ANY


@contextmanager
def _listening(signal: NamedSignal, app: Any, receiver: Any) -> Iterator[None]:
    sender = listen_target(app)
    signal.connect(receiver, sender=sender, weak=False)
    try:
        yield
    finally:
        # sender ANY: blinker keeps a receiver disconnected from one sender only in
        # signal.receivers, which would make every later send pay for it
        signal.disconnect(receiver)


def _listed(tags: Iterable[str]) -> str:
    return ", ".join(tags) or "(none)"


@dataclass(frozen=True)
class Batch:
    """One delivery of tags to the backend: a COMMIT's tags, or one API call's."""

    #: The tags, in the order sent.
    tags: tuple[str, ...]
    #: ``"commit"``, ``"autocommit"``, ``"ddl"`` or ``"api"`` (``signals.tags_invalidated``).
    source: str
    #: The app that sent them.
    app: Any = field(repr=False, compare=False, default=None)

    @property
    def declared(self) -> tuple[str, ...]:
        """The tags without the automatic dependency tags (``~t:``, ``~r:``, ``~c:``,
        ``~e:``: autotags.py) every write also bumps: what declarations produced."""
        return tuple(t for t in self.tags if not t.startswith(AUTO_PREFIXES))


@dataclass
class SentInvalidations:
    """The invalidations a ``capture_invalidations`` block delivered, in the order sent."""

    batches: list[Batch] = field(default_factory=list)

    @property
    def tags(self) -> list[str]:
        """Every tag sent, batch after batch, in the order sent (repeats kept)."""
        return [tag for batch in self.batches for tag in batch.tags]

    @property
    def declared_tags(self) -> list[str]:
        """:attr:`tags` without the automatic dependency tags (:attr:`Batch.declared`)."""
        return [tag for batch in self.batches for tag in batch.declared]

    def __contains__(self, tag: object) -> bool:
        return any(tag in batch.tags for batch in self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def describe(self) -> str:
        """The batches, one per line (for failure messages)."""
        if not self.batches:
            return "nothing was invalidated"
        return "\n".join(f"  {b.source}: {_listed(b.tags)}" for b in self.batches)

    def assert_any(self, *tags: str) -> None:
        """At least one of ``tags`` was sent."""
        __tracebackhide__ = True
        if not tags:
            raise TypeError("assert_any() needs at least one tag")
        if not any(tag in self for tag in tags):
            wanted = " or ".join(repr(t) for t in tags)
            raise AssertionError(f"expected an invalidation of {wanted}; {self._sent()}")

    def assert_all(self, *tags: str) -> None:
        """Every one of ``tags`` was sent."""
        __tracebackhide__ = True
        if not tags:
            raise TypeError("assert_all() needs at least one tag")
        missing = [tag for tag in tags if tag not in self]
        if missing:
            raise AssertionError(
                f"expected invalidations of {_listed(map(repr, tags))}; "
                f"missing {_listed(map(repr, missing))}; {self._sent()}"
            )

    def assert_none(self, *tags: str) -> None:
        """Nothing was sent; with ``tags``: none of them was sent."""
        __tracebackhide__ = True
        if not tags:
            if self.batches:
                raise AssertionError(f"expected no invalidation; {self._sent()}")
            return
        sent = [tag for tag in tags if tag in self]
        if sent:
            raise AssertionError(
                f"expected no invalidation of {_listed(map(repr, sent))}; {self._sent()}"
            )

    def _sent(self) -> str:
        if not self.batches:
            return (
                "the block invalidated nothing (did it commit? are the changed models "
                "declared with cache.track? is the session or engine the one the cache tracks?)"
            )
        return f"the block sent {len(self.batches)} batch(es):\n{self.describe()}"


@contextmanager
def capture_invalidations(app: Any = None) -> Iterator[SentInvalidations]:
    """``with capture_invalidations(app) as sent: ...``: every batch of tags delivered to
    ``app``'s backend inside the block (commits, ``invalidate_tags``, DDL), in order."""
    sent = SentInvalidations()
    lock = threading.Lock()

    def receiver(sender: Any, *, tags: tuple[str, ...], source: str, **_kw: Any) -> None:
        with lock:
            sent.batches.append(Batch(tuple(tags), source, sender))

    with _listening(signals.tags_invalidated, app, receiver):
        yield sent


@dataclass(frozen=True)
class StoredEntry:
    """One entry written to the backend."""

    key: str
    #: The entry's tags, normalised (sorted, with the ``~epoch`` tag every entry carries).
    tags: tuple[str, ...]
    ttl: int
    app: Any = field(repr=False, compare=False, default=None)


@dataclass
class StoredEntries:
    """The entries a ``capture_entries`` block stored, in order."""

    entries: list[StoredEntry] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [entry.key for entry in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self) -> str:
        if not self.entries:
            return "no entry was stored"
        return "\n".join(f"  {e.key}: {_listed(e.tags)}" for e in self.entries)


@contextmanager
def capture_entries(app: Any = None) -> Iterator[StoredEntries]:
    """``with capture_entries(app) as stored: ...``: every entry ``app`` stored inside the
    block, with its key, tags and TTL."""
    stored = StoredEntries()
    lock = threading.Lock()

    def receiver(sender: Any, *, key: str, tags: tuple[str, ...], ttl: int, **_kw: Any) -> None:
        with lock:
            stored.entries.append(StoredEntry(key, tuple(tags), ttl, sender))

    with _listening(signals.entry_stored, app, receiver):
        yield stored
