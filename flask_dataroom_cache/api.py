"""The seed's function API, acting on ``current_app``'s cache.

These are thin wrappers: each finds the app's :class:`~.store.CacheStore` and calls it,
so code written against the original ``utils.cache`` module keeps working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from flask import current_app, has_app_context

from .extension import DataRoomCache
from .keys import build_key
from .state import EXTENSION_KEY
from .tags import dataroom_tag, entity_tag, list_tag, user_tag
from .tags import get_cache_tags as get_cache_tags

__all__ = [
    "aget_or_set",
    "cache_delete",
    "cache_get",
    "cache_set",
    "get_cache_key",
    "get_cache_tags",
    "get_or_set",
    "invalidate_cache",
    "invalidate_tags",
]

T = TypeVar("T")


def get_cache_key(entity_type: str, entity_id: Any = None, **params: Any) -> str:
    """``{prefix}:{entity_type}[:{entity_id}][:{name}={value}...]``, params sorted by name.

    The prefix is the current app's ``CACHE_KEY_PREFIX`` (``dataroom`` outside an app).
    Injective: see :mod:`flask_dataroom_cache.keys`.
    """
    prefix = "dataroom"
    if has_app_context():
        state = current_app.extensions.get(EXTENSION_KEY)
        if state is not None:
            prefix = state.settings.key_prefix
    return build_key(prefix, entity_type, entity_id, params)


def cache_get(key: str, tags: Iterable[str] | None = None) -> Any:
    """The cached value, or ``None`` on a miss (use :func:`get_or_set` to cache ``None``)."""
    return DataRoomCache.state().store.get(key, tags)


def cache_set(
    key: str, value: Any, ttl: int | None = None, tags: Iterable[str] | None = None
) -> bool:
    """Store ``value``; stamped with the versions this thread's last missing
    :func:`cache_get` of ``key`` saw, so the get / compute / set pattern is race-free."""
    return DataRoomCache.state().store.set(key, value, ttl, tags)


def cache_delete(key: str) -> None:
    """Remove one entry."""
    DataRoomCache.state().store.delete(key)


def get_or_set(
    key: str, compute: Callable[[], T], ttl: int | None = None, tags: Iterable[str] | None = None
) -> T:
    """Return the cached value or compute and store it (versions captured before compute)."""
    return DataRoomCache.state().store.get_or_set(key, compute, ttl, tags)


async def aget_or_set(
    key: str,
    compute: Callable[[], Awaitable[T] | T],
    ttl: int | None = None,
    tags: Iterable[str] | None = None,
) -> T:
    """The awaitable twin of :func:`get_or_set`: ``compute`` is awaited (``docs/async.md``)."""
    from .asyncstore import aget_or_set as run

    return await run(DataRoomCache.state().store, key, compute, ttl, tags)


def invalidate_tags(*tags: str) -> None:
    """Invalidate tags; inside a transaction with tracked changes, at its commit."""
    DataRoomCache.state().store.invalidate(tags)


def invalidate_cache(
    entity_type: str,
    entity_id: Any,
    data_room_id: Any = None,
    user_id: Any = None,
    related_entities: Iterable[tuple[str, Any] | str] = (),
) -> None:
    """The seed's invalidation call: the entity, its type's lists, its room and user.

    ``related_entities`` holds ``(entity, id)`` pairs (``("folder", "list")`` is the
    folder list tag, ``("dataroom", room_id)`` the room) or ready tag strings such as
    ``contents_tag(parent_id)``.
    """
    tags = [list_tag(entity_type)]
    if entity_id is not None:
        tags.append(entity_tag(entity_type, entity_id))
    if data_room_id is not None:
        tags.append(dataroom_tag(data_room_id))
    if user_id is not None:
        tags.append(user_tag(user_id))
    for rel in related_entities:
        if isinstance(rel, str):
            tags.append(rel)
            continue
        kind, rid = rel
        tags.append(list_tag(kind) if rid == "list" else entity_tag(kind, rid))
    DataRoomCache.state().store.invalidate(tags)
