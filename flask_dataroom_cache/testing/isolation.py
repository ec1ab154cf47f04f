"""One test's cache: the app's cache moved onto a fresh backend for the length of a
``with`` block (what the ``dataroom_cache`` / ``dataroom_cache_redis`` fixtures use).

Only ``store.backend`` and the counters are replaced (the tracker's hooks on the store and
the views stay as ``init_app`` wired them; the tracker is told, so the new backend's tag
tokens count as this process's own for its snapshot rule; ``stats()`` counts this block
only, from zero, and the app's own counts come back afterwards; the counters' ``sink``,
Prometheus's multiprocess mode, is kept), the invalidations sent during
the block are also given to the app's own backend (so nothing it held before the block is
served stale after it), the cache is switched on (``store.enabled``)
even when the app's config disables it, and everything is put back afterwards:

* :func:`fresh_memory_cache`: an empty :class:`~..backends.memory.MemoryBackend`;
* :func:`fresh_redis_cache`: a Redis backend on ``url`` under a key prefix of its own
  (random unless given; the app's settings carry it, so view keys use it too), its keys
  removed afterwards with ``SCAN`` + ``UNLINK`` of that prefix only (never ``FLUSHDB``).

Both yield a :class:`CacheUnderTest`: the app, its store and backend, and the testing
helpers bound to the app.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import signals
from ..backends.base import BackendError
from ..metrics import Metrics
from .captures import SentInvalidations, StoredEntries, capture_entries, capture_invalidations
from .freshness import assert_fresh_after

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..config import Settings
    from ..extension import DataRoomCache
    from ..state import CacheState
    from ..store import CacheStore

__all__ = ["CacheUnderTest", "RedisUnavailable", "fresh_memory_cache", "fresh_redis_cache"]

T = TypeVar("T")


class RedisUnavailable(RuntimeError):
    """The Redis given to :func:`fresh_redis_cache` does not answer."""


@dataclass
class CacheUnderTest:
    """The app's cache during one test, and the testing helpers bound to that app."""

    app: Any
    #: The ``DataRoomCache`` initialised on :attr:`app`.
    extension: DataRoomCache
    state: CacheState
    store: CacheStore
    #: The fresh backend of this test.
    backend: Backend
    #: ``"memory"`` or ``"redis"``.
    kind: str
    #: The key prefix the entries of this test are stored under.
    prefix: str

    # -- the cache, without an app context ---------------------------------------------
    def get(self, key: str, tags: Iterable[str] | None = None, default: Any = None) -> Any:
        return self.store.get(key, tags, default)

    def set(
        self, key: str, value: Any, ttl: int | None = None, tags: Iterable[str] | None = None
    ) -> bool:
        return self.store.set(key, value, ttl, tags)

    def get_or_set(
        self,
        key: str,
        compute: Callable[[], T],
        ttl: int | None = None,
        tags: Iterable[str] | None = None,
    ) -> T:
        return self.store.get_or_set(key, compute, ttl, tags)

    def invalidate_tags(self, *tags: str) -> None:
        self.store.invalidate(tags)

    def clear(self) -> int:
        """Remove every entry and tag version of this test's backend."""
        return self.store.clear()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    # -- the testing helpers ---------------------------------------------------------------
    def disabled(self) -> AbstractContextManager[None]:
        """``cache.disabled()`` of the app's extension."""
        return self.extension.disabled()

    def capture_invalidations(self) -> AbstractContextManager[SentInvalidations]:
        return capture_invalidations(self.app)

    def capture_entries(self) -> AbstractContextManager[StoredEntries]:
        return capture_entries(self.app)

    def assert_fresh_after(
        self,
        write: Callable[[], Any],
        read: Callable[[], T],
        *,
        compare: Callable[[T], Any] | None = None,
        require_change: bool = True,
    ) -> T:
        __tracebackhide__ = True
        return assert_fresh_after(
            write, read, app=self.app, compare=compare, require_change=require_change
        )


def _state(app: Any) -> CacheState:
    from ..extension import DataRoomCache

    return DataRoomCache.state(app)


@contextmanager
def _swapped(
    app: Any, backend: Backend, kind: str, settings: Settings | None = None
) -> Iterator[CacheUnderTest]:
    app = signals.real_app(app)  # the signals' sender: the app, never a proxy of it
    state = _state(app)
    store = state.store
    saved = (store.backend, store.enabled, store.settings, state.settings)
    saved_metrics = state.metrics
    metrics = Metrics(saved_metrics.max_endpoints)
    metrics.sink = saved_metrics.sink
    store.metrics = state.metrics = metrics  # stats() of this block only
    key_memo = state.views.key_memo if state.views is not None else None
    store.backend = backend
    store.enabled = True
    if settings is not None:  # another key prefix: the views' keys must use it
        store.settings = state.settings = settings
        if key_memo is not None:
            key_memo.clear()
    if state.tracker is not None:
        state.tracker.backend_replaced()
    store.forget_captures()
    original = saved[0]

    def forward(_sender: Any, *, tags: tuple[str, ...], **_kw: Any) -> None:
        try:
            original.invalidate(tags)
        except BackendError as exc:
            store.report_error("invalidation (the app's own backend, during a test)", exc)

    signals.tags_invalidated.connect(forward, sender=app, weak=False)
    try:
        yield CacheUnderTest(
            app, state.extension, state, store, backend, kind, state.settings.key_prefix
        )
    finally:
        signals.tags_invalidated.disconnect(forward)
        store.forget_captures()
        store.backend, store.enabled, store.settings, state.settings = saved
        store.metrics = state.metrics = saved_metrics
        if state.tracker is not None:
            state.tracker.backend_replaced()
        if settings is not None and key_memo is not None:
            key_memo.clear()


@contextmanager
def fresh_memory_cache(app: Any) -> Iterator[CacheUnderTest]:
    """``app``'s cache on an empty memory backend inside the block."""
    from ..backends.memory import MemoryBackend

    state = _state(app)
    backend = MemoryBackend(state.settings.max_entries)
    try:
        with _swapped(app, backend, "memory") as cache:
            yield cache
    finally:
        backend.close()


@contextmanager
def fresh_redis_cache(app: Any, url: str, prefix: str | None = None) -> Iterator[CacheUnderTest]:
    """``app``'s cache on the Redis at ``url`` inside the block, under ``prefix`` (default:
    a random one); the prefix's keys are removed at the end. Raises
    :class:`RedisUnavailable` when
    that Redis does not answer."""
    from ..backends.redis import RedisBackend

    state = _state(app)
    prefix = prefix or "test" + uuid.uuid4().hex[:12]
    settings = dataclasses.replace(state.settings, redis_url=url, key_prefix=prefix)
    backend = RedisBackend.from_url(
        url,
        prefix=prefix,
        tag_ttl=settings.tag_ttl,
        socket_timeout=max(settings.redis_socket_timeout, 2.0),
    )
    try:
        backend.ping()
    except BackendError as exc:
        backend.close()
        raise RedisUnavailable(f"the Redis at {url} does not answer: {exc}") from exc
    try:
        with _swapped(app, backend, "redis", settings) as cache:
            yield cache
    finally:
        try:
            backend.clear()
        finally:
            backend.close()
