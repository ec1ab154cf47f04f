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

Where each part lives:

* :mod:`.cache`: :class:`NearCache`, the backend protocol over L1 + Redis, the process
  identity and its lifecycle (start, fork, exit);
* :mod:`.copies`: the local copies (LRU, tag index, invalidation sequence) and the lease;
* :mod:`.subscriber`: the subscriber thread (subscription, pings, registration, handling
  peers' messages and acks);
* :mod:`.broadcast`: publishing an invalidation and waiting for the acks or the lease;
* :mod:`.registry`: the peer registry and its scripts (``scripts/*.lua``).
"""

from __future__ import annotations

from .cache import NearCache

__all__ = ["NearCache"]
