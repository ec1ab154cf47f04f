"""The tag scheme: names that group cache entries so one write can invalidate them all.

A tag is a name, not a set of keys: each tag has a *version token* in the backend, and an
entry remembers the tokens of its tags at the moment its value was computed. Invalidating
a tag replaces its token, so every entry carrying it stops matching at once (O(1)).

==============================  ======================================================
Tag                             Invalidated when / covers
==============================  ======================================================
``type:{entity}``               anything of that entity type changed in a way whose rows
                                are unknown (bulk UPDATE/DELETE); every entry of the type
``{entity}:{id}``               that one entity changed (renamed, moved, deleted)
``{entity}:list``               an entity of that type was created, deleted or changed
                                in a way any *list* of that type may show
``dataroom:{id}``               anything inside the data room changed; every view
                                scoped to the room (its tree, its listings)
``folder:{id}/contents``        a folder's direct children (folders or files) changed
``user:{id}``                   what this user can see changed (membership, their room
                                list); every per-user entry of that user
==============================  ======================================================

Ids are escaped with :func:`flask_dataroom_cache.keys.escape` (``:`` and ``/`` included),
so an id can never forge another tag: folder ``a/contents`` gets ``folder:a%2Fcontents``,
never the contents tag of folder ``a``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .keys import _text, escape

__all__ = [
    "EPOCH_TAG",
    "RESERVED_NAMESPACES",
    "contents_tag",
    "dataroom_tag",
    "entity_tag",
    "get_cache_tags",
    "list_tag",
    "normalize_tags",
    "type_tag",
    "user_tag",
]

#: Carried implicitly by every entry; bumping it invalidates the whole namespace.
EPOCH_TAG = "~epoch"
#: Tag namespaces the library itself fills, which no tracked entity may take as its name
#: (its ``{entity}:{id}`` tags would merge with them): name -> what it is. ``dataroom``
#: and ``folder`` are not here: ``dataroom:{id}`` *is* the room entity's tag (a change of
#: the room invalidates everything in it), and contents tags (``folder:{id}/contents``)
#: cannot collide with an escaped id.
RESERVED_NAMESPACES: dict[str, str] = {
    "user": "user:{id} is the per-user tag every per-user cached view carries",
    "type": "type:{entity} is the tag of every entry of an entity type",
    EPOCH_TAG: "the epoch tag every entry carries",
    "~memo": "~memo:{function} and ~memo:{entry} are the tags of memoized functions",
}
MAX_TAGS_PER_ENTRY = 64


def type_tag(entity: str) -> str:
    """Every entry of ``entity`` (bulk changes whose rows are unknown)."""
    return f"type:{escape(entity)}"


def entity_tag(entity: str, entity_id: Any) -> str:
    """One entity: ``folder:{id}``."""
    return f"{escape(entity)}:{_text(entity_id)}"


def list_tag(entity: str) -> str:
    """Any list of ``entity``: ``folder:list``."""
    return f"{escape(entity)}:list"


def dataroom_tag(data_room_id: Any) -> str:
    """Everything scoped to one data room."""
    return f"dataroom:{_text(data_room_id)}"


def contents_tag(folder_id: Any) -> str:
    """The direct children of one folder."""
    return f"folder:{_text(folder_id)}/contents"


def user_tag(user_id: Any) -> str:
    """Everything one user's views show that depends on who they are."""
    return f"user:{_text(user_id)}"


def get_cache_tags(
    entity_type: str,
    entity_id: Any = None,
    *,
    data_room_id: Any = None,
    folder_id: Any = None,
    user_id: Any = None,
) -> list[str]:
    """Tags for an entry that shows ``entity_type`` data.

    ``entity_id="list"`` marks a list view (``{entity}:list``); any other id marks a
    single entity (``{entity}:{id}``). The scope arguments add the room, the folder's
    contents and the user. Always includes ``type:{entity}``.
    """
    tags = [type_tag(entity_type)]
    if entity_id == "list":
        tags.append(list_tag(entity_type))
    elif entity_id is not None:
        tags.append(entity_tag(entity_type, entity_id))
    if data_room_id is not None:
        tags.append(dataroom_tag(data_room_id))
    if folder_id is not None:
        tags.append(contents_tag(folder_id))
    if user_id is not None:
        tags.append(user_tag(user_id))
    return tags


#: Valid tag lists (as tuples) -> their normal form: a pure function's memo for the hit
#: path, which normalises the same few lists over and over. Only lists that passed the
#: checks are stored; bounded, cleared when full.
_NORMALIZED: dict[tuple[Any, ...], tuple[str, ...]] = {}
_NORMALIZED_MAX = 4096


def normalize_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Sorted, de-duplicated tuple with :data:`EPOCH_TAG` included; validates each tag."""
    if type(tags) is list or type(tags) is tuple:
        key = tuple(tags)
        try:
            done = _NORMALIZED.get(key)
        except TypeError:  # an unhashable element: the checks below refuse it
            done = None
        if done is not None:
            return done
        done = _normalize(key)
        if len(_NORMALIZED) >= _NORMALIZED_MAX:
            _NORMALIZED.clear()
        _NORMALIZED[key] = done
        return done
    return _normalize(tags)


def _normalize(tags: Iterable[str] | None) -> tuple[str, ...]:
    out = {EPOCH_TAG}
    if tags is not None:
        if isinstance(tags, str):
            raise TypeError("tags must be a list of strings, not a single string")
        for tag in tags:
            if not isinstance(tag, str) or not tag or "\n" in tag:
                raise ValueError(
                    f"invalid tag {tag!r}: tags are non-empty strings without newlines"
                )
            out.add(tag)
    if len(out) > MAX_TAGS_PER_ENTRY:
        raise ValueError(f"an entry may carry at most {MAX_TAGS_PER_ENTRY} tags, got {len(out)}")
    return tuple(sorted(out))
