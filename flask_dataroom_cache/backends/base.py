"""The protocol every backend implements, and the versioned-entry semantics they share.

An entry is stored with the version tokens its tags had *before* its value was computed.
``get`` returns the payload only if every stored token still equals the tag's current
token; otherwise (or if there is no entry) it is a miss, and the miss hands back the
current tokens of the tags the caller asked about, so the caller can compute the value
and ``set`` it stamped with those tokens. ``set`` refuses to store if a token changed in
between. ``invalidate`` gives each tag a fresh random token: O(1) per tag, whatever the
number of entries under it.

A token that does not exist (never created, expired, evicted) is created as a new random
value, never a counter restarting at zero, so losing a token can only cause a miss.

Every token starts with the wall-clock time it was made (``{milliseconds:x}-{unique}``,
see :func:`token_prefix`). The tracker uses it to refuse fills from a database snapshot
older than the tag's last change, whichever process made that change
(``docs/transactions.md``, "snapshots").

Backends raise :class:`BackendError` on infrastructure failure; the store and the
resilient wrapper turn those into misses and queued invalidations.

``inspect`` is the one read that changes nothing (no token created, no entry dropped, no
LRU or TTL touched): what ``flask dataroom-cache inspect`` reports, as a :class:`RawEntry`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "BackendError", "Lookup", "RawEntry", "token_prefix", "token_time"]


def token_prefix() -> str:
    """The start of a token made now: its creation time in milliseconds, hex, and ``-``."""
    return f"{int(time.time() * 1000):x}-"


def token_time(token: str) -> float | None:
    """When ``token`` was made (seconds since the epoch), or None if it does not say."""
    head, sep, _ = token.partition("-")
    if not sep or not head:
        return None
    try:
        return int(head, 16) / 1000.0
    except ValueError:
        return None

#: ``(payload, None)`` on a valid hit; ``(None, tokens)`` on a miss, with the current
#: tokens of the requested tags in order; ``(None, None)`` when nothing is known (the
#: backend is unavailable: do not store what you compute).
Lookup = tuple[bytes | None, tuple[str, ...] | None]


class BackendError(Exception):
    """The backend could not be reached or answered with an error."""


@dataclass(frozen=True)
class RawEntry:
    """One stored entry as :meth:`Backend.inspect` read it, without changing anything."""

    #: The value as the store encoded it (what ``set`` was given).
    payload: bytes
    #: The tags the entry carries (normalised: sorted, the epoch tag included).
    tags: tuple[str, ...]
    #: The version token of each tag captured when the value was computed, in order.
    versions: tuple[str, ...]
    #: Each tag's token now, in order; ``None``: missing (a read would create a new one,
    #: so the entry is stale).
    current: tuple[str | None, ...]
    #: Seconds the backend keeps the entry; ``inf``: no expiry; ``None``: unknown.
    ttl: float | None
    #: False when the value under the key is not in the backend's entry format (written
    #: by something else): a read would drop it. ``tags`` etc. are then empty.
    framed: bool = True


@runtime_checkable
class Backend(Protocol):
    """What the store needs from a storage engine. Tags are normalised by the store."""

    name: str

    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        """Return the entry if valid, else the current tokens of ``tags`` (see module doc)."""

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        """Current tokens of ``tags``, creating missing ones."""

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        """Store ``payload`` stamped with ``versions`` unless a token has changed since."""

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        """Store an untagged value only if the key is absent (locks). True if stored."""

    def release(self, key: str, payload: bytes) -> bool:
        """Remove a value stored by :meth:`add` only if it still holds ``payload`` (a lock
        released by its holder, never the next holder's after this one's expired): compare
        and delete in one atomic step. True if removed. A lock key is not a cached value:
        no invalidation is sent to anyone."""

    def delete(self, key: str) -> None:
        """Remove one entry (a no-op if absent)."""

    def inspect(self, key: str) -> RawEntry | None:
        """The entry under ``key`` with its tags, captured and current tokens and TTL, or
        ``None`` if absent or expired. Read-only: creates no token, drops nothing."""

    def invalidate(self, tags: Sequence[str]) -> None:
        """Give every tag a fresh token, so entries stamped with the old one miss."""

    def clear(self) -> int:
        """Remove every key of this backend's namespace; returns how many were removed."""

    def ping(self) -> float:
        """Round-trip latency in seconds; raises :class:`BackendError` if unreachable."""

    def info(self) -> dict[str, Any]:
        """Backend facts for ``stats``/``ping``: kind, key count, memory used."""

    def close(self) -> None:
        """Release connections."""
