"""Cache warmers: the functions ``flask dataroom-cache warm`` runs (``@cache.warmer``).

They are kept on the ``DataRoomCache`` object (``extension.warmers``), by name, in
registration order, shared by every app of that object. A name is unique: registering
another function under a name already taken raises ``ValueError`` (the same function
again is fine). The ``warm`` command (``cli.py``) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from .extension import DataRoomCache

__all__ = ["add_warmer", "warmer", "warmers"]

F = TypeVar("F", bound=Callable[..., Any])


def warmers(extension: DataRoomCache) -> dict[str, Callable[[], Any]]:
    """The warmers registered on ``extension``, by name, in registration order."""
    return extension.warmers


def add_warmer(extension: DataRoomCache, fn: F, name: str | None = None) -> F:
    """Register ``fn`` under ``name`` (default: its ``__name__``); returns ``fn``."""
    key = name or getattr(fn, "__name__", None) or repr(fn)
    table = warmers(extension)
    if key in table and table[key] is not fn:
        raise ValueError(f"a cache warmer named {key!r} is already registered")
    table[key] = fn
    return fn


def warmer(extension: DataRoomCache, fn: Callable[[], Any] | None, name: str | None) -> Any:
    """``cache.warmer``: register ``fn`` now, or, without it, return the decorator."""
    if fn is None:
        return lambda f: add_warmer(extension, f, name)
    return add_warmer(extension, fn, name)
