"""The replay engine with ``async def`` tasks: the same passes, the same journal, the same asks.

The engine awaits an async task's coroutine on an event loop thread (here the private one:
no dramatiq worker runs) from the pass's greenlet; see ``dramatiq_encore/actors/coroutines.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
import warnings
from typing import Any

import pytest

from dramatiq_encore.actors.context import current_context
from dramatiq_encore.actors.pass_state import Needs
from dramatiq_encore.actors.replay import PassOutcome
from dramatiq_encore.errors import MisuseError
from tests.unit.test_replay_engine import (
    CHARGE,
    RESERVE,
    Clock,
    _asking,
    drive,
    dumped,
    failed,
    forbidden_clock,
    load_history,
    order_workflow,
    run,
)


async def async_order_workflow(order_id: str, amount: float) -> dict[str, Any]:
    """``order_workflow`` as an ``async def``, awaiting between its operations."""
    wf = current_context()
    tracking = f"TRK-{order_id}-{int(wf.random() * 100000):05d}"
    await asyncio.sleep(0)
    wf.set_data("tracking_number", tracking)
    started = wf.utc_now()
    payment = wf.execute_task(CHARGE, order_id, amount)
    await asyncio.sleep(0.001)
    reservation = wf.execute_task(RESERVE, order_id, [{"sku": "A-7", "qty": 2}])
    wf.set_data("status", "paid")
    label_id = wf.uuid()
    sequence = wf.side_effect("sequence", lambda: 4242)
    await asyncio.sleep(0)
    status = wf.get_data("status")
    finished = wf.utc_now()
    return {
        "order_id": order_id,
        "tracking_number": tracking,
        "payment": payment.result,
        "reservation": reservation.result,
        "label_id": label_id,
        "sequence": sequence,
        "status": status,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
    }


def _untimed(journal: list[str]) -> list[dict[str, Any]]:
    """The journal's entries without the wall-clock time a step records (``t``)."""
    return [{k: v for k, v in json.loads(text).items() if k != "t"} for text in journal]


def test_the_same_workflow_as_def_and_as_async_def_records_the_same_journal() -> None:
    sync = drive(order_workflow, "A-1", 10.0, clock=Clock())
    coro = drive(async_order_workflow, "A-1", 10.0, clock=Clock())
    assert coro.outcome.status == sync.outcome.status == "succeeded"
    assert _untimed(coro.journal) == _untimed(sync.journal) and coro.passes == sync.passes == 3
    assert coro.outcome.value == sync.outcome.value and coro.data == sync.data


def test_an_async_workflow_replays_the_golden_history_of_its_sync_twin() -> None:
    rec, journal, history = load_history("order_workflow.json")
    outcome = run(async_order_workflow, *history["args"], journal=journal, rec=rec, clock=forbidden_clock)
    assert outcome.status == "succeeded" and outcome.entries == []
    assert outcome.value == history["result"]


def test_an_async_pass_suspends_like_a_sync_pass_and_leaves_no_coroutine_behind() -> None:
    unwound: list[str] = []

    async def flow() -> Any:
        wf = current_context()
        try:
            return wf.execute_task(CHARGE, "A-1", 1.0).result
        finally:
            await asyncio.sleep(0)  # cleanup may await
            unwound.append("finally")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error
        outcome = run(flow)
        gc.collect()
    assert outcome.status == "suspended" and outcome.waiting == [1] and unwound == ["finally"]
    assert [step.task for step in outcome.new_steps] == ["charge_payment"]
    with pytest.raises(Exception, match="no workflow is running"):
        current_context()


def test_a_failed_child_raises_its_task_error_in_the_coroutine() -> None:
    async def flow() -> str:
        wf = current_context()
        try:
            wf.execute_task(CHARGE, "A-1", 1.0)
        except Exception as exc:  # TaskError is an Exception
            return f"caught {type(exc).__name__}: {exc.error_type}"  # type: ignore[attr-defined]
        return "no error"

    first = run(flow)
    resolved = failed(first.new_steps[0], "CardDeclined")
    outcome = run(flow, journal=[*dumped(first), resolved])
    assert outcome.status == "succeeded" and outcome.value == "caught TaskError: CardDeclined"


def test_a_speculative_async_pass_asks_for_the_lease_from_the_loop_thread() -> None:
    threads: list[str] = []

    async def flow() -> Any:
        threads.append(threading.current_thread().name)
        await asyncio.sleep(0)
        wf = current_context()
        value = wf.uuid()
        return [value, wf.get_data("k", "none")]

    step = _asking(flow, speculative=True)
    # When it reaches its first wf operation, the greenlet parks and asks its driver
    assert step.start() == Needs(lease=True) and step.parked
    assert step.answer(True) == Needs(data="k")
    outcome = step.answer((True, json.dumps("value")))
    # Then it goes on with the answers, on the loop thread, not this one
    assert isinstance(outcome, PassOutcome) and outcome.status == "succeeded"
    assert outcome.value[1] == "value" and len(outcome.entries) == 2
    assert threads == ["encore-event-loop"]


def test_an_abandoned_async_pass_unwinds_its_coroutine_and_records_nothing() -> None:
    seen: list[str] = []

    async def stubborn() -> str:
        wf = current_context()
        try:
            wf.random()
        finally:
            seen.append("unwound")
            with contextlib.suppress(BaseException):
                wf.uuid()  # nothing more is recorded after the abandon
        return "kept going"

    step = _asking(stubborn, speculative=True)
    assert step.start() == Needs(lease=True)
    step.abandon()
    assert not step.parked and seen == ["unwound"]


def test_wf_operations_from_a_concurrent_asyncio_task_fail_the_workflow() -> None:
    async def branch(n: int) -> float:
        await asyncio.sleep(0)
        return current_context().random() + n

    async def flow() -> Any:
        return await asyncio.gather(branch(1), branch(2))

    outcome = run(flow)
    assert outcome.status == "failed" and not outcome.retryable
    assert isinstance(outcome.exception, MisuseError) and "wf.gather" in str(outcome.exception)
    assert outcome.entries == []

