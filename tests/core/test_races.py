"""The stale-set race, interleaved deterministically with events, on every backend.

Reader: reads the "database" (old value), is paused; invalidator: writes the database and
invalidates the tag; reader resumes and stores what it read. That entry must never be
served afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_dataroom_cache import (
    cache_get,
    cache_set,
    get_cache_key,
    get_or_set,
    invalidate_tags,
)

TIMEOUT = 10


class Database:
    def __init__(self) -> None:
        self.value = "old"


def _in_thread(app: Flask, fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            with app.app_context():
                out["result"] = fn()
        except BaseException as exc:  # surfaced by the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _interleave(app: Flask, reader: Callable[[Callable[[], str]], Any]) -> dict[str, Any]:
    db = Database()
    read_done = threading.Event()
    invalidated = threading.Event()

    def slow_query() -> str:
        value = db.value  # read BEFORE the invalidation
        read_done.set()
        assert invalidated.wait(TIMEOUT)
        return value

    thread, out = _in_thread(app, lambda: reader(slow_query))
    assert read_done.wait(TIMEOUT)
    db.value = "new"
    invalidate_tags("file:1")  # the writer's commit
    invalidated.set()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    out["db"] = db
    return out


KEY_TAGS = ["file:1", "file:list"]


def test_get_or_set_race_is_closed(app: Flask, any_get_or_set: Callable[..., Any]) -> None:
    key = get_cache_key("file", 1)
    out = _interleave(app, lambda query: any_get_or_set(key, query, tags=KEY_TAGS))
    assert out["result"] == "old"  # the reader itself returns what it read
    assert cache_get(key, KEY_TAGS) is None  # ...but it was not stored as fresh
    assert get_or_set(key, lambda: out["db"].value, tags=KEY_TAGS) == "new"
    assert cache_get(key, KEY_TAGS) == "new"


def test_get_compute_set_race_is_closed(app: Flask) -> None:
    key = get_cache_key("file", 1)

    def seed_pattern(query: Callable[[], str]) -> bool:
        assert cache_get(key, KEY_TAGS) is None  # miss: remembers the versions it saw
        value = query()
        return cache_set(key, value, tags=KEY_TAGS)

    out = _interleave(app, seed_pattern)
    assert out["result"] is False  # refused: a tag changed since the miss
    assert cache_get(key, KEY_TAGS) is None
    assert cache_get(key, KEY_TAGS) is None
    assert cache_set(key, out["db"].value, tags=KEY_TAGS) is True
    assert cache_get(key, KEY_TAGS) == "new"


def test_stale_entry_present_before_the_race_is_not_served(
    app: Flask, any_get_or_set: Callable[..., Any]
) -> None:
    """The entry exists, expires by invalidation while a reader recomputes it."""
    key = get_cache_key("file", 1)
    assert cache_set(key, "older", tags=KEY_TAGS)
    invalidate_tags("file:list")
    out = _interleave(app, lambda query: any_get_or_set(key, query, tags=KEY_TAGS))
    assert out["result"] == "old"
    assert cache_get(key, KEY_TAGS) is None


def test_without_an_invalidation_the_fill_is_kept(app: Flask) -> None:
    """Control: the same interleaving minus the invalidation stores the value."""
    key = get_cache_key("file", 2)
    gate = threading.Barrier(2, timeout=TIMEOUT)

    def reader() -> bool:
        assert cache_get(key, KEY_TAGS) is None
        gate.wait()  # both threads at the same point
        gate.wait()  # the main thread did its (unrelated) work
        return cache_set(key, "v", tags=KEY_TAGS)

    thread, out = _in_thread(app, reader)
    gate.wait()
    invalidate_tags("file:999")  # another entity: must not block the fill
    gate.wait()
    thread.join(TIMEOUT)
    assert out.get("result") is True, out
    assert cache_get(key, KEY_TAGS) == "v"


def test_versions_are_remembered_per_thread(app: Flask) -> None:
    """Thread A misses, the tag is invalidated, thread B misses (new versions): A's set
    must still be refused (its own captured versions are used, not B's)."""
    key = get_cache_key("file", 3)
    a_missed, b_done = threading.Event(), threading.Event()

    def thread_a() -> bool:
        assert cache_get(key, KEY_TAGS) is None
        a_missed.set()
        assert b_done.wait(TIMEOUT)
        return cache_set(key, "from-a", tags=KEY_TAGS)

    thread, out = _in_thread(app, thread_a)
    assert a_missed.wait(TIMEOUT)
    invalidate_tags("file:1")

    def thread_b() -> None:
        assert cache_get(key, KEY_TAGS) is None

    tb, ob = _in_thread(app, thread_b)
    tb.join(TIMEOUT)
    assert "error" not in ob
    b_done.set()
    thread.join(TIMEOUT)
    assert out.get("result") is False, out
    assert cache_get(key, KEY_TAGS) is None


def test_many_readers_and_writers_never_serve_stale(app: Flask) -> None:
    """Randomised stress on top of the deterministic tests: after the writer bumps the
    database and invalidates, no read that starts later returns an older version."""
    key = get_cache_key("counter")
    state = {"version": 0}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        with app.app_context():
            while not stop.is_set():
                with lock:
                    floor = state["version"]  # committed before this read started
                got = get_or_set(key, lambda: state["version"], tags=["counter:1"])
                if got < floor:
                    errors.append(f"served {got} after {floor} was committed")

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(150):
        with lock:
            state["version"] += 1
            invalidate_tags("counter:1")  # commit: data changed, then the tag
    stop.set()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors, errors[:3]
