"""The pytest plugin, run by pytest itself (``pytester``): its fixtures in a generated
test file, a stale read's failure message, a plugin that costs nothing unless used, the
Redis fixture's skip, and the ``pytest11`` entry point the package declares.

The runs load the plugin by module (``-p flask_dataroom_cache.pytest_plugin``) and block
the entry point's name (``-p no:dataroom_cache``): the tests run from a checkout whose
installed metadata may not declare the entry point yet, or may point at another copy.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "no:dataroom_cache", "-p", "flask_dataroom_cache.pytest_plugin")
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL") or None

CONFTEST = '''
import pytest
from flask import Flask, jsonify

from flask_dataroom_cache import DataRoomCache

cache = DataRoomCache()
ITEMS = {"1": ["a"]}


@pytest.fixture
def app():
    app = Flask("plugin_app")
    app.config.update(TESTING=True, REDIS_URL="")  # "": memory, whatever the environment says
    cache.init_app(app)

    @app.get("/rooms/<room>/items")
    @cache.cached(shared=True, tags=lambda room: [f"room:{room}"])
    def items(room):
        return jsonify(items=ITEMS.get(room, []))

    @app.get("/rooms/<room>/items-forgetful")
    @cache.cached(shared=True, tags=lambda room: ["rooms"])
    def items_forgetful(room):
        return jsonify(items=ITEMS.get(room, []))

    yield app
    cache.uninstall(app)


def add_item(app, room, item):
    """A write: the data changes, and the room's tag is invalidated (as a commit would)."""
    ITEMS.setdefault(room, []).append(item)
    with app.app_context():
        cache.invalidate_tags(f"room:{room}")
'''

USING_THE_FIXTURES = """
from conftest import add_item, cache

from flask_dataroom_cache.testing import assert_hit, assert_miss, capture_invalidations


def test_fixture(app, dataroom_cache):
    assert dataroom_cache.kind == "memory" and dataroom_cache.app is app
    client = app.test_client()
    assert_miss(client.get("/rooms/1/items"))
    assert_hit(client.get("/rooms/1/items"))
    with cache.disabled():
        assert client.get("/rooms/1/items").headers["X-Cache"] == "BYPASS"
    with capture_invalidations(app) as sent:
        add_item(app, "1", "b")
    sent.assert_any("room:1")
    assert sent.tags == ["room:1"]
    dataroom_cache.assert_fresh_after(
        lambda: add_item(app, "1", "c"), lambda: client.get("/rooms/1/items")
    )


def test_cleared_between_tests(app, dataroom_cache):
    assert_miss(app.test_client().get("/rooms/1/items"))  # the first test's entry is gone
"""

STALE = """
from conftest import add_item


def test_stale(app, dataroom_cache):
    client = app.test_client()
    dataroom_cache.assert_fresh_after(
        lambda: add_item(app, "2", "x"), lambda: client.get("/rooms/2/items-forgetful")
    )
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATAROOM_REDIS_URL", raising=False)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_test_file_using_the_fixtures_passes(project: pytest.Pytester) -> None:
    project.makepyfile(test_app=USING_THE_FIXTURES)
    result = project.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


COUNTED = """
def test_one(app, {fixture}):
    client = app.test_client()
    client.get("/rooms/1/items")
    client.get("/rooms/1/items")
    assert {fixture}.stats()["total"]["hits"] == 1
    assert {fixture}.stats()["total"]["misses"] == 1


def test_two(app, {fixture}):
    test_one(app, {fixture})


def test_the_apps_own_counts_come_back(app):
    from conftest import cache

    with app.app_context():
        assert cache.stats()["total"]["hits"] == 0  # the blocks counted on their own
"""


@pytest.mark.parametrize("fixture", ["dataroom_cache", "dataroom_cache_redis"])
def test_stats_count_one_test_only(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fixture: str
) -> None:
    """An app shared by the tests (session scope): each test's ``stats()`` starts at zero."""
    if fixture == "dataroom_cache_redis":
        if REDIS_URL is None:
            pytest.skip("needs REDIS_URL")
        monkeypatch.setenv("REDIS_URL", REDIS_URL)
    shared = CONFTEST.replace(
        "@pytest.fixture\ndef app():", '@pytest.fixture(scope="session")\ndef app():'
    )
    assert shared != CONFTEST
    project.makeconftest(shared)
    project.makepyfile(test_counts=COUNTED.format(fixture=fixture))
    project.runpytest(*PLUGIN, "-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_a_stale_read_fails_with_the_tags(project: pytest.Pytester) -> None:
    project.makepyfile(test_stale=STALE)
    result = project.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert_fresh_after: read() after write() is stale: served from the cache",
            # (fnmatch: [ and ] are a character class, ? matches them)
            '*read() after write():*X-Cache: HIT, body b\'{"items":??}*',
            '*read() without the cache:*X-Cache: BYPASS, body b\'{"items":?"x"?}*',
            "*the read's entry carries the tags:",
            "*view:items_forgetful:room=2*: rooms, ~epoch",
            "*write() invalidated:",
            "*api: room:2",
            "*overlap: none -- the entry carries none of the tags the write invalidated*",
        ]
    )
    # the helper's own frames are hidden: the test's line is the last one shown
    assert "freshness.py" not in result.stdout.str()


def test_the_app_fixture_is_required(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(dataroom_cache):\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the dataroom_cache fixtures need the Flask app*'app'*"])


def test_another_app_fixture(project: pytest.Pytester) -> None:
    project.makeconftest(
        CONFTEST.replace("def app():", "def my_app():")
        + "\n\n@pytest.fixture\ndef dataroom_cache_app(my_app):\n    return my_app\n"
    )
    project.makepyfile(
        "def test_x(my_app, dataroom_cache):\n    assert dataroom_cache.app is my_app\n"
    )
    project.runpytest(*PLUGIN, "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_redis_fixture_skips_without_redis_url(project: pytest.Pytester) -> None:
    project.makepyfile("def test_x(dataroom_cache_redis):\n    raise AssertionError\n")
    result = project.runpytest(*PLUGIN, "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*dataroom_cache_redis: REDIS_URL is not set*"])


@pytest.mark.skipif(REDIS_URL is None, reason="needs REDIS_URL")
def test_redis_fixture_on_redis(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    assert REDIS_URL is not None
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    project.makepyfile(
        USING_THE_FIXTURES.replace("dataroom_cache)", "dataroom_cache_redis)")
        .replace("dataroom_cache.kind", "dataroom_cache_redis.kind")
        .replace("dataroom_cache.app", "dataroom_cache_redis.app")
        .replace("dataroom_cache.assert", "dataroom_cache_redis.assert")
        .replace('== "memory"', '== "redis"')
    )
    project.runpytest(*PLUGIN, "-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_an_unreachable_redis_fails_the_test(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    project.makepyfile("def test_x(dataroom_cache_redis):\n    pass\n")
    result = project.runpytest(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*dataroom_cache_redis: the Redis at redis://127.0.0.1:1/0*"])


def test_the_plugin_is_inert_unless_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded in a fresh process: no Flask, SQLAlchemy or extension import, no options."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *sys.path]))
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_was_imported(request):
            assert request.config.pluginmanager.has_plugin("flask_dataroom_cache.pytest_plugin")
            loaded = [m for m in ("flask", "sqlalchemy", "flask_dataroom_cache.extension")
                      if m in sys.modules]
            assert loaded == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "flask_dataroom_cache.pytest_plugin")
    result.assert_outcomes(passed=1)


def test_the_plugin_has_no_hooks_options_or_autouse_fixtures() -> None:
    import flask_dataroom_cache.pytest_plugin as plugin

    assert [name for name in vars(plugin) if name.startswith("pytest_")] == []
    fixtures = {"dataroom_cache", "dataroom_cache_app", "dataroom_cache_redis"}
    assert set(plugin.__all__) == fixtures
    for name in fixtures:
        definition = getattr(plugin, name)
        marker = getattr(definition, "_fixture_function_marker", None)
        assert marker is not None and not marker.autouse and marker.scope == "function", name


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {
        "dataroom_cache": "flask_dataroom_cache.pytest_plugin"
    }
