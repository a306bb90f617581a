"""Durable timers (``wf.sleep``) and deadlines (``wf.execute_task_with_options(timeout=...)``)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import Middleware

from dramatiq_encore import NonDeterminismError, TaskError
from dramatiq_encore.actors import outbox, poller
from dramatiq_encore.actors.messages import ENVELOPE
from tests.conftest import Harness
from tests.support.waiting import wait_until as _until
from tests.test_contract import Tally, journal

WAIT = 20.0


class TimerMessages(Middleware):
    """Counts timer wake-ups sent; optionally makes the first publish of one fail."""

    def __init__(self, fail_first: bool = False) -> None:
        self.sent = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        if (message.options.get(ENVELOPE) or {}).get("kind") != "timer":
            return
        with self._lock:
            if self.fail_first:
                self.fail_first = False
                raise ConnectionError("broker went away after the commit")
            self.sent += 1


def _declare_sleeper(harness: Harness) -> Any:
    @harness.app.task
    def sleeper(seconds: float | dt.timedelta) -> dict[str, str]:
        before = sleeper.wf.utc_now()  # recorded when sleep is first reached
        sleeper.wf.sleep(seconds)
        after = sleeper.wf.utc_now()  # recorded when the workflow first runs past it
        return {"before": before.isoformat(), "after": after.isoformat()}

    return sleeper


# Timing figures belong to benchmarks (benchmarks/timer_latency.py measures how late a 2 s
# timer fires); here only correctness and a generous liveness bound are asserted.
LIVENESS_S = 10.0


def test_a_two_second_timer_fires_after_its_due_time(harness: Harness) -> None:
    sleeper = _declare_sleeper(harness)
    harness.start()
    started = time.monotonic()
    inv = sleeper.send(2.0)
    result = inv.wait(timeout=WAIT)
    elapsed = time.monotonic() - started

    slept = dt.datetime.fromisoformat(result["after"]) - dt.datetime.fromisoformat(result["before"])
    print(f"\n[timer] 2 s sleep on {harness.kind}: resumed after {slept.total_seconds():.3f} s")
    assert dt.timedelta(seconds=2.0) <= slept <= dt.timedelta(seconds=2.0 + LIVENESS_S)
    assert 2.0 <= elapsed <= 2.0 + LIVENESS_S
    timers = [e for e in journal(harness.app, inv.invocation_id) if e["e"] == "timer"]
    assert len(timers) == 1 and timers[0]["seconds"] == 2.0


def test_long_timers_hop_at_most_the_maximum_delay(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the delayed-message path (no timer poller), a maximum hop of 0.4 s (30 s in
    # production) and a 1.5 s sleep
    monkeypatch.setattr(harness.app.settings, "timer_poll", False)
    monkeypatch.setattr(outbox, "MAX_HOP_S", 0.4)
    counter = TimerMessages()
    harness.app.broker.add_middleware(counter)
    sleeper = _declare_sleeper(harness)
    harness.start()
    result = sleeper.send(dt.timedelta(seconds=1.5)).wait(timeout=WAIT)
    # Then the wake-up was sent on several times, and still fired on time
    slept = dt.datetime.fromisoformat(result["after"]) - dt.datetime.fromisoformat(result["before"])
    assert dt.timedelta(seconds=1.5) <= slept <= dt.timedelta(seconds=1.5 + LIVENESS_S)
    assert counter.sent >= 3  # sent, then sent on at least twice


def test_a_timer_lost_between_commit_and_publish_is_sent_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broker that fails the first publish of a timer wake-up (a crash after the commit,
    # or after the poller claimed it: then it is due again after the claim, 0.5 s here)
    monkeypatch.setattr(poller, "CLAIM_S", 0.5)
    harness.app.broker.add_middleware(TimerMessages(fail_first=True))

    @harness.app.task(min_backoff=10, max_backoff=20)
    def napper() -> str:
        napper.wf.sleep(0.3)
        return "awake"

    harness.start()
    # Then the retried trigger is a duplicate, and its repair re-sends the wake-up
    assert napper.send().wait(timeout=WAIT) == "awake"


def test_timers_and_steps_interleave_and_replay(harness: Harness) -> None:
    app = harness.app
    passes = Tally()

    @app.task
    def double(i: int) -> int:
        return 2 * i

    @app.task
    def paced() -> list[Any]:
        passes.add()
        out = [paced.wf.execute_task(double, 1).result]
        paced.wf.sleep(0.2)
        out.append(paced.wf.execute_task(double, 2).result)
        paced.wf.sleep(0)
        out.append(paced.wf.random())
        return out

    harness.start()
    inv = paced.send()
    result = inv.wait(timeout=WAIT)
    assert result[:2] == [2, 4] and 0 <= result[2] < 1
    kinds = [e["e"] for e in journal(app, inv.invocation_id) if e["e"] in ("step", "timer")]
    assert kinds == ["step", "timer", "step", "timer"]
    assert passes[None] >= 5


def test_changed_sleep_duration_fails_with_nondeterminism(harness: Harness) -> None:
    code = {"seconds": 0.5}

    @harness.app.task
    def evolving() -> str:
        evolving.wf.sleep(code["seconds"])
        return "done"

    harness.start()
    inv = evolving.send()
    assert _until(lambda: any(e["e"] == "timer" for e in journal(harness.app, inv.invocation_id)))
    code["seconds"] = 5.0
    with pytest.raises(TaskError) as err:
        inv.wait(timeout=WAIT)
    assert err.value.error_type == NonDeterminismError.__name__
    assert "sleep(0.5)" in err.value.message and "sleep(5.0)" in err.value.message


def test_execute_task_with_options_times_out_deterministically(harness: Harness) -> None:
    app = harness.app
    release = threading.Event()
    seen = Tally()

    @app.task
    def slow(timeout: float) -> str:  # a child's own "timeout" parameter is not shadowed
        release.wait(timeout)
        return "late"

    @app.task
    def quick(x: int) -> int:
        return x + 1

    @app.task
    def with_deadline() -> dict[str, Any]:
        wf = with_deadline.wf
        fast = wf.execute_task_with_options(quick, args=(1,), timeout=5)
        try:
            wf.execute_task_with_options(slow, kwargs={"timeout": WAIT}, timeout=dt.timedelta(seconds=0.5))
            outcome = "finished"
        except TimeoutError as exc:
            seen.add(type(exc).__name__)
            outcome = str(exc)
        after = wf.execute_task(quick, 10).result
        return {"fast": fast.result, "outcome": outcome, "after": after}

    harness.start()
    inv = with_deadline.send()
    result = inv.wait(timeout=WAIT)
    release.set()

    assert result["fast"] == 2 and result["after"] == 11
    assert "did not finish within 0.5 s" in result["outcome"]
    assert set(seen.snapshot()) == {"StepTimeout"} and seen["StepTimeout"] >= 2  # raised again on replay
    kinds = [e["e"] for e in journal(app, inv.invocation_id) if e["e"] in ("step", "timer")]
    assert kinds == ["step", "timer", "step", "timer", "step"]



def test_a_sleeping_workflow_holds_no_message_and_its_timer_leaves_the_index(real_harness: Harness) -> None:
    app = real_harness.app

    @app.task
    def long_nap() -> str:
        long_nap.wf.sleep(3600)
        return "awake"

    real_harness.start()
    inv = long_nap.send()
    assert _until(lambda: inv.status == "suspended", timeout=WAIT)
    state: Any = app.state
    shard = state.keys.shard_of(inv.invocation_id)
    index = f"{state.keys.shard_head(shard)}:ix:due"
    # The timer is in the store's index, and no message waits for it in the delay queue
    [member] = state.client.zrange(index, 0, -1)
    assert member.startswith(f"{inv.invocation_id}\x1f1\x1f")
    delay_queue = f"{app.default_queue}.DQ"
    declared = app.broker.channel.queue_declare(delay_queue, passive=True)
    assert declared.method.message_count == 0
    # A cancelled workflow's timer leaves the index
    app.cancel(inv.invocation_id)
    with pytest.raises(TaskError):
        inv.wait(timeout=WAIT)
    assert state.client.zcard(index) == 0
