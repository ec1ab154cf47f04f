"""Storing a miss's response: kept until the final response is known, checked, written.

When the view's own response passes the rules of ``policy.VIEW``, :func:`keep` snapshots
its headers and body at once (after-request functions of the app also run on every hit:
what they add must not be stored) into a :class:`PendingFill`, kept on the request's
record by key (a second call of a key in one request keeps the first). Once Flask has
produced the final response (``request_finished``: after every after-request function
and the session save), :meth:`PendingFill.finish` checks it (``policy.FINAL``: an app
hook may still have added ``no-store``), writes the entry, then runs the releases (end the
single flight, free the lock): waiters must find the entry when they wake up. A fill that
never sees the final response (the request failed after the view, or the view was called
without Flask's dispatch) is dropped at teardown, and its releases run.

A cached call made after ``request_finished`` (a ``stream_with_context`` generator) cannot
wait for a response already sent: it is checked against the view's own response at both
moments and written at once.

The plain value a cached function returns to the view calling it (:func:`keep_value`) is
kept the same way, as a value entry (``returns``), if the codec gives it back identical.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Response

from . import context, entry, outcome, policy, returns

if TYPE_CHECKING:
    from .call import CachedCall

__all__ = ["PendingFill", "keep", "keep_value"]


class PendingFill:
    """A miss's entry waiting for the final response, and what to release after it."""

    __slots__ = ("body", "call", "etag", "headers", "releases", "tags", "versions")

    def __init__(
        self,
        call: CachedCall,
        headers: list[tuple[str, str]],
        etag: str | None,
        body: bytes,
        tags: list[str],
        versions: Any,
    ) -> None:
        self.call = call
        self.headers = headers
        #: ``None``: ``body`` is a function's value, encoded (``returns.encode_value``).
        self.etag = etag
        self.body = body
        self.tags = tags
        #: The tag versions read before the view ran: stamped on the entry.
        self.versions = versions
        #: Run after the write (or the drop): end the single flight, free the lock.
        self.releases: list[Callable[[], None]] = []

    def finish(self, final: Response | None) -> None:
        """Write the entry if ``final`` (the response the client gets; ``None`` when it
        is not known: drop it) allows it, then run the releases."""
        self.call.pending = None
        try:
            if final is not None and final_verdict(self.call, final) == policy.STORED:
                self.write()
        finally:
            releases, self.releases = self.releases, []
            for release in releases:
                release()

    def write(self) -> None:
        """Pack and store the entry: kept ``timeout + stale_while_revalidate``, its soft
        expiry ``timeout`` from now. A backend error is reported, a bad tag raises."""
        call = self.call
        timeout = call.opts.timeout or call.state.settings.ttl
        soft = time.time() + timeout
        if self.etag is None:  # a function's value
            value = returns.pack_value(self.body, soft)
        else:
            value = entry.pack(self.headers, self.etag, soft, self.body)
        try:
            call.store.set(
                call.key,
                value,
                timeout + call.opts.swr,
                self.tags,
                versions=self.versions,
                endpoint=call.endpoint,
            )
        except (TypeError, ValueError):
            raise  # a bad tag is a programming error
        except Exception as exc:
            call.store.report_error("view write", exc)


def keep(
    call: CachedCall,
    resp: Response | None,
    etag: str | None,
    body: bytes,
    tags: list[str],
    versions: Any,
) -> None:
    """The view's own ``resp`` may be stored: snapshot it, to be written once the final
    response allows it (or now, after ``request_finished``). ``resp`` and ``etag`` are
    ``None`` for a function's value (``body`` encodes it: :func:`keep_value`)."""
    headers = entry.stored_headers(resp) if resp is not None else []
    reason = policy.headers_verdict(headers)
    if reason != policy.STORED:
        outcome.refused(call, reason)
        return
    record = call.use_record()
    pending = PendingFill(call, headers, etag, body, tags, versions)
    if record.finished:
        # called after request_finished (a stream_with_context generator): the final
        # response is already sent, the view's own response is all there is to check
        if resp is None or final_verdict(call, resp) == policy.STORED:
            pending.write()
        return
    if call.key in record.pending:  # called twice in one request: the first one fills
        return
    call.pending = record.pending[call.key] = pending


def keep_value(call: CachedCall, value: Any, tags: list[str], versions: Any) -> None:
    """Keep the value a cached function returned to the view calling it, if the codec
    gives it back identical (type and value); else it is not stored (warned once)."""
    payload = returns.encode_value(value, call.store.codec)
    if payload is None:
        outcome.refused(call, policy.VALUE_CHANGES, type(value).__name__)
        return
    keep(call, None, None, payload, tags, versions)


def final_verdict(call: CachedCall, final: Response) -> str:
    """``policy.verdict`` at the final moment (a refusal is counted, and warned)."""
    _modified, accessed = context.session_facts(call.ctx)
    reason = policy.verdict(policy.FINAL, call.opts, final, policy.Facts(session_accessed=accessed))
    if reason != policy.STORED:
        outcome.refused(call, reason, final)
    return reason
