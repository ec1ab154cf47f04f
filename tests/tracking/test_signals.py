"""``tags_invalidated``: sent once a commit's (or a manual call's) tags were delivered,
with the app as sender and where they came from; never for a rollback."""

from __future__ import annotations

import logging
import weakref
from typing import Any

import pytest
import sqlalchemy as sa

from flask_dataroom_cache import signals
from flask_dataroom_cache.testing import capture_invalidations

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


# -- a raising receiver: the others still run, and it is logged per receiver ---------------
@pytest.fixture(autouse=True)
def fresh_failure_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure log is per process: each test (and parameter) starts with its own."""
    monkeypatch.setattr(signals, "_failures", signals._FailureLog())


def _in_connection_order(monkeypatch: pytest.MonkeyPatch, signal: Any) -> None:
    """blinker calls receivers in set order (undefined): make it the connection order, so
    "a raising receiver connected first" really runs first (also under blinker's send)."""
    original = signal.receivers_for

    def ordered(sender: Any) -> Any:
        position = {}
        for index, ref in enumerate(signal.receivers.values()):
            strong = ref() if isinstance(ref, weakref.ref) else ref
            position[id(strong)] = index
        return iter(sorted(original(sender), key=lambda r: position.get(id(r), -1)))

    monkeypatch.setattr(signal, "receivers_for", ordered)


def test_a_raising_receiver_does_not_silence_the_later_ones(
    env: Env, listen: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def bad_first(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("observer bug")

    _in_connection_order(monkeypatch, signals.tags_invalidated)
    signals.tags_invalidated.connect(bad_first, sender=env.app, weak=False)
    try:
        later = listen(signals.tags_invalidated, env.app)
        with (
            caplog.at_level(logging.ERROR, "flask_dataroom_cache"),
            capture_invalidations(env.app) as sent,
        ):
            env.cache.invalidate_tags("custom:1")
            env.cache.invalidate_tags("custom:2")
        assert later == [
            {"tags": ("custom:1",), "source": "api"},
            {"tags": ("custom:2",), "source": "api"},
        ]
        assert sent.tags == ["custom:1", "custom:2"]
        failures = [r for r in caplog.records if "bad_first" in r.getMessage()]
        assert len(failures) == 1  # rate-limited: once a minute per receiver
        assert signals.tags_invalidated.name in failures[0].getMessage()
        assert failures[0].exc_info is not None
    finally:
        signals.tags_invalidated.disconnect(bad_first)


def test_failures_are_logged_per_receiver_not_once_per_signal(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def bad_one(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("one")

    def bad_two(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("two")

    signals.tags_invalidated.connect(bad_one, sender=env.app, weak=False)
    signals.tags_invalidated.connect(bad_two, sender=env.app, weak=False)
    try:
        with caplog.at_level(logging.ERROR, "flask_dataroom_cache"):
            env.cache.invalidate_tags("custom:1")
            assert {n for n in ("bad_one", "bad_two") if n in caplog.text} == {
                "bad_one",
                "bad_two",
            }
            caplog.clear()
            env.cache.invalidate_tags("custom:2")
            assert caplog.records == []  # within the minute: not again
            monkeypatch.setattr(signals, "FAILURE_LOG_INTERVAL", 0.0)
            env.cache.invalidate_tags("custom:3")
            assert "bad_one" in caplog.text and "bad_two" in caplog.text
    finally:
        signals.tags_invalidated.disconnect(bad_one)
        signals.tags_invalidated.disconnect(bad_two)


# -- CACHE_ENABLED=False: nothing is delivered, so nothing is announced --------------------
def test_a_disabled_cache_sends_no_tags_invalidated(make_env: Any, listen: Any) -> None:
    """docs/signals.md: the signal means "delivered to the backend"; a disabled cache
    delivers nothing (commits and API calls alike), while ``cache.disabled()`` (one
    thread's block) still delivers and sends."""
    env = make_env(CACHE_ENABLED=False)
    seen = listen(signals.tags_invalidated, env.app)
    with env.app.app_context():
        env.session.add(DataRoom(name="off"))
        env.session.commit()
        env.cache.invalidate_tags("custom:1")
    assert seen == []

    on = make_env()
    seen_on = listen(signals.tags_invalidated, on.app)
    with on.app.app_context(), on.cache.disabled():
        on.cache.invalidate_tags("custom:1")
    assert seen_on == [{"tags": ("custom:1",), "source": "api"}]
