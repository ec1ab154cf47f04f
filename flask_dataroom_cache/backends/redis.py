"""Redis backend: one round trip per hit, O(1) tag invalidation, no pickle.

Layout (``P`` is the key prefix):

* entries: the caller's key (``P:{entity}:...`` from :func:`get_cache_key`), a string
  ``"<n>\\n<tag_1>\\n...<tag_n>\\n<token_1>\\n...<token_n>\\n<payload>"``;
* tag tokens: ``P:~tagv:{tag}`` (``~`` is always escaped in generated keys, so an entry key
  can never collide with a token key), with a TTL longer than any entry's;
* locks: ``P:~lock:...`` via :meth:`add`.

A hit is one ``EVALSHA``: the script reads the entry, reads its tags' current tokens and
returns the payload only if they all match. A miss returns the current tokens of the
requested tags (creating missing ones from a random candidate the client supplies), which
the caller stamps on the value it then sets.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

from .base import BackendError, Lookup

__all__ = ["HAVE_REDIS", "RedisBackend", "connect"]

try:  # the ``redis`` extra is optional
    import redis as _redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    RedisError: type[Exception] = _redis.RedisError
    HAVE_REDIS = True
except ImportError:  # pragma: no cover - exercised by the missing-extra test via monkeypatch
    _redis = None  # type: ignore[assignment]
    RedisError = OSError
    HAVE_REDIS = False

# KEYS[1] entry; ARGV[1] token-key prefix, ARGV[2] candidate token, ARGV[3] token TTL,
# ARGV[4..] tags to capture on a miss.
_GET = """
local e = redis.call('GET', KEYS[1])
local pre = ARGV[1]
if e then
  local p = string.find(e, '\\n', 1, true)
  local n = tonumber(string.sub(e, 1, p - 1))
  local pos = p + 1
  local ok = true
  if n > 0 then
    local tk = {}
    for i = 1, n do
      local q = string.find(e, '\\n', pos, true)
      tk[i] = pre .. string.sub(e, pos, q - 1)
      pos = q + 1
    end
    local cur = redis.call('MGET', unpack(tk))
    for i = 1, n do
      local q = string.find(e, '\\n', pos, true)
      if cur[i] ~= string.sub(e, pos, q - 1) then ok = false break end
      pos = q + 1
    end
  end
  if ok then return {1, string.sub(e, pos)} end
  redis.call('DEL', KEYS[1])
end
local out = {0}
for i = 4, #ARGV do
  local k = pre .. ARGV[i]
  local t = redis.call('GET', k)
  if not t then
    t = ARGV[2] .. '.' .. i
    redis.call('SET', k, t, 'EX', ARGV[3])
  end
  out[#out + 1] = t
end
return out
"""

# KEYS[1] entry; ARGV[1] prefix, ARGV[2] entry TTL, ARGV[3] token TTL, ARGV[4] blob,
# ARGV[5] n, ARGV[6..5+n] tags, ARGV[6+n..5+2n] tokens.
_SET = """
local pre = ARGV[1]
local n = tonumber(ARGV[5])
local ttl = tonumber(ARGV[2])
for i = 1, n do
  if redis.call('GET', pre .. ARGV[5 + i]) ~= ARGV[5 + n + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ttl)
local want = math.max(ttl + 60, tonumber(ARGV[3]))
for i = 1, n do
  local k = pre .. ARGV[5 + i]
  if redis.call('TTL', k) < want then redis.call('EXPIRE', k, want) end
end
return 1
"""

# ARGV[1] prefix, ARGV[2] candidate, ARGV[3] token TTL, ARGV[4..] tags.
_VERSIONS = """
local out = {}
for i = 4, #ARGV do
  local k = ARGV[1] .. ARGV[i]
  local t = redis.call('GET', k)
  if not t then
    t = ARGV[2] .. '.' .. i
    redis.call('SET', k, t, 'EX', ARGV[3])
  end
  out[#out + 1] = t
end
return out
"""


def connect(url: str, socket_timeout: float) -> Any:
    """Build a redis-py client for ``url`` with short timeouts and no silent retries.

    Retries would multiply the cost of an outage; the circuit breaker decides instead.
    """
    if not HAVE_REDIS:
        raise ImportError("redis is not installed: pip install flask-dataroom-cache[redis]")
    return _redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
    )


def _frame(tags: Sequence[str], versions: Sequence[str], payload: bytes) -> bytes:
    head = "\n".join([str(len(tags)), *tags, *versions, ""])
    return head.encode("utf-8") + payload


class RedisBackend:
    """Versioned-tag cache on one Redis connection pool (shared by an app's threads)."""

    name = "redis"

    def __init__(self, client: Any, prefix: str, tag_ttl: int = 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.tag_ttl = tag_ttl
        self._tagv = f"{prefix}:~tagv:"
        self._get = client.register_script(_GET)
        self._set = client.register_script(_SET)
        self._versions = client.register_script(_VERSIONS)

    @classmethod
    def from_url(cls, url: str, prefix: str, tag_ttl: int, socket_timeout: float) -> RedisBackend:
        return cls(connect(url, socket_timeout), prefix, tag_ttl)

    def _candidate(self) -> str:
        return secrets.token_hex(8)

    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        try:
            res = self._get(keys=[key], args=[self._tagv, self._candidate(), self.tag_ttl, *tags])
        except RedisError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc
        if res[0] == 1:
            return bytes(res[1]), None
        return None, tuple(t.decode() if isinstance(t, bytes) else str(t) for t in res[1:])

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        try:
            res = self._versions(args=[self._tagv, self._candidate(), self.tag_ttl, *tags])
        except RedisError as exc:
            raise BackendError(f"redis version capture failed: {exc}") from exc
        return tuple(t.decode() if isinstance(t, bytes) else str(t) for t in res)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        blob = _frame(tags, versions, payload)
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
            return bool(self.client.set(key, _frame((), (), payload), ex=int(ttl), nx=True))
        except RedisError as exc:
            raise BackendError(f"redis SET NX failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete(key)
        except RedisError as exc:
            raise BackendError(f"redis DEL failed: {exc}") from exc

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        base = self._candidate()
        try:
            pipe = self.client.pipeline(transaction=False)
            for i, tag in enumerate(tags):
                pipe.set(self._tagv + tag, f"{base}.i{i}", ex=self.tag_ttl)
            pipe.execute()
        except RedisError as exc:
            raise BackendError(f"redis invalidation failed: {exc}") from exc

    def clear(self) -> int:
        """Delete this prefix's keys with ``SCAN`` in batches (never ``KEYS``/``FLUSHDB``)."""
        pattern = _glob_escape(self.prefix) + ":*"
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
                1 for _ in self.client.scan_iter(match=_glob_escape(self.prefix) + ":*", count=1000)
            )
        except RedisError as exc:
            raise BackendError(f"redis INFO failed: {exc}") from exc
        return {
            "backend": self.name,
            "keys": keys,
            "memory_bytes": mem.get("used_memory"),
            "maxmemory": mem.get("maxmemory"),
            "maxmemory_policy": mem.get("maxmemory_policy"),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must never raise
            self.client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
