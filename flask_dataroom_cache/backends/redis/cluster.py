"""The Redis backend on Redis Cluster: the same versioned tags, no cross-slot read.

Layout: ``shard_groups`` (``N``) hash tags ``{P:s0}`` ... ``{P:sN-1}``. An entry with key
``K`` lives in group ``g = crc32(K) % N`` as ``{P:sg}K``; every tag has one token copy per
group, ``{P:sg}:~tagv:{tag}``. An entry and the tokens it is checked against therefore
share a slot, and the hit stays one ``EVALSHA`` (``get.lua``) on one node. Entries spread
over the cluster (N groups hash to slots owned by the different masters).

* Invalidation writes the same fresh token to all ``N`` copies of each tag (one pipeline,
  one round trip per master): O(N) per tag, still O(1) in entries.
* A token missing in a group (never set, expired, evicted) is created there from a fresh
  random candidate and then copied with ``SET NX`` to the groups that lack it, so the
  copies agree and a value captured in one group (:meth:`versions`, which has no key) can
  be stored in another. A copy that disagrees only makes ``set`` refuse (a miss), never a
  stale hit: tokens are random, and invalidation overwrites every copy unconditionally.
* ``clear`` and ``info`` SCAN every master.

The client is built lazily (building a ``RedisCluster`` contacts the cluster), so an
unreachable cluster at start is an ordinary :class:`BackendError` for the breaker.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import zlib
from collections.abc import Sequence
from typing import Any

from ..base import BackendError, Lookup, RawEntry
from ..lua import load_script
from .backend import RedisBackend
from .connection import RedisError
from .layout import decode_tokens, exact_remaining, frame, glob_escape

__all__ = ["DEFAULT_SHARD_GROUPS", "ClusterRedisBackend"]

#: How many hash-tagged shard groups entries are spread over.
DEFAULT_SHARD_GROUPS = 16


class ClusterRedisBackend(RedisBackend):
    """:class:`RedisBackend`'s protocol on Redis Cluster (see the module docstring)."""

    name = "redis-cluster"

    def __init__(
        self,
        client_factory: Any,
        prefix: str,
        tag_ttl: int = 3600,
        *,
        shard_groups: int = DEFAULT_SHARD_GROUPS,
    ) -> None:
        if shard_groups < 1:
            raise ValueError("shard_groups must be >= 1")
        self._factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.prefix = prefix
        self.tag_ttl = tag_ttl
        self.wait_replicas = 0
        self.wait_timeout_ms = 0
        self.replica_lag_events = 0
        self.shard_groups = shard_groups
        self._groups = [f"{{{prefix}:s{i}}}" for i in range(shard_groups)]
        self._group_tagv = [g + ":~tagv:" for g in self._groups]
        self._tagv = self._group_tagv[0]
        self._nonce = secrets.token_hex(8)
        self._counter = itertools.count()

    # -- client -------------------------------------------------------------------------
    @property
    def client(self) -> Any:  # type: ignore[override]
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    try:
                        made = self._factory()
                    except RedisError as exc:
                        raise BackendError(f"redis cluster unreachable: {exc}") from exc
                    self._get = made.register_script(load_script(__package__, "get"))
                    self._set = made.register_script(load_script(__package__, "set"))
                    # KEYS[1], the shard group's hash tag, only routes the call.
                    self._versions = made.register_script(load_script(__package__, "versions"))
                    self._release = made.register_script(load_script(__package__, "release"))
                    self._client = made
                client = self._client
        return client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def _group(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8")) % self.shard_groups

    def _full_key(self, key: str) -> str:
        return self._groups[self._group(key)] + key

    def _propagate(self, group: int, cand: str, tags: Sequence[str], tokens: Sequence[str]) -> None:
        """Copy tokens this call created in ``group`` to the other groups that lack them."""
        created = [(t, v) for t, v in zip(tags, tokens, strict=True) if v.startswith(cand + ".")]
        if not created or self.shard_groups == 1:
            return
        pipe = self.client.pipeline(transaction=False)
        for g, tagv in enumerate(self._group_tagv):
            if g != group:
                for tag, token in created:
                    pipe.set(tagv + tag, token, ex=self.tag_ttl, nx=True)
        pipe.execute()

    # -- protocol -----------------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        return self.get_expiring(key, tags)[0]

    def get_expiring(self, key: str, tags: Sequence[str]) -> tuple[Lookup, float | None]:
        # The script returns the entry's PTTL with a hit: still one EVALSHA.
        g = self._group(key)
        cand = self._candidate()
        try:
            client = self.client  # registers the scripts on first use
            del client
            res = self._get(
                keys=[self._groups[g] + key],
                args=[self._group_tagv[g], cand, self.tag_ttl, *tags],
            )
            if res[0] == 1:
                return (bytes(res[1]), None), exact_remaining(res)
            tokens = decode_tokens(res[1:])
            self._propagate(g, cand, tags, tokens)
        except RedisError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc
        return (None, tokens), None

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        g = zlib.crc32("\n".join(tags).encode("utf-8")) % self.shard_groups
        cand = self._candidate()
        try:
            client = self.client
            del client
            res = self._versions(
                keys=[self._groups[g]], args=[self._group_tagv[g], cand, self.tag_ttl, *tags]
            )
            tokens = decode_tokens(res)
            self._propagate(g, cand, tags, tokens)
        except RedisError as exc:
            raise BackendError(f"redis version capture failed: {exc}") from exc
        return tokens

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        g = self._group(key)
        blob = frame(tags, versions, payload)
        try:
            client = self.client
            del client
            res = self._set(
                keys=[self._groups[g] + key],
                args=[
                    self._group_tagv[g],
                    int(ttl),
                    self.tag_ttl,
                    blob,
                    len(tags),
                    *tags,
                    *versions,
                ],
            )
        except RedisError as exc:
            raise BackendError(f"redis SET failed: {exc}") from exc
        return bool(res)

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        full = self._full_key(key)
        try:
            return bool(self.client.set(full, frame((), (), payload), ex=int(ttl), nx=True))
        except RedisError as exc:
            raise BackendError(f"redis SET NX failed: {exc}") from exc

    def release(self, key: str, payload: bytes) -> bool:
        full = self._full_key(key)
        try:
            client = self.client
            del client
            return bool(self._release(keys=[full], args=[frame((), (), payload)]))
        except RedisError as exc:
            raise BackendError(f"redis lock release failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete(self._full_key(key))
        except RedisError as exc:
            raise BackendError(f"redis DEL failed: {exc}") from exc

    def inspect(self, key: str) -> RawEntry | None:
        """The entry in its shard group, checked against that group's token copies (the
        ones a read compares). ``key`` as the app knows it, or as stored (``{P:sN}...``)."""
        head = "{" + self.prefix + ":s"
        if key.startswith(head) and "}" in key:
            key = key[key.index("}") + 1 :]
        g = self._group(key)
        # the entry and its tokens share one slot; a cluster pipeline is not a MULTI
        return self._inspect(self._groups[g] + key, self._group_tagv[g], transaction=False)

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        base = self._candidate()
        try:
            pipe = self.client.pipeline(transaction=False)
            for i, tag in enumerate(tags):
                token = f"{base}.i{i}"
                for tagv in self._group_tagv:
                    pipe.set(tagv + tag, token, ex=self.tag_ttl)
            pipe.execute()
        except RedisError as exc:
            raise BackendError(f"redis invalidation failed: {exc}") from exc

    def _scan_masters(self, delete: bool) -> int:
        pattern = "{" + glob_escape(self.prefix) + ":s*"
        count = 0
        for node in self.client.get_primaries():
            conn = node.redis_connection
            batch: list[bytes] = []
            for key in conn.scan_iter(match=pattern, count=500):
                count += 1
                if delete:
                    batch.append(key)
                    if len(batch) >= 500:
                        _unlink_each(conn, batch)
                        batch.clear()
            if batch:
                _unlink_each(conn, batch)
        return count

    def clear(self) -> int:
        """``SCAN`` + ``UNLINK`` on every master (keys of many slots: one UNLINK per key)."""
        try:
            return self._scan_masters(delete=True)
        except RedisError as exc:
            raise BackendError(f"redis clear failed: {exc}") from exc

    def info(self) -> dict[str, Any]:
        try:
            keys = self._scan_masters(delete=False)
            used = 0
            masters = self.client.get_primaries()
            for node in masters:
                used += int(node.redis_connection.info("memory").get("used_memory", 0))
        except RedisError as exc:
            raise BackendError(f"redis INFO failed: {exc}") from exc
        return {
            "backend": self.name,
            "keys": keys,
            "memory_bytes": used,
            "masters": len(masters),
            "shard_groups": self.shard_groups,
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._client.close()


def _unlink_each(conn: Any, keys: Sequence[bytes]) -> None:
    pipe = conn.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    pipe.execute()
