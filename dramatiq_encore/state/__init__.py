"""State backends: ``MemoryState`` (embedded mode, tests) and ``RedisState`` (production)."""

from .backend import Commit, CommitResult, Delivery, StateBackend, Trigger
from .backends.memory import MemoryState
from .backends.redis import RedisState

__all__ = ["Commit", "CommitResult", "Delivery", "MemoryState", "RedisState", "StateBackend", "Trigger"]
