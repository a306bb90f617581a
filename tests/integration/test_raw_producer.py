"""Starting workflows by publishing plain dramatiq messages with pika (any language can)."""

from __future__ import annotations

import json
import time
import uuid
from types import ModuleType

import pytest

from tests.integration.workers import WorkerProcess, wait_until
from tests.support.rabbit import dead_letters, publish

pytestmark = pytest.mark.realservices


# --8<-- [start:body] (docs/how-to/other-languages.md includes this function)
def _body(queue: str, actor: str, args: list[object], message_id: str, **options: object) -> bytes:
    return json.dumps({
        "queue_name": queue, "actor_name": actor, "args": args, "kwargs": {}, "options": options,
        "message_id": message_id, "message_timestamp": int(time.time() * 1000),
    }).encode()
# --8<-- [end:body]


def test_same_message_published_twice_runs_once(
    it_env: dict[str, str], wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    # Given a producer that knows only the queue, the actor name and the 7-key body
    message_id = str(uuid.uuid4())
    key = f"raw-{message_id[:8]}"
    queue = it_env["ENCORE_TEST_QUEUE"]
    body = _body(queue, "ten_steps", [key, 1, 0.0], message_id)
    # When it publishes the same message twice
    publish(it_env["ENCORE_BROKER_URL"], queue, body)
    publish(it_env["ENCORE_BROKER_URL"], queue, body)
    # Then the workflow (id = message_id) runs once and its result is readable from here
    result = wf_app.app.get_invocation(message_id).wait(timeout=30)
    assert len(result["uuid"]) == 1
    time.sleep(0.5)  # give a duplicate every chance to run
    executions = wf_app.app.state.client.hget(f"{wf_app._prefix}:executions", f"{key}:0")
    assert int(executions) == 1


def test_workflow_id_option_names_the_workflow(
    it_env: dict[str, str], wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    workflow_id = f"order-{uuid.uuid4().hex[:8]}"
    queue = it_env["ENCORE_TEST_QUEUE"]
    body = _body(queue, "order_workflow", ["R-1"], str(uuid.uuid4()), workflow_id=workflow_id)
    publish(it_env["ENCORE_BROKER_URL"], queue, body)
    result = wf_app.app.get_invocation(workflow_id).wait(timeout=30)
    assert result["order_id"] == "R-1"
    assert wf_app.app.get_invocation(workflow_id).workflow.workflow_id == workflow_id


def test_unknown_task_and_malformed_body_are_dead_lettered_and_the_worker_keeps_serving(
    it_env: dict[str, str], wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    url, queue = it_env["ENCORE_BROKER_URL"], it_env["ENCORE_TEST_QUEUE"]
    before = dead_letters(url, queue)
    publish(url, queue, _body(queue, "no_such_task", [], str(uuid.uuid4())))
    publish(url, queue, b"this is not json")
    bad_envelope = _body(queue, "order_workflow", ["bad"], str(uuid.uuid4()), encore={"kind": "result", "step": "x"})
    publish(url, queue, bad_envelope)
    assert wait_until(lambda: dead_letters(url, queue) >= before + 3, timeout=30)
    # The worker still serves the next message.
    assert wf_app.order_workflow.send("after-garbage").wait(timeout=30)["order_id"] == "after-garbage"
    logs = "".join(w.log.read_text(errors="replace") for w in workers)
    assert "no_such_task" in logs and "invalid encore envelope" in logs
