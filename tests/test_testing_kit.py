"""The testing kit (``dramatiq_encore.testing``): run_workflow, start_workflow, time skipping,
the ``encore_env`` / ``encore_app`` fixtures and binding a module-level app."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from dramatiq_encore import Encore, StepTimeout, TaskError
from dramatiq_encore.broker_config import EncoreSettings
from dramatiq_encore.clock import REAL_CLOCK
from dramatiq_encore.errors import BrokerUnavailable
from dramatiq_encore.testing import EncoreEnv, assert_replays, run_workflow, start_workflow

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.timedelta(days=1)

app = Encore()  # a user's module-level embedded app: the kit runs an isolated copy of it
attempts: list[float] = []


@app.task
def double(n: int) -> int:
    return 2 * n


@app.task
def flaky(n: int) -> int:
    attempts.append(time.monotonic())
    raise ValueError(f"bad input {n}")


@app.task
def pipeline(n: int) -> int:
    return pipeline.wf.execute_task(double, n).result + 1


@app.task
def fails(n: int) -> int:
    return fails.wf.execute_task(flaky, n).result


@app.task
def three_days() -> list[str]:
    wf = three_days.wf
    stamps = [wf.utc_now()]
    wf.sleep(3 * DAY)
    stamps.append(wf.utc_now())
    wf.execute_task(double, 1)
    stamps.append(wf.utc_now())
    return [stamp.isoformat() for stamp in stamps]


@app.task
def nap(seconds: float) -> float:
    before = nap.wf.utc_now()
    nap.wf.sleep(seconds)
    return (nap.wf.utc_now() - before).total_seconds()


@app.task
def approval(doc: str) -> dict[str, Any]:
    wf = approval.wf
    draft = wf.execute_task(double, len(doc)).result
    asked = wf.utc_now()
    try:
        decision = wf.wait_for_signal("approval", timeout=2 * DAY)
    except StepTimeout:
        decision = {"by": None}
    waited = (wf.utc_now() - asked).total_seconds()
    return {"draft": draft, "by": decision["by"], "waited_s": waited}


@app.task
def slow_child() -> str:
    slow_child.wf.sleep(dt.timedelta(hours=2))
    return "late"


@app.task
def with_deadline() -> str:
    try:
        return with_deadline.wf.execute_task_with_options(slow_child, timeout=dt.timedelta(hours=1)).result
    except StepTimeout:
        return "deadline passed"


def test_run_workflow_returns_the_result() -> None:
    assert run_workflow(pipeline, 20) == 41


def test_run_workflow_raises_the_task_error_after_the_retries_without_waiting_their_backoff() -> None:
    attempts.clear()
    started = time.perf_counter()
    with pytest.raises(TaskError) as caught:
        run_workflow(fails, 7, skip_time=True)
    print(f"4 attempts with 1 + 2 + 4 s of backoff skipped: {time.perf_counter() - started:.3f} s")
    assert caught.value.error_type == "ValueError"
    assert "bad input 7" in caught.value.message
    assert len(attempts) == 4  # dramatiq's retries (max_retries=3) all ran


def test_a_three_day_sleep_finishes_at_once_with_skip_time() -> None:
    started = time.perf_counter()
    stamps = [dt.datetime.fromisoformat(s) for s in run_workflow(three_days, skip_time=True)]
    wall = time.perf_counter() - started
    print(f"three-day sleep: {wall:.3f} s of wall time")
    assert wall < 10.0
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # strictly increasing
    assert stamps[1] - stamps[0] >= 3 * DAY


def test_without_skip_time_a_short_sleep_really_waits() -> None:
    started = time.perf_counter()
    slept = run_workflow(nap, 0.3)
    assert slept >= 0.3
    assert time.perf_counter() - started >= 0.3


def test_a_signal_wait_times_out_under_skip_time() -> None:
    result = run_workflow(approval, "doc", skip_time=True)
    assert result["by"] is None
    assert result["waited_s"] >= (2 * DAY).total_seconds()


def test_a_step_deadline_fires_under_skip_time() -> None:
    assert run_workflow(with_deadline, skip_time=True) == "deadline passed"


def test_a_signal_sent_between_steps_arrives_before_a_two_day_timeout() -> None:
    with start_workflow(approval, "doc-1", skip_time=True) as run:
        run.wait_suspended(signal="approval")
        assert run.env.clock.skipped == 0.0  # the wait's own timeout was not skipped to
        run.signal("approval", {"by": "ada"})
        result = run.result(timeout=10)
    assert result["draft"] == 10 and result["by"] == "ada"
    assert result["waited_s"] < 3600


def test_wait_suspended_works_on_the_real_clock_too() -> None:
    with start_workflow(approval, "doc-4") as run:
        run.wait_suspended(signal="approval")
        run.signal("approval", {"by": "grace"})
        assert run.result(timeout=10)["by"] == "grace"
        assert run.env.clock.skipped == 0.0


def test_a_cancel_sent_between_steps_cancels_the_workflow() -> None:
    with start_workflow(approval, "doc-2", skip_time=True) as run:
        run.wait_suspended()
        run.cancel("withdrawn")
        with pytest.raises(TaskError) as caught:
            run.result(timeout=10)
        assert run.app.describe(run.workflow_id).status == "cancelled"
    assert caught.value.error_type == "Cancelled"
    assert "withdrawn" in caught.value.message


def test_a_kit_run_exports_a_history_that_assert_replays_accepts() -> None:
    with start_workflow(approval, "doc-3", skip_time=True) as run:
        run.result(timeout=10)
        history = run.app.export(run.workflow_id)
    assert_replays(app, history)  # the module's own app: no broker, no state
    assert_replays(app, history.model_dump(mode="json"))


def test_the_kit_leaves_the_module_app_alone() -> None:
    broker, state = app.broker, app.state
    assert run_workflow(pipeline, 1) == 3
    assert (app.broker, app.state, app.clock) == (broker, state, REAL_CLOCK)
    assert app.list_workflows().items == []


# -- the pytest plugin's fixtures (registered through the package's pytest11 entry point) -----
_environments: list[EncoreEnv] = []


@pytest.mark.parametrize("n", [1, 2])
def test_each_test_gets_its_own_environment(encore_env: EncoreEnv, encore_app: Encore, n: int) -> None:
    @encore_app.task
    def count(k: int) -> int:
        return k

    assert encore_app.list_workflows().items == []  # nothing left by the other test
    # The same workflow id with other arguments: no WorkflowIdConflict with the other test's run.
    assert count.send_with_options(args=(n,), workflow_id="same-id").wait(timeout=10) == n
    assert all(env is not encore_env and env.closed for env in _environments)
    _environments.append(encore_env)


@pytest.mark.encore(skip_time=True)
def test_the_marker_turns_skip_time_on(encore_app: Encore) -> None:
    @encore_app.task
    def weekly() -> str:
        weekly.wf.sleep(dt.timedelta(weeks=1))
        return "a week later"

    assert weekly.send().wait(timeout=10) == "a week later"  # Invocation.wait skips time too


# A module-level app configured for RabbitMQ (nothing listens on port 1): bound to the kit,
# its tasks run with the stub broker and the memory state.
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"
production = Encore(settings=EncoreSettings(broker_url=UNREACHABLE))


@production.task
def add_one(n: int) -> int:
    return n + 1


@production.task
def overnight(n: int) -> int:
    overnight.wf.sleep(dt.timedelta(hours=12))
    return overnight.wf.execute_task(add_one, n).result


@pytest.mark.encore(skip_time=True)
def test_a_module_level_app_is_bound_to_the_test_environment(encore_env: EncoreEnv) -> None:
    broker = production.broker
    encore_env.bind(production)
    invocation = overnight.send(41)
    assert invocation.wait(timeout=10) == 42
    assert production.describe(invocation.invocation_id).status == "succeeded"
    encore_env.close()
    assert production.broker is broker and add_one.actor.broker is broker  # put back as it was
    with pytest.raises(BrokerUnavailable):
        overnight.send(1)  # really RabbitMQ again, and nothing listens there


def test_the_readme_shows_the_example_test_file() -> None:
    example = (ROOT / "tests" / "test_readme_testing.py").read_text()
    assert example.strip() in (ROOT / "README.md").read_text()
