"""What one cached call did, and why, told to whoever listens.

A call's ``outcome`` (``HIT``, ``MISS``, ``BYPASS``) and ``reason`` (the ``policy`` bypass
or refusal reason, ``stale``) are what the debug panel's recorder shows (``recording``).
Here the two answers that are not plain hits are also counted and announced:

* :func:`bypassed`: a request not answered from the cache (``bypasses``, per endpoint).
* :func:`refused`: a response (or a function's value) not stored, counted per endpoint
  and reason (``ViewState.refusals``).

Both send ``cache_bypassed`` when it has receivers. :func:`warn` logs a refusal once per
endpoint and kind when the fix is in the app's code (the wording is ``policy.warning``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from werkzeug.wrappers import Response as BaseResponse

from .. import signals
from . import policy

if TYPE_CHECKING:
    from flask import Response

    from .call import CachedCall

__all__ = ["bypassed", "refused", "warn"]

log = logging.getLogger("flask_dataroom_cache")


def bypassed(call: CachedCall, reason: str) -> None:
    """``call`` answers without reading the cache, for ``reason`` (a ``policy`` bypass
    reason): counted, recorded, signalled."""
    call.store.metrics.incr("bypasses", endpoint=call.endpoint)
    call.outcome, call.reason = "BYPASS", reason
    _signal(call, reason)


def refused(call: CachedCall, reason: str, detail: Response | str | None = None) -> None:
    """Count a refusal to store ``call``'s entry, and warn if it is worth it (``detail``:
    the response refused, or the type name of a value)."""
    call.refusal = reason
    call.views.count_refusal(call.endpoint, reason)
    call.reason = reason
    _signal(call, reason)
    name = call.func_name() if reason == policy.VALUE_CHANGES else call.endpoint
    warn(call, reason, name, detail)


def warn(
    call: CachedCall, reason: str, name: str | None, detail: Response | str | None = None
) -> None:
    """Log a refusal worth a warning, once per endpoint and kind (it repeats on every
    miss); ``name`` is the view the message names, ``detail`` the response refused (or
    the type name of a value)."""
    kind = policy.warning_kind(reason, name)
    if kind is not None and call.views.first_warning(kind, call.endpoint):
        headers_or_type = detail.headers if isinstance(detail, BaseResponse) else detail
        msg, args = policy.warning(reason, call.opts, name, headers_or_type)
        log.warning(msg, *args)


def _signal(call: CachedCall, reason: str) -> None:
    if signals.cache_bypassed.receivers:
        signals.send(signals.cache_bypassed, call.app, key=call.key or None, reason=reason)
