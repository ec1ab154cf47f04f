"""The example app's tags, proven with the package's pytest plugin and testing helpers
(docs/testing.md): for each write, the read that shows it is fresh afterwards, and the
write sends the tags the read's entry carries."""

from __future__ import annotations

from flask.testing import FlaskClient

from flask_dataroom_cache import contents_tag, dataroom_tag, entity_tag
from flask_dataroom_cache.testing import (
    CacheUnderTest,
    assert_fresh_after,
    assert_hit,
    assert_miss,
    capture_invalidations,
)

from .conftest import Api
from .test_api import folder, upload


def test_each_write_makes_its_read_fresh(
    client: FlaskClient, alice: Api, room: str, dataroom_cache: CacheUnderTest
) -> None:
    app = dataroom_cache.app
    deals = folder(alice, room, "Deals")
    doc = upload(alice, room, "a.txt", folder_id=deals)

    dataroom_cache.assert_fresh_after(
        lambda: alice.patch(f"/api/datarooms/{room}", json={"name": "Renamed"}),
        lambda: alice.get(f"/api/datarooms/{room}"),
    )
    dataroom_cache.assert_fresh_after(
        lambda: folder(alice, room, "Later"),
        lambda: alice.get(f"/api/datarooms/{room}/folders"),
    )
    dataroom_cache.assert_fresh_after(
        lambda: alice.patch(f"/api/folders/{deals}", json={"name": "Deals 2"}),
        lambda: alice.get(f"/api/folders/{deals}"),
    )
    assert_fresh_after(  # the module-level helper, with the app given
        lambda: upload(alice, room, "b.txt", folder_id=deals),
        lambda: alice.get(f"/api/datarooms/{room}/files?folderId={deals}"),
        app=app,
    )
    dataroom_cache.assert_fresh_after(
        lambda: alice.patch(f"/api/files/{doc}", json={"name": "c.txt"}),
        lambda: alice.get(f"/api/files/{doc}"),
    )


def test_what_the_writes_invalidate(
    client: FlaskClient, alice: Api, room: str, dataroom_cache: CacheUnderTest
) -> None:
    deals = folder(alice, room, "Deals")
    with capture_invalidations(dataroom_cache.app) as sent:
        doc = upload(alice, room, "a.txt", folder_id=deals)
    sent.assert_all(entity_tag("file", doc), contents_tag(deals), dataroom_tag(room))
    with dataroom_cache.capture_invalidations() as sent:
        alice.get(f"/api/files/{doc}")  # a read invalidates nothing
    sent.assert_none()


def test_the_fixture_starts_empty_and_disabled_bypasses(
    client: FlaskClient, alice: Api, dataroom_cache: CacheUnderTest
) -> None:
    assert dataroom_cache.kind == "memory"
    assert_miss(alice.get("/api/datarooms"))
    assert_hit(alice.get("/api/datarooms"))
    with dataroom_cache.disabled():
        assert alice.get("/api/datarooms").headers["X-Cache"] == "BYPASS"
    assert_hit(alice.get("/api/datarooms"))


def test_the_views_depend_on_what_the_mode_says(
    client: FlaskClient, alice: Api, room: str, dataroom_cache: CacheUnderTest
) -> None:
    """The example runs in two modes: declared tags (plus automatic ones), or, with
    ``EXAMPLE_AUTO_TAGS=1`` (a second CI pass of tests/example and tests/e2e), automatic
    dependencies only. The entry of the room view shows which mode this run is in."""
    from flask_dataroom_cache.testing import capture_entries

    auto_only = bool(dataroom_cache.app.config.get("EXAMPLE_AUTO_TAGS"))
    with capture_entries(dataroom_cache.app) as stored:
        assert_miss(alice.get(f"/api/datarooms/{room}"))
    (entry,) = stored.entries
    assert any(t.startswith("~r:") for t in entry.tags), entry.tags  # what its SQL read
    assert (dataroom_tag(room) in entry.tags) is not auto_only, entry.tags
