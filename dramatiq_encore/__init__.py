"""dramatiq-encore: durable, deterministic-replay workflows for Dramatiq."""

from .app import Encore
from .errors import EncoreError, NonDeterminismError, TaskError
from .identity import WorkflowIdentity
from .invocation import Invocation

__all__ = ["Encore", "EncoreError", "Invocation", "NonDeterminismError", "TaskError", "WorkflowIdentity"]
__version__ = "0.1.0"
