"""The commit hook: ``dialect.do_commit`` wrapped, so Core tags go out right after COMMIT.

SQLAlchemy's ``commit`` engine event fires *before* the COMMIT: a reader in between would
store the old row under the new tag tokens. So each tracked engine's dialect gets a
wrapper as its ``do_commit``: it calls the original, then tells every tracker listening on
that dialect (:meth:`~.connection.ConnectionEvents.after_dbapi_commit`); if the COMMIT raises,
it tells them that instead (:meth:`~.connection.ConnectionEvents.dbapi_commit_failed`), and
whether the COMMIT is in doubt: only the DBAPI's ``IntegrityError`` says the database refused
it (rolled back); any other error (a lost connection) may have come after it committed.

One wrapper per dialect, shared by every tracker of the process that listens on one of
its engines (a dialect belongs to one ``create_engine``). Every patch has its unpatch:
:func:`unhook_commit` removes a tracker, and with the last one restores the original
``do_commit``, unless someone wrapped it after us (then our wrapper stays, calling no one:
removing it would remove theirs).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import ConnectionEvents

__all__ = ["hook_commit", "unhook_commit"]


class _CommitHook:
    """``dialect.do_commit`` replaced by a wrapper that calls the original, then tells
    every tracker listening on the dialect (:meth:`ConnectionEvents.after_dbapi_commit`)."""

    def __init__(self, dialect: Any) -> None:
        #: The dialect had its own ``do_commit`` (someone patched it before us): restored
        #: as is; otherwise the instance attribute is removed and the class's shows again.
        self.had_own = "do_commit" in vars(dialect)
        self.original = dialect.do_commit
        self.listeners: tuple[weakref.ref[ConnectionEvents], ...] = ()
        hook = self  # the installed wrapper keeps its hook alive
        original = self.original
        dbapi = getattr(dialect, "loaded_dbapi", None) or getattr(dialect, "dbapi", None)
        refused: Any = getattr(dbapi, "IntegrityError", None) or ()

        def do_commit(dbapi_connection: Any) -> None:
            listeners = hook.listeners
            try:
                original(dbapi_connection)
            except BaseException as exc:
                in_doubt = not isinstance(exc, refused)
                for ref in listeners:
                    found = ref()
                    if found is not None:
                        found.dbapi_commit_failed(dbapi_connection, in_doubt)
                raise
            for ref in listeners:
                found = ref()
                if found is not None:
                    found.after_dbapi_commit(dbapi_connection)

        self.wrapper = do_commit
        dialect.do_commit = do_commit


#: dialect -> its hook (weakly both ways: the dialect keeps its wrapper, which keeps the hook).
_HOOKS: weakref.WeakKeyDictionary[Any, weakref.ref[_CommitHook]] = weakref.WeakKeyDictionary()
_HOOKS_LOCK = threading.Lock()


def hook_commit(dialect: Any, listener: ConnectionEvents) -> None:
    """Have ``listener.after_dbapi_commit`` called right after each COMMIT of ``dialect``."""
    with _HOOKS_LOCK:
        ref = _HOOKS.get(dialect)
        hook = ref() if ref is not None else None
        if hook is None:
            hook = _CommitHook(dialect)
            _HOOKS[dialect] = weakref.ref(hook)
        if not any(r() is listener for r in hook.listeners):
            hook.listeners = (*hook.listeners, weakref.ref(listener))


def unhook_commit(dialect: Any, listener: ConnectionEvents) -> None:
    """Stop telling ``listener``; the last one gone, the original ``do_commit`` is back
    (unless someone wrapped it after us: then our wrapper stays, calling no one)."""
    with _HOOKS_LOCK:
        ref = _HOOKS.get(dialect)
        hook = ref() if ref is not None else None
        if hook is None:
            return
        hook.listeners = tuple(r for r in hook.listeners if r() not in (None, listener))
        if hook.listeners or vars(dialect).get("do_commit") is not hook.wrapper:
            return
        if hook.had_own:
            dialect.do_commit = hook.original
        else:
            del dialect.do_commit
        del _HOOKS[dialect]
