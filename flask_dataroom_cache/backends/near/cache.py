"""The near cache itself: the :class:`Backend` protocol over L1 + Redis, and its lifecycle.

:class:`NearCache` reads L1 first (:class:`.LocalCopies`), else Redis (copying a hit, with
the entry's remaining lifetime read in the same round trip), and sends every change to
Redis first, then drops its own copies, then broadcasts and waits (:class:`.Broadcaster`).
It also owns the process identity (``origin``) and its lifecycle: starting the
subscriber (:class:`.Subscriber`), a new identity and a lazy subscriber in a forked child
(rule 5), and leaving the peer registry on ``close`` and at exit. The freshness rules
are in the package docstring (:mod:`flask_dataroom_cache.backends.near`).
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..base import Backend, Lookup, RawEntry
from .broadcast import Acks, Broadcaster
from .copies import LocalCopies
from .registry import PeerRegistry
from .subscriber import Subscriber

__all__ = ["NearCache"]


class NearCache:
    """L1 in front of a Redis backend; see the package docstring for the freshness rules."""

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
        self._registry = PeerRegistry(self.channel, self._script_client, lease)
        self.peers_key = self._registry.peers_key
        self.born_key = self._registry.born_key
        self._copies = LocalCopies(max_entries, clock)
        self._broadcaster = Broadcaster(self._registry, channel_client, lease=lease, clock=clock)
        #: ``get`` + the hit's remaining lifetime, one round trip (RedisBackend and Cluster).
        self._get_expiring: Callable[..., tuple[Lookup, float | None]] | None = getattr(
            inner, "get_expiring", None
        )
        self._start_lock = threading.Lock()
        self._closed = threading.Event()
        self._finalizer: Any = None
        #: Counters for ``info()`` and the tests (the broadcaster and the registry keep theirs).
        self.l1_hits = 0
        self.subscription_drops = 0
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

    # -- identity and lifecycle ---------------------------------------------------------
    def _new_identity(self) -> None:
        """A new process id, no copies, and a subscriber for it (not started)."""
        self.origin = secrets.token_hex(8)
        self._copies.turn_off()
        self._acks = Acks()
        self._subscriber = Subscriber(
            origin=self.origin,
            channel=self.channel,
            channel_client=self._channel_client,
            registry=self._registry,
            copies=self._copies,
            acks=self._acks,
            closed=self._closed,
            lease=self.lease,
            ping_interval=self.ping_interval,
            on_drop=self._count_drop,
            clock=self._clock,
        )
        self.reply_channel = self._subscriber.reply_channel

    def _start(self) -> None:
        self._subscriber.start()
        # multiprocessing children end with os._exit (no atexit): their finalizers with
        # an exit priority run first. Registered here, in the process that subscribes
        # (a forked child's registry of finalizers is emptied when it starts).
        self._finalizer = multiprocessing.util.Finalize(None, self._exit_hook, exitpriority=0)

    def _forked(self) -> None:
        """In a forked child: new id, empty L1, no subscriber until L1 is first used.

        A child that never uses L1 (a multiprocessing helper, a worker that only writes)
        never subscribes nor registers, so it never makes invalidations wait for it."""
        # Locks may have been held by threads that do not exist in the child.
        self._start_lock = threading.Lock()
        self._closed = threading.Event()
        self._finalizer = None
        self._copies.after_fork()
        self._registry.after_fork()
        self._new_identity()

    def _count_drop(self) -> None:
        self.subscription_drops += 1

    def _wake(self) -> None:
        """Start the subscriber if this (forked) process has none yet: its first L1 use."""
        with self._start_lock:
            if self._subscriber.thread is None and not self._closed.is_set():
                self._start()

    def _leave(self) -> None:
        """Stop the subscriber, turn L1 off and leave the peer registry (``close`` and at
        exit; idempotent). L1 is off before the entry is removed: an invalidation that no
        longer waits for us can never find us serving."""
        self._closed.set()
        thread = self._subscriber.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)  # no re-registration after the removal below
        self._copies.turn_off()
        self._registry.leave(self.origin)

    # -- L1 state -------------------------------------------------------------------------
    @property
    def l1_active(self) -> bool:
        """True while L1 may serve (subscription healthy and lease fresh)."""
        return self._copies.usable()

    @property
    def ack_timeouts(self) -> int:
        """Invalidations that waited out the lease for a peer that did not ack."""
        return self._broadcaster.ack_timeouts

    @property
    def registry_errors(self) -> int:
        """Invalidations sent with a plain PUBLISH because the registry was unreadable."""
        return self._broadcaster.registry_errors

    @property
    def registry_young_waits(self) -> int:
        """Invalidations that waited a lease because the registry was young or missing."""
        return self._registry.young_waits

    def _broadcast(
        self, tags: Sequence[str] = (), keys: Sequence[str] = (), clear: bool = False
    ) -> None:
        subscriber = self._subscriber
        if not subscriber.listening.is_set():
            # A forked child's first invalidation starts its subscriber; right after a
            # start, give the subscription up to a lease to be confirmed, else the acks
            # sent to us would be lost and we would wait out the lease anyway.
            if subscriber.thread is None:
                self._wake()
            left = subscriber.started_at + self.lease - self._clock()
            if left > 0:
                subscriber.listening.wait(left)
        self._broadcaster.send(self._acks, self.origin, tags, keys, clear)

    # -- protocol -----------------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        copies = self._copies
        payload = copies.hit(key, tags)
        if payload is not None:
            self.l1_hits += 1
            return payload, None
        seq = copies.seq
        start = self._clock()
        if not (copies.healthy and start < copies.lease_until) or not self._get_expiring:
            if self._subscriber.thread is None:  # a forked child's first L1 use: subscribe
                self._wake()
            return self.inner.get(key, tags)  # L1 off: a plain Redis read, no fill
        res, remaining = self._get_expiring(key, tags)
        if res[0] is not None and remaining is not None:
            # The copy dies no later than the Redis entry (its PTTL was read after `start`).
            copies.fill(key, res[0], tuple(tags), seq, start + min(self.ttl, remaining))
        return res

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        return self.inner.versions(tags)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        seq = self._copies.seq
        start = self._clock()
        healthy = self._copies.usable()
        if not healthy and self._subscriber.thread is None:  # a forked child's first L1 use
            self._wake()
        stored = self.inner.set(key, payload, ttl, tags, versions)
        if stored and healthy and ttl > 0:
            # Never outlive the entry's own timeout (Redis expires it `ttl` after the SET).
            self._copies.fill(key, payload, tuple(tags), seq, start + min(self.ttl, ttl))
        return stored

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        return self.inner.add(key, payload, ttl)

    def release(self, key: str, payload: bytes) -> bool:
        # A lock key is never an L1 entry (``add`` does not fill L1, nor is it read with
        # ``get``): nothing to drop here, nothing to publish to peers and wait for.
        return self.inner.release(key, payload)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self._copies.apply((), (key,), False)
        self._broadcast(keys=(key,))

    def inspect(self, key: str) -> RawEntry | None:
        """The Redis entry (the authority; an L1 copy is only ever a copy of a valid one)."""
        return self.inner.inspect(key)

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        self.inner.invalidate(tags)
        self._copies.apply(tags, (), False)
        self._broadcast(tags=tags)

    def clear(self) -> int:
        removed = self.inner.clear()
        self._copies.apply((), (), True)
        self._broadcast(clear=True)
        return removed

    def ping(self) -> float:
        return self.inner.ping()

    def info(self) -> dict[str, Any]:
        info = self.inner.info()
        info.update(
            l1_entries=len(self._copies.entries),
            l1_max_entries=self.max_entries,
            l1_active=self._copies.usable(),
            l1_hits=self.l1_hits,
            l1_ack_timeouts=self.ack_timeouts,
            l1_subscription_drops=self.subscription_drops,
            l1_registry_errors=self.registry_errors,
            l1_registry_young_waits=self.registry_young_waits,
        )
        return info

    def close(self) -> None:
        self._leave()
        atexit.unregister(self._exit_hook)
        if self._finalizer is not None:
            self._finalizer.cancel()
        self.inner.close()
