"""The workflows the chaos workers serve, configured from the environment like a user module.

Workers run ``dramatiq chaos.app`` with ENCORE_BROKER_URL, ENCORE_STATE_URL and
ENCORE_KEY_PREFIX set; the reference run imports this module with none of them set, so the
same tasks run embedded (stub broker, in-memory state).

Results hold deterministic values and step results only, never a wall-clock reading, so
a chaos run and its crash-free reference can be compared field for field. Leaf bodies
count their executions in an always-on Redis (``CHAOS_COUNT_URL`` / ``CHAOS_COUNT_KEY``),
not in the chaos Redis, which the fault injector restarts.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from dramatiq_encore import Encore

QUEUE = os.environ.get("CHAOS_QUEUE", "chaos")
# Fast retries for the children that fail on purpose (DESIGN: failed after their retries).
FAST_RETRY: dict[str, Any] = {"max_retries": 1, "min_backoff": 20, "max_backoff": 100}
# A leaf that fails on purpose runs max_retries + 1 times in a crash-free run.
FAILING_ATTEMPTS = FAST_RETRY["max_retries"] + 1



class SlowPublish(Middleware):
    """Delays every publish by up to ``max_ms`` (``CHAOS_PUBLISH_DELAY_MS``), half before, half after.

    The engine's recovery paths cover crashes between committing a pass and publishing its
    messages, and between publishing ahead and committing. Both gaps last well under a
    millisecond, so random SIGKILLs almost never land in them; widening them makes them land.
    """

    def __init__(self, max_ms: int) -> None:
        self.half_s = max_ms / 2000

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        time.sleep(random.uniform(0, self.half_s))

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        time.sleep(random.uniform(0, self.half_s))


app = Encore()
if int(os.environ.get("CHAOS_PUBLISH_DELAY_MS", "0")) > 0:
    app.broker.add_middleware(SlowPublish(int(os.environ["CHAOS_PUBLISH_DELAY_MS"])))

_counter: redis.Redis[bytes] | None = None


def _count(tag: str, expected: int = 1) -> None:
    """Count one execution of a leaf body; the field names the number a crash-free run makes."""
    global _counter
    key = os.environ.get("CHAOS_COUNT_KEY")
    if not key:
        return
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ.get("CHAOS_COUNT_URL", "redis://127.0.0.1:6379/0"))
    _counter.hincrby(key, f"{tag}#{expected}", 1)


def _work(delay_ms: int) -> None:
    if delay_ms > 0 and os.environ.get("CHAOS_NO_SLEEP") != "1":
        time.sleep(delay_ms / 1000)


# -- leaves -------------------------------------------------------------------------------
@app.task(queue_name=QUEUE, min_backoff=100, max_backoff=1_000)
def leaf(tag: str, delay_ms: int) -> dict[str, Any]:
    """One unit of work: its own random and uuid streams, counted per execution."""
    _count(tag)
    _work(delay_ms)
    return {"tag": tag, "r": leaf.wf.random(), "u": leaf.wf.uuid()}


@app.task(queue_name=QUEUE, min_backoff=100, max_backoff=1_000)
def plain(tag: str, delay_ms: int) -> dict[str, Any]:
    """A unit of work that uses no ``wf`` value: its worker records it and resumes its parent
    (same queue) in place, without a result message."""
    _count(tag)
    _work(delay_ms)
    return {"tag": tag, "plain": True}


@app.task(queue_name=QUEUE, **FAST_RETRY)
def reject(tag: str) -> dict[str, Any]:
    """A leaf that always fails, after its retries."""
    _count(tag, FAILING_ATTEMPTS)
    raise ValueError(f"{tag} rejected")


# -- sequential chain -----------------------------------------------------------------------
@app.task(queue_name=QUEUE)
def chain(key: str, steps: int, delay_ms: int) -> dict[str, Any]:
    """``steps`` sequential leaves (every other one plain); records random, uuid and utc_now
    around each one."""
    wf = chain.wf
    out: dict[str, Any] = {"random": [], "uuid": [], "steps": [], "clock_reads": 0}
    for i in range(steps):
        out["random"].append(wf.random())
        out["uuid"].append(wf.uuid())
        wf.utc_now()
        out["clock_reads"] += 1
        step = leaf if i % 2 == 0 else plain  # plain steps resume the chain in place
        out["steps"].append(wf.execute_task(step, f"{key}:{i}", delay_ms).result)
        wf.set_data(f"s{i}", out["uuid"][-1])
    out["first"] = wf.get_data("s0")
    wf.set_data("done", steps)
    return out


# -- child workflows --------------------------------------------------------------------------
@app.task(queue_name=QUEUE, force_new_workflow=True)
def subflow(key: str, steps: int, delay_ms: int) -> dict[str, Any]:
    """A child workflow (its own workflow id and data) running ``steps`` leaves."""
    wf, identity = subflow.wf, subflow.workflow
    token = wf.uuid()
    results = [wf.execute_task(leaf, f"{key}:{i}", delay_ms).result for i in range(steps)]
    wf.set_data("owner", key)
    wf.set_data("token", token)
    return {
        "workflow": identity.workflow_id,
        "parent": identity.parent_workflow_id,
        "root": identity.root_workflow_id,
        "token": token,
        "r": wf.random(),
        "steps": results,
    }


@app.task(queue_name=QUEUE)
def family(key: str, children: int, steps: int, delay_ms: int) -> dict[str, Any]:
    """Runs ``children`` child workflows one after the other, plus a leaf of its own."""
    wf = family.wf
    label = wf.side_effect("label", lambda: f"{key}-family")
    results = []
    for j in range(children):
        child = wf.execute_task(subflow, f"{key}:c{j}", steps, delay_ms)
        wf.set_data(f"child{j}", child.workflow.workflow_id)
        results.append(child.result)
    own = wf.execute_task(leaf, f"{key}:own", delay_ms).result
    return {"label": label, "children": results, "own": own, "u": wf.uuid()}


# -- failing children and cleanup ---------------------------------------------------------------
@app.task(queue_name=QUEUE, force_new_workflow=True, **FAST_RETRY)
def doomed(key: str, fail: bool, delay_ms: int) -> dict[str, Any]:
    """A child workflow that runs a leaf, then fails (after its retry) when ``fail``."""
    token = doomed.wf.uuid()
    step = doomed.wf.execute_task(leaf, f"{key}:d", delay_ms).result
    if fail:
        raise ValueError(f"child {key} gave up ({token})")
    return {"token": token, "step": step}


@app.task(queue_name=QUEUE)
def guarded(key: str, mode: str, delay_ms: int) -> dict[str, Any]:
    """The reference's cleanup pattern: a failing child is caught and a cleanup step runs.

    ``mode``: ``ok`` (the child workflow succeeds), ``child_fails`` (the child workflow
    fails) or ``leaf_fails`` (a plain child task fails).
    """
    wf = guarded.wf
    wf.set_data("status", "processing")
    try:
        if mode == "leaf_fails":
            child = wf.execute_task(reject, f"{key}:x")
        else:
            child = wf.execute_task(doomed, key, mode == "child_fails", delay_ms)
    except Exception as exc:
        wf.set_data("status", "error")
        cleanup = wf.execute_task(leaf, f"{key}:cleanup", delay_ms)
        return {"status": "error", "error": str(exc), "cleanup": cleanup.result, "u": wf.uuid()}
    wf.set_data("status", "completed")
    after = wf.execute_task(leaf, f"{key}:after", delay_ms)
    return {"status": "completed", "child": child.result, "after": after.result, "u": wf.uuid()}


TASKS = {task.name: task for task in (chain, family, guarded)}
