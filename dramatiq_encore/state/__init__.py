"""State backends: ``MemoryState`` (embedded mode, tests) and ``RedisState`` (production)."""

from .backend import Commit, CommitResult, Delivery, StateBackend, Trigger
from .backends.memory import MemoryState

__all__ = ["Commit", "CommitResult", "Delivery", "MemoryState", "RedisState", "StateBackend", "Trigger"]


def __getattr__(name: str) -> object:
    # RedisState imports redis-py; keep embedded mode free of that import until it is asked for.
    if name == "RedisState":
        from .backends.redis import RedisState

        return RedisState
    raise AttributeError(name)
