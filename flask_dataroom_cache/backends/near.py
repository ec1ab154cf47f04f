"""A per-process near cache (L1) in front of Redis that keeps promise 1 across processes.

``NearCache`` wraps a Redis backend (standalone, Sentinel or Cluster). Valid Redis hits
(and successful sets) are copied into a small in-process LRU; an L1 hit costs a dict
lookup and no network round trip.

How L1 stays fresh (DESIGN.md promise 1: *a read that starts after another process's
commit returned is never served data older than that commit*):

1. **Invalidate = bump tokens, then broadcast, then wait.** ``invalidate`` first gives
   the tags new tokens in Redis (as without L1), drops matching local entries, then
   ``PUBLISH``es the tags on ``{prefix}:~l1`` and waits until every process that could
   still serve the old value has *acknowledged* (its subscriber thread drops the matching
   entries, then publishes an ack carrying its id on the origin's reply channel). Only
   then does ``invalidate`` (and so the after-commit hook, and so ``commit()``) return.
   "Every process" is the union of two sets, both returned by the one script that
   publishes (one round trip): the subscribers ``PUBLISH`` counted, and the **peer
   registry** (below). ``PUBLISH`` alone is not enough: a process whose subscription
   Redis has just dropped (output-buffer limit, ``CLIENT KILL``, a network cut) while its
   subscriber thread was stalled is not counted, yet it has not noticed the drop and its
   lease still runs.
2. **Leases bound the wait.** A subscriber that does not ack (frozen, overloaded,
   dropped) must not block commits for long. Each subscriber sends ``PING <send time>`` on
   its subscription connection every ``ping_interval``; Redis answers in order with the
   messages, so when the pong for send time ``s`` arrives, every message published before
   ``s`` has been received and handled. A process serves from L1 only while its latest
   such ``s`` is less than ``lease`` old (and its registration holds, below). If acks are
   missing, the invalidating process waits until ``lease`` (plus a margin) has passed
   since its ``PUBLISH`` returned: a subscriber that has not handled the message by then
   has no pong newer than the message (a dropped one gets no pong at all), so its lease
   has expired and it reads Redis instead. Worst case: one ``invalidate`` waits ``lease``.
   All processes of a prefix must use the same ``lease``.

   **Peer registry.** ``{P:~l1}:peers`` for prefix ``P`` (a sorted set; the braces are
   a Cluster hash tag putting it in the channel's slot; outside the ``P:*`` keys that
   ``clear`` deletes): member = a process's id,
   score = when its registration expires, on *Redis's* clock (``TIME`` in the scripts, so
   hosts' clocks never meet). The subscriber thread re-registers every ``lease / 2`` for
   ``2 * lease`` (first right after subscribing, before its first ping), trimming expired
   entries; the key expires when every process is gone. A
   process caps its lease at the end of its own registration (measured from before the
   registering call, minus 5% + 2 ms), so an entry the publish script finds expired
   belongs to a process whose lease had already ended: ignored. Every live entry is
   waited for (ack or lease). A process leaves the registry on ``close`` and on a normal
   exit without it (an ``atexit`` hook, and a ``multiprocessing`` finalizer with
   ``exitpriority=0`` for ``multiprocessing`` children, which end with ``os._exit``; both
   hold a weak reference, stop the subscriber, turn L1 off, then remove the entry this
   process registered). A process that dies without its exit hooks (killed, crashed)
   slows invalidations (one lease each) only until its registration expires, at most
   ``2 * lease``. If the registry cannot be read (the publish script fails), the
   invalidation is sent with a plain ``PUBLISH`` and waits out the whole lease.

   **A lost registry.** The registry can vanish while processes still hold valid leases
   (a Redis restart without persistence, ``FLUSHALL``/``FLUSHDB``, eviction of the key):
   it then lists only the processes that registered since, and an invalidation would not
   wait for a process whose subscriber thread is stalled. So the registry has a "born at"
   marker, ``{P:~l1}:born`` (same hash slot): the register script sets it to Redis's
   ``TIME`` (ms) whenever it finds the registry or the marker missing, and gives both keys
   the same expiry with each registration (the marker never expires while the registry
   lives). The publish script also returns the registry's age (``now - born``; unknown if
   either key is missing). While the age is unknown or at most ``2 * lease``, a process
   registered before the loss may be missing, so the invalidation treats the peers as
   unknown and waits out the whole lease; afterwards every registration older than the
   registry has expired (with it, the lease it capped), so every live lease belongs to a
   listed process. Cost: during the first ``2 * lease`` after a restart, a flush or
   the registry's first creation (also after the last process left), each invalidation
   waits one lease; ``registry_young_waits`` (``l1_registry_young_waits`` in ``info()``)
   counts them.
3. **No stale fill.** A fill (copying a Redis hit into L1) is kept only if no
   invalidation was handled by this process between the start of the Redis read and the
   insert (a per-process sequence number) and the subscription was healthy when the read
   started.
4. **Subscription trouble = L1 off.** If the subscription connection fails, L1 is
   cleared and bypassed (reads go to Redis, still one round trip) until the subscription
   is back, the process has re-registered and a pong has renewed the lease. Until the
   process notices (its thread may be stalled), points 1 and 2 keep it safe: it stays in
   the registry, so invalidators wait out its lease.
5. **Fork = a new process, subscribed lazily.** A forked child gets a new id and an
   empty L1 and starts no subscriber: it starts it on its first use of L1 (a ``get`` or
   ``set`` that would use L1, or an invalidation, which then waits up to one lease for
   the subscription to be confirmed so that acks reach it). A helper that never touches
   the cache never subscribes nor registers, so it never makes invalidations wait.

**Cluster.** Every process subscribes on the node owning the channel's slot
(``channel_client``), and the registry and publish scripts, whose key is in that slot,
run through the ``RedisCluster`` client (``script_client``): routed by key, ``MOVED`` and
``ASK`` followed. After the slot moves (resharding), the next registration follows the
redirection, and the subscriber, seeing that ``channel_client()`` now returns another
node's connection, clears L1 and resubscribes there (``channel_client`` must return the
same object while the node is unchanged). A process still subscribed on the old node
meanwhile (at most ``lease / 2``) gets the messages over the cluster bus, unordered with
its pings there, and is waited for through the registry.

Limits: the registry relies on Redis's clock advancing at the rate of the processes'
monotonic clocks over ``2 * lease`` (5% margin): a forward step of the Redis host's clock
larger than the margin could make a live registration look expired. A restart that
reloads recent data (RDB/AOF) or a failover to a replica keeps an old marker but may lose
the last registrations: a process whose latest registrations were lost may hold a lease
up to that loss (at most about ``lease / 2`` plus the data lost) longer than its restored
entry, so a stalled process could serve a stale copy in that window. During a Cluster slot
move, a cluster-bus delay longer than the lease could let a process still subscribed on
the old node serve a stale copy. A process that forks without ``multiprocessing`` and
ends its child with ``os._exit`` after the child used L1 leaves that child's entry until
it expires. Acks now carry the acking process's id (``"<msg id> <origin>"``); a process
running an older version does not recognise them, so during a rolling upgrade its
invalidations wait one lease each.

``delete`` and ``clear`` are broadcast the same way. Invalidations that cannot reach
Redis raise :class:`BackendError`, so :class:`ResilientBackend` (which wraps this class)
queues and re-delivers them, and re-delivery broadcasts too.

Payloads are kept as bytes and decoded per hit, so a caller mutating a returned value can
never change what the next reader gets. L1 is bounded by ``max_entries`` and evicts in fill
order (a hit does not take a lock to reorder: the hit path stays a dict lookup).

An L1 copy never outlives the Redis entry it copies (so an entry's own ``timeout``, and the
stale-while-revalidate windows built on it, mean the same with and without L1): a copy made
by ``set`` expires ``min(ttl, self.ttl)`` after the ``SET`` was sent; a copy made from a
Redis hit expires at ``start + min(PTTL, self.ttl)``, where ``start`` is taken before the
read and ``PTTL`` is the entry's remaining lifetime, fetched atomically with the hit in the
same round trip (``MULTI MGET PTTL EXEC`` in one packet; on Cluster the read script returns
it). A hit whose remaining lifetime is unknown is not copied. With L1 off (lease expired)
reads are the plain one-``MGET`` hit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import multiprocessing.util
import os
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from ..tags import EPOCH_TAG
from .base import Backend, BackendError, Lookup

__all__ = ["NearCache"]

log = logging.getLogger("flask_dataroom_cache")

_Entry = tuple[bytes, tuple[str, ...], float]

# The peer registry, a sorted set: member = a process's origin id, score = when its
# registration expires (ms, Redis's clock). KEYS[1] registry; KEYS[2] its "born at" marker
# (ms, Redis's clock: when this registry was (re)created); ARGV[1] origin; ARGV[2] ms.
# A registry found missing (never made, or lost: restart without persistence, FLUSHALL,
# eviction) or a marker found missing restarts the marker: peers registered before may be
# missing. Both keys get the same expiry with each registration, so the marker never
# expires while the registry lives.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2]) + 1000
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""

# PUBLISH, then the peers whose registration has not expired and the registry's age (ms
# since its marker; -1 if the registry or its marker is missing), one atomic script, one
# round trip. KEYS[1] registry; KEYS[2] marker; ARGV[1] channel; ARGV[2] message.
_PUBLISH = """
local n = redis.call('PUBLISH', ARGV[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local age = -1
local born = redis.call('GET', KEYS[2])
if born and redis.call('EXISTS', KEYS[1]) == 1 then
  age = now - tonumber(born)
end
return {n, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf'), age}
"""


def _peers_key(channel: str) -> str:
    """The registry's key: in the channel's hash slot (on a Cluster both are used on the
    node owning the channel's slot), and outside the ``{prefix}:*`` pattern that ``clear``
    deletes (a registry wiped by ``clear`` would let the next invalidation skip a peer)."""
    key = "{" + channel + "}:peers"
    with contextlib.suppress(Exception):  # redis-py missing: no cluster either
        from redis.crc import key_slot

        if key_slot(key.encode()) != key_slot(channel.encode()):
            key = channel + ":peers"  # the channel has a hash tag of its own: keep it first
    return key


class _ChannelMoved(Exception):
    """The channel's hash slot has moved to another Cluster node: resubscribe there."""


class _Pending:
    """Acks received for one broadcast: how many, and from which processes."""

    __slots__ = ("count", "origins")

    def __init__(self) -> None:
        self.count = 0
        self.origins: set[str] = set()


class NearCache:
    """L1 in front of a Redis backend; see the module docstring for the freshness rules."""

    def __init__(
        self,
        inner: Backend,
        channel_client: Callable[[], Any],
        *,
        prefix: str,
        max_entries: int,
        ttl: float = 300.0,
        lease: float = 0.5,
        ping_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        script_client: Callable[[], Any] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if not 0 < ping_interval < lease:
            raise ValueError("need 0 < ping_interval < lease")
        self.inner = inner
        self.name = inner.name
        self.max_entries = max_entries
        self.ttl = ttl
        self.lease = lease
        self.ping_interval = ping_interval
        self._clock = clock
        #: The connection the subscriber listens on (and acks are published on): on a
        #: Cluster, the node owning the channel's slot, resolved again after a reshard.
        self._channel_client = channel_client
        #: The client the registry and publish scripts run on: on a Cluster, the
        #: ``RedisCluster`` client itself (routes by key, follows MOVED/ASK).
        self._script_client = script_client or channel_client
        self.channel = f"{prefix}:~l1"
        self.peers_key = _peers_key(self.channel)
        #: The registry's "born at" marker: same hash slot (same braces), same lifetime.
        self.born_key = self.peers_key[: -len("peers")] + "born"
        #: Registration period and lifetime: a live process re-registers every lease/2;
        #: an entry not refreshed for 2 leases (a dead process) is ignored, then trimmed.
        self._register_every = lease / 2
        self._register_ttl = 2 * lease
        self._scripts: tuple[Any, Any, Any] | None = None  # (client, register, publish)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}
        self._seq = 0
        self._healthy = False
        self._lease_from = float("-inf")
        #: L1 may serve until then: min(newest pong's send time + lease, registration end).
        self._lease_until = float("-inf")
        #: Local time until which our registration in the peer registry surely holds.
        self._registered_until = float("-inf")
        #: The process (pid) that registered ``origin``, so only it removes the entry.
        self._registered_pid: int | None = None
        #: ``get`` + the hit's remaining lifetime, one round trip (RedisBackend and Cluster).
        self._get_expiring: Callable[..., tuple[Lookup, float | None]] | None = getattr(
            inner, "get_expiring", None
        )
        self._acks: dict[str, _Pending] = {}
        self._ack_cond = threading.Condition()
        self._closed = threading.Event()
        #: Set once the subscription (both channels) is confirmed: acks can be received.
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = float("-inf")
        self._finalizer: Any = None
        #: Counters for ``info()`` and the tests.
        self.l1_hits = 0
        self.ack_timeouts = 0
        self.subscription_drops = 0
        self.registry_errors = 0
        self.registry_young_waits = 0
        ref = weakref.ref(self)

        def _leave_at_exit() -> None:  # a weak reference: the hook never keeps us alive
            obj = ref()
            if obj is not None:
                obj._leave()

        def _after_fork() -> None:  # a forked child gets its own id, thread and L1...
            obj = ref()
            if obj is not None and not obj._closed.is_set():
                obj._forked()

        self._exit_hook = _leave_at_exit
        # A normal exit (gunicorn max_requests, a deploy) leaves the peer registry at
        # once: a registration left behind would make every invalidation wait one lease.
        atexit.register(_leave_at_exit)
        self._new_identity()
        self._start()
        os.register_at_fork(after_in_child=_after_fork)

    # -- subscriber ---------------------------------------------------------------------
    def _new_identity(self) -> None:
        self.origin = secrets.token_hex(8)
        self.reply_channel = f"{self.channel}:ack:{self.origin}"
        with self._lock:
            self._drop_all()
            self._healthy = False
            self._lease_from = self._lease_until = self._registered_until = float("-inf")

    def _start(self) -> None:
        self._started_at = self._clock()
        self._thread = threading.Thread(
            target=self._run, name=f"dataroom-cache-l1-{self.origin}", daemon=True
        )
        self._thread.start()
        # multiprocessing children end with os._exit (no atexit): their finalizers with
        # an exit priority run first. Registered here, in the process that subscribes
        # (a forked child's registry of finalizers is emptied when it starts).
        self._finalizer = multiprocessing.util.Finalize(None, self._exit_hook, exitpriority=0)

    def _forked(self) -> None:
        """In a forked child: new id, empty L1, no subscriber until L1 is first used.

        A child that never uses L1 (a multiprocessing helper, a worker that only writes)
        never subscribes nor registers, so it never makes invalidations wait for it."""
        # Locks may have been held by threads that do not exist in the child.
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._ack_cond = threading.Condition()
        self._acks = {}
        self._closed = threading.Event()
        self._listening = threading.Event()
        self._thread = None
        self._finalizer = None
        self._registered_pid = None
        self._started_at = float("-inf")
        self._new_identity()

    def _wake(self) -> None:
        """Start the subscriber if this (forked) process has none yet: its first L1 use."""
        with self._start_lock:
            if self._thread is None and not self._closed.is_set():
                self._start()

    def _run(self) -> None:
        backoff = 0.05
        while not self._closed.is_set():
            pubsub: Any = None
            try:
                client = self._channel_client()
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel, self.reply_channel)
                last_ping = last_register = float("-inf")
                while not self._closed.is_set():
                    now = self._clock()
                    if now - last_register >= self._register_every:
                        # Before the ping: a pong can only extend the lease up to the
                        # registration's end (see _handle).
                        self._register(now)
                        last_register = now
                        if self._channel_client() is not client:
                            # The script followed a MOVED: the channel's slot now lives
                            # on another Cluster node; subscribe there (PUBLISH counts
                            # only the subscribers of the node it runs on).
                            raise _ChannelMoved("near cache channel moved to another node")
                    if now - last_ping >= self.ping_interval:
                        pubsub.ping(repr(now))
                        last_ping = now
                    message = pubsub.get_message(timeout=self.ping_interval / 2)
                    if message is not None:
                        self._handle(message, client)
                        backoff = 0.05
                    elif now - self._lease_from > 4 * self.lease and self._healthy:
                        raise BackendError("no pong from Redis: subscription stalled")
            except _ChannelMoved as exc:  # L1 off (messages may be missed), resubscribe now
                self._down(exc, moved=True)
            except Exception as exc:  # any failure: L1 off until we are back
                self._down(exc)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def _scripts_for(self, client: Any) -> tuple[Any, Any]:
        scripts = self._scripts
        if scripts is None or scripts[0] is not client:
            scripts = self._scripts = (
                client,
                client.register_script(_REGISTER),
                client.register_script(_PUBLISH),
            )
        return scripts[1], scripts[2]

    def _register(self, sent: float) -> None:
        """(Re-)register this process in the peer registry until ``2 * lease`` from now.

        Redis stamps the entry with its own clock when it runs the script, after ``sent``:
        so the entry surely lasts until ``sent + ttl`` here (5% + 2 ms for clock-rate
        drift and the ms rounding). On a Cluster the script goes through the cluster
        client, which routes it by key and follows MOVED/ASK after a reshard."""
        client = self._script_client()
        register, _ = self._scripts_for(client)
        self._registered_pid = os.getpid()  # before: the reply may be lost, not the entry
        register(
            keys=[self.peers_key, self.born_key],
            args=[self.origin, int(self._register_ttl * 1000)],
            client=client,
        )
        with self._lock:
            self._registered_until = sent + self._register_ttl * 0.95 - 0.002

    def _down(self, exc: BaseException, *, moved: bool = False) -> None:
        self._listening.clear()
        with self._lock:
            was = self._healthy
            self._healthy = False
            self._lease_from = self._lease_until = self._registered_until = float("-inf")
            self._drop_all()
        if was and not self._closed.is_set():
            self.subscription_drops += 1
            if moved:
                log.info("%s; L1 bypassed until resubscribed", exc)
            else:
                log.warning(
                    "near cache subscription lost (%s); L1 bypassed until it is back", exc
                )

    def _handle(self, message: dict[str, Any], client: Any) -> None:
        kind = message.get("type")
        data: Any = message.get("data")
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if kind == "pong":
            with contextlib.suppress(TypeError, ValueError):
                sent = float(data)
                with self._lock:
                    if sent > self._lease_from and not self._closed.is_set():
                        self._lease_from = sent
                        # Invalidators wait for our ack only while our registration
                        # holds, so the lease must not outlast it.
                        self._lease_until = min(sent + self.lease, self._registered_until)
                    self._healthy = True
            return
        if kind not in ("message", "subscribe"):
            return
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind == "subscribe":  # confirmed in order: the reply channel's comes last
            if channel == self.reply_channel:
                self._listening.set()
            return
        if channel == self.reply_channel:
            msg_id, _, who = str(data).partition(" ")
            with self._ack_cond:
                pending = self._acks.get(msg_id)
                if pending is not None:
                    pending.count += 1
                    if who:
                        pending.origins.add(who)
                    self._ack_cond.notify_all()
            return
        try:
            body = json.loads(data)
            origin, msg_id = body["o"], body["m"]
        except (TypeError, ValueError, KeyError):
            return  # not ours
        if origin != self.origin:  # our own change was applied before it was published
            self._apply(body.get("t", ()), body.get("k", ()), bool(body.get("c")))
            client.publish(f"{self.channel}:ack:{origin}", f"{msg_id} {self.origin}")
        else:
            with self._ack_cond:
                pending = self._acks.get(msg_id)
                if pending is not None:
                    pending.count += 1
                    pending.origins.add(self.origin)
                    self._ack_cond.notify_all()

    # -- local L1 -----------------------------------------------------------------------
    def _drop_all(self) -> None:
        self._seq += 1
        self._entries.clear()
        self._by_tag.clear()

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for tag in entry[1]:
                keys = self._by_tag.get(tag)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_tag[tag]

    def _apply(self, tags: Sequence[str], keys: Sequence[str], clear: bool) -> None:
        with self._lock:
            self._seq += 1
            if clear or EPOCH_TAG in tags:
                self._drop_all()
                return
            for tag in tags:
                for key in list(self._by_tag.get(tag, ())):
                    self._remove(key)
            for key in keys:
                self._remove(key)

    def _fill(
        self, key: str, payload: bytes, tags: tuple[str, ...], seq: int, expires: float
    ) -> None:
        with self._lock:
            if seq != self._seq or not self._healthy:
                return  # an invalidation was handled meanwhile: the copy may be stale
            self._remove(key)
            self._entries[key] = (payload, tags, expires)
            for tag in tags:
                self._by_tag.setdefault(tag, set()).add(key)
            while len(self._entries) > self.max_entries:
                self._remove(next(iter(self._entries)))

    def _usable(self) -> bool:
        return self._healthy and self._clock() < self._lease_until

    @property
    def l1_active(self) -> bool:
        """True while L1 may serve (subscription healthy and lease fresh)."""
        return self._usable()

    # -- broadcast ----------------------------------------------------------------------
    def _broadcast(
        self, tags: Sequence[str] = (), keys: Sequence[str] = (), clear: bool = False
    ) -> None:
        msg_id = secrets.token_hex(8)
        body = json.dumps(
            {"o": self.origin, "m": msg_id, "t": list(tags), "k": list(keys), "c": int(clear)}
        )
        if not self._listening.is_set():
            # A forked child's first invalidation starts its subscriber; right after a
            # start, give the subscription up to a lease to be confirmed, else the acks
            # sent to us would be lost and we would wait out the lease anyway.
            if self._thread is None:
                self._wake()
            left = self._started_at + self.lease - self._clock()
            if left > 0:
                self._listening.wait(left)
        pending = _Pending()
        with self._ack_cond:
            self._acks[msg_id] = pending
        try:
            peers: set[str] | None
            try:
                client = self._script_client()
                _, publish = self._scripts_for(client)
                res = publish(
                    keys=[self.peers_key, self.born_key],
                    args=[self.channel, body],
                    client=client,
                )
                receivers = int(res[0])
                peers = {p.decode() if isinstance(p, bytes) else str(p) for p in res[1]}
                age = int(res[2])
                if age < 0 or age <= int(self._register_ttl * 1000):
                    # The registry is missing or younger than a registration: it was
                    # lost (restart without persistence, FLUSHALL, eviction) and peers
                    # registered before, whose leases may still run, may be missing.
                    peers = None
                    self.registry_young_waits += 1
            except Exception as script_exc:
                # The registry cannot be read: a plain PUBLISH, and then wait out the
                # lease whatever the acks (a registered peer may not be counted).
                try:
                    receivers = int(self._channel_client().publish(self.channel, body))
                except Exception as exc:
                    raise BackendError(f"near cache publish failed: {exc}") from exc
                peers = None
                self.registry_errors += 1
                log.warning(
                    "near cache: peer registry unreadable (%s); invalidation published, "
                    "waiting out the lease",
                    script_exc,
                )
            published = self._clock()
            # Past this point every subscriber that has not handled the message has an
            # expired lease (see the module docstring); 5% + 2 ms for clock-rate drift.
            deadline = published + self.lease * 1.05 + 0.002
            if peers is None:
                left = deadline - self._clock()
                while left > 0:
                    time.sleep(left)
                    left = deadline - self._clock()
                return
            peers.discard(self.origin)  # our own L1 was cleaned before the publish
            with self._ack_cond:
                # Every receiver PUBLISH counted, and every registered peer: a peer whose
                # subscription Redis dropped is not counted by PUBLISH, yet its lease may
                # still be running.
                while pending.count < receivers or not peers <= pending.origins:
                    left = deadline - self._clock()
                    if left <= 0:
                        self.ack_timeouts += 1
                        log.info(
                            "near cache: %d of %d subscribers and %d of %d registered "
                            "processes did not ack an invalidation within the lease; "
                            "their L1 is off until they catch up",
                            max(receivers - pending.count, 0),
                            receivers,
                            len(peers - pending.origins),
                            len(peers),
                        )
                        break
                    self._ack_cond.wait(left)
        finally:
            with self._ack_cond:
                self._acks.pop(msg_id, None)

    # -- protocol -----------------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        entry = self._entries.get(key)
        if entry is not None and self._healthy:
            now = self._clock()
            if now < self._lease_until and entry[2] > now and entry[1] == tuple(tags):
                self.l1_hits += 1
                return entry[0], None
        seq = self._seq
        start = self._clock()
        if not (self._healthy and start < self._lease_until) or not self._get_expiring:
            if self._thread is None:  # a forked child's first L1 use: subscribe now
                self._wake()
            return self.inner.get(key, tags)  # L1 off: a plain Redis read, no fill
        res, remaining = self._get_expiring(key, tags)
        if res[0] is not None and remaining is not None:
            # The copy dies no later than the Redis entry (its PTTL was read after `start`).
            self._fill(key, res[0], tuple(tags), seq, start + min(self.ttl, remaining))
        return res

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        return self.inner.versions(tags)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        seq = self._seq
        start = self._clock()
        healthy = self._usable()
        if not healthy and self._thread is None:  # a forked child's first L1 use
            self._wake()
        stored = self.inner.set(key, payload, ttl, tags, versions)
        if stored and healthy and ttl > 0:
            # Never outlive the entry's own timeout (Redis expires it `ttl` after the SET).
            self._fill(key, payload, tuple(tags), seq, start + min(self.ttl, ttl))
        return stored

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        return self.inner.add(key, payload, ttl)

    def release(self, key: str, payload: bytes) -> bool:
        # A lock key is never an L1 entry (``add`` does not fill L1, nor is it read with
        # ``get``): nothing to drop here, nothing to publish to peers and wait for.
        return self.inner.release(key, payload)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self._apply((), (key,), False)
        self._broadcast(keys=(key,))

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        self.inner.invalidate(tags)
        self._apply(tags, (), False)
        self._broadcast(tags=tags)

    def clear(self) -> int:
        removed = self.inner.clear()
        self._apply((), (), True)
        self._broadcast(clear=True)
        return removed

    def ping(self) -> float:
        return self.inner.ping()

    def info(self) -> dict[str, Any]:
        info = self.inner.info()
        info.update(
            l1_entries=len(self._entries),
            l1_max_entries=self.max_entries,
            l1_active=self._usable(),
            l1_hits=self.l1_hits,
            l1_ack_timeouts=self.ack_timeouts,
            l1_subscription_drops=self.subscription_drops,
            l1_registry_errors=self.registry_errors,
            l1_registry_young_waits=self.registry_young_waits,
        )
        return info

    def _leave(self) -> None:
        """Stop the subscriber, turn L1 off and leave the peer registry (``close`` and at
        exit; idempotent). L1 is off before the entry is removed: an invalidation that no
        longer waits for us can never find us serving."""
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)  # no re-registration after the removal below
        with self._lock:
            self._drop_all()
            self._healthy = False
            self._lease_from = self._lease_until = self._registered_until = float("-inf")
        if self._registered_pid == os.getpid():  # never a parent's entry from a child
            self._registered_pid = None
            with contextlib.suppress(Exception):  # else the entry expires by itself
                self._script_client().zrem(self.peers_key, self.origin)

    def close(self) -> None:
        self._leave()
        atexit.unregister(self._exit_hook)
        if self._finalizer is not None:
            self._finalizer.cancel()
        self.inner.close()
