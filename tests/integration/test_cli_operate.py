"""The operator's commands end to end: a real `dramatiq` worker, RabbitMQ and Redis, and the
`encore` command in its own process, as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.workers import ROOT, WorkerProcess, wait_until
from tests.support.rabbit import consumer_count, delete_queues
from tests.support.services import require_real_services

pytestmark = pytest.mark.realservices
MODULE = "tests.integration.cli_app"
CHANGED = "tests.integration.cli_app_v2"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    amqp, redis_url = require_real_services()
    queue = f"encore_cli_{uuid.uuid4().hex[:8]}"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")},
        "ENCORE_BROKER_URL": amqp,
        "ENCORE_STATE_URL": redis_url,
        "ENCORE_KEY_PREFIX": f"encore-cli-{uuid.uuid4().hex[:8]}",
        "ENCORE_TEST_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    worker = WorkerProcess(MODULE, environment, tmp_path_factory.mktemp("cli") / "worker.log")
    worker.cmd += ["--queues", queue, f"{queue}.DQ"]  # not the queue of cli_elsewhere: its worker is "down"
    worker.start()
    try:
        assert wait_until(lambda: consumer_count(amqp, queue) >= 1, timeout=30), worker.log.read_text()
        yield environment
    finally:
        worker.stop()
        delete_queues(amqp, queue)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{environment['ENCORE_KEY_PREFIX']}:*"):
            client.delete(key)


def encore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dramatiq_encore", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )


def ok(env: dict[str, str], *args: str) -> str:
    done = encore(env, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def shown(env: dict[str, str], workflow_id: str) -> dict[str, Any]:
    return dict(json.loads(ok(env, "show", workflow_id, "--json")))


def executions(env: dict[str, str]) -> dict[str, int]:
    client = redis.Redis.from_url(env["ENCORE_STATE_URL"], decode_responses=True)
    return {k: int(v) for k, v in client.hgetall(f"{env['ENCORE_KEY_PREFIX']}:cli-executions").items()}


def test_a_failed_workflow_is_listed_shown_exported_replayed_retried_and_forked(
    env: dict[str, str], tmp_path: Path
) -> None:
    client = redis.Redis.from_url(env["ENCORE_STATE_URL"])
    client.set(f"{env['ENCORE_KEY_PREFIX']}:cli-broken", "1")
    ok(env, "start", f"{MODULE}:cli_order", "--args", '["A-1"]', "--workflow-id", "order-A-1")
    failed = encore(env, "result", "order-A-1", "--wait", "30")
    assert failed.returncode == 1 and "ConnectionError: card processor down" in failed.stdout
    # list: JSON for scripts, a table for people
    listed = json.loads(ok(env, "list", "--json"))
    row = next(w for w in listed if w["workflow_id"] == "order-A-1")
    assert row["type"] == "cli_order" and row["status"] == "failed" and row["started_at"] and row["finished_at"]
    assert "order-A-1" in ok(env, "list", "--status", "failed") and "order-A-1" not in ok(
        env, "list", "--status", "succeeded"
    )
    # show: the tree, each step, the data and the error with its traceback
    view = shown(env, "order-A-1")
    assert view["status"] == "failed" and view["type"] == "cli_order" and view["data"] == {"stage": "prepared"}
    assert [(s["n"], s["task"], s["status"]) for s in view["steps"]] == [
        (1, "cli_step", "succeeded"),
        (2, "cli_flaky", "failed"),
    ]
    assert view["error"]["type"] == "ConnectionError" and "Traceback" in view["steps"][1]["child"]["error"]["traceback"]
    table = ok(env, "show", "order-A-1")
    assert "cli_flaky" in table and "error: ConnectionError: card processor down" in table
    # export, then replay the history against the code on disk and against the changed code
    history = tmp_path / "order-A-1.json"
    history.write_text(ok(env, "export", "order-A-1"))
    assert ok(env, "replay", "--module", MODULE, "--file", str(history)).strip() == "replays cleanly"
    assert ok(env, "replay", "--module", CHANGED, "order-A-1").strip() == "replays cleanly"
    # retry: the step that failed runs again, the one before it does not
    client.delete(f"{env['ENCORE_KEY_PREFIX']}:cli-broken")
    assert ok(env, "retry", "order-A-1").strip() == "retrying order-A-1 from step 2"
    result = json.loads(ok(env, "result", "order-A-1", "--wait", "30"))
    assert result["steps"] == ["A", "charged", "C"] and result["token"] == view["values"][0]["value"]
    assert executions(env) == {"a": 1, "flaky": 2, "c": 1}
    # fork from step 3: steps 1 and 2 are kept, step 3 runs again under a new id
    assert ok(env, "fork", "order-A-1", "--from-step", "3", "--workflow-id", "order-A-1-b").strip() == "order-A-1-b"
    assert json.loads(ok(env, "result", "order-A-1-b", "--wait", "30"))["steps"] == ["A", "charged", "C"]
    assert executions(env) == {"a": 1, "flaky": 2, "c": 2}
    assert shown(env, "order-A-1-b")["data"] == {"stage": "shipped"}


def test_signal_cancel_check_and_unknown_ids(env: dict[str, str]) -> None:
    ok(env, "start", f"{MODULE}:cli_sleeper", "--workflow-id", "sleeper-1")
    ok(env, "start", f"{MODULE}:cli_waiter", "--workflow-id", "waiter-1")
    assert wait_until(lambda: shown_status(env, "sleeper-1") == "suspended", timeout=30)
    assert wait_until(lambda: shown_status(env, "waiter-1") == "suspended", timeout=30)
    # a deploy gate: the code on disk replays every unfinished workflow; the changed code does not
    assert "replays cleanly" in ok(env, "check", "--module", MODULE)
    gate = encore(env, "check", "--module", CHANGED, "--json")
    assert gate.returncode == 1, gate.stderr
    [divergence] = json.loads(gate.stdout)
    assert divergence["workflow_id"] == "sleeper-1" and divergence["step"] == "step 1"
    assert "sleep(3600" in divergence["recorded"] and "cli_step" in divergence["requested"]
    replayed = encore(env, "replay", "--module", CHANGED, "sleeper-1")
    assert replayed.returncode == 1 and "diverges: workflow 'sleeper-1'" in replayed.stdout
    # signal and cancel
    follow = subprocess.Popen(
        [sys.executable, "-m", "dramatiq_encore", "show", "waiter-1", "--follow"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    ok(env, "signal", "waiter-1", "go", '{"approved": true}')
    assert json.loads(ok(env, "result", "waiter-1", "--wait", "30")) == {"approved": True}
    out, _ = follow.communicate(timeout=30)  # --follow redraws until the workflow finishes
    assert follow.returncode == 0 and out.count("workflow waiter-1") >= 1
    assert out.rstrip().splitlines()[0].startswith("workflow waiter-1") and "status succeeded" in out
    assert "cancelling sleeper-1" in ok(env, "cancel", "sleeper-1")
    cancelled = encore(env, "result", "sleeper-1", "--wait", "30")
    assert cancelled.returncode == 1 and cancelled.stdout.startswith("Cancelled")
    # ids no start named
    unknown = encore(env, "result", "no-such-workflow")
    assert unknown.returncode == 3 and "no start message has named it" in unknown.stderr
    assert encore(env, "show", "no-such-workflow").returncode == 3
    assert encore(env, "signal", "no-such-workflow", "go").returncode == 3


def test_a_step_whose_worker_is_down_shows_as_queued_with_what_to_look_at(env: dict[str, str]) -> None:
    ok(env, "start", f"{MODULE}:cli_stuck", "--workflow-id", "stuck-1")
    assert wait_until(lambda: shown_status(env, "stuck-1") == "suspended", timeout=30)
    [step] = shown(env, "stuck-1")["steps"]
    assert step["status"] == "queued" and step["queue"].endswith("_nobody")
    assert "no worker has taken it" in step["note"] and "cli_elsewhere" in step["note"]
    assert "no worker has taken it" in ok(env, "show", "stuck-1")


def test_a_start_for_a_task_the_worker_lacks_says_so_instead_of_pending_forever(env: dict[str, str]) -> None:
    ok(env, "start", f"{CHANGED}:cli_only_in_v2", "--workflow-id", "orphan-1")
    assert wait_until(lambda: "was never created" in encore(env, "show", "orphan-1").stderr, timeout=30)
    shown = encore(env, "show", "orphan-1")
    assert shown.returncode == 3 and "does not declare that task" in shown.stderr and ".XQ" in shown.stderr
    result = encore(env, "result", "orphan-1")
    assert result.returncode == 3 and "cli_only_in_v2" in result.stderr


def shown_status(env: dict[str, str], workflow_id: str) -> str:
    done = encore(env, "show", workflow_id, "--json")
    return str(json.loads(done.stdout)["status"]) if done.returncode == 0 else ""
