"""The near cache's peer registry: which processes an invalidation must wait for.

``{P:~l1}:peers`` for prefix ``P`` is a sorted set (the braces are a Cluster hash tag
putting it in the channel's slot; it is outside the ``P:*`` keys that ``clear`` deletes):
member = a process's id, score = when its registration expires, on *Redis's* clock
(``TIME`` in the scripts, so hosts' clocks never meet). ``{P:~l1}:born`` marks when the
registry was (re)created; both get the same expiry with each registration.

* :meth:`PeerRegistry.register` (``scripts/register.lua``): the subscriber thread
  re-registers every ``lease / 2`` for ``2 * lease``, trimming expired entries.
* :meth:`PeerRegistry.publish` (``scripts/publish.lua``): ``PUBLISH`` a message and read,
  in the same atomic script, the subscribers it reached, the live registered peers and the
  registry's age. A registry younger than a registration (or missing) may have lost
  peers whose leases still run (Redis restart without persistence, ``FLUSHALL``,
  eviction): then the peers are unknown and the caller waits out the whole lease.
* :meth:`PeerRegistry.leave`: the process that registered removes its entry.

The scripts run on ``script_client()``: on a Cluster, the ``RedisCluster`` client itself
(routed by key, ``MOVED``/``ASK`` followed after a reshard).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from ..lua import load_script

__all__ = ["PeerRegistry", "peers_key"]


def peers_key(channel: str) -> str:
    """The registry's key: in the channel's hash slot (on a Cluster both are used on the
    node owning the channel's slot), and outside the ``{prefix}:*`` pattern that ``clear``
    deletes (a registry wiped by ``clear`` would let the next invalidation skip a peer)."""
    key = "{" + channel + "}:peers"
    with contextlib.suppress(Exception):  # redis-py missing: no cluster either
        from redis.crc import key_slot

        if key_slot(key.encode()) != key_slot(channel.encode()):
            key = channel + ":peers"  # the channel has a hash tag of its own: keep it first
    return key


class PeerRegistry:
    """The registry of the processes sharing a near-cache channel; see the module doc."""

    def __init__(self, channel: str, script_client: Callable[[], Any], lease: float) -> None:
        self.channel = channel
        self._script_client = script_client
        self.peers_key = peers_key(channel)
        #: The registry's "born at" marker: same hash slot (same braces), same lifetime.
        self.born_key = self.peers_key[: -len("peers")] + "born"
        #: Registration period and lifetime: a live process re-registers every lease/2;
        #: an entry not refreshed for 2 leases (a dead process) is ignored, then trimmed.
        self.register_every = lease / 2
        self.register_ttl = 2 * lease
        self._scripts: tuple[Any, Any, Any] | None = None  # (client, register, publish)
        #: The process (pid) that registered, so only it removes the entry.
        self.registered_pid: int | None = None
        #: Invalidations that waited a lease because the registry was young or missing.
        self.young_waits = 0

    def after_fork(self) -> None:
        """In a forked child: the parent's entry is not ours to remove."""
        self.registered_pid = None

    def _scripts_for(self, client: Any) -> tuple[Any, Any]:
        scripts = self._scripts
        if scripts is None or scripts[0] is not client:
            scripts = self._scripts = (
                client,
                client.register_script(load_script(__package__, "register")),
                client.register_script(load_script(__package__, "publish")),
            )
        return scripts[1], scripts[2]

    def register(self, origin: str) -> None:
        """(Re-)register ``origin`` until ``register_ttl`` from when Redis runs the script."""
        client = self._script_client()
        register, _ = self._scripts_for(client)
        self.registered_pid = os.getpid()  # before: the reply may be lost, not the entry
        register(
            keys=[self.peers_key, self.born_key],
            args=[origin, int(self.register_ttl * 1000)],
            client=client,
        )

    def publish(self, body: str) -> tuple[int, set[str] | None]:
        """``PUBLISH body``; returns how many subscribers it reached and the registered
        peers, ``None`` when the registry is too young to list every live lease. Raises
        whatever the client raises."""
        client = self._script_client()
        _, publish = self._scripts_for(client)
        res = publish(
            keys=[self.peers_key, self.born_key], args=[self.channel, body], client=client
        )
        receivers = int(res[0])
        peers: set[str] | None = {p.decode() if isinstance(p, bytes) else str(p) for p in res[1]}
        age = int(res[2])
        if age < 0 or age <= int(self.register_ttl * 1000):
            # The registry is missing or younger than a registration: it was lost (restart
            # without persistence, FLUSHALL, eviction) and peers registered before, whose
            # leases may still run, may be missing.
            peers = None
            self.young_waits += 1
        return receivers, peers

    def leave(self, origin: str) -> None:
        """Remove this process's entry (only in the process that registered it)."""
        if self.registered_pid == os.getpid():  # never a parent's entry from a child
            self.registered_pid = None
            with contextlib.suppress(Exception):  # else the entry expires by itself
                self._script_client().zrem(self.peers_key, origin)
