"""The near cache's subscriber thread: what keeps this process's L1 fresh and its lease true.

One daemon thread per process (started lazily in a forked child) that:

* subscribes to the channel ``{prefix}:~l1`` and to this process's reply channel (acks);
* (re-)registers the process in the peer registry every ``lease / 2`` (before pinging: a
  pong may only extend the lease up to the registration's end);
* sends ``PING <send time>`` every ``ping_interval``; Redis answers in order with the
  messages, so the pong for send time ``s`` proves every message published before ``s``
  was handled: the lease runs until ``s + lease`` (:meth:`.LocalCopies.pong`);
* handles a peer's message: drops the copies it kills, then acks on the sender's reply
  channel; counts the acks of this process's own messages (:class:`.Acks`);
* on any failure turns L1 off (copies dropped, lease ended) and resubscribes with a
  backoff; on a Cluster, when the channel's slot has moved to another node (seen after a
  registration followed a ``MOVED``), resubscribes there at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..base import BackendError
from .broadcast import Acks
from .copies import LocalCopies
from .registry import PeerRegistry

__all__ = ["Subscriber"]

log = logging.getLogger("flask_dataroom_cache")


class _ChannelMoved(Exception):
    """The channel's hash slot has moved to another Cluster node: resubscribe there."""


class Subscriber:
    """The subscriber thread of one process identity (``origin``); see the module doc."""

    def __init__(
        self,
        *,
        origin: str,
        channel: str,
        channel_client: Callable[[], Any],
        registry: PeerRegistry,
        copies: LocalCopies,
        acks: Acks,
        closed: threading.Event,
        lease: float,
        ping_interval: float,
        on_drop: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.origin = origin
        self.channel = channel
        self.reply_channel = f"{channel}:ack:{origin}"
        self._channel_client = channel_client
        self._registry = registry
        self._copies = copies
        self._acks = acks
        self._closed = closed
        self.lease = lease
        self.ping_interval = ping_interval
        #: Called when the subscription is lost while L1 was serving (a counter).
        self._on_drop = on_drop
        self._clock = clock
        #: Set once the subscription (both channels) is confirmed: acks can be received.
        self.listening = threading.Event()
        self.thread: threading.Thread | None = None
        self.started_at = float("-inf")

    def start(self) -> None:
        self.started_at = self._clock()
        self.thread = threading.Thread(
            target=self._run, name=f"dataroom-cache-l1-{self.origin}", daemon=True
        )
        self.thread.start()

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
                    if now - last_register >= self._registry.register_every:
                        # Before the ping: a pong can only extend the lease up to the
                        # registration's end (see LocalCopies.pong).
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
                    elif now - self._copies.lease_from > 4 * self.lease and self._copies.healthy:
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

    def _register(self, sent: float) -> None:
        """(Re-)register this process in the peer registry until ``2 * lease`` from now.

        Redis stamps the entry with its own clock when it runs the script, after ``sent``:
        so the entry surely lasts until ``sent + ttl`` here (5% + 2 ms for clock-rate
        drift and the ms rounding)."""
        self._registry.register(self.origin)
        self._copies.registered(sent + self._registry.register_ttl * 0.95 - 0.002)

    def _handle(self, message: dict[str, Any], client: Any) -> None:
        kind = message.get("type")
        data: Any = message.get("data")
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if kind == "pong":
            with contextlib.suppress(TypeError, ValueError):
                self._copies.pong(float(data), self.lease, closed=self._closed.is_set())
            return
        if kind not in ("message", "subscribe"):
            return
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind == "subscribe":  # confirmed in order: the reply channel's comes last
            if channel == self.reply_channel:
                self.listening.set()
            return
        if channel == self.reply_channel:
            msg_id, _, who = str(data).partition(" ")
            self._acks.received(msg_id, who)
            return
        try:
            body = json.loads(data)
            origin, msg_id = body["o"], body["m"]
        except (TypeError, ValueError, KeyError):
            return  # not ours
        if origin != self.origin:  # our own change was applied before it was published
            self._copies.apply(body.get("t", ()), body.get("k", ()), bool(body.get("c")))
            client.publish(f"{self.channel}:ack:{origin}", f"{msg_id} {self.origin}")
        else:
            self._acks.received(msg_id, self.origin)

    def _down(self, exc: BaseException, *, moved: bool = False) -> None:
        self.listening.clear()
        was = self._copies.turn_off()
        if was and not self._closed.is_set():
            self._on_drop()
            if moved:
                log.info("%s; L1 bypassed until resubscribed", exc)
            else:
                log.warning("near cache subscription lost (%s); L1 bypassed until it is back", exc)
