"""One computation's automatic read dependencies: the per-computation context (issue 17).

While a cached view or function computes a miss, a :class:`ReadCapture` is the current
one of its thread or task (a ``ContextVar``: another thread's statements are never
seen; an asyncio task started inside inherits it). The tracker's statement listener
(``tracking/capture.py``) turns each statement run on a tracked engine into
:class:`Reads` (``tracking/reads.py``) and hands them to :meth:`ReadCapture.add`.

**Capture before compute, per statement.** :meth:`ReadCapture.add` runs *before* the
statement executes and reads the version tokens of the tags it has not seen yet in one
batched ``versions()`` call. Each token is therefore read before the database read it
stands for, exactly DESIGN.md's rule for declared tags: a write that commits after the
statement's read bumps the token after it was captured, so the entry is dead on arrival.
Missing tokens are created by that read, before the statement: nothing here depends on a
token's age. Tokens read even earlier are as good: the missing read of an entry whose
tags this process remembers (``CacheStore.read``) reads all of them, before the
computation, and a computation reading the same things again reads no token at all.
Every statement that reads a table also captures its ``~t:`` token (in the same call), so
the row and column tags of a table can later be collapsed into a table tag
whose token predates every read of the table (:meth:`Reads.tags`, the bound).

:func:`capture_reads` opens one; nested captures (a ``get_or_set`` inside a cached view)
give their reads and tokens to the enclosing one when they end. The store reads no entry
while a capture of its own is open (``CacheStore.read``): a hit would hide the reads
behind it from the enclosing computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .autotags import epoch_tag, table_tag

__all__ = [
    "CaptureScope",
    "ReadCapture",
    "Reads",
    "TableReads",
    "capture_reads",
    "capturing",
    "current",
]

_CURRENT: ContextVar[ReadCapture | None] = ContextVar("dataroom_cache_reads", default=None)


def current() -> ReadCapture | None:
    """The capture of the computation running in this thread or task, if any."""
    return _CURRENT.get()


@dataclass(slots=True)
class TableReads:
    """How one table was read: wholly, or by which rows / column values."""

    whole: bool = False
    rows: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)

    def tags(self, table: str) -> list[str]:
        out = [epoch_tag(table)]
        if self.whole:
            out.append(table_tag(table))
        else:
            out.extend(sorted(self.rows))
            out.extend(sorted(self.columns))
        return out

    def size(self) -> int:
        return 2 if self.whole else 1 + len(self.rows) + len(self.columns)


@dataclass(slots=True)
class Reads:
    """The dependencies of a statement, or of a whole computation (merged)."""

    tables: dict[str, TableReads] = field(default_factory=dict)
    #: Why the tables read cannot be known (the entry must not be stored), else None.
    unknown: str | None = None

    def table(self, name: str) -> TableReads:
        found = self.tables.get(name)
        if found is None:
            found = self.tables[name] = TableReads()
        return found

    def whole(self, name: str) -> None:
        self.table(name).whole = True

    def merge(self, other: Reads) -> None:
        for name, reads in other.tables.items():
            mine = self.table(name)
            mine.whole = mine.whole or reads.whole
            mine.rows |= reads.rows
            mine.columns |= reads.columns
        if self.unknown is None:
            self.unknown = other.unknown

    def capture_tags(self) -> list[str]:
        """Every tag whose token must be read before the statement: the ones it carries,
        and the ``~t:`` of each table (the bound may collapse into it later)."""
        out: list[str] = []
        for name, reads in self.tables.items():
            out.extend(reads.tags(name))
            if not reads.whole:
                out.append(table_tag(name))
        return out

    def tags(self, bound: int | None = None) -> list[str] | None:
        """The dependency tags; with ``bound``, at most that many: the row/column tags of
        the table with the most of them collapse into its table tag until they fit
        (precision lost, never freshness: ``~t:`` is bumped by every write the row and
        column tags are). None when even whole tables do not fit."""
        if bound is not None:
            while sum(r.size() for r in self.tables.values()) > bound:
                fine = [(r.size(), n) for n, r in self.tables.items() if not r.whole]
                if not fine:
                    return None
                _, name = max(fine)
                self.tables[name] = TableReads(whole=True)
        out: list[str] = []
        for name, reads in self.tables.items():
            out.extend(reads.tags(name))
        return out


class ReadCapture:
    """The reads of one computation, with the token of each tag read before them."""

    __slots__ = ("failed", "owner", "reads", "tokens", "versions")

    def __init__(self, owner: object, versions: Callable[[Sequence[str]], tuple[str, ...]]):
        #: The store this computation fills (a tracker only records for its own store).
        self.owner = owner
        self.versions = versions
        self.reads = Reads()
        #: Tag -> its token, read before the first statement that depended on it.
        self.tokens: dict[str, str] = {}
        #: The tokens could not be read (a backend error): nothing may be stored.
        self.failed = False

    @property
    def unknown(self) -> str | None:
        """Why the tables read cannot be known (the entry is not stored), or None."""
        return self.reads.unknown

    def refuse(self, reason: str) -> None:
        """Make the computation unstorable for ``reason`` (shown in ``X-Cache``)."""
        if self.reads.unknown is None:
            self.reads.unknown = reason

    def add(self, reads: Reads) -> None:
        """A statement about to run reads ``reads``: read the tokens of its new tags now."""
        self.reads.merge(reads)
        if self.failed or not reads.tables:
            return
        tokens = self.tokens
        new = [t for t in dict.fromkeys(reads.capture_tags()) if t not in tokens]
        if not new:
            return
        try:
            found = self.versions(new)
        except Exception:  # a backend error: answer from the database, store nothing
            self.failed = True
            return
        tokens.update(zip(new, found, strict=True))

    def absorb(self, inner: ReadCapture) -> None:
        """A nested computation ended: its reads are this one's too."""
        self.reads.merge(inner.reads)
        for tag, token in inner.tokens.items():
            self.tokens.setdefault(tag, token)
        self.failed = self.failed or inner.failed

    def stamp(
        self, tags: Sequence[str], versions: Sequence[str], bound: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The entry's tags and tokens: ``tags`` (declared, normalised, with their
        ``versions`` read before the computation) plus the dependencies, at most
        ``bound`` in all; None when nothing may be stored (:attr:`unknown`, a failed
        token read, too many tables)."""
        if self.failed or self.reads.unknown is not None:
            return None
        stamped = dict(zip(tags, versions, strict=True))
        deps = self.reads.tags(bound - len(stamped))
        if deps is None:
            self.refuse("too many tables read")
            return None
        for tag in deps:
            if tag not in stamped:
                stamped[tag] = self.tokens[tag]
        order = tuple(sorted(stamped))
        return order, tuple(stamped[t] for t in order)


@contextmanager
def capture_reads(
    owner: object, versions: Callable[[Sequence[str]], tuple[str, ...]]
) -> Iterator[ReadCapture]:
    """Capture the reads of the computation run inside (see the module doc)."""
    outer = _CURRENT.get()
    capture = ReadCapture(owner, versions)
    token = _CURRENT.set(capture)
    try:
        yield capture
    finally:
        _CURRENT.reset(token)
        if outer is not None and outer.owner is owner:
            outer.absorb(capture)


def capturing(owner: Any) -> bool:
    """True while a computation filling ``owner`` captures its reads in this context."""
    cap = _CURRENT.get()
    return cap is not None and cap.owner is owner


class CaptureScope:
    """``with store.capture_reads() as capture:``: :func:`capture_reads` for one store,
    running its capture starters (the tracker's) as the capture opens."""

    __slots__ = ("_inner", "_owner", "_starters", "_tokens", "_versions")

    def __init__(
        self,
        owner: object,
        versions: Callable[[Sequence[str]], tuple[str, ...]],
        starters: Sequence[Callable[[ReadCapture], None]],
        tokens: dict[str, str] | None = None,
    ) -> None:
        self._owner = owner
        self._versions = versions
        self._starters = starters
        #: Tokens read before the computation (the missing read of the same entry).
        self._tokens = tokens
        self._inner: Any = None

    def __enter__(self) -> ReadCapture:
        self._inner = capture_reads(self._owner, self._versions)
        capture: ReadCapture = self._inner.__enter__()
        if self._tokens:
            capture.tokens.update(self._tokens)
        for start in self._starters:
            try:
                start(capture)
            except Exception as exc:  # never fail the computation: refuse to store it
                capture.refuse(f"capture start failed: {exc}")
        return capture

    def __exit__(self, *exc: Any) -> None:
        inner, self._inner = self._inner, None
        inner.__exit__(*exc)
