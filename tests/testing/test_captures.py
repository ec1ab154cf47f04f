"""``capture_invalidations`` and ``capture_entries``: what a block really delivered and
stored, per app, in order; the asserts' messages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.testing import capture_entries, capture_invalidations

from .conftest import NotesApp

AppFactory = Callable[..., tuple[Flask, DataRoomCache]]


def test_a_commit_and_an_api_call_in_order(notes_app: NotesApp) -> None:
    app = notes_app.app
    with capture_invalidations(app) as sent:
        note_id = notes_app.add_note(7, "a")
        with app.app_context():
            notes_app.cache.invalidate_tags("manual")
    assert [b.source for b in sent.batches] == ["commit", "api"]
    assert set(sent.batches[0].declared) == {f"note:{note_id}", "note:list", "folder:7/contents"}
    assert {f"~r:plugin_notes:{note_id}", "~t:plugin_notes"} <= set(sent.batches[0].tags)
    assert sent.tags == [*sent.batches[0].tags, "manual"]
    assert sent.declared_tags == [*sent.batches[0].declared, "manual"]
    assert sent.batches[0].app is app
    sent.assert_any("folder:7/contents")
    sent.assert_any("nope", "manual")
    sent.assert_all("folder:7/contents", "manual")
    sent.assert_none("folder:8/contents")
    assert "manual" in sent and len(sent) == 2


def test_failure_messages_show_what_was_sent(notes_app: NotesApp) -> None:
    with capture_invalidations(notes_app.app) as sent:
        notes_app.add_note(7, "a")
    with pytest.raises(AssertionError) as info:
        sent.assert_any("folder:8/contents")
    message = str(info.value)
    assert "expected an invalidation of 'folder:8/contents'" in message
    assert "commit: " in message and "folder:7/contents" in message
    with pytest.raises(AssertionError, match="missing 'x'"):
        sent.assert_all("folder:7/contents", "x")
    with pytest.raises(AssertionError, match=r"expected no invalidation;"):
        sent.assert_none()
    with pytest.raises(AssertionError, match=r"expected no invalidation of 'note:list'"):
        sent.assert_none("note:list", "other")


def test_nothing_sent(notes_app: NotesApp) -> None:
    with capture_invalidations(notes_app.app) as sent:
        pass
    sent.assert_none()
    assert sent.tags == [] and sent.batches == []
    with pytest.raises(AssertionError, match="did it commit"):
        sent.assert_any("folder:7/contents")


def test_per_app(make_app: AppFactory) -> None:
    app_a, cache_a = make_app()
    app_b, cache_b = make_app()
    with capture_invalidations(app_a) as sent_a, capture_invalidations() as sent_any:
        with app_b.app_context():
            cache_b.invalidate_tags("b")
            with capture_invalidations() as sent_current:  # the current app: b
                cache_b.invalidate_tags("b2")
        with app_a.app_context():
            cache_a.invalidate_tags("a")
    assert sent_a.tags == ["a"]
    assert sent_current.tags == ["b2"]
    assert sent_any.tags == ["b", "b2", "a"]  # no app, no app context: every app


def test_listeners_are_removed(make_app: AppFactory) -> None:
    from flask_dataroom_cache import signals

    app, _ = make_app()
    before = (len(signals.tags_invalidated.receivers), len(signals.entry_stored.receivers))
    with capture_invalidations(app), capture_entries(app):
        assert len(signals.tags_invalidated.receivers) == before[0] + 1
    after = (len(signals.tags_invalidated.receivers), len(signals.entry_stored.receivers))
    assert after == before


def test_capture_entries_sees_view_fills(notes_app: NotesApp) -> None:
    with capture_entries(notes_app.app) as stored:
        notes_app.get("/folders/3/notes")
        notes_app.get("/folders/3/notes")  # a hit stores nothing
    assert len(stored) == 1
    (entry,) = stored.entries
    assert "folder:3/contents" in entry.tags and "~epoch" in entry.tags
    assert stored.keys == [entry.key] and entry.ttl > 0


def test_the_current_app_proxy_is_the_app(make_app: AppFactory) -> None:
    """blinker keys senders by identity: ``current_app`` (a proxy) must be unwrapped, else
    the block silently captures nothing."""
    from flask import current_app

    from flask_dataroom_cache.testing import fresh_memory_cache

    app, cache = make_app()
    with app.app_context():
        with capture_invalidations(current_app) as sent, capture_entries(current_app) as stored:
            cache.invalidate_tags("p:1")
            cache.get_or_set("k-proxy", lambda: 1, tags=["p:1"])
        assert sent.tags == ["p:1"] and sent.batches[0].app is app
        assert stored.keys == ["k-proxy"]
        with fresh_memory_cache(current_app) as under_test:
            assert under_test.app is app
            with under_test.capture_invalidations() as sent_inside:
                cache.invalidate_tags("p:2")
        assert sent_inside.tags == ["p:2"]
