"""Every error the library raises derives from one root, :class:`EncoreError`."""

from __future__ import annotations

from typing import Any


class EncoreError(Exception):
    """Root of every dramatiq-encore error."""


class ConfigurationError(EncoreError):
    """A setting, URL or option is invalid; the message names it and says what to do."""


class MisuseError(EncoreError):
    """A workflow used the API in a way the engine cannot honour (fails at once, no retries)."""


class WorkflowIdConflict(EncoreError):
    """A workflow id was reused with different arguments."""

    def __init__(self, workflow_id: str, task_name: str) -> None:
        self.workflow_id = workflow_id
        self.task_name = task_name
        super().__init__(
            f"workflow id {workflow_id!r} already belongs to a run of {task_name!r} with "
            "different arguments; the first run is untouched. Choose a new workflow id, "
            "or send the same arguments to attach to the existing run."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.workflow_id, self.task_name))


class NonDeterminismError(EncoreError):
    """A replay asked for something other than what the workflow recorded at that point.

    The invocation fails (without retries) even if user code catches this error.
    """

    def __init__(self, workflow_id: str, invocation_id: str, step: str, recorded: str, requested: str) -> None:
        self.workflow_id = workflow_id
        self.invocation_id = invocation_id
        self.step = step
        self.recorded = recorded
        self.requested = requested
        super().__init__(
            f"non-determinism in workflow {workflow_id!r} (invocation {invocation_id!r}) at {step}: "
            f"recorded {recorded}, but the code now asks for {requested}. Check that your workflow "
            "is deterministic: use wf.random()/wf.uuid()/wf.utc_now()/wf.side_effect() instead of "
            "the standard library, and guard code changes with wf.patched()."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.workflow_id, self.invocation_id, self.step, self.recorded, self.requested))


class TaskError(EncoreError):
    """A task invocation failed; raised by ``Invocation.wait()`` and by ``wf.execute_task``.

    Carries the remote error as text (never a pickled exception), so it crosses processes:

    >>> try:
    ...     order.wait(timeout=30)
    ... except TaskError as e:
    ...     print(e.error_type, e.message)
    """

    def __init__(self, error_type: str, message: str, traceback: str = "", invocation_id: str = "") -> None:
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.invocation_id = invocation_id
        super().__init__(f"{error_type}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error_type, self.message, self.traceback, self.invocation_id))


class PayloadTooLarge(EncoreError):
    """Arguments or a result larger than the configured limit (``ENCORE_MAX_PAYLOAD``)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes of JSON, over the payload limit of {limit} bytes "
            "(ENCORE_MAX_PAYLOAD); store large data elsewhere and pass a reference"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.size, self.limit))


class BrokerUnavailable(EncoreError):
    """The message broker could not be reached."""


class StepTimeout(EncoreError, TimeoutError):
    """A workflow step did not finish in time (``wait_for_signal`` or ``execute_task_with_options``).

    Raised deterministically inside the workflow: every replay raises it at the same step.
    A ``TimeoutError`` too, so ``except TimeoutError`` catches it.
    """


class WorkflowCancelled(EncoreError):
    """Raised inside a workflow at its next step after ``app.cancel(workflow_id)``.

    Cleanup steps may run in ``finally`` (or ``except WorkflowCancelled``) blocks; when the
    error leaves the workflow function, the invocation ends with status ``cancelled``.
    """

    error_type = "Cancelled"


class StateUnavailable(EncoreError):
    """The state store (Redis) did not answer; the message names it, without its password.

    Transient: a worker re-sends the message it was handling later, and a caller may retry.
    """


class StateLost(EncoreError):
    """The state store has no record of an invocation that a message named: its state was lost.

    Raised by ``Invocation.wait()`` (and read as status ``lost``). It happens when Redis keeps
    nothing on disk and restarted, evicts keys (a ``maxmemory-policy`` other than
    ``noeviction``), or was flushed.
    """

    def __init__(self, invocation_id: str, store: str, reason: str = "") -> None:
        self.invocation_id = invocation_id
        self.store = store
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"the state store at {store} lost invocation {invocation_id!r}: a message for it arrived{detail} but "
            "the store has no record of it. This happens when Redis restarts without persistence, evicts keys or "
            "is flushed: run it with appendonly yes, appendfsync everysec and maxmemory-policy noeviction."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.invocation_id, self.store, self.reason))


class TooManySignals(EncoreError):
    """A workflow already has the most signals waiting to be consumed (``ENCORE_MAX_PENDING_SIGNALS``)."""


class UnknownWorkflow(EncoreError):
    """No start message ever created a workflow with this id (or it expired after its retention)."""


class NotRetryable(EncoreError):
    """``retry`` or ``fork`` cannot apply to this workflow as it stands; the message says why."""
