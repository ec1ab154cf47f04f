"""The pytest plugin installed with the package (entry point ``pytest11``, name
``dataroom_cache``): fixtures for testing an app that uses flask-dataroom-cache.

pytest loads it in every test run of every project installed next to the package, so it
is inert until a test asks for one of its fixtures: no options, no hooks, no autouse
fixture, and no import of Flask, SQLAlchemy or the extension before a fixture runs (the
package's ``__init__`` imports its names lazily). Disable it with ``-p no:dataroom_cache``.

* ``dataroom_cache``: the app's cache on a fresh, empty memory backend for one test
  (a :class:`~flask_dataroom_cache.testing.CacheUnderTest`), put back afterwards;
* ``dataroom_cache_redis``: the same on the Redis of ``DATAROOM_REDIS_URL`` /
  ``REDIS_URL`` under a random key prefix (its keys removed afterwards, never
  ``FLUSHDB``); skipped when neither variable is set;
* ``dataroom_cache_app``: the app they use: the project's ``app`` fixture (pytest-flask's
  convention); override it to pick another.

The helpers (``assert_fresh_after``, ``capture_invalidations``, ``assert_hit``, ...) are
in :mod:`flask_dataroom_cache.testing`, importable without pytest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import CacheUnderTest

__all__ = ["dataroom_cache", "dataroom_cache_app", "dataroom_cache_redis"]


@pytest.fixture
def dataroom_cache_app(request: pytest.FixtureRequest) -> Any:
    """The Flask app the ``dataroom_cache`` fixtures work on: the ``app`` fixture.
    Override this fixture in a conftest.py when the app fixture has another name."""
    try:
        return request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        pytest.fail(
            "the dataroom_cache fixtures need the Flask app: define a fixture named 'app' "
            "that returns it (pytest-flask's convention), or override the "
            "'dataroom_cache_app' fixture in your conftest.py",
            pytrace=False,
        )


@pytest.fixture
def dataroom_cache(dataroom_cache_app: Any) -> Iterator[CacheUnderTest]:
    """The app's cache on a fresh, empty memory backend for this test."""
    from .testing import fresh_memory_cache

    with fresh_memory_cache(dataroom_cache_app) as cache:
        yield cache


@pytest.fixture
def dataroom_cache_redis(dataroom_cache_app: Any) -> Iterator[CacheUnderTest]:
    """The app's cache on the Redis of ``DATAROOM_REDIS_URL`` / ``REDIS_URL`` under a
    random key prefix for this test (its keys removed afterwards); skipped when unset."""
    from .config import environment_redis_url

    url = environment_redis_url()
    if url is None:
        pytest.skip("dataroom_cache_redis: REDIS_URL is not set (set it to run on Redis)")
    from .testing.isolation import RedisUnavailable, fresh_redis_cache

    entered = False
    try:
        with fresh_redis_cache(dataroom_cache_app, url) as cache:
            entered = True
            yield cache
    except RedisUnavailable as exc:
        if entered:
            raise
        pytest.fail(f"dataroom_cache_redis: {exc}", pytrace=False)
