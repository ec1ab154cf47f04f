"""The Redis backends: one round trip per hit, O(1) tag invalidation, no pickle.

* :mod:`.backend`: :class:`RedisBackend`, standalone or Sentinel-managed master (the
  ``MGET`` hit path, the scripts for everything else);
* :mod:`.cluster`: :class:`ClusterRedisBackend`, the same scheme spread over shard groups;
* :mod:`.connection`: :func:`connect` (a redis-py client from a URL), URL parsing, whether
  redis-py is installed and its errors;
* :mod:`.resp`: the hand-packed RESP fast path of the commands a request waits for;
* :mod:`.layout`: what is stored (entry framing, token keys) and how replies read;
* ``scripts/*.lua``: the Lua scripts, loaded by :func:`..lua.load_script`.

``RedisBackend.from_url`` calls :func:`connect` through this package, so replacing
``flask_dataroom_cache.backends.redis.connect`` (the tests give it a fakeredis client)
changes the client every backend built from a URL gets.
"""

from __future__ import annotations

from .backend import RedisBackend
from .cluster import DEFAULT_SHARD_GROUPS, ClusterRedisBackend
from .connection import HAVE_REDIS, RedisError, connect, parse_multi_host_url, url_options

__all__ = [
    "DEFAULT_SHARD_GROUPS",
    "HAVE_REDIS",
    "ClusterRedisBackend",
    "RedisBackend",
    "RedisError",
    "connect",
    "parse_multi_host_url",
    "url_options",
]
