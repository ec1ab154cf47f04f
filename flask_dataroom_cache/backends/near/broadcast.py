"""Broadcast a near-cache invalidation and wait until no peer can still serve the old value.

Rule 1 of the near cache: ``invalidate`` returns only once every process that could serve
a copy it kills has *acknowledged* (its subscriber dropped the copies, then published an
ack ``"<msg id> <origin>"`` on the sender's reply channel), or once ``lease`` (5% + 2 ms
for clock-rate drift) has passed since the ``PUBLISH`` returned: a process that has not
handled the message by then has no pong newer than it, so its lease has expired.

"Every process" is the union of the subscribers ``PUBLISH`` counted and the live entries of
the peer registry (a subscription Redis has just dropped is not counted by ``PUBLISH``, yet
its process may not have noticed, and its lease runs). Both come back from the one publish
script. When the registry cannot be read, or is too young to be complete, the message goes
out with a plain ``PUBLISH`` (or the script's) and the whole lease is waited out.

:class:`Acks` counts the acks received for each message in flight (the subscriber thread
reports them); :class:`Broadcaster` publishes and waits.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..base import BackendError
from .registry import PeerRegistry

__all__ = ["Acks", "Broadcaster"]

log = logging.getLogger("flask_dataroom_cache")


class _Tally:
    """Acks received for one broadcast: how many, and from which processes."""

    __slots__ = ("count", "origins")

    def __init__(self) -> None:
        self.count = 0
        self.origins: set[str] = set()


class Acks:
    """The acks of this process's messages in flight, keyed by message id."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._tallies: dict[str, _Tally] = {}

    def expect(self, msg_id: str) -> _Tally:
        """Start counting the acks of ``msg_id`` (before it is published)."""
        tally = _Tally()
        with self._cond:
            self._tallies[msg_id] = tally
        return tally

    def forget(self, msg_id: str) -> None:
        with self._cond:
            self._tallies.pop(msg_id, None)

    def received(self, msg_id: str, origin: str) -> None:
        """An ack of ``msg_id`` from ``origin`` (empty: an ack that does not say)."""
        with self._cond:
            tally = self._tallies.get(msg_id)
            if tally is not None:
                tally.count += 1
                if origin:
                    tally.origins.add(origin)
                self._cond.notify_all()

    def wait(
        self,
        tally: _Tally,
        receivers: int,
        peers: set[str],
        deadline: float,
        clock: Callable[[], float],
    ) -> tuple[int, int] | None:
        """Wait until ``receivers`` acks came, from every process of ``peers``, or until
        ``deadline``. ``None`` if all came, else ``(receivers missing, peers missing)``."""
        with self._cond:
            while tally.count < receivers or not peers <= tally.origins:
                left = deadline - clock()
                if left <= 0:
                    return max(receivers - tally.count, 0), len(peers - tally.origins)
                self._cond.wait(left)
        return None


class Broadcaster:
    """Publishes this process's invalidations to its peers and waits (module docstring)."""

    def __init__(
        self,
        registry: PeerRegistry,
        channel_client: Callable[[], Any],
        *,
        lease: float,
        clock: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._channel_client = channel_client
        self.lease = lease
        self._clock = clock
        #: Counters for ``info()`` and the tests.
        self.ack_timeouts = 0
        self.registry_errors = 0

    def send(
        self,
        acks: Acks,
        origin: str,
        tags: Sequence[str] = (),
        keys: Sequence[str] = (),
        clear: bool = False,
    ) -> None:
        """Publish ``tags``/``keys``/``clear`` from ``origin`` and wait (module docstring).

        Raises :class:`BackendError` if not even a plain ``PUBLISH`` reaches Redis."""
        msg_id = secrets.token_hex(8)
        body = json.dumps(
            {"o": origin, "m": msg_id, "t": list(tags), "k": list(keys), "c": int(clear)}
        )
        tally = acks.expect(msg_id)
        try:
            peers: set[str] | None
            try:
                receivers, peers = self._registry.publish(body)
            except Exception as script_exc:
                # The registry cannot be read: a plain PUBLISH, and then wait out the
                # lease whatever the acks (a registered peer may not be counted).
                try:
                    receivers = int(self._channel_client().publish(self._registry.channel, body))
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
            # expired lease; 5% + 2 ms for clock-rate drift.
            deadline = published + self.lease * 1.05 + 0.002
            if peers is None:
                left = deadline - self._clock()
                while left > 0:
                    time.sleep(left)
                    left = deadline - self._clock()
                return
            peers.discard(origin)  # our own L1 was cleaned before the publish
            missing = acks.wait(tally, receivers, peers, deadline, self._clock)
            if missing is not None:
                self.ack_timeouts += 1
                log.info(
                    "near cache: %d of %d subscribers and %d of %d registered "
                    "processes did not ack an invalidation within the lease; "
                    "their L1 is off until they catch up",
                    missing[0],
                    receivers,
                    missing[1],
                    len(peers),
                )
        finally:
            acks.forget(msg_id)
