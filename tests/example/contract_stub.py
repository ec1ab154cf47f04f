"""A minimal stand-in for the tracking and views helpers, used ONLY while they are not merged.

The example app is written against the contract in the shared brief (``cache.track``,
``cache.cached``, ``cache.identity``, ``cache.skip``). Until the real modules land on this
branch, :func:`install` adds just the missing methods to ``DataRoomCache`` so the example's
tests can run; once the real ones exist it does nothing. It is deliberately small (no
savepoints, no bulk statements, no locks): it is not the library, and nothing outside the
tests imports it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, make_response, request
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, attributes

from flask_dataroom_cache import DataRoomCache, user_tag
from flask_dataroom_cache.extension import CacheState
from flask_dataroom_cache.keys import build_key
from flask_dataroom_cache.store import MISSING
from flask_dataroom_cache.tags import entity_tag
from flask_dataroom_cache.tags import list_tag as make_list_tag

_PENDING = "contract_stub_pending"


def _parent_tag(kind: str, value: Any) -> str:
    if kind == "folder":
        return f"folder:{value}/contents"
    return entity_tag(kind, value)


def _rules(ext: DataRoomCache) -> dict[type, dict[str, Any]]:
    rules: dict[type, dict[str, Any]] = ext.__dict__.setdefault("_stub_rules", {})
    return rules


def _tags_of(ext: DataRoomCache, session: Session) -> set[str]:
    tags: set[str] = set()
    changes = [(o, "insert") for o in session.new] + [(o, "delete") for o in session.deleted]
    changes += [(o, "update") for o in session.dirty if session.is_modified(o)]
    for obj, _kind in changes:
        rule = None
        for cls in type(obj).__mro__:
            rule = _rules(ext).get(cls)
            if rule:
                break
        if rule is None:
            continue
        tags.add(entity_tag(rule["entity"], getattr(obj, rule["id_attr"])))
        if rule["list_tag"]:
            tags.add(make_list_tag(rule["entity"]))
        for attr, kind in (rule["parents"] or {}).items():
            hist = attributes.get_history(obj, attr)
            for value in (*hist.added, *hist.deleted, *hist.unchanged):
                if value is not None:
                    tags.add(_parent_tag(kind, value))
        if rule["members"] is not None:
            tags.update(user_tag(uid) for uid in rule["members"](obj))
    return tags


def _install_tracking(ext: DataRoomCache, app: Flask, state: CacheState) -> None:
    sa = app.extensions["sqlalchemy"]
    factory = sa.session.session_factory
    if not getattr(factory, "_stub_tracked", False):
        factory._stub_tracked = True

        @event.listens_for(factory, "after_flush")
        def _after_flush(session: Session, _ctx: Any) -> None:
            session.info.setdefault(_PENDING, set()).update(_tags_of(ext, session))

        @event.listens_for(factory, "after_commit")
        def _after_commit(session: Session) -> None:
            pending = session.info.pop(_PENDING, None)
            if pending and has_app_context():
                DataRoomCache.state().store.invalidate(sorted(pending), defer=False)

        @event.listens_for(factory, "after_rollback")
        def _after_rollback(session: Session) -> None:
            session.info.pop(_PENDING, None)

    def _dirty() -> bool:
        return has_app_context() and bool(sa.session().info.get(_PENDING))

    state.store.bypass_checks.append(_dirty)


def _track(
    self: DataRoomCache,
    model: type | None = None,
    *,
    entity: str,
    id_attr: str = "id",
    parents: dict[str, str] | None = None,
    list_tag: bool = True,
    members: Callable[[Any], Any] | None = None,
) -> Any:
    if not self.__dict__.get("_stub_hooked"):
        self.__dict__["_stub_hooked"] = True
        self._init_hooks.append(lambda app, state: _install_tracking(self, app, state))

    def deco(cls: type) -> type:
        inspect(cls, raiseerr=False)
        _rules(self)[cls] = {
            "entity": entity,
            "id_attr": id_attr,
            "parents": parents,
            "list_tag": list_tag,
            "members": members,
        }
        return cls

    return deco(model) if model is not None else deco


def _identity(self: DataRoomCache, fn: Callable[[], str | None]) -> Callable[[], str | None]:
    self.__dict__["_stub_identity"] = fn
    return fn


def _skip(self: DataRoomCache) -> None:
    g._stub_skip = True


def _cached(
    self: DataRoomCache,
    timeout: int | None = None,
    *,
    tags: Any = None,
    shared: bool = False,
    **_ignored: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    def deco(view: Callable[..., Any]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            store = DataRoomCache.state().store
            ident_fn = self.__dict__.get("_stub_identity")
            ident = None if shared or ident_fn is None else ident_fn()
            if not shared and ident is None:
                resp = make_response(view(**kwargs))
                resp.headers["X-Cache"] = "BYPASS"
                return resp
            tag_list = list(tags(**kwargs) if callable(tags) else (tags or []))
            if not shared:
                tag_list.append(user_tag(ident))
            key = build_key(
                current_app.extensions["dataroom_cache"].settings.key_prefix,
                "stubview",
                request.endpoint,
                {"path": request.path, "q": request.query_string.decode(), "u": ident or ""},
            )
            hit = store.lookup(key, tag_list)
            if hit is not MISSING:
                resp = Response(hit["body"], status=hit["status"], mimetype=hit["mimetype"])
                resp.headers["X-Cache"] = "HIT"
                return resp
            g._stub_skip = False
            resp = make_response(view(**kwargs))
            if resp.status_code == 200 and not g.pop("_stub_skip", False):
                body = resp.get_data(as_text=True)
                store.set(
                    key,
                    {"body": body, "status": 200, "mimetype": resp.mimetype},
                    timeout,
                    tag_list,
                )
            resp.headers["X-Cache"] = "MISS"
            return resp

        return wrapper

    return deco


def install() -> list[str]:
    """Add whatever part of the contract ``DataRoomCache`` lacks; returns what was added."""
    added = []
    if not hasattr(DataRoomCache, "track"):
        DataRoomCache.track = _track  # type: ignore[attr-defined]
        added.append("track")
    for name, fn in (("cached", _cached), ("identity", _identity), ("skip", _skip)):
        if not hasattr(DataRoomCache, name):
            setattr(DataRoomCache, name, fn)
            added.append(name)
    return added
