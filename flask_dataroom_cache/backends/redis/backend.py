"""The Redis backend on one standalone or Sentinel-managed master: one round trip per hit.

A hit is one ``MGET`` of the entry and the current tokens of the requested tags (a single
atomic command, no script: about 17 us cheaper per hit than an ``EVALSHA``, measured by
``benchmarks/bench_core.py``), hand-packed from a per-tag-list plan (:mod:`.resp`). The
client returns the payload only if the entry was stored with exactly the requested tags
and every stored token equals the current one. A miss returns those current tokens, which
the caller stamps on the value it then sets.

The ``get.lua`` script stays the authoritative slow path, used when the ``MGET`` cannot
decide: a token is missing (the script creates it from a random candidate the client
supplies), the entry carries other tags than the caller asked about, or it is not in our
format (the script drops it). Sets, version captures, lock releases and invalidations are
scripts too (``scripts/*.lua``); the commit's invalidation is hand-packed as well.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..base import BackendError, Lookup, RawEntry, token_prefix
from ..lua import load_script
from . import resp
from .connection import NoScriptError, RedisError, ResponseError, url_options
from .layout import (
    decode_tokens,
    entry_header,
    exact_remaining,
    frame,
    glob_escape,
    parse_frame,
    remaining,
    token_key_prefix,
)

__all__ = ["RedisBackend"]

#: Bound of the per-backend cache of MGET plans (one per distinct tag list).
_PLANS_MAX = 4096


class HitPlan(NamedTuple):
    """What the ``MGET`` hit path needs for one tag list, computed once."""

    #: The start of an entry stored with exactly these tags.
    header: bytes
    #: The token keys of the tags, in order.
    token_keys: list[str]
    #: Those keys packed as RESP bulk strings (empty without the direct path).
    packed_token_keys: bytes


class RedisBackend:
    """Versioned-tag cache on one Redis connection pool (shared by an app's threads)."""

    name = "redis"

    def __init__(
        self,
        client: Any,
        prefix: str,
        tag_ttl: int = 3600,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.tag_ttl = tag_ttl
        #: With a replicated master (Sentinel), an invalidation waits (``WAIT``) until this
        #: many replicas have its new tokens, so a failover cannot resurrect old tokens and
        #: with them stale entries. 0 = do not wait (standalone).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.replica_lag_events = 0
        self._tagv = token_key_prefix(prefix)
        self._nonce = secrets.token_hex(8)
        self._counter = itertools.count()
        #: tags tuple -> the MGET hit path's inputs.
        self._plans: dict[tuple[str, ...], HitPlan] = {}
        #: The encoding redis-py applies to command arguments (``None``: no direct path).
        self._direct = resp.direct_encoding(client)
        self._get = client.register_script(load_script(__package__, "get"))
        self._set = client.register_script(load_script(__package__, "set"))
        self._versions = client.register_script(load_script(__package__, "versions"))
        self._invalidate = client.register_script(load_script(__package__, "invalidate"))
        self._release = client.register_script(load_script(__package__, "release"))
        self._invalidate_sha = resp.bulk(self._invalidate.sha.encode("ascii"))

    @classmethod
    def from_url(cls, url: str, prefix: str, tag_ttl: int, socket_timeout: float) -> RedisBackend:
        """The backend for ``url``: standalone, Sentinel-managed master, or Cluster.

        URL options: ``?shard_groups=N`` (Cluster, default 16), ``?wait_replicas=N`` and
        ``?wait_timeout_ms=T`` (Sentinel defaults 1 and 100; standalone 0).
        """
        # Looked up when called: cluster.py builds on this module, and ``connect`` is the
        # package's, ``flask_dataroom_cache.backends.redis.connect``, which tests replace.
        from . import connect
        from .cluster import DEFAULT_SHARD_GROUPS, ClusterRedisBackend

        scheme = url.split("://", 1)[0].lower()
        opts = url_options(url)
        if scheme == "redis+cluster":
            groups = int(opts.get("shard_groups", DEFAULT_SHARD_GROUPS))
            return ClusterRedisBackend(
                lambda: connect(url, socket_timeout), prefix, tag_ttl, shard_groups=groups
            )
        wait = int(opts.get("wait_replicas", 1 if scheme == "redis+sentinel" else 0))
        return cls(
            connect(url, socket_timeout),
            prefix,
            tag_ttl,
            wait_replicas=wait,
            # WAIT must return before the socket times out, or a slow replica would look
            # like a dead master to the breaker.
            wait_timeout_ms=min(
                int(opts.get("wait_timeout_ms", 100)), max(1, int(socket_timeout * 800))
            ),
        )

    def _candidate(self) -> str:
        # Creation time (see base.token_time) + a random per-backend nonce + a counter:
        # unique per call without a syscall.
        return f"{token_prefix()}{self._nonce}{next(self._counter):x}"

    # -- the hit path -------------------------------------------------------------------
    def _plan(self, tags: Sequence[str]) -> HitPlan:
        key = tuple(tags)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            token_keys = [self._tagv + t for t in key]
            packed = b""
            if self._direct is not None:
                enc, errors = self._direct
                packed = b"".join(resp.bulk(k.encode(enc, errors)) for k in token_keys)
            plan = self._plans[key] = HitPlan(entry_header(key), token_keys, packed)
        return plan

    def _plain(self) -> bool:
        """True when commands may be hand-packed and sent on a pooled connection (see
        :mod:`.resp`): a client :func:`.resp.direct_encoding` accepts, not wrapped."""
        return self._direct is not None and resp.unwrapped(self.client)

    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        header, token_keys, packed = self._plan(tags)
        return self._decide(key, tags, header, self._mget(key, token_keys, packed), None)[0]

    def get_expiring(self, key: str, tags: Sequence[str]) -> tuple[Lookup, float | None]:
        """``get`` plus, for a hit, the entry's remaining lifetime in seconds (``inf``: no
        expiry; ``None``: unknown, e.g. the key expired meanwhile), in the same single round
        trip: ``MULTI MGET PTTL EXEC`` sent as one packet. Used by the near cache to bound
        its copy by the entry's own expiry."""
        header, token_keys, packed = self._plan(tags)
        res, pttl = self._mget_pttl(key, token_keys, packed)
        return self._decide(key, tags, header, res, pttl)

    def _mget(self, key: str, token_keys: list[str], packed: bytes) -> Any:
        """``MGET key *token_keys`` in one round trip, hand-packed from the plan's packed
        token keys when the client allows it."""
        if not self._plain():
            try:
                # execute_command, not mget(): skips redis-py's argument juggling.
                return self.client.execute_command("MGET", key, *token_keys)
            except RedisError as exc:
                raise BackendError(f"redis GET failed: {exc}") from exc
        enc, errors = self._direct  # type: ignore[misc]
        command = resp.pack_mget(key.encode(enc, errors), len(token_keys), packed)
        try:
            return resp.send(self.client.connection_pool, command, "GET")
        except ResponseError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc

    def _mget_pttl(self, key: str, token_keys: list[str], packed: bytes) -> tuple[Any, Any]:
        """``MGET key *token_keys`` and ``PTTL key`` in one ``MULTI``/``EXEC`` (atomic: the
        TTL is the one of the entry read), one packet, one round trip."""
        if not self._plain():
            try:
                pipe = self.client.pipeline(transaction=True)
                pipe.execute_command("MGET", key, *token_keys)
                pipe.execute_command("PTTL", key)
                res, pttl = pipe.execute()
            except RedisError as exc:
                raise BackendError(f"redis GET failed: {exc}") from exc
            return res, pttl
        enc, errors = self._direct  # type: ignore[misc]
        command = resp.pack_mget_pttl(key.encode(enc, errors), len(token_keys), packed)
        try:
            replies = resp.send(
                self.client.connection_pool, command, "GET", replies=resp.EXEC_REPLIES
            )
        except ResponseError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc
        done = replies[-1]
        if not isinstance(done, list) or len(done) != 2:  # EXEC aborted: not expected
            raise BackendError(f"redis GET failed: unexpected EXEC reply {done!r}")
        return done[0], done[1]

    def _decide(
        self, key: str, tags: Sequence[str], header: bytes, res: Any, pttl: Any
    ) -> tuple[Lookup, float | None]:
        """Read an ``MGET`` reply: a hit, a miss with the current tokens, or (when the
        reply cannot decide) the ``get.lua`` script's answer."""
        entry, current = res[0], res[1:]
        if entry is None or entry.startswith(header):
            if None not in current:
                if entry is not None:
                    parts = entry[len(header) :].split(b"\n", len(current))
                    if parts[:-1] == current:
                        return (parts[-1], None), remaining(pttl)
                return (None, tuple(t.decode() for t in current)), None
            if entry is None:
                return (None, self.versions(tags)), None  # creates the missing tokens
        return self._get_scripted(key, tags)

    def _get_scripted(self, key: str, tags: Sequence[str]) -> tuple[Lookup, float | None]:
        try:
            res = self._get(keys=[key], args=[self._tagv, self._candidate(), self.tag_ttl, *tags])
        except RedisError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc
        if res[0] == 1:
            return (bytes(res[1]), None), exact_remaining(res)
        return (None, decode_tokens(res[1:])), None

    # -- the rest of the protocol -------------------------------------------------------
    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        try:
            res = self._versions(args=[self._tagv, self._candidate(), self.tag_ttl, *tags])
        except RedisError as exc:
            raise BackendError(f"redis version capture failed: {exc}") from exc
        return decode_tokens(res)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        blob = frame(tags, versions, payload)
        try:
            res = self._set(
                keys=[key],
                args=[self._tagv, int(ttl), self.tag_ttl, blob, len(tags), *tags, *versions],
            )
        except RedisError as exc:
            raise BackendError(f"redis SET failed: {exc}") from exc
        return bool(res)

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        try:
            return bool(self.client.set(key, frame((), (), payload), ex=int(ttl), nx=True))
        except RedisError as exc:
            raise BackendError(f"redis SET NX failed: {exc}") from exc

    def release(self, key: str, payload: bytes) -> bool:
        try:
            return bool(self._release(keys=[key], args=[frame((), (), payload)]))
        except RedisError as exc:
            raise BackendError(f"redis lock release failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete(key)
        except RedisError as exc:
            raise BackendError(f"redis DEL failed: {exc}") from exc

    def inspect(self, key: str) -> RawEntry | None:
        return self._inspect(key, self._tagv, transaction=True)

    def _inspect(self, full_key: str, tagv: str, *, transaction: bool) -> RawEntry | None:
        """Read-only: ``GET`` + ``PTTL`` of the entry (one ``MULTI``/``EXEC`` where the
        client allows it), then ``MGET`` of its tags' tokens (in the entry's slot on a
        Cluster). No script: nothing is created or dropped."""
        try:
            pipe = self.client.pipeline(transaction=transaction)
            pipe.get(full_key)
            pipe.pttl(full_key)
            raw, pttl = pipe.execute()
            if raw is None:
                return None
            raw = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
            parsed = parse_frame(raw)
            if parsed is None:
                return RawEntry(raw, (), (), (), remaining(pttl), framed=False)
            tags, versions, payload = parsed
            current: list[Any] = []
            if tags:
                current = self.client.execute_command("MGET", *(tagv + t for t in tags))
        except RedisError as exc:
            raise BackendError(f"redis inspect failed: {exc}") from exc
        tokens = tuple(None if t is None else decode_tokens((t,))[0] for t in current)
        return RawEntry(payload, tags, versions, tokens, remaining(pttl))

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        token = self._candidate()
        keys = [self._tagv + t for t in tags]
        if not self.wait_replicas and self._plain():
            # The commit path waits for this reply (promise 1), so it is hand-packed like
            # the hit's MGET: about 40 us less client time per commit than Script.__call__.
            enc, errors = self._direct  # type: ignore[misc]
            command = resp.pack_evalsha(
                self._invalidate_sha,
                [k.encode(enc, errors) for k in keys],
                [b"%d" % self.tag_ttl, token.encode()],
            )
            try:
                resp.send(self.client.connection_pool, command, "invalidation")
                return
            except NoScriptError:
                pass  # script cache flushed or a new server: Script() below loads it
            except ResponseError as exc:
                raise BackendError(f"redis invalidation failed: {exc}") from exc
        args = [self.tag_ttl, token]
        try:
            if not self.wait_replicas:
                self._invalidate(keys=keys, args=args)
                return
            pipe = self.client.pipeline(transaction=False)
            self._invalidate(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            res = pipe.execute()
        except RedisError as exc:
            raise BackendError(f"redis invalidation failed: {exc}") from exc
        if self.wait_replicas and int(res[-1]) < self.wait_replicas:
            # Delivered to the master but not (yet) acknowledged by its replicas: a failover
            # in this window could lose it. Counted and visible in ``info()``.
            self.replica_lag_events += 1

    def clear(self) -> int:
        """Delete this prefix's keys with ``SCAN`` in batches (never ``KEYS``/``FLUSHDB``)."""
        pattern = glob_escape(self.prefix) + ":*"
        removed = 0
        try:
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    removed += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.client.unlink(*batch))
        except RedisError as exc:
            raise BackendError(f"redis clear failed: {exc}") from exc
        return removed

    def ping(self) -> float:
        start = time.perf_counter()
        try:
            self.client.ping()
        except RedisError as exc:
            raise BackendError(f"redis PING failed: {exc}") from exc
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        try:
            mem = self.client.info("memory")
            keys = sum(
                1 for _ in self.client.scan_iter(match=glob_escape(self.prefix) + ":*", count=1000)
            )
        except RedisError as exc:
            raise BackendError(f"redis INFO failed: {exc}") from exc
        return {
            "backend": self.name,
            "keys": keys,
            "replica_lag_events": self.replica_lag_events,
            "memory_bytes": mem.get("used_memory"),
            "maxmemory": mem.get("maxmemory"),
            "maxmemory_policy": mem.get("maxmemory_policy"),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must never raise
            self.client.close()
