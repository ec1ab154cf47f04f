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

The module also knows Flask-Caching's own keys (:data:`FLASK_CACHING_KEYS`), to tell a
user who left them in the config what our equivalent is.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["FLASK_CACHING_KEYS", "NAMESPACE", "ConfigError", "Settings"]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+cluster", "redis+sentinel"}
_FALLBACKS = ("none", "memory")
_PREFIX_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")

#: Prepended to every key we read to make its namespaced twin (``DATAROOM_CACHE_TTL``).
NAMESPACE = "DATAROOM_"
DEFAULT_PREFIX = "dataroom"
#: Flask-Caching's ``CACHE_KEY_PREFIX`` when it is not set (flask_caching ``init_app``).
FLASK_CACHING_DEFAULT_PREFIX = "flask_cache_"

#: Keys only Flask-Caching reads (flask_caching 2.x ``init_app`` and its backends), with
#: what to use here instead. ``CACHE_KEY_PREFIX`` is read by both and is not listed.
FLASK_CACHING_KEYS: Mapping[str, str] = {
    "CACHE_TYPE": "REDIS_URL (unset: in-process memory) or CACHE_ENABLED=false",
    "CACHE_DEFAULT_TIMEOUT": "CACHE_TTL",
    "CACHE_THRESHOLD": "CACHE_MAX_ENTRIES",
    "CACHE_REDIS_URL": "REDIS_URL",
    "CACHE_REDIS_HOST": "REDIS_URL",
    "CACHE_REDIS_PORT": "REDIS_URL",
    "CACHE_REDIS_DB": "REDIS_URL",
    "CACHE_REDIS_PASSWORD": "REDIS_URL",
    "CACHE_REDIS_SENTINELS": "REDIS_URL (redis+sentinel://)",
    "CACHE_REDIS_SENTINEL_MASTER": "REDIS_URL (redis+sentinel://)",
    "CACHE_REDIS_SENTINEL_PASSWORD": "REDIS_URL (redis+sentinel://)",
    "CACHE_REDIS_CLUSTER": "REDIS_URL (redis+cluster://)",
    "CACHE_OPTIONS": "CACHE_REDIS_SOCKET_TIMEOUT",
    "CACHE_ARGS": "none",
    "CACHE_IGNORE_ERRORS": "none (cache errors never fail a request)",
    "CACHE_SERIALIZER": "none (values are JSON)",
    "CACHE_NO_NULL_WARNING": "none",
    "CACHE_SOURCE_CHECK": "none",
    "CACHE_ENABLE_SIGNALS": "none",
    "CACHE_HASH_METHOD": "none",
    "CACHE_FILE_HASH_METHOD": "none",
    "CACHE_DIR": "none",
    "CACHE_MEMCACHED_SERVERS": "none (Redis only)",
    "CACHE_MEMCACHED_USERNAME": "none (Redis only)",
    "CACHE_MEMCACHED_PASSWORD": "none (Redis only)",
    "CACHE_UWSGI_NAME": "none",
    "CACHE_GCS_BUCKET": "none",
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the value."""


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is invalid: {why}")


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _bad(key, value, "expected a boolean (true/false, 1/0, yes/no, on/off)")


def _as_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise _bad(key, value, "expected an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    else:
        raise _bad(key, value, "expected an integer")
    if number < minimum:
        raise _bad(key, value, f"must be >= {minimum}")
    return number


def _as_float(key: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool):
        raise _bad(key, value, "expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _bad(key, value, "expected a number") from None
    if not number >= minimum or number != number or number == float("inf"):
        raise _bad(key, value, f"must be a finite number >= {minimum}")
    return number


def validate_redis_url(key: str, value: Any) -> str | None:
    """Check the shape of a Redis URL without connecting to it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(key, value, "expected a URL string")
    url = value.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _bad(key, value, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _REDIS_SCHEMES:
        raise _bad(key, value, f"scheme must be one of {sorted(_REDIS_SCHEMES)}")
    if scheme == "unix":
        if not parts.path:
            raise _bad(key, value, "a unix:// URL needs a socket path")
        return url
    if scheme in ("redis+cluster", "redis+sentinel"):
        hosts = parts.netloc.rsplit("@", 1)[-1]
        if not hosts or any(not h.strip() for h in hosts.split(",")):
            raise _bad(key, value, "needs host:port[,host:port...]")
        for hostport in hosts.split(","):
            _, _, p = hostport.rpartition(":")
            if ":" in hostport and not p.isdigit():
                raise _bad(key, value, f"port of {hostport!r} is not a number")
        if scheme == "redis+sentinel" and not parts.path.strip("/"):
            raise _bad(key, value, "a sentinel URL needs /service_name")
        return url
    try:
        port = parts.port  # raises ValueError for a non-numeric port (one host only here)
    except ValueError as exc:
        raise _bad(key, value, f"not a valid URL ({exc})") from None
    if not parts.hostname:
        raise _bad(key, value, "missing host")
    if port is not None and not 0 < port < 65536:
        raise _bad(key, value, "port out of range")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise _bad(key, value, "the path must be a database number, e.g. /0")
    return url


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
                raise _bad(name, value, "not a directory (create it before the workers start)")
            return value
    return None


def _namespaces(prefix: str) -> tuple[str, ...]:
    """How every Redis key of ``prefix`` starts: ``P:...`` and, for the Redis Cluster
    groups and the near cache's peer registry, ``{P:...``."""
    return (prefix + ":", "{" + prefix + ":")


def shares_keys_with(prefix: str, flask_caching_prefix: str) -> bool:
    """Could a key of ours and a key of Flask-Caching (``{their prefix}{any key}``) be
    the same, or could one's clear (ours: ``SCAN P:*``; theirs: ``KEYS {prefix}*``, or
    ``FLUSHDB`` with an empty prefix) delete the other's keys?"""
    return any(
        ns.startswith(flask_caching_prefix) or flask_caching_prefix.startswith(ns)
        for ns in _namespaces(prefix)
    )


def _derived_prefix(shared: Any, flask_caching_prefix: str | None) -> str:
    """A prefix of our own for an unusable shared ``CACHE_KEY_PREFIX``: derived from it,
    so that apps with different shared prefixes still get different ones, and chosen not
    to share keys with Flask-Caching."""
    slug = _PREFIX_UNSAFE.sub("_", shared)[:48].strip("_") if isinstance(shared, str) else ""
    candidates = (
        [f"{DEFAULT_PREFIX}.{slug}", f"_{DEFAULT_PREFIX}.{slug}"]
        if slug
        else [DEFAULT_PREFIX, f"_{DEFAULT_PREFIX}"]
    )
    for candidate in candidates:
        if flask_caching_prefix is None or not shares_keys_with(candidate, flask_caching_prefix):
            return candidate
    return candidates[0]  # only an empty Flask-Caching prefix overlaps everything


_OTEL_EXTRA = "needs opentelemetry-api: pip install 'flask-dataroom-cache[otel]'"


def _otel_settings(lookup: Callable[[str], tuple[str, Any] | None]) -> tuple[bool, bool]:
    """``(otel, otel_trace_hits)``: tracing is on when asked, else when the API is
    installed; asking for it (or for hit spans) without the API is a :class:`ConfigError`."""
    enabled_found = lookup("CACHE_OTEL_ENABLED")
    hits_found = lookup("CACHE_OTEL_TRACE_HITS")
    enabled = None if enabled_found is None else _as_bool(*enabled_found)
    hits = False if hits_found is None else _as_bool(*hits_found)
    if enabled is False:
        return False, False
    installed = _otel_installed()
    if not installed:
        if enabled_found is not None:
            raise _bad(*enabled_found, _OTEL_EXTRA)
        if hits and hits_found is not None:
            raise _bad(*hits_found, _OTEL_EXTRA)
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

        notices: list[str] = []
        flask_caching_prefix: str | None = None
        if flask_caching or ("CACHE_TYPE" in config and _flask_caching_installed()):
            theirs = config.get("CACHE_KEY_PREFIX")
            flask_caching_prefix = (
                theirs if isinstance(theirs, str) else FLASK_CACHING_DEFAULT_PREFIX
            )

        prefix = DEFAULT_PREFIX
        found = lookup("CACHE_KEY_PREFIX")
        if found is not None:
            name, value = found
            valid = isinstance(value, str) and _PREFIX_RE.match(value) is not None
            sharing = (
                valid
                and flask_caching_prefix is not None
                and shares_keys_with(value, flask_caching_prefix)
            )
            if name.startswith(NAMESPACE):
                if not valid:
                    raise _bad(
                        name,
                        value,
                        "use 1-64 characters from A-Z a-z 0-9 _ . - (it starts every Redis key)",
                    )
                if sharing:
                    raise _bad(
                        name,
                        value,
                        f"Redis keys would overlap Flask-Caching's (its CACHE_KEY_PREFIX is "
                        f"{flask_caching_prefix!r}); choose a prefix neither starts the other",
                    )
                prefix = value
            elif valid and not sharing:
                prefix = value
            else:
                prefix = _derived_prefix(value, flask_caching_prefix)
                why = (
                    f"Flask-Caching on this app uses the prefix {flask_caching_prefix!r} and "
                    "the two extensions must never share Redis keys"
                    if valid
                    else "it is not 1-64 characters from A-Z a-z 0-9 _ . - "
                    "(valid for Flask-Caching, not for flask-dataroom-cache)"
                )
                notices.append(
                    f"{name}={value!r} is not used as the flask-dataroom-cache key prefix: "
                    f"{why}; using {prefix!r}. Set DATAROOM_CACHE_KEY_PREFIX to choose "
                    "ours independently of Flask-Caching."
                )

        if flask_caching_prefix is not None and shares_keys_with(prefix, flask_caching_prefix):
            notices.append(  # only an empty Flask-Caching prefix gets here
                f"Flask-Caching's CACHE_KEY_PREFIX={flask_caching_prefix!r} overlaps every "
                f"key prefix, ours ({prefix!r}) included: its cache.clear() empties the "
                "whole Redis database. Give Flask-Caching a non-empty prefix."
            )

        fallback_found = lookup("CACHE_FALLBACK")
        fallback = "none"
        if fallback_found is not None:
            name, value = fallback_found
            if not isinstance(value, str) or value.strip().lower() not in _FALLBACKS:
                raise _bad(name, value, f"expected one of {list(_FALLBACKS)}")
            fallback = value.strip().lower()

        otel, otel_trace_hits = _otel_settings(lookup)
        url_found = lookup("REDIS_URL")
        return cls(
            redis_url=None if url_found is None else validate_redis_url(*url_found),
            ttl=get("CACHE_TTL", 300, lambda k, v: _as_int(k, v, 1)),
            enabled=get("CACHE_ENABLED", True, _as_bool),
            key_prefix=prefix,
            max_entries=get("CACHE_MAX_ENTRIES", 10_000, lambda k, v: _as_int(k, v, 1)),
            redis_socket_timeout=get(
                "CACHE_REDIS_SOCKET_TIMEOUT", 0.25, lambda k, v: _as_float(k, v, 0.001)
            ),
            breaker_threshold=get("CACHE_BREAKER_THRESHOLD", 5, lambda k, v: _as_int(k, v, 1)),
            breaker_cooldown=get("CACHE_BREAKER_COOLDOWN", 5.0, lambda k, v: _as_float(k, v, 0.0)),
            fallback=fallback,
            fallback_ttl=get("CACHE_FALLBACK_TTL", 5, lambda k, v: _as_int(k, v, 1)),
            fallback_max_entries=get(
                "CACHE_FALLBACK_MAX_ENTRIES", 1_000, lambda k, v: _as_int(k, v, 1)
            ),
            honor_no_cache=get("CACHE_HONOR_NO_CACHE", False, _as_bool),
            l1_max_entries=get("CACHE_L1_MAX_ENTRIES", 0, lambda k, v: _as_int(k, v, 0)),
            compress_min_bytes=get("CACHE_COMPRESS_MIN_BYTES", 1024, lambda k, v: _as_int(k, v, 0)),
            pending_max=get("CACHE_PENDING_MAX", 10_000, lambda k, v: _as_int(k, v, 1)),
            snapshot_clock_skew_ms=get(
                "CACHE_SNAPSHOT_CLOCK_SKEW_MS", 100.0, lambda k, v: _as_float(k, v, 0.0)
            ),
            auto_tags=get("CACHE_AUTO_TAGS", True, _as_bool),
            auto_tags_max_rows=get(
                "CACHE_AUTO_TAGS_MAX_ROWS", 1000, lambda k, v: _as_int(k, v, 1)
            ),
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
