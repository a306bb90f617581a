"""Handles on invocations: what ``send`` returns and what ``execute_task`` resolves to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import EncoreError, TaskError, WorkflowIdConflict
from .identity import SEPARATOR, WorkflowIdentity
from .state.models import FINISHED, LOST, InvocationMeta

if TYPE_CHECKING:
    from .app import Encore

_UNSET: Any = object()
#: The task's result type: ``Task[P, R].send`` and ``wf.execute_task`` return ``Invocation[R]``.
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")


class Invocation(Generic[R_co]):
    """A handle on one task invocation, usable from any process.

    >>> inv = process_order.send("A-1")
    >>> inv.wait(timeout=30)["tracking_number"]

    A handle for an id no worker has seen yet reads ``pending`` and ``wait()`` waits; one whose
    state the store lost (a message for it arrived, the store had no record) reads ``lost``,
    and ``wait()`` raises :class:`~dramatiq_encore.errors.StateLost`.

    ``Invocation[R]`` is typed with its task's result type ``R`` (``Invocation[Any]`` from
    ``app.get_invocation``); ``result`` is typed ``R`` although it reads None while unfinished.
    """

    def __init__(
        self, app: Encore | None, invocation_id: str, *, task_name: str = "", expected_digest: str | None = None
    ) -> None:
        self._app = app
        self.invocation_id = invocation_id
        self._task_name = task_name
        # A start with a chosen workflow id: the run found there must be the one this handle sent.
        self._expected_digest = expected_digest
        self._identity: WorkflowIdentity | None = None
        self._result: R_co = _UNSET

    @classmethod
    def finished(cls: type[Invocation[T]], invocation_id: str, identity: WorkflowIdentity, result: T) -> Invocation[T]:
        """A handle on a step that already succeeded (what ``wf.execute_task`` returns)."""
        # Made at every replayed step: the fields are set directly, as __init__ would.
        inv = cls.__new__(cls)
        inv.__dict__.update(
            _app=None,
            invocation_id=invocation_id,
            _task_name=identity.workflow_type,
            _expected_digest=None,
            _identity=identity,
            _result=result,
        )
        return inv

    def __repr__(self) -> str:
        return f"Invocation({self.invocation_id!r}, status={self.status!r})"

    def _meta(self) -> InvocationMeta | None:
        return None if self._app is None else self._app.state.get_meta(self.invocation_id)

    @property
    def workflow(self) -> WorkflowIdentity:
        """The identity of the workflow this invocation belongs to."""
        if self._identity is not None:
            return self._identity
        meta = self._meta()
        if meta is not None:
            self._identity = meta.record.identity
            return self._identity
        if SEPARATOR not in self.invocation_id:  # not created yet: a root's identity is known
            return WorkflowIdentity.root(self.invocation_id, self._task_name)
        raise EncoreError(
            f"invocation {self.invocation_id!r} has not started yet, so its workflow is not known; "
            "wait() for it or read .status first"
        )

    @property
    def status(self) -> str:
        """pending, running, suspended, succeeded, failed, cancelled, or lost (see the class)."""
        if self._result is not _UNSET:
            return "succeeded"
        meta = self._meta()
        if meta is not None:
            return meta.status
        assert self._app is not None
        return LOST if self._app.state.lost_reason(self.invocation_id) is not None else "pending"

    @property
    def result(self) -> R_co:
        """The result of a finished invocation (None while unfinished); never blocks.

        Raises :class:`TaskError` for a failed or cancelled invocation.
        """
        if self._result is not _UNSET:
            return self._result
        meta = self._meta()
        if meta is None or meta.status not in FINISHED:
            return None  # type: ignore[return-value]  # documented: None while unfinished
        return self._unpack(meta)

    def wait(self, timeout: float | None = None) -> R_co:
        """Block until the invocation finishes; its result, or raise TaskError / TimeoutError
        (or :class:`~dramatiq_encore.errors.StateLost` when the store lost it)."""
        if self._result is not _UNSET:
            return self._result
        assert self._app is not None
        meta = self._app.state.wait_finished(self.invocation_id, timeout)
        if meta is None or meta.status not in FINISHED:
            status = "pending" if meta is None else meta.status
            raise TimeoutError(f"invocation {self.invocation_id!r} did not finish within {timeout} s (status {status})")
        return self._unpack(meta)

    def _unpack(self, meta: InvocationMeta) -> R_co:
        if self._expected_digest is not None and meta.record.digest != self._expected_digest:
            raise WorkflowIdConflict(self.invocation_id, meta.record.task)
        outcome = meta.outcome
        assert outcome is not None and self._app is not None
        if outcome.ok:
            self._result = self._app.load_result(meta.record.task, outcome.value)
            self._identity = meta.record.identity
            return self._result
        error = outcome.error
        assert error is not None
        raise TaskError(error.type, error.message, error.traceback, outcome.invocation_id or self.invocation_id)
