"""``run_workflow`` and ``start_workflow``: one workflow in an isolated embedded copy of its app."""

from __future__ import annotations

from typing import Any

from ..actors.task import Task
from ..app import Encore
from ..errors import EncoreError
from ..invocation import Invocation
from .env import EncoreEnv


class Run:
    """A workflow started by :func:`start_workflow`, in its own :class:`EncoreEnv`.

    >>> with start_workflow(review, "doc-1", skip_time=True) as run:
    ...     run.wait_suspended(signal="approval")     # it waits for the signal now
    ...     run.signal("approval", {"ok": True})
    ...     assert run.result() == "published"
    """

    def __init__(self, env: EncoreEnv, app: Encore, invocation: Invocation[Any]) -> None:
        self.env = env
        self.app = app
        self.invocation = invocation

    @property
    def workflow_id(self) -> str:
        return self.invocation.invocation_id

    def result(self, timeout: float = 30.0) -> Any:
        """Wait (``timeout`` real seconds) for the workflow's result; raises its ``TaskError``,
        or ``TimeoutError``. With ``skip_time``, time skips meanwhile whenever nothing can run."""
        return self.invocation.wait(timeout)

    def wait_suspended(self, signal: str | None = None, timeout: float = 10.0) -> None:
        """Block until the workflow is suspended in ``wf.wait_for_signal`` (of ``signal``, if
        given) with nothing left to run: a signal or a cancel sent now arrives between that
        step and the next. With ``skip_time``, earlier timers are skipped to get there; its
        own timeout is not. Raises ``EncoreError`` if the workflow finished instead."""
        state = self.env.state
        with self.env.driver.waiting(lambda: state.finished(self.workflow_id) or self._waits(signal)) as waiter:
            if not waiter.reached.wait(timeout):
                what = f"workflow {self.workflow_id!r} ({self.invocation.status})"
                raise TimeoutError(f"{what} did not wait for a signal within {timeout} s")
        if state.finished(self.workflow_id):
            raise EncoreError(f"workflow {self.workflow_id!r} finished ({self.invocation.status}) without waiting")

    def _waits(self, signal: str | None) -> bool:
        meta = self.env.state.get_meta(self.workflow_id)
        if meta is None or meta.status != "suspended":
            return False
        tasks = {step.task for step in self.app.describe(self.workflow_id).steps if step.status == "waiting"}
        wanted = f"wait_for_signal:{signal}"
        return any(task == wanted or (signal is None and task.startswith("wait_for_signal:")) for task in tasks)

    def signal(self, name: str, payload: Any = None) -> str:
        """``app.signal`` to this workflow; returns the signal's id."""
        return self.app.signal(self.workflow_id, name, payload)

    def cancel(self, reason: str = "") -> None:
        """``app.cancel`` of this workflow."""
        self.app.cancel(self.workflow_id, reason)

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_workflow(task: Task[Any, Any], *args: Any, skip_time: bool = False, **kwargs: Any) -> Run:
    """Start ``task(*args, **kwargs)`` as a root workflow in a new :class:`EncoreEnv` holding a
    copy of its app (:meth:`EncoreEnv.clone`); ``close()`` the run (or use ``with``) after."""
    env = EncoreEnv(skip_time=skip_time)
    try:
        app = env.clone(task._app)
        invocation = app.tasks[task.name].send(*args, **kwargs)
    except BaseException:
        env.close()
        raise
    return Run(env, app, invocation)


def run_workflow(task: Task[Any, Any], *args: Any, skip_time: bool = False, timeout: float = 30, **kwargs: Any) -> Any:
    """Run ``task(*args, **kwargs)`` as a root workflow in an isolated embedded copy of its app
    (stub broker, memory state, in-process worker); its result, or raise its ``TaskError``
    (``TimeoutError`` after ``timeout`` real seconds). ``skip_time``: timers, signal-wait
    timeouts and step deadlines fire as soon as nothing else can run.

    >>> assert run_workflow(remind, "INV-1", skip_time=True) == {"reminded": 3}
    """
    with start_workflow(task, *args, skip_time=skip_time, **kwargs) as run:
        return run.result(timeout)
