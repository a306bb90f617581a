"""dramatiq-encore: durable, deterministic-replay workflows for Dramatiq."""

from .app import Encore
from .errors import EncoreError, NonDeterminismError, StepTimeout, TaskError, WorkflowCancelled
from .identity import WorkflowIdentity
from .invocation import Invocation

__all__ = [
    "Encore",
    "EncoreError",
    "Invocation",
    "NonDeterminismError",
    "StepTimeout",
    "TaskError",
    "WorkflowCancelled",
    "WorkflowIdentity",
]
__version__ = "0.1.0"
