"""Settings, parsed and validated once at ``init_app``: the only module reading config.

Every key ``K`` we read (``REDIS_URL``, ``CACHE_*``) has a namespaced twin
``DATAROOM_K`` (``DATAROOM_REDIS_URL``, ``DATAROOM_CACHE_TTL``, ...), so this extension
can be configured independently of Flask-Caching, which reads ``CACHE_*`` keys too.
The first of these that is set (not ``None``) is used:

1. ``app.config["DATAROOM_K"]``, 2. the environment variable ``DATAROOM_K``,
3. ``app.config["K"]``, 4. the environment variable ``K``, 5. the default.

A bad value fails *here*, with the key actually read and the offending value in the
message, instead of surfacing later as a confusing runtime error inside a request. One
exception: a *shared* ``CACHE_KEY_PREFIX`` that is valid for Flask-Caching but not for us
(``"myapp:"``), or that would make the two extensions share Redis keys, is not an error:
a prefix of our own is derived from it and a notice (logged once at ``init_app``) names
``DATAROOM_CACHE_KEY_PREFIX``.

What a value may be (the parsers and validators, the key prefix rules, Flask-Caching's own
keys, :data:`FLASK_CACHING_KEYS`, to tell a user who left them in the config what our
equivalent is) is in ``configvalues.py``; this module reads, and builds :class:`Settings`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .configvalues import (
    DEFAULT_PREFIX,
    FLASK_CACHING_DEFAULT_PREFIX,
    FLASK_CACHING_KEYS,
    ConfigError,
    as_bool,
    as_fallback,
    as_float,
    as_int,
    bad,
    key_prefix,
    shares_keys_with,
    validate_redis_url,
)

__all__ = [
    "FLASK_CACHING_KEYS",
    "NAMESPACE",
    "ConfigError",
    "Settings",
    "environment_redis_url",
    "prometheus_multiproc_dir",
    "shares_keys_with",
    "validate_redis_url",
]

T = TypeVar("T")

#: Prepended to every key we read to make its namespaced twin (``DATAROOM_CACHE_TTL``).
NAMESPACE = "DATAROOM_"


def _flask_caching_installed() -> bool:
    return importlib.util.find_spec("flask_caching") is not None


def _otel_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except ImportError:  # no ``opentelemetry`` package at all
        return False


#: The environment variable of prometheus_client's multiprocess mode (read by
#: prometheus_client itself when it is imported; no ``DATAROOM_`` twin).
PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def prometheus_multiproc_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The directory of prometheus_client's multiprocess mode, if the environment names
    one (``PROMETHEUS_MULTIPROC_DIR``, or the deprecated lower-case spelling prometheus_client
    still honours): then every worker's counters are also written there
    (``metrics/multiprocess.py``) and ``prometheus_registry()`` sums them. A name that is
    not a directory fails ``init_app`` with a :class:`ConfigError` naming the variable."""
    env = os.environ if environ is None else environ
    for name in (PROMETHEUS_MULTIPROC_DIR, PROMETHEUS_MULTIPROC_DIR.lower()):
        value = env.get(name)
        if value:
            if not os.path.isdir(value):
                raise bad(name, value, "not a directory (create it before the workers start)")
            return value
    return None


_OTEL_EXTRA = "needs opentelemetry-api: pip install 'flask-dataroom-cache[otel]'"


def _otel_settings(lookup: Callable[[str], tuple[str, Any] | None]) -> tuple[bool, bool]:
    """``(otel, otel_trace_hits)``: tracing is on when asked, else when the API is
    installed; asking for it (or for hit spans) without the API is a :class:`ConfigError`."""
    enabled_found = lookup("CACHE_OTEL_ENABLED")
    hits_found = lookup("CACHE_OTEL_TRACE_HITS")
    enabled = None if enabled_found is None else as_bool(*enabled_found)
    hits = False if hits_found is None else as_bool(*hits_found)
    if enabled is False:
        return False, False
    installed = _otel_installed()
    if not installed:
        if enabled_found is not None:
            raise bad(*enabled_found, _OTEL_EXTRA)
        if hits and hits_found is not None:
            raise bad(*hits_found, _OTEL_EXTRA)
    return installed, hits and installed


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one app's cache. Immutable: read once at ``init_app``."""

    redis_url: str | None = None
    ttl: int = 300
    enabled: bool = True
    key_prefix: str = DEFAULT_PREFIX
    max_entries: int = 10_000
    redis_socket_timeout: float = 0.25
    breaker_threshold: int = 5
    breaker_cooldown: float = 5.0
    fallback: str = "none"
    fallback_ttl: int = 5
    fallback_max_entries: int = 1_000
    honor_no_cache: bool = False
    l1_max_entries: int = 0
    compress_min_bytes: int = 1024
    pending_max: int = 10_000
    #: How far the clocks of the processes sharing a backend may disagree (ms): a fill is
    #: refused if one of its tag tokens was made less than this before the filling
    #: transaction began (see tracking/snapshot.py).
    snapshot_clock_skew_ms: float = 100.0
    #: Automatic dependency tags (issue 17, docs/auto-tags.md): every write on a tracked
    #: engine bumps the tags of the rows it wrote; off: none of it runs.
    auto_tags: bool = True
    #: Rows (and column values) of one table per statement or commit above which its
    #: ``~e:{table}`` stands for their automatic tags.
    auto_tags_max_rows: int = 1000
    #: OpenTelemetry spans (``tracing.py``): ``CACHE_OTEL_ENABLED``, on by default when
    #: ``opentelemetry-api`` is installed.
    otel: bool = False
    #: ``CACHE_OTEL_TRACE_HITS``: a span on every lookup, hits included (off: misses only).
    otel_trace_hits: bool = False
    #: Problems that are not errors (a shared key we could not use): logged once by
    #: ``init_app``.
    notices: tuple[str, ...] = ()
    #: Flask-Caching-only keys present in ``app.config`` (see :data:`FLASK_CACHING_KEYS`).
    flask_caching_keys: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tag_ttl(self) -> int:
        """How long a tag's version token lives.

        It must outlive every entry stamped with it, or entries would miss early (never
        serve stale: a lost token only causes a miss). Twice the TTL, at least an hour.
        """
        return max(2 * self.ttl, 3600)

    def flask_caching_keys_message(self) -> str:
        """The warning for Flask-Caching-only keys left in the config."""
        pairs = ", ".join(f"{k} -> {FLASK_CACHING_KEYS[k]}" for k in self.flask_caching_keys)
        return (
            f"app.config has Flask-Caching keys ({', '.join(self.flask_caching_keys)}) but "
            "Flask-Caching is not initialised on this app: flask-dataroom-cache ignores "
            f"them. Our equivalents: {pairs} (see docs/configuration.md)"
        )

    @classmethod
    def from_mapping(
        cls,
        config: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        *,
        flask_caching: bool = False,
    ) -> Settings:
        """Read every key from ``config``, falling back to ``environ`` (``os.environ``);
        each key's ``DATAROOM_`` twin first (see the module docstring for the order).

        ``flask_caching``: Flask-Caching is initialised on the app. ``CACHE_TYPE`` in
        ``config`` with the flask_caching package installed counts as such too (it may be
        initialised after us). Our prefix then never shares keys with its one.
        """
        env = os.environ if environ is None else environ

        def lookup(key: str) -> tuple[str, Any] | None:
            for name in (NAMESPACE + key, key):
                if config.get(name) is not None:
                    return name, config[name]
                if name in env:
                    return name, env[name]
            return None

        def get(key: str, default: T, parse: Callable[[str, Any], T]) -> T:
            found = lookup(key)
            return default if found is None else parse(*found)

        flask_caching_prefix: str | None = None
        if flask_caching or ("CACHE_TYPE" in config and _flask_caching_installed()):
            theirs = config.get("CACHE_KEY_PREFIX")
            flask_caching_prefix = (
                theirs if isinstance(theirs, str) else FLASK_CACHING_DEFAULT_PREFIX
            )

        found = lookup("CACHE_KEY_PREFIX")
        prefix, notices = key_prefix(found, flask_caching_prefix, NAMESPACE)
        fallback = get("CACHE_FALLBACK", "none", as_fallback)
        otel, otel_trace_hits = _otel_settings(lookup)
        url_found = lookup("REDIS_URL")
        return cls(
            redis_url=None if url_found is None else validate_redis_url(*url_found),
            ttl=get("CACHE_TTL", 300, lambda k, v: as_int(k, v, 1)),
            enabled=get("CACHE_ENABLED", True, as_bool),
            key_prefix=prefix,
            max_entries=get("CACHE_MAX_ENTRIES", 10_000, lambda k, v: as_int(k, v, 1)),
            redis_socket_timeout=get(
                "CACHE_REDIS_SOCKET_TIMEOUT", 0.25, lambda k, v: as_float(k, v, 0.001)
            ),
            breaker_threshold=get("CACHE_BREAKER_THRESHOLD", 5, lambda k, v: as_int(k, v, 1)),
            breaker_cooldown=get("CACHE_BREAKER_COOLDOWN", 5.0, lambda k, v: as_float(k, v, 0.0)),
            fallback=fallback,
            fallback_ttl=get("CACHE_FALLBACK_TTL", 5, lambda k, v: as_int(k, v, 1)),
            fallback_max_entries=get(
                "CACHE_FALLBACK_MAX_ENTRIES", 1_000, lambda k, v: as_int(k, v, 1)
            ),
            honor_no_cache=get("CACHE_HONOR_NO_CACHE", False, as_bool),
            l1_max_entries=get("CACHE_L1_MAX_ENTRIES", 0, lambda k, v: as_int(k, v, 0)),
            compress_min_bytes=get("CACHE_COMPRESS_MIN_BYTES", 1024, lambda k, v: as_int(k, v, 0)),
            pending_max=get("CACHE_PENDING_MAX", 10_000, lambda k, v: as_int(k, v, 1)),
            snapshot_clock_skew_ms=get(
                "CACHE_SNAPSHOT_CLOCK_SKEW_MS", 100.0, lambda k, v: as_float(k, v, 0.0)
            ),
            auto_tags=get("CACHE_AUTO_TAGS", True, as_bool),
            auto_tags_max_rows=get("CACHE_AUTO_TAGS_MAX_ROWS", 1000, lambda k, v: as_int(k, v, 1)),
            otel=otel,
            otel_trace_hits=otel_trace_hits,
            notices=tuple(notices),
            flask_caching_keys=tuple(k for k in FLASK_CACHING_KEYS if k in config),
        )


def environment_redis_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL of the environment alone (``DATAROOM_REDIS_URL``, else ``REDIS_URL``;
    empty counts as unset), validated: the server the ``dataroom_cache_redis`` test
    fixture uses (``pytest_plugin.py``). None when neither is set."""
    env = os.environ if environ is None else environ
    for name in (NAMESPACE + "REDIS_URL", "REDIS_URL"):
        if env.get(name):
            return validate_redis_url(name, env[name])
    return None
