"""Settings, parsed and validated once at ``init_app``.

Every key is looked up in ``app.config`` first and then in the environment, so a
twelve-factor deployment and a test that sets ``app.config`` both work. A bad value
fails *here*, with the key and the offending value in the message, instead of
surfacing later as a confusing runtime error inside a request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["ConfigError", "Settings"]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+cluster", "redis+sentinel"}
_FALLBACKS = ("none", "memory")


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


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one app's cache. Immutable: read once at ``init_app``."""

    redis_url: str | None = None
    ttl: int = 300
    enabled: bool = True
    key_prefix: str = "dataroom"
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
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tag_ttl(self) -> int:
        """How long a tag's version token lives.

        It must outlive every entry stamped with it, or entries would miss early (never
        serve stale: a lost token only causes a miss). Twice the TTL, at least an hour.
        """
        return max(2 * self.ttl, 3600)

    @classmethod
    def from_mapping(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Read every key from ``config``, falling back to ``environ`` (``os.environ``)."""
        env = os.environ if environ is None else environ

        def raw(key: str, default: T) -> Any | T:
            if key in config and config[key] is not None:
                return config[key]
            if key in env:
                return env[key]
            return default

        def get(key: str, default: T, parse: Callable[[str, Any], T]) -> T:
            value = raw(key, None)
            return default if value is None else parse(key, value)

        prefix = raw("CACHE_KEY_PREFIX", "dataroom")
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise _bad(
                "CACHE_KEY_PREFIX",
                prefix,
                "use 1-64 characters from A-Z a-z 0-9 _ . - (it starts every Redis key)",
            )
        fallback = raw("CACHE_FALLBACK", "none")
        if not isinstance(fallback, str) or fallback.strip().lower() not in _FALLBACKS:
            raise _bad("CACHE_FALLBACK", fallback, f"expected one of {list(_FALLBACKS)}")

        return cls(
            redis_url=validate_redis_url("REDIS_URL", raw("REDIS_URL", None)),
            ttl=get("CACHE_TTL", 300, lambda k, v: _as_int(k, v, 1)),
            enabled=get("CACHE_ENABLED", True, _as_bool),
            key_prefix=prefix,
            max_entries=get("CACHE_MAX_ENTRIES", 10_000, lambda k, v: _as_int(k, v, 1)),
            redis_socket_timeout=get(
                "CACHE_REDIS_SOCKET_TIMEOUT", 0.25, lambda k, v: _as_float(k, v, 0.001)
            ),
            breaker_threshold=get("CACHE_BREAKER_THRESHOLD", 5, lambda k, v: _as_int(k, v, 1)),
            breaker_cooldown=get("CACHE_BREAKER_COOLDOWN", 5.0, lambda k, v: _as_float(k, v, 0.0)),
            fallback=fallback.strip().lower(),
            fallback_ttl=get("CACHE_FALLBACK_TTL", 5, lambda k, v: _as_int(k, v, 1)),
            fallback_max_entries=get(
                "CACHE_FALLBACK_MAX_ENTRIES", 1_000, lambda k, v: _as_int(k, v, 1)
            ),
            honor_no_cache=get("CACHE_HONOR_NO_CACHE", False, _as_bool),
            l1_max_entries=get("CACHE_L1_MAX_ENTRIES", 0, lambda k, v: _as_int(k, v, 0)),
            compress_min_bytes=get("CACHE_COMPRESS_MIN_BYTES", 1024, lambda k, v: _as_int(k, v, 0)),
            pending_max=get("CACHE_PENDING_MAX", 10_000, lambda k, v: _as_int(k, v, 1)),
        )
