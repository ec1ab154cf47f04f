"""Storage engines behind one protocol (:class:`Backend`)."""

from .base import Backend, BackendError, Lookup
from .memory import MemoryBackend
from .resilient import ResilientBackend

__all__ = ["Backend", "BackendError", "Lookup", "MemoryBackend", "ResilientBackend"]
