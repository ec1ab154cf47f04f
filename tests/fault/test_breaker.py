"""Breaker semantics of ResilientBackend with a scripted primary (no network, no sleeps).

Threshold, cooldown, the single probe, queued invalidations delivered before the primary
is read again, epoch bump on overflow, fallback use and clearing, one log line per state
change. The probe runs inline (``background_probe=False``) with a fake clock, so every
step is deterministic; one test covers the background prober.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from flask_dataroom_cache.backends.base import BackendError, Lookup
from flask_dataroom_cache.backends.memory import MemoryBackend
from flask_dataroom_cache.backends.resilient import UNAVAILABLE_TOKEN, ResilientBackend
from flask_dataroom_cache.tags import EPOCH_TAG


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """A memory backend that raises BackendError while ``down`` and counts every call."""

    name = "flaky"

    def __init__(self) -> None:
        self.inner = MemoryBackend(100)
        self.down = False
        self.calls: list[str] = []
        self.invalidated: list[tuple[str, ...]] = []

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise BackendError(f"{what}: connection refused")

    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        self._call("get")
        return self.inner.get(key, tags)

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        self._call("versions")
        return self.inner.versions(tags)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        self._call("set")
        return self.inner.set(key, payload, ttl, tags, versions)

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        self._call("add")
        return self.inner.add(key, payload, ttl)

    def release(self, key: str, payload: bytes) -> bool:
        self._call("release")
        return self.inner.release(key, payload)

    def delete(self, key: str) -> None:
        self._call("delete")
        self.inner.delete(key)

    def invalidate(self, tags: Sequence[str]) -> None:
        self._call("invalidate")
        self.invalidated.append(tuple(tags))
        self.inner.invalidate(tags)

    def clear(self) -> int:
        self._call("clear")
        return self.inner.clear()

    def ping(self) -> float:
        self._call("ping")
        return 0.0

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def close(self) -> None:
        pass


TAGS = (EPOCH_TAG, "dataroom:1")


def make(clock: Clock, **kw: Any) -> tuple[Flaky, ResilientBackend]:
    primary = Flaky()
    kw.setdefault("threshold", 3)
    kw.setdefault("cooldown", 5.0)
    backend = ResilientBackend(primary, clock=clock, background_probe=False, **kw)
    return primary, backend


def fill(backend: ResilientBackend, key: str = "k", value: bytes = b"v") -> None:
    _, versions = backend.get(key, TAGS)
    assert versions is not None
    assert backend.set(key, value, 60, TAGS, versions)


def test_opens_after_threshold_consecutive_errors_only() -> None:
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    for _ in range(2):
        assert backend.get("k", TAGS) == (None, None)
    assert backend.state == "closed"
    primary.down = False
    backend.get("k", TAGS)  # a success resets the consecutive count
    primary.down = True
    backend.get("k", TAGS)
    backend.get("k", TAGS)
    assert backend.state == "closed"
    backend.get("k", TAGS)
    assert backend.state == "open"
    assert backend.breaker_stats()["times_opened"] == 1


def test_open_breaker_skips_primary_until_cooldown_then_one_probe_decides() -> None:
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    for _ in range(3):
        backend.get("k", TAGS)
    assert backend.state == "open"
    primary.calls.clear()
    for _ in range(50):
        assert backend.get("k", TAGS) == (None, None)
        assert backend.set("k", b"x", 60, TAGS, ("a", "b")) is False
    assert primary.calls == []  # nothing reaches the primary while open
    clock.now += 5.1
    backend.get("k", TAGS)  # probe fails: open for another cooldown
    assert primary.calls == ["ping"]
    assert backend.state == "open"
    backend.get("k", TAGS)
    assert primary.calls == ["ping"]
    clock.now += 5.1
    primary.down = False
    fill(backend)
    assert backend.state == "closed"
    assert primary.calls[0] == "ping"
    assert backend.get("k", TAGS) == (b"v", None)


def test_cooldown_zero_probes_on_every_call() -> None:
    clock = Clock()
    primary, backend = make(clock, threshold=1, cooldown=0.0)
    primary.down = True
    backend.get("k", TAGS)
    primary.calls.clear()
    backend.get("k", TAGS)
    backend.get("k", TAGS)
    assert primary.calls == ["ping", "ping"]


def test_failed_invalidation_is_queued_opens_at_once_and_is_delivered_before_reads() -> None:
    clock = Clock()
    primary, backend = make(clock, threshold=100)
    fill(backend)
    primary.down = True
    backend.invalidate(["dataroom:1"])  # one failure is enough: the breaker opens
    assert backend.state == "open"
    assert backend.pending == 1
    primary.down = False  # back, but the cooldown has not passed: still no reads
    assert backend.get("k", TAGS) == (None, None)
    clock.now += 5.1
    primary.calls.clear()
    payload, _ = backend.get("k", TAGS)
    assert payload is None  # the stale entry is never served
    assert primary.calls[:2] == ["ping", "invalidate"]
    assert primary.invalidated[-1] == ("dataroom:1",)
    assert backend.state == "closed" and backend.pending == 0


def test_failed_delete_is_queued_and_delivered() -> None:
    clock = Clock()
    primary, backend = make(clock)
    fill(backend)
    primary.down = True
    backend.delete("k")
    assert backend.state == "open" and backend.pending == 1
    primary.down = False
    clock.now += 5.1
    assert backend.get("k", TAGS)[0] is None
    assert "delete" in primary.calls


def test_invalidations_while_open_are_queued_without_touching_primary() -> None:
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    backend.invalidate(["a"])
    primary.calls.clear()
    backend.invalidate(["b", "c"])
    backend.invalidate(["b"])
    assert primary.calls == []
    assert backend.pending == 3


def test_queue_overflow_bumps_the_epoch_and_everything_misses() -> None:
    clock = Clock()
    primary, backend = make(clock, pending_max=3)
    fill(backend, "k1")
    _, v = backend.get("k2", (EPOCH_TAG, "other:9"))
    assert v is not None
    assert backend.set("k2", b"w", 60, (EPOCH_TAG, "other:9"), v)
    primary.down = True
    backend.invalidate(["t1", "t2"])
    backend.invalidate(["t3", "t4"])  # 4 > 3: the queue becomes one epoch bump
    assert backend.pending == 1
    assert backend.breaker_stats()["pending_invalidations"] == 1
    primary.down = False
    clock.now += 5.1
    assert backend.get("k1", TAGS)[0] is None
    assert backend.get("k2", (EPOCH_TAG, "other:9"))[0] is None  # untouched tag, still a miss
    assert (EPOCH_TAG,) in primary.invalidated
    assert backend.breaker_stats()["epoch_bumps"] == 1
    assert backend.pending == 0


def test_recovery_that_fails_during_delivery_keeps_the_queue() -> None:
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    backend.invalidate(["a"])
    clock.now += 5.1
    primary.down = False
    original = primary.invalidate

    def broken(tags: Sequence[str]) -> None:
        raise BackendError("dropped mid-delivery")

    primary.invalidate = broken  # type: ignore[method-assign]
    assert backend.get("k", TAGS) == (None, None)
    assert backend.state == "open" and backend.pending == 1
    primary.invalidate = original  # type: ignore[method-assign]
    clock.now += 5.1
    backend.get("k", TAGS)
    assert backend.state == "closed" and backend.pending == 0


def test_versions_while_down_never_match() -> None:
    clock = Clock()
    primary, backend = make(clock, threshold=1)
    primary.down = True
    backend.get("k", TAGS)
    tokens = backend.versions(TAGS)
    assert tokens == (UNAVAILABLE_TOKEN,) * 2
    primary.down = False
    clock.now += 5.1
    # Even if the primary is back by the time the value is stored, the set is refused.
    assert backend.set("k", b"v", 60, TAGS, tokens) is False
    assert backend.get("k", TAGS)[0] is None


def test_fallback_serves_while_open_only_and_is_cleared_on_recovery() -> None:
    clock = Clock()
    events: list[str] = []
    primary, backend = make(
        clock, fallback=MemoryBackend(10), fallback_ttl=2, on_event=events.append
    )
    primary.down = True
    backend.get("k", TAGS)  # error 1: closed, no fallback yet
    _, v = backend.get("k", TAGS)
    assert v is None
    backend.get("k", TAGS)
    assert backend.state == "open"
    _, versions = backend.get("k", TAGS)
    assert versions is not None  # the fallback's tokens
    assert backend.set("k", b"local", 300, TAGS, versions)
    assert backend.get("k", TAGS) == (b"local", None)
    assert backend.fallback_serves == 1
    assert events.count("fallback_serves") == 1 and events.count("errors") == 3
    backend.invalidate(["dataroom:1"])  # applied to the fallback at once
    assert backend.get("k", TAGS)[0] is None
    _, versions = backend.get("k", TAGS)
    assert versions is not None
    backend.set("k", b"local2", 300, TAGS, versions)
    primary.down = False
    clock.now += 5.1
    assert backend.get("k", TAGS)[0] is None  # recovered: fallback cleared, primary empty
    assert backend.fallback is not None and backend.fallback.info()["keys"] == 0


def test_fallback_ttl_is_short() -> None:
    clock = Clock()
    fb = MemoryBackend(10, clock=clock)
    primary, backend = make(clock, threshold=1, fallback=fb, fallback_ttl=2)
    primary.down = True
    backend.get("k", TAGS)
    _, versions = backend.get("k", TAGS)
    assert versions is not None
    backend.set("k", b"local", 300, TAGS, versions)
    clock.now += 1.0
    assert backend.get("k", TAGS)[0] == b"local"
    clock.now += 1.5
    assert backend.get("k", TAGS)[0] is None


def test_logs_once_per_state_change(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    primary, backend = make(clock)
    caplog.set_level(logging.INFO, logger="flask_dataroom_cache")
    primary.down = True
    for _ in range(200):
        backend.get("k", TAGS)
    for _ in range(200):
        backend.invalidate(["x"])
    for _ in range(3):
        clock.now += 5.1
        backend.get("k", TAGS)  # failed probes: still down, no new line
    primary.down = False
    clock.now += 5.1
    for _ in range(100):
        backend.get("k", TAGS)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in lines] == ["WARNING", "INFO"], [r.getMessage() for r in lines]
    down, up = (r.getMessage() for r in lines)
    assert "is down" in down and "3 consecutive errors" in down
    assert "is back" in up and "queued invalidations delivered" in up
    assert "3 errors" in up  # the failed probes
    assert " 1 queued" in up


def test_overflow_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    primary, backend = make(clock, pending_max=2)
    caplog.set_level(logging.WARNING, logger="flask_dataroom_cache")
    primary.down = True
    for i in range(50):
        backend.invalidate([f"t{i}"])
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("epoch bump" in m for m in msgs) == 1
    assert sum("is down" in m for m in msgs) == 1


def test_only_one_thread_probes() -> None:
    clock = Clock()
    primary, backend = make(clock, threshold=1)
    primary.down = True
    backend.get("k", TAGS)
    clock.now += 5.1
    entered = threading.Event()
    release = threading.Event()
    original = primary.ping

    def slow_ping() -> float:
        entered.set()
        release.wait(5)
        return original()

    primary.ping = slow_ping  # type: ignore[method-assign]
    primary.down = False
    prober = threading.Thread(target=backend.get, args=("k", TAGS))
    prober.start()
    assert entered.wait(5)
    primary.calls.clear()
    for _ in range(20):  # the others do not wait for the probe, nor touch the primary
        assert backend.get("k", TAGS) == (None, None)
    assert primary.calls == []
    release.set()
    prober.join(5)
    assert backend.state == "closed"


def test_background_probe_recovers_and_delivers_without_traffic() -> None:
    primary = Flaky()
    backend = ResilientBackend(primary, threshold=1, cooldown=0.05)
    try:
        primary.down = True
        backend.invalidate(["a"])
        assert backend.state == "open"
        primary.down = False
        deadline = time.monotonic() + 5
        while backend.state != "closed" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.state == "closed"
        assert ("a",) in primary.invalidated
    finally:
        backend.close()


def test_background_mode_never_probes_inline() -> None:
    primary = Flaky()
    backend = ResilientBackend(primary, threshold=1, cooldown=0.0)
    try:
        primary.down = True
        backend.get("k", TAGS)
        calling = threading.get_ident()
        seen: list[int] = []
        original = primary.ping

        def ping() -> float:
            seen.append(threading.get_ident())
            return original()

        primary.ping = ping  # type: ignore[method-assign]
        for _ in range(20):
            backend.get("k", TAGS)
            time.sleep(0.005)
        assert seen and calling not in seen
    finally:
        backend.close()


def test_close_delivers_pending_once() -> None:
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    backend.invalidate(["a"])
    primary.down = False
    backend.close()
    assert ("a",) in primary.invalidated


def test_close_warns_when_pending_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    backend.invalidate(["a"])
    caplog.set_level(logging.WARNING, logger="flask_dataroom_cache")
    backend.close()
    assert any("undelivered invalidations" in r.getMessage() for r in caplog.records)


def test_chaos_never_serves_a_value_older_than_the_last_completed_write() -> None:
    """Readers, a writer and a backend flapping up and down every few milliseconds: a read
    that starts after a write returned never sees an older value (promise 1 under faults)."""
    import random

    from flask_dataroom_cache import CacheStore, Settings

    primary = Flaky()
    backend = ResilientBackend(primary, threshold=2, cooldown=0.005)
    store = CacheStore(backend, Settings())
    db = {"v": 0, "done": 0}  # done: the last version whose invalidation has returned
    stop = threading.Event()
    errors: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            floor = db["done"]
            got = store.get_or_set("k", lambda: db["v"], tags=["room:1"])
            reads[0] += 1
            if got < floor:
                errors.append(f"read {got} after write {floor} had returned")

    def writer() -> None:
        while not stop.is_set():
            db["v"] += 1
            store.invalidate(["room:1"], defer=False)
            db["done"] = db["v"]
            time.sleep(0.001)

    def chaos() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            primary.down = rng.random() < 0.4
            time.sleep(rng.uniform(0.0002, 0.005))
        primary.down = False

    threads = [threading.Thread(target=f) for f in (reader, reader, reader, writer, chaos)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(10)
    # The probe runs when there is work: queued invalidations, or a read after the
    # cooldown. If the chaos stopped with the breaker open and nothing queued, the next
    # read is what closes it, so keep reading (and checking) until it does.
    deadline = time.monotonic() + 5
    while backend.state != "closed" and time.monotonic() < deadline:
        floor = db["done"]
        if store.get_or_set("k", lambda: db["v"], tags=["room:1"]) < floor:
            errors.append(f"read after the chaos older than write {floor}")
        time.sleep(0.01)
    backend.close()
    assert not errors, errors[:5]
    assert reads[0] > 500
    assert backend.times_opened > 3  # the chaos really opened and closed the breaker
    assert backend.state == "closed" and backend.pending == 0


def test_queue_is_delivered_early_while_the_breaker_stays_open() -> None:
    """Other processes read Redis again as soon as it is back: the queue must not wait
    for this process's cooldown to reach it."""
    primary = Flaky()
    backend = ResilientBackend(primary, threshold=1, cooldown=30.0)
    try:
        primary.down = True
        backend.invalidate(["room:1"])
        assert backend.state == "open"
        primary.down = False
        deadline = time.monotonic() + 5
        while backend.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.pending == 0
        assert ("room:1",) in primary.invalidated
        assert backend.state == "open"  # the cooldown still decides when reads resume
        assert backend.get("k", TAGS) == (None, None)
    finally:
        backend.close()


def test_a_tag_queued_again_during_its_delivery_is_delivered_again() -> None:
    """A write whose invalidation is queued while the same tag is being delivered must
    get its own delivery: the first one may have reached Redis before that write."""
    clock = Clock()
    primary, backend = make(clock)
    primary.down = True
    backend.invalidate(["room:1"])
    primary.down = False
    clock.now += 5.1
    original = primary.invalidate
    calls = []

    def invalidate_then_race(tags: Sequence[str]) -> None:
        original(tags)
        calls.append(tuple(tags))
        if len(calls) == 1:
            backend._queue(tags=["room:1"])  # another write, queued right after the SET

    primary.invalidate = invalidate_then_race  # type: ignore[method-assign]
    backend.get("k", TAGS)  # the probe delivers, sees the new queueing, delivers again
    assert calls == [("room:1",), ("room:1",)]
    assert backend.pending == 0 and backend.state == "closed"


def test_lock_release_compares_on_the_fallback_and_is_never_queued() -> None:
    """Issue 12 item 7: a lock taken on the fallback (breaker open) is released there by
    its holder only; a release the primary cannot take is not queued (a late delete could
    only remove another holder's lock): the lock expires by its TTL."""
    clock = Clock()
    primary, backend = make(clock, fallback=MemoryBackend(), start_open=True)
    assert backend.add("lock", b"A", 5)  # on the fallback
    assert not backend.add("lock", b"B", 5)
    assert not backend.release("lock", b"B")
    assert backend.release("lock", b"A")
    assert backend.add("lock", b"B", 5)
    # primary up, then failing on release: nothing queued, the breaker counts the error
    clock.now += 10
    backend.get("k", TAGS)  # the probe closes the breaker
    assert backend.state == "closed"
    assert backend.add("lock2", b"A", 5)
    primary.down = True
    assert not backend.release("lock2", b"A")
    assert backend.pending == 0
    primary.down = False
    assert not backend.add("lock2", b"C", 5)  # still held until its TTL
    assert backend.release("lock2", b"A")
