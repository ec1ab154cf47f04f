"""Redis backend: one round trip per hit, O(1) tag invalidation, no pickle.

Layout (``P`` is the key prefix):

* entries: the caller's key (``P:{entity}:...`` from :func:`get_cache_key`), a string
  ``"<n>\\n<tag_1>\\n...<tag_n>\\n<token_1>\\n...<token_n>\\n<payload>"``;
* tag tokens: ``P:~tagv:{tag}`` (``~`` is always escaped in generated keys, so an entry key
  can never collide with a token key), with a TTL longer than any entry's;
* locks: ``P:~lock:...`` via :meth:`add`.

A hit is one ``MGET`` of the entry and the current tokens of the requested tags (a single
atomic command, no script: about 17 us cheaper per hit than an ``EVALSHA``, measured by
``benchmarks/bench_core.py``). The client returns the payload only if the entry was stored
with exactly the requested tags and every stored token equals the current one. A miss
returns those current tokens, which the caller stamps on the value it then sets.

The ``_GET`` script stays the authoritative slow path, used when the MGET cannot decide:
a token is missing (the script creates it from a random candidate the client supplies),
the entry carries other tags than the caller asked about, or it is not in our format
(the script drops it). Standalone and Sentinel only; Cluster keeps the script on every
read (its keys are routed by shard group).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import secrets
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .base import BackendError, Lookup, token_prefix

__all__ = ["HAVE_REDIS", "ClusterRedisBackend", "RedisBackend", "connect"]

try:  # the ``redis`` extra is optional
    import redis as _redis
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError as _NoScriptError
    from redis.exceptions import RedisClusterException
    from redis.exceptions import ResponseError as _ResponseError
    from redis.retry import Retry

    RedisError: tuple[type[Exception], ...] = (_redis.RedisError, RedisClusterException)
    HAVE_REDIS = True
except ImportError:  # pragma: no cover - exercised by the missing-extra test via monkeypatch
    _redis = None  # type: ignore[assignment]
    RedisError = (OSError,)
    HAVE_REDIS = False

    class _ResponseError(Exception):  # type: ignore[no-redef]  # never raised without redis
        pass

    class _NoScriptError(_ResponseError):  # type: ignore[no-redef]
        pass


#: Bound of the per-backend cache of MGET plans (one per distinct tag list).
_PLANS_MAX = 4096

#: Cluster: how many hash-tagged shard groups entries are spread over (see ClusterRedisBackend).
DEFAULT_SHARD_GROUPS = 16

# KEYS[1] entry; ARGV[1] token-key prefix, ARGV[2] candidate token, ARGV[3] token TTL,
# ARGV[4..] tags to capture on a miss. A hit returns {1, payload, PTTL of the entry}.
_GET = """
local e = redis.call('GET', KEYS[1])
local pre = ARGV[1]
if e then
  -- A malformed entry (not written by us) is dropped and read as a miss, never an error.
  local ok = false
  local p = string.find(e, '\\n', 1, true)
  local n = p and tonumber(string.sub(e, 1, p - 1))
  local pos = p and p + 1
  if n and n >= 0 and n <= 64 and n == math.floor(n) then
    ok = true
    if n > 0 then
      local tk = {}
      for i = 1, n do
        local q = string.find(e, '\\n', pos, true)
        if not q then ok = false break end
        tk[i] = pre .. string.sub(e, pos, q - 1)
        pos = q + 1
      end
      if ok then
        local cur = redis.call('MGET', unpack(tk))
        for i = 1, n do
          local q = string.find(e, '\\n', pos, true)
          if not q or cur[i] ~= string.sub(e, pos, q - 1) then ok = false break end
          pos = q + 1
        end
      end
    end
  end
  if ok then return {1, string.sub(e, pos), redis.call('PTTL', KEYS[1])} end
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


# KEYS: the token keys of the tags; ARGV[1] token TTL, ARGV[2] the new token (the same for
# every tag of one call: a token only has to differ from that tag's earlier ones).
# One command however many tags a commit sends (a pipeline of SETs costs the client about
# 7 us per tag to pack and parse; 500 tags: 3.6 ms as a pipeline, ~0.6 ms here).
_INVALIDATE = """
local ttl, t = ARGV[1], ARGV[2]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], t, 'EX', ttl)
end
return #KEYS
"""


# KEYS[1] the lock; ARGV[1] the value its holder stored (framed): delete it only if it
# still holds that value (a holder that ran past the TTL never removes the next one's).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# Cluster variant: KEYS[1] is the shard group's hash tag, only there to route the call.
_VERSIONS_ROUTED = _VERSIONS


def connect(url: str, socket_timeout: float) -> Any:
    """Build a redis-py client for ``url`` with short timeouts and no silent retries.

    Retries would multiply the cost of an outage; the circuit breaker decides instead.
    ``redis+cluster://`` gives a :class:`redis.cluster.RedisCluster`, ``redis+sentinel://``
    the master client of :meth:`redis.sentinel.Sentinel.master_for`.
    """
    if not HAVE_REDIS:
        raise ImportError("redis is not installed: pip install flask-dataroom-cache[redis]")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "redis+cluster":
        return _connect_cluster(url, socket_timeout)
    if scheme == "redis+sentinel":
        return _connect_sentinel(url, socket_timeout)
    return _redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
    )


def parse_multi_host_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any], str]:
    """Split ``scheme://[user:pass@]h:p,h:p[/path][?query]`` into hosts, credentials, path.

    Returns ``(hosts, {"username": .., "password": ..}, path)``; ``config.py`` has already
    validated the shape. A host without a port gets 6379 (26379 for a sentinel URL).
    """
    scheme, _, rest = url.partition("://")
    default_port = 26379 if scheme.lower() == "redis+sentinel" else 6379
    rest = rest.split("?", 1)[0]
    netloc, slash, path = rest.partition("/")
    creds: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if sep:
            creds["password"] = unquote(password)
            if user:
                creds["username"] = unquote(user)
        elif user:
            creds["password"] = unquote(user)
    hosts: list[tuple[str, int]] = []
    for hostport in netloc.split(","):
        host, sep, port = hostport.strip().rpartition(":")
        if not sep:
            host, port = port, str(default_port)
        hosts.append((host.strip("[]"), int(port)))
    return hosts, creds, path if slash else ""


def url_options(url: str) -> dict[str, str]:
    """The query parameters of ``url`` (``?shard_groups=16&wait_replicas=1``)."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def _connect_cluster(url: str, socket_timeout: float) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    hosts, creds, _ = parse_multi_host_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts],  # type: ignore[no-untyped-call]
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        # One retry so a MOVED/ASK redirection after a resharding or failover is followed;
        # the breaker handles real outages.
        retry=Retry(NoBackoff(), 1),
        require_full_coverage=False,
        **creds,
    )


def _connect_sentinel(url: str, socket_timeout: float) -> Any:
    from redis.sentinel import Sentinel

    hosts, creds, path = parse_multi_host_url(url)
    parts = [p for p in path.split("/") if p]
    service = parts[0]
    db = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        socket_timeout=socket_timeout,
        sentinel_kwargs={
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        },
    )
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        service,
        db=db,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
        **creds,
    )


def _bulk(data: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


_EXECUTE_COMMAND = _redis.Redis.execute_command if _redis is not None else None


def _takes_no_arguments(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty
        or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for p in params
    )


def _direct_encoding(client: Any) -> tuple[str, str] | None:
    """``(encoding, errors)`` when ``client`` is a plain :class:`redis.Redis` whose hit
    reads may skip ``execute_command`` (see :meth:`RedisBackend._mget`), else ``None``.

    Only a client that would not behave differently there: no subclass (fakeredis, other
    wrappers), no single-connection client, no client-side cache, no retries (``connect``
    builds clients without: the breaker decides), bytes replies.
    """
    if _redis is None or type(client) is not _redis.Redis:
        return None
    if getattr(client, "connection", None) is not None:
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return None
    if not hasattr(pool, "get_connection") or not hasattr(pool, "release"):
        return None
    if not _takes_no_arguments(pool.get_connection):  # redis-py < 5.3 wants a command name
        return None
    retry = client.get_retry()
    if retry is None or retry.get_retries() != 0:
        return None
    kwargs = getattr(pool, "connection_kwargs", {})
    if kwargs.get("decode_responses") or kwargs.get("protocol") not in (None, 2, "2"):
        return None
    return kwargs.get("encoding", "utf-8"), kwargs.get("encoding_errors", "strict")


_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _remaining(pttl: Any) -> float | None:
    """Seconds left from a ``PTTL`` reply: ``inf`` without expiry, ``None`` if unknown."""
    if not isinstance(pttl, int):
        return None
    if pttl == -1:
        return float("inf")
    return pttl / 1000.0 if pttl >= 0 else None


def _frame(tags: Sequence[str], versions: Sequence[str], payload: bytes) -> bytes:
    head = "\n".join([str(len(tags)), *tags, *versions, ""])
    return head.encode("utf-8") + payload


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
        self._tagv = f"{prefix}:~tagv:"
        self._nonce = secrets.token_hex(8)
        self._counter = itertools.count()
        #: tags tuple -> (expected entry header, token keys, packed MGET tail): the MGET hit
        #: path's inputs.
        self._plans: dict[tuple[str, ...], tuple[bytes, list[str], bytes]] = {}
        #: The encoding redis-py applies to command arguments (``None``: no direct path).
        self._direct = _direct_encoding(client)
        self._get = client.register_script(_GET)
        self._set = client.register_script(_SET)
        self._versions = client.register_script(_VERSIONS)
        self._invalidate = client.register_script(_INVALIDATE)
        self._release = client.register_script(_RELEASE)
        self._invalidate_sha = _bulk(self._invalidate.sha.encode("ascii"))

    @classmethod
    def from_url(cls, url: str, prefix: str, tag_ttl: int, socket_timeout: float) -> RedisBackend:
        """The backend for ``url``: standalone, Sentinel-managed master, or Cluster.

        URL options: ``?shard_groups=N`` (Cluster, default 16), ``?wait_replicas=N`` and
        ``?wait_timeout_ms=T`` (Sentinel defaults 1 and 100; standalone 0).
        """
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

    def _plan(self, tags: Sequence[str]) -> tuple[bytes, list[str], bytes]:
        key = tuple(tags)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            header = "\n".join([str(len(key)), *key, ""]).encode("utf-8")
            token_keys = [self._tagv + t for t in key]
            tail = b""
            if self._direct is not None:
                enc, errors = self._direct
                tail = b"".join(_bulk(k.encode(enc, errors)) for k in token_keys)
            plan = self._plans[key] = (header, token_keys, tail)
        return plan

    def _plain(self) -> bool:
        """True when commands may be hand-packed and sent on a pooled connection.

        Only for the clients :func:`_direct_encoding` accepts, and only while nobody wraps
        ``execute_command`` (tracing, a test's counter): then everything goes through it.
        """
        client = self.client
        return (
            self._direct is not None
            and type(client).execute_command is _EXECUTE_COMMAND
            and "execute_command" not in client.__dict__
        )

    def _send(self, command: bytes, what: str, replies: int = 1) -> Any:
        """Send one pre-packed RESP command on a pooled connection and read its reply.

        redis-py's generic ``execute_command`` (argument packing, retry wrapper,
        callbacks, observability hooks) costs more client time than the round trip
        itself on loopback. An error reply (``ResponseError``) is raised as is: the reply
        was read whole, the connection is clean. Any other error disconnects the
        connection (its state is unknown) and becomes a :class:`BackendError`; the
        connection always goes back to the pool. ``replies > 1``: ``command`` holds that
        many pipelined commands; their replies are returned as a list (all are read before
        an error reply is raised).
        """
        pool = self.client.connection_pool
        try:
            conn = pool.get_connection()  # releases the connection itself if it fails
        except Exception as exc:
            raise BackendError(f"redis {what} failed: {exc}") from exc
        try:
            # a list: send_packed_command iterates over its argument's chunks
            conn.send_packed_command([command])
            if replies == 1:
                return conn.read_response()
            out: list[Any] = []
            error: _ResponseError | None = None
            for _ in range(replies):
                try:
                    out.append(conn.read_response())
                except _ResponseError as exc:
                    error = error or exc
                    out.append(None)
            if error is not None:
                raise error
            return out
        except _ResponseError:
            raise
        except BaseException as exc:
            conn.disconnect()
            if isinstance(exc, Exception):
                raise BackendError(f"redis {what} failed: {exc}") from exc
            raise
        finally:
            pool.release(conn)

    def _mget(self, key: str, token_keys: list[str], tail: bytes) -> Any:
        """``MGET key *token_keys`` in one round trip, hand-packed (see :meth:`_send`) from
        the plan's pre-packed token keys when the client allows it."""
        if not self._plain():
            try:
                # execute_command, not mget(): skips redis-py's argument juggling.
                return self.client.execute_command("MGET", key, *token_keys)
            except RedisError as exc:
                raise BackendError(f"redis GET failed: {exc}") from exc
        enc, errors = self._direct  # type: ignore[misc]
        command = b"*%d\r\n$4\r\nMGET\r\n%b%b" % (
            len(token_keys) + 2,
            _bulk(key.encode(enc, errors)),
            tail,
        )
        try:
            return self._send(command, "GET")
        except _ResponseError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc

    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        header, token_keys, tail = self._plan(tags)
        return self._decide(key, tags, header, self._mget(key, token_keys, tail), None)[0]

    def get_expiring(self, key: str, tags: Sequence[str]) -> tuple[Lookup, float | None]:
        """``get`` plus, for a hit, the entry's remaining lifetime in seconds (``inf``: no
        expiry; ``None``: unknown, e.g. the key expired meanwhile), in the same single round
        trip: ``MULTI MGET PTTL EXEC`` sent as one packet. Used by the near cache to bound
        its copy by the entry's own expiry."""
        header, token_keys, tail = self._plan(tags)
        res, pttl = self._mget_pttl(key, token_keys, tail)
        return self._decide(key, tags, header, res, pttl)

    def _decide(
        self, key: str, tags: Sequence[str], header: bytes, res: Any, pttl: Any
    ) -> tuple[Lookup, float | None]:
        entry, current = res[0], res[1:]
        if entry is None or entry.startswith(header):
            if None not in current:
                if entry is not None:
                    parts = entry[len(header) :].split(b"\n", len(current))
                    if parts[:-1] == current:
                        return (parts[-1], None), _remaining(pttl)
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
            return (bytes(res[1]), None), _remaining(res[2] if len(res) > 2 else None)
        return (
            None,
            tuple(t.decode() if isinstance(t, bytes) else str(t) for t in res[1:]),
        ), None

    def _mget_pttl(self, key: str, token_keys: list[str], tail: bytes) -> tuple[Any, Any]:
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
        bkey = _bulk(key.encode(enc, errors))
        command = b"%b*%d\r\n$4\r\nMGET\r\n%b%b*2\r\n$4\r\nPTTL\r\n%b%b" % (
            _MULTI,
            len(token_keys) + 2,
            bkey,
            tail,
            bkey,
            _EXEC,
        )
        try:
            replies = self._send(command, "GET", replies=4)
        except _ResponseError as exc:
            raise BackendError(f"redis GET failed: {exc}") from exc
        done = replies[-1]
        if not isinstance(done, list) or len(done) != 2:  # EXEC aborted: not expected
            raise BackendError(f"redis GET failed: unexpected EXEC reply {done!r}")
        return done[0], done[1]

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

    def release(self, key: str, payload: bytes) -> bool:
        try:
            return bool(self._release(keys=[key], args=[_frame((), (), payload)]))
        except RedisError as exc:
            raise BackendError(f"redis lock release failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete(key)
        except RedisError as exc:
            raise BackendError(f"redis DEL failed: {exc}") from exc

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        token = self._candidate()
        keys = [self._tagv + t for t in tags]
        if not self.wait_replicas and self._plain():
            # The commit path waits for this reply (promise 1), so it is hand-packed like
            # the hit's MGET: about 40 us less client time per commit than Script.__call__.
            enc, errors = self._direct  # type: ignore[misc]
            command = b"*%d\r\n$7\r\nEVALSHA\r\n%b%b%b%b%b" % (
                len(keys) + 5,
                self._invalidate_sha,
                _bulk(b"%d" % len(keys)),
                b"".join([_bulk(k.encode(enc, errors)) for k in keys]),
                _bulk(b"%d" % self.tag_ttl),
                _bulk(token.encode()),
            )
            try:
                self._send(command, "invalidation")
                return
            except _NoScriptError:
                pass  # script cache flushed or a new server: Script() below loads it
            except _ResponseError as exc:
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
            "replica_lag_events": self.replica_lag_events,
            "memory_bytes": mem.get("used_memory"),
            "maxmemory": mem.get("maxmemory"),
            "maxmemory_policy": mem.get("maxmemory_policy"),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must never raise
            self.client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class ClusterRedisBackend(RedisBackend):
    """The same versioned-tag scheme on Redis Cluster, with no cross-slot operation on reads.

    Layout: ``shard_groups`` (``N``) hash tags ``{P:s0}`` ... ``{P:sN-1}``. An entry with
    key ``K`` lives in group ``g = crc32(K) % N`` as ``{P:sg}K``; every tag has one token
    copy per group, ``{P:sg}:~tagv:{tag}``. An entry and the tokens it is checked against
    therefore share a slot, and the hit stays one ``EVALSHA`` on one node. Entries spread
    over the cluster (N groups hash to slots owned by the different masters).

    * Invalidation writes the same fresh token to all ``N`` copies of each tag (one
      pipeline, one round trip per master): O(N) per tag, still O(1) in entries.
    * A token missing in a group (never set, expired, evicted) is created there from a
      fresh random candidate and then copied with ``SET NX`` to the groups that lack it,
      so the copies agree and a value captured in one group (:meth:`versions`, which has
      no key) can be stored in another. A copy that disagrees only makes ``set`` refuse
      (a miss), never a stale hit: tokens are random, and invalidation overwrites every
      copy unconditionally.
    * ``clear`` and ``info`` SCAN every master.

    The client is built lazily (building a ``RedisCluster`` contacts the cluster), so an
    unreachable cluster at start is an ordinary :class:`BackendError` for the breaker.
    """

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
                    self._get = made.register_script(_GET)
                    self._set = made.register_script(_SET)
                    self._versions = made.register_script(_VERSIONS_ROUTED)
                    self._release = made.register_script(_RELEASE)
                    self._client = made
                client = self._client
        return client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def _group(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8")) % self.shard_groups

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
            client = self.client
            del client
            res = self._get(
                keys=[self._groups[g] + key],
                args=[self._group_tagv[g], cand, self.tag_ttl, *tags],
            )
            if res[0] == 1:
                return (bytes(res[1]), None), _remaining(res[2] if len(res) > 2 else None)
            tokens = tuple(t.decode() if isinstance(t, bytes) else str(t) for t in res[1:])
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
            tokens = tuple(t.decode() if isinstance(t, bytes) else str(t) for t in res)
            self._propagate(g, cand, tags, tokens)
        except RedisError as exc:
            raise BackendError(f"redis version capture failed: {exc}") from exc
        return tokens

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        g = self._group(key)
        blob = _frame(tags, versions, payload)
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
        full = self._groups[self._group(key)] + key
        try:
            return bool(self.client.set(full, _frame((), (), payload), ex=int(ttl), nx=True))
        except RedisError as exc:
            raise BackendError(f"redis SET NX failed: {exc}") from exc

    def release(self, key: str, payload: bytes) -> bool:
        full = self._groups[self._group(key)] + key
        try:
            client = self.client  # registers the scripts on first use
            del client
            return bool(self._release(keys=[full], args=[_frame((), (), payload)]))
        except RedisError as exc:
            raise BackendError(f"redis lock release failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete(self._groups[self._group(key)] + key)
        except RedisError as exc:
            raise BackendError(f"redis DEL failed: {exc}") from exc

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
        pattern = "{" + _glob_escape(self.prefix) + ":s*"
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

    def ping(self) -> float:
        start = time.perf_counter()
        try:
            self.client.ping()
        except RedisError as exc:
            raise BackendError(f"redis PING failed: {exc}") from exc
        return time.perf_counter() - start

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
