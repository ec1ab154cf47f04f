"""``cache.disabled()``: a block in which this thread (or asyncio task) neither reads nor
fills the cache.

One :class:`Disabler` per ``DataRoomCache`` holds a :class:`contextvars.ContextVar`;
``init_app`` adds its ``get`` to each app's ``store.bypass_checks`` (:meth:`Disabler.install`,
undone by ``uninstall``). Inside the block every read is a bypass (``store.read``,
``get_or_set``, ``cache.get``; a cached view answers with ``X-Cache: BYPASS``) and every
fill is refused (``cache.set`` returns False), counted as ``bypasses`` like the other
bypasses. Invalidations are not affected: commits inside the block still invalidate.

Being a context variable, the switch is seen by the code this thread or task runs (a
Flask test client request runs in the caller's thread), never by another thread or task,
and blocks nest (the outer one is still on after an inner one ends). Outside a block the
check is one C call returning ``None``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .store import DISABLED_BLOCK

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["Disabler"]

_numbers = itertools.count(1)


class Disabler:
    """The ``disabled()`` switch of one ``DataRoomCache`` (every app it is initialised on)."""

    def __init__(self) -> None:
        #: :data:`~flask_dataroom_cache.store.DISABLED_BLOCK` inside a block (the reason
        #: the store's bypass check gives), else None.
        self._on: ContextVar[str | None] = ContextVar(
            f"dataroom_cache_disabled_{next(_numbers)}", default=None
        )

    @property
    def active(self) -> bool:
        """True inside a ``disabled()`` block of this thread or task."""
        return self._on.get() is not None

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Every read misses and nothing is stored until the block ends (nestable)."""
        token = self._on.set(DISABLED_BLOCK)
        try:
            yield
        finally:
            self._on.reset(token)

    def install(self, store: CacheStore) -> Callable[[], None]:
        """Make ``store`` bypass inside a block; returns the function that undoes it."""
        check = self._on.get
        store.bypass_checks.append(check)

        def detach() -> None:
            if check in store.bypass_checks:
                store.bypass_checks.remove(check)

        return detach
