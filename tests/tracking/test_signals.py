"""``tags_invalidated``: sent once a commit's (or a manual call's) tags were delivered,
with the app as sender and where they came from; never for a rollback."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from flask_dataroom_cache import signals

from .conftest import Env
from .models import DataRoom


def _listen(env: Env) -> list[tuple[tuple[str, ...], str]]:
    seen: list[tuple[tuple[str, ...], str]] = []

    def receiver(sender: Any, tags: tuple[str, ...], source: str) -> None:
        assert sender is env.app
        seen.append((tags, source))

    signals.tags_invalidated.connect(receiver, sender=env.app)
    env._signal_receiver = receiver  # type: ignore[attr-defined]  # keep it alive
    return seen


def test_commit_sends_its_tags_once_after_delivery(env: Env) -> None:
    seen = _listen(env)
    room = DataRoom(name="r")
    env.session.add(room)
    env.session.flush()
    assert seen == []  # nothing before the commit
    env.session.commit()
    assert len(seen) == 1
    tags, source = seen[0]
    assert source == "commit"
    assert f"dataroom:{room.id}" in tags


def test_rollback_sends_nothing(env: Env) -> None:
    seen = _listen(env)
    env.session.add(DataRoom(name="r"))
    env.session.flush()
    env.session.rollback()
    assert seen == []


def test_core_commit_and_manual_calls_name_their_source(env: Env) -> None:
    seen = _listen(env)
    with env.db.engine.begin() as conn:
        conn.execute(sa.insert(DataRoom.__table__).values(name="core"))
    assert [s for _, s in seen] == ["commit"]
    env.cache.invalidate_tags("custom:1")
    assert seen[-1] == (("custom:1",), "api")


def test_a_raising_receiver_never_fails_the_commit(env: Env) -> None:
    def bad(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("observer bug")

    signals.tags_invalidated.connect(bad, sender=env.app)
    try:
        env.session.add(DataRoom(name="r"))
        env.session.commit()  # must not raise
        assert env.session.query(DataRoom).count() == 1
    finally:
        signals.tags_invalidated.disconnect(bad)


def test_another_apps_receiver_hears_nothing(env: Env, make_env: Any) -> None:
    other = make_env()
    heard: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(sender)

    signals.tags_invalidated.connect(receiver, sender=other.app)
    try:
        env.session.add(DataRoom(name="r"))
        env.session.commit()
        assert heard == []
    finally:
        signals.tags_invalidated.disconnect(receiver)


def test_entry_stored_names_the_key_and_its_tags(env: Env) -> None:
    stored: list[tuple[str, tuple[str, ...], int]] = []

    def receiver(sender: Any, key: str, tags: tuple[str, ...], ttl: int) -> None:
        assert sender is env.app
        stored.append((key, tags, ttl))

    signals.entry_stored.connect(receiver, sender=env.app)
    try:
        env.store.get_or_set("k1", lambda: 1, ttl=30, tags=["a:1"])
        env.store.get_or_set("k1", lambda: 2, ttl=30, tags=["a:1"])  # a hit: nothing stored
        assert [(k, ttl) for k, _, ttl in stored] == [("k1", 30)]
        assert "a:1" in stored[0][1]  # with the epoch tag every entry carries
    finally:
        signals.entry_stored.disconnect(receiver)


# -- cache_bypassed: the store's own reasons ---------------------------------------------
def test_uncommitted_changes_bypass_the_read_and_the_fill(env: Env, listen: Any) -> None:
    from flask_dataroom_cache.store import UNCOMMITTED

    seen = listen(signals.cache_bypassed, env.app)
    env.session.add(DataRoom(name="r"))
    env.session.flush()  # tracked changes not committed: this thread must not read or fill
    assert env.store.get_or_set("k-unc", lambda: 1, tags=["a:1"]) == 1
    assert env.store.set("k-unc", 2, tags=["a:1"]) is False
    assert seen == [{"key": "k-unc", "reason": UNCOMMITTED}] * 2
    env.session.rollback()


def test_a_fill_refused_by_the_snapshot_rule(env: Env, listen: Any) -> None:
    from flask_dataroom_cache.store import SNAPSHOT

    seen = listen(signals.cache_bypassed, env.app)
    env.store.fill_checks.append(lambda versions: True)
    try:
        assert env.store.set("k-snap", 1, tags=["a:1"]) is False
    finally:
        env.store.fill_checks.pop()
    assert seen == [{"key": "k-snap", "reason": SNAPSHOT}]
    assert env.store.set("k-snap", 1, tags=["a:1"]) is True
    assert len(seen) == 1


def test_a_disabled_cache_bypasses_reads_and_fills(make_env: Any, listen: Any) -> None:
    from flask_dataroom_cache.store import DISABLED

    env = make_env(CACHE_ENABLED=False)
    seen = listen(signals.cache_bypassed, env.app)
    assert env.store.get_or_set("k-off", lambda: 1) == 1
    assert env.store.set("k-off", 1) is False
    assert seen == [{"key": "k-off", "reason": DISABLED}] * 2
