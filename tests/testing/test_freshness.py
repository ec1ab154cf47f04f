"""``assert_fresh_after``: passes when the write's tags reach the read's entry, fails with
the tags involved when they do not (views and values), and refuses to prove nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from flask_dataroom_cache import contents_tag, entity_tag
from flask_dataroom_cache.testing import assert_fresh_after, assert_miss

from .conftest import NotesApp


def test_a_view_with_the_right_tag_passes(notes_app: NotesApp) -> None:
    notes_app.add_note(5, "a")
    second = assert_fresh_after(
        lambda: notes_app.add_note(5, "b"),
        lambda: notes_app.get("/folders/5/notes"),
        app=notes_app.app,
    )
    assert_miss(second)
    assert second.get_json() == {"titles": ["a", "b"]}


@pytest.mark.auto_tags_off  # with automatic dependencies the view is fresh anyway
def test_a_view_that_forgets_the_tag_fails_with_the_tags(notes_app: NotesApp) -> None:
    note_id = notes_app.add_note(5, "a")
    with pytest.raises(AssertionError) as info:
        assert_fresh_after(
            lambda: notes_app.add_note(5, "b"),
            lambda: notes_app.get("/folders/5/notes-forgetful"),
            app=notes_app.app,
        )
    message = str(info.value)
    assert message.startswith(
        "assert_fresh_after: read() after write() is stale: served from the cache"
    )
    assert "GET /folders/5/notes-forgetful -> 200 OK, X-Cache: HIT" in message
    assert (
        "read() without the cache: GET /folders/5/notes-forgetful -> 200 OK, X-Cache: BYPASS"
        in message
    )
    assert "the read's entry carries the tags:\n" in message
    assert "folder:5, ~epoch" in message  # the view's tags (normalised)
    assert "write() invalidated:\n    commit: " in message
    assert "folder:5/contents" in message and f"note:{note_id + 1}" in message
    assert "overlap: none -- the entry carries none of the tags the write invalidated" in message


def test_values_right_and_forgotten_tags(notes_app: NotesApp, prefix: str) -> None:
    app = notes_app.app

    def read(tag: str) -> list[str]:
        with app.app_context():
            return notes_app.cache.get_or_set(
                f"{prefix}:titles:{tag}", lambda: notes_app.titles(6), tags=[tag]
            )

    assert assert_fresh_after(
        lambda: notes_app.add_note(6, "a"), lambda: read(contents_tag(6)), app=app
    ) == ["a"]
    with pytest.raises(AssertionError) as info:
        assert_fresh_after(
            lambda: notes_app.add_note(6, "b"), lambda: read(entity_tag("folder", 6)), app=app
        )
    message = str(info.value)
    assert "stale: served from the cache" in message
    assert "read() after write():     ['a']" in message
    assert "read() without the cache: ['a', 'b']" in message
    assert "titles:folder:6" in message and "overlap: none" in message


@pytest.mark.auto_tags_off  # with automatic dependencies the view is fresh anyway
def test_the_app_is_learnt_from_the_entry(notes_app: NotesApp) -> None:
    # no app=, no app context: the entry the first read stores names its app
    with pytest.raises(AssertionError, match="overlap: none"):
        assert_fresh_after(
            lambda: notes_app.add_note(5, "b"), lambda: notes_app.get("/folders/5/notes-forgetful")
        )


def test_a_write_the_cache_does_not_see(notes_app: NotesApp) -> None:
    """A write behind the tracker's back (another engine): nothing invalidated."""
    url = notes_app.app.config["SQLALCHEMY_DATABASE_URI"]

    def untracked_write() -> None:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO plugin_notes (folder_id, title) VALUES (5, 'behind')")
            )
        engine.dispose()

    with pytest.raises(AssertionError) as info:
        assert_fresh_after(
            untracked_write, lambda: notes_app.get("/folders/5/notes"), app=notes_app.app
        )
    message = str(info.value)
    assert "write() invalidated nothing" in message and "did write() commit?" in message


def test_a_write_that_changes_nothing_read_shows(notes_app: NotesApp) -> None:
    def other_folder() -> None:
        notes_app.add_note(99, "elsewhere")

    with pytest.raises(AssertionError, match="write\\(\\) did not change what read\\(\\) returns"):
        assert_fresh_after(
            other_folder, lambda: notes_app.get("/folders/5/notes"), app=notes_app.app
        )
    assert_fresh_after(
        other_folder,
        lambda: notes_app.get("/folders/5/notes"),
        app=notes_app.app,
        require_change=False,
    )


def test_a_read_that_does_not_use_the_cache(notes_app: NotesApp) -> None:
    def read() -> Any:
        with notes_app.cache.disabled():
            return notes_app.get("/folders/5/notes")

    with pytest.raises(AssertionError, match=r"did not use the cache .* BYPASS"):
        assert_fresh_after(lambda: notes_app.add_note(5, "b"), read, app=notes_app.app)


@pytest.mark.auto_tags_off  # with automatic dependencies the view is fresh anyway
def test_an_entry_cached_before_the_first_read(notes_app: NotesApp) -> None:
    notes_app.get("/folders/5/notes-forgetful")  # cached before: its tags are not seen
    with pytest.raises(AssertionError, match="cached before the first read"):
        assert_fresh_after(
            lambda: notes_app.add_note(5, "b"),
            lambda: notes_app.get("/folders/5/notes-forgetful"),
            app=notes_app.app,
        )


def test_compare(notes_app: NotesApp) -> None:
    """``compare`` picks the part of the answer that must be fresh."""
    notes_app.add_note(5, "a")
    with pytest.raises(AssertionError, match="did not change"):
        assert_fresh_after(
            lambda: notes_app.add_note(5, "b"),
            lambda: notes_app.get("/folders/5/notes"),
            app=notes_app.app,
            compare=lambda r: r.status_code,  # the status does not change
        )
