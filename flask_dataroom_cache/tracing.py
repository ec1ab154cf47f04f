"""OpenTelemetry spans: around each miss computation, each invalidation delivered, and (when
configured) each lookup. Extra ``otel`` (``opentelemetry-api``); nothing here imports it
unless tracing is on.

One :class:`Tracing` per app, built at ``init_app`` from the settings
(``CACHE_OTEL_ENABLED``, ``CACHE_OTEL_TRACE_HITS``) and kept on the store
(``CacheStore.tracing``, and ``CacheStore.lookup_tracing`` only when every lookup is
traced), so the paths that use it pay one ``is None`` check when tracing is off. The tracer
is the global provider's (``opentelemetry.trace.get_tracer("flask_dataroom_cache", version)``):
the application configures the SDK and its exporters, as for any instrumented library.
While no SDK is configured (only the API's proxy provider), no span is even started: the
API's no-op span still costs microseconds, so each traced path first asks whether a
provider is set (one call) and runs untraced otherwise.

Spans (all ``INTERNAL``, names are stable and low-cardinality):

=============================  =============================================================
``dataroom_cache.compute``     a miss computed: a cached view run on a miss (or a
                               ``no-cache`` bypass that refills), ``get_or_set``'s
                               ``compute()``, and any other path that calls
                               :meth:`Tracing.compute`. An exception raised by the
                               computation is recorded on the span (status ``ERROR``) and
                               re-raised.
``dataroom_cache.invalidate``  tags delivered to the backend now: a commit's (``source``
                               ``commit``/``autocommit``/``ddl``) or ``invalidate_tags``
                               (``api``); a deferred call has none (its commit has one).
``dataroom_cache.lookup``      one read, hit or miss: only with ``CACHE_OTEL_TRACE_HITS``.
=============================  =============================================================

Attributes (prefix ``dataroom_cache.``): ``hit`` (bool), ``key``, ``endpoint`` (when in a
view), ``tag_count`` (the entry's tags, the epoch every entry carries not counted; an
invalidation's tags), ``backend`` (``redis``, ``memory``, ...), ``result`` (``stored``,
``kept``: a view's response passed the store rules and is written once the final response
is known, or ``not_stored``), ``reason`` (why not stored, when known: the reasons of
``views/policy.py``), ``outcome`` (a view's ``X-Cache``: ``MISS`` or ``BYPASS``),
``source`` (of an invalidation). An invalidation's ``result`` is ``sent`` (the backend took
it: the resilient backend queues it while Redis is unreachable) or ``backend error``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .tags import EPOCH_TAG

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.trace import Span, Tracer

    from .config import Settings
    from .store import CacheStore

__all__ = [
    "ATTR",
    "INSTRUMENTATION_NAME",
    "Tracing",
    "build",
    "install",
    "set_hit",
    "set_result",
    "tag_count",
]

#: The instrumentation scope of every span (``get_tracer``'s first argument).
INSTRUMENTATION_NAME = "flask_dataroom_cache"
#: The prefix of every attribute this module sets.
ATTR = "dataroom_cache."


def tag_count(tags: Sequence[str]) -> int:
    """How many tags an entry declares (its normalised tags but the epoch every entry has)."""
    return len(tags) - (EPOCH_TAG in tags)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flask-dataroom-cache")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout never installed
        return "0"


def build(enabled: bool, trace_hits: bool, backend_name: str) -> Tracing | None:
    """The app's :class:`Tracing`, or ``None`` when tracing is off (``enabled`` is the
    resolved ``CACHE_OTEL_ENABLED``: config.py has checked the API can be imported)."""
    if not enabled:
        return None
    from opentelemetry import trace

    tracer = trace.get_tracer(INSTRUMENTATION_NAME, _version())
    return Tracing(tracer, backend_name, trace_hits)


def install(store: CacheStore, settings: Settings) -> None:
    """Give ``store`` its :class:`Tracing` per the settings (``init_app``)."""
    store.tracing = build(settings.otel, settings.otel_trace_hits, store.backend.name)
    store.lookup_tracing = store.tracing if settings.otel_trace_hits else None


class Tracing:
    """One app's tracer and what it traces. Every method is a context manager yielding
    the span, or ``None`` when no tracer provider is configured (nothing recorded)."""

    __slots__ = ("_provider", "_proxy_type", "backend", "trace_hits", "tracer")

    def __init__(self, tracer: Tracer, backend: str, trace_hits: bool = False) -> None:
        from opentelemetry.trace import ProxyTracerProvider, get_tracer_provider

        self.tracer = tracer
        #: The backend's name, on every span.
        self.backend = backend
        #: ``CACHE_OTEL_TRACE_HITS``: a ``lookup`` span on every read.
        self.trace_hits = trace_hits
        self._proxy_type = ProxyTracerProvider
        self._provider = get_tracer_provider

    def active(self) -> bool:
        """A tracer provider is configured (an SDK, or any provider but the API's proxy)."""
        return not isinstance(self._provider(), self._proxy_type)

    @contextlib.contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[Span | None]:
        if not self.active():
            yield None
            return
        attributes[ATTR + "backend"] = self.backend
        with self.tracer.start_as_current_span(
            name, attributes=attributes, record_exception=True, set_status_on_exception=True
        ) as span:
            yield span

    def compute(
        self,
        key: str,
        *,
        tags: Sequence[str] = (),
        endpoint: str | None = None,
        outcome: str | None = None,
    ) -> contextlib.AbstractContextManager[Span | None]:
        """Around one miss's computation (and its fill, when the caller stores at once):
        ``with tracing.compute(key, tags=tags) as span: ...; set_result(span, stored)``."""
        attributes: dict[str, Any] = {
            ATTR + "hit": False,
            ATTR + "key": key,
            ATTR + "tag_count": tag_count(tags),
        }
        if endpoint is not None:
            attributes[ATTR + "endpoint"] = endpoint
        if outcome is not None:
            attributes[ATTR + "outcome"] = outcome
        return self._span("dataroom_cache.compute", attributes)

    def lookup(
        self, key: str, *, tags: Sequence[str] = (), endpoint: str | None = None
    ) -> contextlib.AbstractContextManager[Span | None]:
        """Around one read (``CACHE_OTEL_TRACE_HITS``); the caller sets ``hit``
        (:func:`set_hit`)."""
        attributes: dict[str, Any] = {
            ATTR + "key": key,
            ATTR + "tag_count": tag_count(tags),
        }
        if endpoint is not None:
            attributes[ATTR + "endpoint"] = endpoint
        return self._span("dataroom_cache.lookup", attributes)

    def invalidation(
        self, tags: Sequence[str], source: str
    ) -> contextlib.AbstractContextManager[Span | None]:
        """Around one delivery of invalidated tags to the backend."""
        return self._span(
            "dataroom_cache.invalidate",
            {ATTR + "tag_count": len(tags), ATTR + "source": source},
        )


def set_result(span: Span | None, result: str, reason: str | None = None) -> None:
    """Record what became of a computed value: ``stored``, ``kept`` or ``not_stored``,
    with the reason when known."""
    if span is None:
        return
    span.set_attribute(ATTR + "result", result)
    if reason is not None:
        span.set_attribute(ATTR + "reason", reason)


def set_hit(span: Span | None, hit: bool) -> None:
    """Record a lookup's outcome."""
    if span is not None:
        span.set_attribute(ATTR + "hit", hit)
