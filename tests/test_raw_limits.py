"""Limits on what comes from outside: payload sizes, pending signals, ids, NaN, finished invocations.

Both backend pairs: on RabbitMQ the raw messages go out through pika, on the stub broker as
the same body (see tests/support/forge.py).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from dramatiq_encore import TaskError
from dramatiq_encore.actors.codec import InvalidJSON
from dramatiq_encore.errors import ConfigurationError, MisuseError, TooManySignals
from dramatiq_encore.state import RedisState
from tests.conftest import Harness
from tests.support.forge import dead_lettered, forge
from tests.support.waiting import wait_until

WAIT = 30


def _declare(harness: Harness) -> dict[str, Any]:
    app = harness.app

    @app.task(max_retries=0)
    def leaf(x: Any) -> Any:
        return x

    @app.task
    def waiting() -> Any:
        return waiting.wf.wait_for_signal("go")

    @app.task
    def two_steps() -> str:
        two_steps.wf.execute_task(leaf, 1)
        return str(two_steps.wf.execute_task(leaf, 2).result)

    @app.task(max_retries=0)
    def nan_result() -> float:
        return math.nan

    @app.task(max_retries=0)
    def nan_side_effect() -> Any:
        return nan_side_effect.wf.side_effect("reading", lambda: math.inf)

    @app.task(max_retries=0)
    def endless_sleep() -> None:
        endless_sleep.wf.sleep(math.inf)

    harness.start()
    return {
        "leaf": leaf,
        "waiting": waiting,
        "two_steps": two_steps,
        "nan_result": nan_result,
        "nan_side_effect": nan_side_effect,
        "endless_sleep": endless_sleep,
    }


def _suspended(task: Any) -> str:
    inv = task.send()
    assert wait_until(lambda: inv.status == "suspended", timeout=WAIT)
    return str(inv.invocation_id)


def _signal(workflow_id: str, payload: Any, name: str = "go") -> dict[str, Any]:
    return {
        "kind": "signal",
        "invocation_id": workflow_id,
        "name": name,
        "payload": payload,
        "signal_id": uuid.uuid4().hex,
    }


def test_a_raw_signal_over_the_payload_limit_is_dead_lettered(harness: Harness) -> None:
    tasks = _declare(harness)
    wid = _suspended(tasks["waiting"])
    before, journal = dead_lettered(harness), harness.app.state.load(wid, 0)[1]
    forge(harness, "waiting", _signal(wid, "x" * (harness.app.settings.max_payload + 1)))
    assert wait_until(lambda: dead_lettered(harness) == before + 1, timeout=WAIT)
    assert harness.app.state.load(wid, 0)[1] == journal
    harness.app.signal(wid, "go", "small")
    assert harness.app.get_invocation(wid).wait(timeout=WAIT) == "small"


def test_messages_for_a_finished_invocation_append_nothing(harness: Harness) -> None:
    tasks = _declare(harness)
    inv = tasks["two_steps"].send()
    assert inv.wait(timeout=WAIT) == "2"
    wid, state = inv.invocation_id, harness.app.state
    journal = state.load(wid, 0)[1]
    # When results, timers and signals are forged for it, many times over
    for n in range(100):
        step = 1 + n % 2
        forge(harness, "two_steps", {"kind": "result", "invocation_id": wid, "step": step, "child": f"{wid}/{step}"})
        forge(harness, "two_steps", _signal(wid, n))
    forge(harness, "two_steps", {"kind": "timer", "invocation_id": wid, "step": 1, "due": 0})
    marker = tasks["leaf"].send("after")  # handled after the forged ones (one queue, in order)
    assert marker.wait(timeout=WAIT) == "after"
    # Then its journal and its record of delivered triggers are what they were
    assert wait_until(lambda: state.load(wid, 0)[1] == journal, timeout=5)
    if isinstance(state, RedisState):
        assert state.client.scard(state.keys.invocation(wid).triggers) == 3  # start and two results


def test_signals_waiting_unconsumed_are_capped(harness: Harness) -> None:
    tasks = _declare(harness)
    harness.app.settings.max_pending_signals = 3
    wid = _suspended(tasks["waiting"])
    for n in range(3):
        harness.app.signal(wid, "other", n)
    assert wait_until(lambda: harness.app.state.get_meta(wid).signals_waiting == 3, timeout=WAIT)  # type: ignore[union-attr]
    with pytest.raises(TooManySignals) as err:
        harness.app.signal(wid, "go", "one too many")
    assert "ENCORE_MAX_PENDING_SIGNALS=3" in str(err.value)
    before = dead_lettered(harness)
    forge(harness, "waiting", _signal(wid, "raw one too many"))
    assert wait_until(lambda: dead_lettered(harness) == before + 1, timeout=WAIT)
    assert harness.app.get_invocation(wid).status == "suspended"


@pytest.mark.parametrize("bad", ["line\nbreak", "nul\x00", "bidi\u202eoverride", "tab\tid"])
def test_ids_with_control_characters_are_refused(harness: Harness, bad: str) -> None:
    tasks = _declare(harness)
    with pytest.raises(ConfigurationError, match="control or format characters"):
        tasks["leaf"].send_with_options(args=(1,), workflow_id=bad)
    before = dead_lettered(harness)
    forge(harness, "waiting", _signal(bad, 1))
    assert wait_until(lambda: dead_lettered(harness) == before + 1, timeout=WAIT)


def test_nan_and_infinity_are_refused_with_a_clear_error(harness: Harness) -> None:
    tasks = _declare(harness)
    with pytest.raises(InvalidJSON, match="NaN or Infinity"):
        tasks["leaf"].send(math.nan)
    for name in ("nan_result", "nan_side_effect"):
        with pytest.raises(TaskError) as err:
            tasks[name].send().wait(timeout=WAIT)
        assert err.value.error_type == "InvalidJSON" and "NaN or Infinity" in err.value.message
    with pytest.raises(TaskError) as err:
        tasks["endless_sleep"].send().wait(timeout=WAIT)
    assert err.value.error_type == "MisuseError" and "finite" in err.value.message
    wid = _suspended(tasks["waiting"])
    with pytest.raises(InvalidJSON):
        harness.app.signal(wid, "go", {"reading": -math.inf})
    assert MisuseError  # the sleep's error class, named above by its type
