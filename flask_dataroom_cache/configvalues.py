"""What a config value may be: the parsers and validators ``config.py`` applies to what it
reads, the key prefix rules, and Flask-Caching's keys.

Nothing here reads ``app.config`` or the environment (``config.py`` does, and only it:
a test holds it to that). Every function is given the key actually read and its value,
and a bad value raises a :class:`ConfigError` naming both.

* :func:`as_bool`, :func:`as_int`, :func:`as_float`, :func:`as_fallback`,
  :func:`validate_redis_url`: one value each.
* :func:`key_prefix`: our key prefix from ``CACHE_KEY_PREFIX`` (or its ``DATAROOM_``
  twin) and Flask-Caching's prefix: a shared prefix we cannot use, or that would share
  Redis keys with Flask-Caching, becomes one of our own (:func:`derived_prefix`) and a
  notice; the namespaced key must be usable as it is.
* :data:`FLASK_CACHING_KEYS`: the keys only Flask-Caching reads, with what to use here
  instead (the warning about them: ``Settings.flask_caching_keys_message``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_PREFIX",
    "FLASK_CACHING_DEFAULT_PREFIX",
    "FLASK_CACHING_KEYS",
    "ConfigError",
    "as_bool",
    "as_fallback",
    "as_float",
    "as_int",
    "bad",
    "derived_prefix",
    "key_prefix",
    "shares_keys_with",
    "validate_redis_url",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+cluster", "redis+sentinel"}
_FALLBACKS = ("none", "memory")
_PREFIX_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")

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


def bad(key: str, value: Any, why: str) -> ConfigError:
    """The error for ``key``'s ``value``: both named, then ``why``."""
    return ConfigError(f"{key}={value!r} is invalid: {why}")


# -- one value --------------------------------------------------------------------------
def as_bool(key: str, value: Any) -> bool:
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
    raise bad(key, value, "expected a boolean (true/false, 1/0, yes/no, on/off)")


def as_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise bad(key, value, "expected an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    else:
        raise bad(key, value, "expected an integer")
    if number < minimum:
        raise bad(key, value, f"must be >= {minimum}")
    return number


def as_float(key: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool):
        raise bad(key, value, "expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad(key, value, "expected a number") from None
    if not number >= minimum or number != number or number == float("inf"):
        raise bad(key, value, f"must be a finite number >= {minimum}")
    return number


def as_fallback(key: str, value: Any) -> str:
    """``CACHE_FALLBACK``: ``none`` or ``memory`` (any case, spaces around)."""
    if not isinstance(value, str) or value.strip().lower() not in _FALLBACKS:
        raise bad(key, value, f"expected one of {list(_FALLBACKS)}")
    return value.strip().lower()


def validate_redis_url(key: str, value: Any) -> str | None:
    """Check the shape of a Redis URL without connecting to it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(key, value, "expected a URL string")
    url = value.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise bad(key, value, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _REDIS_SCHEMES:
        raise bad(key, value, f"scheme must be one of {sorted(_REDIS_SCHEMES)}")
    if scheme == "unix":
        if not parts.path:
            raise bad(key, value, "a unix:// URL needs a socket path")
        return url
    if scheme in ("redis+cluster", "redis+sentinel"):
        hosts = parts.netloc.rsplit("@", 1)[-1]
        if not hosts or any(not h.strip() for h in hosts.split(",")):
            raise bad(key, value, "needs host:port[,host:port...]")
        for hostport in hosts.split(","):
            _, _, p = hostport.rpartition(":")
            if ":" in hostport and not p.isdigit():
                raise bad(key, value, f"port of {hostport!r} is not a number")
        if scheme == "redis+sentinel" and not parts.path.strip("/"):
            raise bad(key, value, "a sentinel URL needs /service_name")
        return url
    try:
        port = parts.port  # raises ValueError for a non-numeric port (one host only here)
    except ValueError as exc:
        raise bad(key, value, f"not a valid URL ({exc})") from None
    if not parts.hostname:
        raise bad(key, value, "missing host")
    if port is not None and not 0 < port < 65536:
        raise bad(key, value, "port out of range")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise bad(key, value, "the path must be a database number, e.g. /0")
    return url


# -- the key prefix ---------------------------------------------------------------------
def key_prefix(
    found: tuple[str, Any] | None, flask_caching_prefix: str | None, namespace: str
) -> tuple[str, list[str]]:
    """``(our prefix, notices)`` from ``found`` (the ``CACHE_KEY_PREFIX`` key read, with
    its ``namespace`` twin first, and its value; ``None``: unset) and Flask-Caching's
    prefix (``None``: Flask-Caching is not on the app). A bad namespaced value raises."""
    notices: list[str] = []
    prefix = DEFAULT_PREFIX
    if found is not None:
        name, value = found
        valid = isinstance(value, str) and _PREFIX_RE.match(value) is not None
        sharing = (
            valid
            and flask_caching_prefix is not None
            and shares_keys_with(value, flask_caching_prefix)
        )
        if name.startswith(namespace):
            if not valid:
                raise bad(
                    name,
                    value,
                    "use 1-64 characters from A-Z a-z 0-9 _ . - (it starts every Redis key)",
                )
            if sharing:
                raise bad(
                    name,
                    value,
                    f"Redis keys would overlap Flask-Caching's (its CACHE_KEY_PREFIX is "
                    f"{flask_caching_prefix!r}); choose a prefix neither starts the other",
                )
            prefix = value
        elif valid and not sharing:
            prefix = value
        else:
            prefix = derived_prefix(value, flask_caching_prefix)
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
    return prefix, notices


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


def derived_prefix(shared: Any, flask_caching_prefix: str | None) -> str:
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
