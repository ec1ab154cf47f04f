"""A bounded, thread-safe, in-process backend with the same semantics as Redis.

Entries live in an LRU ``OrderedDict`` capped at ``max_entries``; tag tokens in another,
capped at ``max_tags``. Evicting a token is safe: every entry stamped with it simply
misses (tokens come from a counter that never restarts inside this backend, prefixed by
a random nonce, so a re-created token never equals an old one). One ``RLock`` guards both
maps; every operation is O(number of tags).
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .base import Lookup, RawEntry, token_prefix

__all__ = ["MemoryBackend"]

_Entry = tuple[float, tuple[str, ...], tuple[str, ...], bytes]


class MemoryBackend:
    """LRU + TTL cache with per-tag version tokens. Safe to share between threads."""

    name = "memory"

    def __init__(
        self,
        max_entries: int = 10_000,
        max_tags: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.max_tags = max_tags if max_tags is not None else max(1024, 4 * max_entries)
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._tags: OrderedDict[str, str] = OrderedDict()
        self._nonce = secrets.token_hex(4)
        self._counter = itertools.count(1)

    # -- tokens -----------------------------------------------------------------
    def _new_token(self) -> str:
        return f"{token_prefix()}{self._nonce}.{next(self._counter)}"

    def _token(self, tag: str) -> str:
        token = self._tags.get(tag)
        if token is None:
            token = self._tags[tag] = self._new_token()
            if len(self._tags) > self.max_tags:
                self._tags.popitem(last=False)
        else:
            self._tags.move_to_end(tag)
        return token

    # -- protocol -----------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                expires, etags, etokens, payload = entry
                if expires > self._clock() and all(
                    self._tags.get(t) == tok for t, tok in zip(etags, etokens, strict=True)
                ):
                    self._entries.move_to_end(key)
                    return payload, None
                del self._entries[key]
            return None, tuple(self._token(t) for t in tags)

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._token(t) for t in tags)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        with self._lock:
            if len(tags) != len(versions) or any(
                self._tags.get(t) != v for t, v in zip(tags, versions, strict=True)
            ):
                return False
            for t in tags:
                self._tags.move_to_end(t)
            self._entries[key] = (self._clock() + ttl, tuple(tags), tuple(versions), payload)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > self._clock():
                return False
            self._entries[key] = (self._clock() + ttl, (), (), payload)
            self._entries.move_to_end(key)  # replacing an expired entry keeps its old slot
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def release(self, key: str, payload: bytes) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[1] or entry[3] != payload:
                return False  # absent, a tagged entry, or another holder's lock
            del self._entries[key]
            return entry[0] > self._clock()  # an expired one was no longer held

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def inspect(self, key: str) -> RawEntry | None:
        with self._lock:  # a plain read: no LRU move, no token created, nothing dropped
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, tags, tokens, payload = entry
            left = expires - self._clock()
            if left <= 0:
                return None
            return RawEntry(payload, tags, tokens, tuple(self._tags.get(t) for t in tags), left)

    def invalidate(self, tags: Sequence[str]) -> None:
        base = f"{token_prefix()}{self._nonce}."  # one clock read per call, not per tag
        counter = self._counter
        with self._lock:
            known = self._tags
            for tag in tags:
                known[tag] = f"{base}{next(counter)}"
                known.move_to_end(tag)
            while len(self._tags) > self.max_tags:
                self._tags.popitem(last=False)

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries) + len(self._tags)
            self._entries.clear()
            self._tags.clear()
            return count

    def ping(self) -> float:
        return 0.0

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self.name,
                "keys": len(self._entries),
                "tags": len(self._tags),
                "max_entries": self.max_entries,
                "memory_bytes": sum(len(e[3]) for e in self._entries.values()),
            }

    def close(self) -> None:
        pass
