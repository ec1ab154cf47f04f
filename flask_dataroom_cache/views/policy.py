"""When a cached view's response is stored, and why not: the store rules, as pure functions.

Every rule set returns :data:`STORED` or the reason it refuses (a short, stable string:
logged once per endpoint when the fix is in the app's code, counted per endpoint in
``ViewState.refusals``). Nothing here logs, reads a request or touches the cache: the call
(``call.py``) gathers the facts, asks, and acts on the answer.

One rule set, applied at two moments (:func:`verdict`):

* :data:`VIEW`: the view's own response, when the view returns, before the decorator adds
  its ``ETag``/``Cache-Control``: for which the tag versions were read before the view
  ran (a GET), that registered no ``after_this_request`` function (what it adds would be
  lost on every hit), holds no nested cached call whose declarations it would lose
  (:func:`nested_verdict`), was not ``skip()``-ed and does not change the session; a
  complete 200 (not streamed) that sets no cookie, and whose ``Vary`` names only headers
  the key covers (``vary=``; ``Cookie`` is covered by the identity of a per-user view).
  Its header lines must hold no line break (:func:`headers_verdict`). With automatic
  dependencies, the tables the view read must be known (:data:`READS_UNKNOWN`, shown in
  ``X-Cache``: :func:`not_stored_outcome`).
* :data:`FINAL`: the response the client gets (after every after-request function and
  the session save, ``request_finished``), or the view's own when it is already sent (a
  call from a ``stream_with_context`` generator): a 200 or 304, and what app hooks may
  have added must not forbid it: ``Vary: *``, or, on a shared view, the session read
  during the request (one user's entry would be served to another). A cookie an app hook
  sets is no reason: hooks run on hits too, and cookies are never stored.

At both moments: no ``Cache-Control: no-store``, and no ``private`` on a shared view.

The plain value a cached function returns to the view calling it is checked at
:data:`VIEW` by the rules about the call only (versions, ``after_this_request``, nested
calls, ``skip()``, the session), then at :data:`FINAL` with the route's final response.

Also here: why a request is not answered from the cache at all (the ``BYPASS`` reasons,
sent with ``cache_bypassed`` and shown by the debug panel), the request rule that makes a
miss refill without reading (:func:`client_no_cache`), and the header parsing the rules
share (every line of ``Cache-Control`` and ``Vary``, not only the first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from werkzeug.datastructures import Headers

from ..store import BYPASS_HOOK, DISABLED, DISABLED_BLOCK, SNAPSHOT, UNCOMMITTED
from .httpheaders import cache_control_directives
from .keying import query_covers
from .options import Options

if TYPE_CHECKING:
    from flask import Response

__all__ = [
    "BYPASS_REASONS",
    "DISABLED",
    "FINAL",
    "STORED",
    "UNCOMMITTED",
    "VIEW",
    "Facts",
    "client_no_cache",
    "headers_verdict",
    "nested_verdict",
    "not_stored_outcome",
    "uncovered_vary",
    "verdict",
    "warning",
    "warning_kind",
]

Moment = Literal["view", "final"]
#: The view's own response, when the view returns.
VIEW: Moment = "view"
#: The response the client gets (or the view's own when it is already sent).
FINAL: Moment = "final"

STORED = "stored"
# -- why a request is not answered from the cache (X-Cache: BYPASS)
ANONYMOUS = "anonymous"  # no identity on a per-user view
AUTHORIZATION = "Authorization on a shared view"  # without ignore_authorization
UNLESS = "unless"  # the view's unless() holds
NO_KEY = "no key"  # the key or the tags cannot be built
CLIENT_NO_CACHE = "client no-cache"  # CACHE_HONOR_NO_CACHE: runs the view, then refills
#: Every reason a request bypasses the cache (the store's: ``DISABLED``: the cache is
#: off; ``UNCOMMITTED``: this thread's session holds uncommitted tracked changes;
#: ``SNAPSHOT``: its transaction began before a commit this process invalidated;
#: ``DISABLED_BLOCK``: inside ``cache.disabled()``; ``BYPASS_HOOK``: another bypass check).
BYPASS_REASONS = (
    ANONYMOUS,
    AUTHORIZATION,
    UNLESS,
    DISABLED,
    UNCOMMITTED,
    SNAPSHOT,
    DISABLED_BLOCK,
    BYPASS_HOOK,
    NO_KEY,
    CLIENT_NO_CACHE,
)
# -- why not: both moments
STATUS = "status"  # not a 200 (view), not a 200 or a 304 (final)
NO_STORE = "no-store"  # Cache-Control: no-store
PRIVATE = "private on a shared view"  # Cache-Control: private on a shared view
# -- why not: the view's own response
NO_VERSIONS = "no versions"  # a HEAD, or the tag versions could not be read
VIEW_HOOK = "after_this_request"  # the view registered an after_this_request function
SKIPPED = "skip()"  # the view called cache.skip()
STREAMED = "streamed"  # a streamed or direct-passthrough body
SETS_COOKIE = "Set-Cookie"  # the view's response sets a cookie
SESSION_MODIFIED = "session modified"  # Flask will set the session cookie
VARY_UNCOVERED = "Vary not in the key"  # a Vary header the key does not cover
LINE_BREAK = "line break in a header"  # the entry format cannot hold it
VALUE_CHANGES = "value not kept unchanged"  # a function's value the codec would change
READS_UNKNOWN = "tables read unknown"  # automatic dependencies: opaque SQL was run
# -- why not: a nested cached call (the outer call's entry is not stored)
NESTED_PER_USER = "nested: per-user in shared"
NESTED_AUTHORIZATION = "nested: credentials in an entry that ignores them"
NESTED_UNLESS = "nested: unless holds"
NESTED_VARIES = "nested: varies on more"
NESTED_TAGS = "nested: tags not carried"
# -- why not: the final response
VARY_STAR = "Vary: *"
SESSION_READ = "session read on a shared view"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules need to know beyond the response and the options."""

    #: The tag versions were read before the view ran (a GET whose read did not fail).
    versions_known: bool = True
    #: The view registered ``after_this_request`` functions.
    view_hooks: bool = False
    #: The refusal of a nested cached call (:func:`nested_verdict`), if any.
    nested: str | None = None
    #: ``cache.skip()`` was called during the request.
    skipped: bool = False
    #: The session was modified (Flask will set its cookie on this response).
    session_modified: bool = False
    #: The session was accessed during the request (and is not the null session).
    session_accessed: bool = False
    #: Automatic dependencies: why the tables the view read cannot be known (opaque
    #: textual SQL, a procedure, a function that may read anything), if they cannot.
    reads_unknown: str | None = None


def verdict(moment: Moment, opts: Options, resp: Response | None, facts: Facts) -> str:
    """:data:`STORED`, or why ``resp`` must not be stored, by the rules of ``moment``.
    ``resp`` is ``None`` for the plain value a cached function returned to the view
    calling it (at :data:`VIEW`: only the rules about the call apply). The first rule
    that refuses gives the reason (the rules about the call first, then the response's)."""
    view = moment == VIEW
    if view:
        if facts.reads_unknown is not None:
            return READS_UNKNOWN
        if not facts.versions_known:
            return NO_VERSIONS
        if facts.view_hooks:
            return VIEW_HOOK
        if facts.nested is not None:
            return facts.nested
        if facts.skipped:
            return SKIPPED
        if facts.session_modified:
            return SESSION_MODIFIED
    if resp is None:  # a function's value: at the final moment, the route's response
        return STORED
    status = resp.status_code
    if status != 200 and (view or status != 304):
        return STATUS
    headers = resp.headers
    if view:
        if resp.is_streamed or resp.direct_passthrough:
            return STREAMED
        if "Set-Cookie" in headers:
            return SETS_COOKIE
    tokens = all_cache_control(headers)
    if "no-store" in tokens:
        return NO_STORE
    if opts.shared and "private" in tokens:
        return PRIVATE
    if view:
        return VARY_UNCOVERED if uncovered_vary(opts, headers) else STORED
    vary = all_vary(headers) if "Vary" in headers else None
    if vary is not None and "*" in vary:
        return VARY_STAR
    if (
        opts.shared
        and "cookie" not in opts.vary_names
        and ((vary is not None and "cookie" in vary) or facts.session_accessed)
    ):
        # Flask adds Vary: Cookie when the session was accessed (by the view, or by a hook
        # whose result the view may use through g); a session interface that does not is
        # caught by session.accessed
        return SESSION_READ
    return STORED


def not_stored_outcome(outcome: str, why: str) -> str:
    """The ``X-Cache`` value of a computed response not stored because the tables it
    read cannot be known: ``MISS; not stored: tables read unknown (why)``."""
    clean = why.replace("\r", " ").replace("\n", " ")
    return f"{outcome}; not stored: {READS_UNKNOWN} ({clean})"


def uncovered_vary(opts: Options, headers: Headers) -> list[str]:
    """The names of the response's ``Vary`` (every line) that its key does not cover:
    each must be declared with ``vary=``, or one entry would serve every variant.
    ``Cookie`` is covered by the identity on a per-user view; ``*`` never is."""
    if "Vary" not in headers:
        return []
    names = [
        part.strip() for line in headers.getlist("Vary") for part in line.split(",") if part.strip()
    ]
    return [
        name
        for name in dict.fromkeys(names)
        if name.lower() not in opts.vary_names and (opts.shared or name.lower() != "cookie")
    ]


def headers_verdict(headers: Iterable[tuple[str, str]]) -> str:
    """:data:`STORED`, or :data:`LINE_BREAK` when a header an entry would keep holds a
    CR or LF (the entry format is line based)."""
    if any("\n" in k or "\r" in k or "\n" in v or "\r" in v for k, v in headers):
        return LINE_BREAK
    return STORED


def nested_verdict(
    inner: Options,
    outer: Options,
    authorization: bool,
    unless_holds: Callable[[], bool],
    inner_tags: Callable[[], Iterable[str] | None],
    outer_tags: Iterable[str],
) -> str:
    """A cached view function called while another cached view runs becomes part of the
    outer's response: :data:`STORED` unless the outer entry would lose what the inner
    declares: per-user data in a shared entry, a response that may depend on the
    request's credentials (``authorization``: the request carries them) in an entry that
    ignores them, an ``unless`` that holds now, request headers or query parameters it
    varies on that the outer's key does not (each would reach other users), or tags the
    outer does not carry (its entry would outlive their invalidation; ``inner_tags``
    returns ``None`` when they cannot be built). ``unless_holds`` and ``inner_tags`` run
    only when the rules before them pass."""
    if not inner.shared and outer.shared:
        return NESTED_PER_USER
    if outer.ignore_authorization and not inner.ignore_authorization and authorization:
        return NESTED_AUTHORIZATION
    if inner.unless is not None and unless_holds():
        return NESTED_UNLESS
    if not inner.vary_names <= outer.vary_names or not query_covers(outer.query, inner.query):
        return NESTED_VARIES
    tags = inner_tags()
    if tags is None or not set(tags) <= set(outer_tags):
        return NESTED_TAGS
    return STORED


#: The refusals worth a warning, by kind (logged once per endpoint and kind: they repeat
#: on every miss, and the fix is in the app's code).
_WARNED = {
    VARY_UNCOVERED: "vary",
    SESSION_READ: "session",
    NESTED_PER_USER: "nested",
    NESTED_AUTHORIZATION: "nested",
    NESTED_UNLESS: "nested",
    NESTED_VARIES: "nested",
    NESTED_TAGS: "nested",
}
_NESTED_MESSAGES = {
    NESTED_PER_USER: "a per-user cached view is called by the shared cached view %r",
    NESTED_AUTHORIZATION: "a shared cached view without ignore_authorization is called, "
    "with an Authorization header, by the cached view %r",
    NESTED_UNLESS: "a cached view called by the cached view %r is not cached now (unless)",
    NESTED_VARIES: "a cached view called by the cached view %r varies on more than it does",
    NESTED_TAGS: "a cached view called by the cached view %r has tags it does not carry",
}


def warning_kind(reason: str, name: str | None) -> str | None:
    """The kind a refusal of the view ``name`` is warned once under (per endpoint), or
    ``None`` when it is not warned."""
    if reason == VALUE_CHANGES:
        return f"value {name}"  # once per function
    return _WARNED.get(reason)


def warning(
    reason: str, opts: Options, name: str | None, detail: Headers | str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The log message and arguments of a warned refusal of the view ``name``
    (``detail``: the response's headers for :data:`VARY_UNCOVERED`, the value's type name
    for :data:`VALUE_CHANGES`)."""
    if reason == VALUE_CHANGES:
        return (
            "cached function %r returned a %s, which would not come back from the "
            "cache unchanged (JSON values, dates, times, UUIDs, Decimals and bytes "
            "do; tuples, non-string dict keys and objects do not); not caching it",
            (name, detail),
        )
    headers = detail if isinstance(detail, Headers) else None
    if reason == VARY_UNCOVERED:
        uncovered = uncovered_vary(opts, headers) if headers is not None else []
        return (
            "cached view %r answers with Vary: %s, not covered by its key (vary=%r%s); "
            "not storing it: declare the headers with vary=(...)",
            (name, ", ".join(uncovered), opts.vary, ", shared=True" if opts.shared else ""),
        )
    if reason == SESSION_READ:
        return (
            "shared cached view %r: the session was read during the request (Vary: "
            "Cookie); not storing it, one user's entry would be served to another: "
            "make the view per-user, or do not read the session on its requests",
            (name,),
        )
    return _NESTED_MESSAGES[reason] + "; not storing it", (name,)


# -- requests and headers ------------------------------------------------------------------
def client_no_cache(environ: dict[str, Any]) -> bool:
    """The client asks for a fresh answer (``Cache-Control: no-cache`` or ``Pragma:
    no-cache``): with ``CACHE_HONOR_NO_CACHE`` the view runs, and its answer refills."""
    cc = environ.get("HTTP_CACHE_CONTROL")
    if cc and "no-cache" in cache_control_tokens(cc):
        return True
    pragma = environ.get("HTTP_PRAGMA")
    return bool(pragma and "no-cache" in pragma.lower())


def cache_control_tokens(value: str | None) -> set[str]:
    """The directive names of one ``Cache-Control`` value, lower case."""
    return cache_control_directives((value,)) if value else set()


def all_cache_control(headers: Headers) -> set[str]:
    """The directives of every ``Cache-Control`` line (not only the first)."""
    return cache_control_directives(headers.getlist("Cache-Control"))


def all_vary(headers: Headers) -> set[str]:
    """Every name of every ``Vary`` line, lower case (werkzeug's ``resp.vary`` reads the
    first line only)."""
    return {
        part.strip().lower()
        for line in headers.getlist("Vary")
        for part in line.split(",")
        if part.strip()
    }
