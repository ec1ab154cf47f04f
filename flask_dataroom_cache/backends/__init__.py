"""Storage engines behind one protocol (:class:`Backend`).

* ``base``: the protocol and the versioned-entry semantics every backend keeps;
* ``memory``: the bounded in-process backend (no Redis, tests, the fallback);
* ``redis/``: Redis standalone, Sentinel and Cluster, with its Lua scripts;
* ``near/``: the per-process L1 in front of Redis, kept fresh across processes;
* ``resilient/``: the circuit breaker, the queue of undelivered invalidations, recovery;
* ``factory``: which of these an app gets, from its settings; ``lua``: the scripts' loader.
"""

from .base import Backend, BackendError, Lookup
from .memory import MemoryBackend
from .resilient import ResilientBackend

__all__ = ["Backend", "BackendError", "Lookup", "MemoryBackend", "ResilientBackend"]
