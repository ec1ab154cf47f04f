"""``@cache.memoize`` with tracked sessions: a commit's tags invalidate memoized entries,
and nothing is read from or stored in the cache while this thread holds uncommitted
tracked changes, and a thread holding an open SQLite transaction never waits for another's
computation (every cache kind, SQLite and PostgreSQL: the ``env`` fixture)."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from flask_dataroom_cache import dataroom_tag
from flask_dataroom_cache.flights import FLIGHT_WAIT

from .conftest import Env
from .models import DataRoom, Folder


def _seed(env: Env) -> None:
    s = env.session
    s.add(DataRoom(id=1, name="Room"))
    s.flush()
    s.add_all([Folder(id=10, data_room_id=1, name="A"), Folder(id=20, data_room_id=1, name="B")])
    s.commit()


def _folder_names(env: Env, seen: list[int]) -> Any:
    @env.cache.memoize(tags=lambda room_id: [dataroom_tag(room_id)])
    def folder_names(room_id: int) -> list[str]:
        seen.append(room_id)
        query = sa.select(Folder.name).where(Folder.data_room_id == room_id)
        return sorted(env.session.scalars(query).all())

    return folder_names


def test_a_commit_invalidates_memoized_entries_by_tag(env: Env) -> None:
    _seed(env)
    seen: list[int] = []
    folder_names = _folder_names(env, seen)
    assert folder_names(1) == ["A", "B"]
    env.session.commit()
    assert folder_names(1) == ["A", "B"] and seen == [1]
    env.session.add(Folder(id=30, data_room_id=1, name="C"))
    env.session.commit()
    assert folder_names(1) == ["A", "B", "C"] and seen == [1, 1]
    env.session.commit()
    assert folder_names(1) == ["A", "B", "C"] and seen == [1, 1]
    env.session.get(Folder, 30).name = "D"  # type: ignore[union-attr]
    env.session.commit()
    assert folder_names(1) == ["A", "B", "D"] and seen == [1, 1, 1]


def test_nothing_is_read_or_stored_while_uncommitted_changes_are_held(env: Env) -> None:
    _seed(env)
    seen: list[int] = []
    folder_names = _folder_names(env, seen)
    assert folder_names(1) == ["A", "B"]
    env.session.commit()
    s = env.session
    s.add(Folder(id=31, data_room_id=1, name="uncommitted"))
    s.flush()
    env.backend.reset()
    # the transaction sees its own write: the cached entry is not read, nothing is stored
    assert folder_names(1) == ["A", "B", "uncommitted"]
    assert folder_names(1) == ["A", "B", "uncommitted"]
    assert env.backend.calls["get"] == 0 and env.backend.calls["set"] == 0
    assert seen == [1, 1, 1]
    s.rollback()
    assert folder_names(1) == ["A", "B"]  # no phantom: the entry from before still serves
    assert seen == [1, 1, 1]


def test_invalidate_inside_a_transaction_is_sent_at_its_commit(env: Env) -> None:
    _seed(env)
    seen: list[int] = []
    folder_names = _folder_names(env, seen)
    assert folder_names(1) == ["A", "B"]
    env.session.commit()
    env.session.add(Folder(id=32, data_room_id=1, name="E"))
    env.session.flush()
    env.backend.reset()
    folder_names.invalidate(1)
    assert env.backend.invalidated == []  # deferred to the commit
    env.session.commit()
    assert any(t.startswith("~memo:") for t in env.backend.all_invalidated())
    assert folder_names(1) == ["A", "B", "E"] and seen == [1, 1]


class RecordingEvent(threading.Event):
    """A flight's event that records how long each waiter would wait (and returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def test_a_thread_holding_a_sqlite_transaction_computes_instead_of_waiting(env: Env) -> None:
    """Another thread computes the key: a waiter holding an open SQLite transaction would
    hold the shared lock that a writer needs, while that writer keeps the computing thread
    from reading: it computes at once. Elsewhere (no transaction, PostgreSQL) it waits."""
    _seed(env)
    seen: list[int] = []
    folder_names = _folder_names(env, seen)
    sqlite = env.db.engine.dialect.name == "sqlite"
    prefix = env.store.settings.key_prefix
    memo_key = folder_names.keys.key(prefix, (1,), {})
    for key, call in (
        ("plain", lambda: env.store.get_or_set("plain", lambda: ["mine"], tags=["t"])),
        (memo_key, lambda: folder_names(1)),
    ):
        for in_transaction in (True, False):
            env.store.delete(key)
            event = RecordingEvent()
            env.store.flights._running[key] = event  # "another thread" leads the flight
            try:
                if in_transaction:
                    assert env.session.get(Folder, 10) is not None  # the transaction begins
                call()
            finally:
                env.store.flights._running.pop(key, None)
                env.session.rollback()
            expected = 0.0 if sqlite and in_transaction else FLIGHT_WAIT
            assert event.waits == [expected], (key, in_transaction)
