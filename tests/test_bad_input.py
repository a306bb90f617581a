"""Bad input: each case gets a clear error, nothing is lost, and the worker serves the next message."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dramatiq_encore import EncoreError, TaskError
from dramatiq_encore.errors import PayloadTooLarge, WorkflowIdConflict
from tests.conftest import Harness
from tests.support.rabbit import dead_letters, publish
from tests.support.services import amqp_url
from tests.support.waiting import wait_until as _wait_for


def _declare(harness: Harness) -> tuple[Any, Any]:
    app = harness.app

    @app.task(max_retries=0)
    def echo(text: str) -> str:
        return text

    @app.task
    def wf(text: str) -> str:
        return "wf:" + wf.wf.execute_task(echo, text).result

    harness.start()
    return echo, wf


def _serves(wf: Any) -> None:
    """The worker still serves the next message."""
    assert wf.send("next").wait(timeout=20) == "wf:next"


# -- raw bodies: only a real broker receives bytes from outside (RabbitMQ + Redis only) -----------------------------
def _amqp() -> str:
    url = amqp_url()
    assert url is not None
    return url


def _body(**fields: Any) -> bytes:
    base = {"queue_name": "QUEUE", "actor_name": "wf", "args": ["x"], "kwargs": {}, "options": {},
            "message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("case", "body", "logged"),
    [
        ("not json", b"{this is not json", "Failed to decode"),
        ("missing keys", json.dumps({"actor_name": "wf", "args": []}).encode(), "Failed to decode"),
        ("unknown actor", _body(actor_name="no_such_task"), "no_such_task"),
        ("bad envelope", _body(options={"encore": {"kind": "result", "step": "x"}}), "invalid encore envelope"),
        ("bad workflow id", _body(options={"workflow_id": "a/b"}), "reserved"),
    ],
)
def test_raw_garbage_is_dead_lettered(
    real_harness: Harness, caplog: pytest.LogCaptureFixture, case: str, body: bytes, logged: str
) -> None:
    _, wf = _declare(real_harness)
    queue = real_harness.app.default_queue
    before = dead_letters(_amqp(), queue)
    with caplog.at_level(logging.INFO):
        publish(_amqp(), queue, body.replace(b'"QUEUE"', json.dumps(queue).encode()))
        assert _wait_for(lambda: dead_letters(_amqp(), queue) == before + 1), f"{case}: not dead-lettered"
        _serves(wf)
    assert logged in caplog.text


def test_raw_message_over_the_payload_limit_is_dead_lettered(
    real_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    _, wf = _declare(real_harness)
    queue = real_harness.app.default_queue
    before = dead_letters(_amqp(), queue)
    with caplog.at_level(logging.INFO):
        publish(_amqp(), queue, _body(queue_name=queue, args=["x" * (1024 * 1024 + 10)]))
        assert _wait_for(lambda: dead_letters(_amqp(), queue) == before + 1)
        _serves(wf)
    assert "payload limit of 1048576 bytes" in caplog.text


# -- bad input through the API: both backend pairs -------------------------------------------
def test_arguments_that_fail_validation(harness: Harness) -> None:
    app = harness.app

    @app.task
    def typed(count: int) -> int:
        return count

    _, wf = _declare(harness)
    message = typed.actor.message("not a number")  # bypasses send()'s own checks, like a raw producer
    app.broker.enqueue(message)
    with pytest.raises(TaskError) as err:
        app.get_invocation(message.message_id).wait(timeout=20)
    assert err.value.error_type == "ValidationError"
    assert "typed" in err.value.message and "count" in err.value.message
    _serves(wf)


def test_payload_over_the_limit(harness: Harness) -> None:
    app = harness.app

    @app.task
    def big_result(n: int) -> str:
        return "x" * n

    @app.task
    def big_step(n: int) -> str:
        return big_step.wf.execute_task(big_result, 1).result + str(big_step.wf.execute_task(big_result, 2, "y" * n))

    _, wf = _declare(harness)
    limit = app.settings.max_payload
    with pytest.raises(PayloadTooLarge) as err:
        wf.send("x" * (limit + 1))
    assert str(limit) in str(err.value)
    with pytest.raises(TaskError) as failed:
        big_result.send(limit + 10).wait(timeout=20)
    assert failed.value.error_type == "PayloadTooLarge" and str(limit) in failed.value.message
    _serves(wf)


def test_result_that_cannot_be_serialised(harness: Harness) -> None:
    app = harness.app

    @app.task
    def opaque() -> Any:
        return object()

    _, wf = _declare(harness)
    with pytest.raises(TaskError) as err:
        opaque.send().wait(timeout=20)
    assert err.value.error_type == "ResultSerializationError" and "opaque" in err.value.message
    _serves(wf)


class StrictError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


def test_exception_with_required_constructor_arguments_crosses_as_task_error(harness: Harness) -> None:
    app = harness.app

    @app.task(max_retries=0)
    def strict() -> None:
        raise StrictError(7, "refused")

    @app.task
    def caller() -> str:
        try:
            caller.wf.execute_task(strict)
        except TaskError as exc:
            return f"{exc.error_type}|{exc.message}"
        return "no error"

    _, wf = _declare(harness)
    assert caller.send().wait(timeout=20) == "StrictError|code 7: refused"
    _serves(wf)


def test_swallowed_suspension_is_a_misuse_error_not_a_hang(harness: Harness) -> None:
    app = harness.app
    _, wf = _declare(harness)

    @app.task
    def greedy() -> str:
        with contextlib.suppress(BaseException):
            greedy.wf.execute_task(wf, "inner")
        return "swallowed"

    harness.stop()
    harness.start()
    with pytest.raises(TaskError) as err:
        greedy.send().wait(timeout=20)
    assert err.value.error_type == "MisuseError" and "BaseException" in err.value.message
    _serves(wf)


def test_workflow_id_reused_with_different_arguments(harness: Harness) -> None:
    _echo, wf = _declare(harness)
    first = wf.send_with_options(args=("one",), workflow_id="order-7")
    assert first.wait(timeout=20) == "wf:one"
    with pytest.raises(WorkflowIdConflict) as err:
        wf.send_with_options(args=("two",), workflow_id="order-7")
    assert "order-7" in str(err.value)
    # A raw duplicate with other arguments (no check at send time) leaves the first run untouched.
    harness.app.broker.enqueue(wf.actor.message_with_options(args=("three",), workflow_id="order-7"))
    time.sleep(0.5)
    assert harness.app.get_invocation("order-7").wait(timeout=5) == "wf:one"
    _serves(wf)


def test_refused_workflow_ids(harness: Harness) -> None:
    _, wf = _declare(harness)
    for bad in ("a{b", "a}b", "a/b", ""):
        with pytest.raises(EncoreError):
            wf.send_with_options(args=("x",), workflow_id=bad)


def test_rabbitmq_unreachable_at_start_names_the_url_without_its_password() -> None:
    from dramatiq_encore import Encore
    from dramatiq_encore.broker_config import EncoreSettings
    from dramatiq_encore.errors import BrokerUnavailable
    from dramatiq_encore.state import MemoryState

    # Given a broker URL where nothing listens (port 1 on loopback)
    url = "amqp://guest:n0t-logged@127.0.0.1:1/%2F"
    app = Encore(settings=EncoreSettings(broker_url=url), state=MemoryState(), default_queue="q-unreachable")

    @app.task
    def anything() -> None:
        return None

    # When a workflow is started, Then the error says where and what to check, without the password
    with pytest.raises(BrokerUnavailable) as err:
        anything.send()
    text = str(err.value)
    assert "amqp://guest:***@127.0.0.1:1" in text and "ENCORE_BROKER_URL" in text
    assert "n0t-logged" not in text


def test_redis_unreachable_at_start_names_the_url_without_its_password() -> None:
    from dramatiq_encore.errors import ConfigurationError
    from dramatiq_encore.state import RedisState

    with pytest.raises(ConfigurationError) as err:
        RedisState.from_url("redis://:n0t-logged@127.0.0.1:1/0")
    assert "redis://:***@127.0.0.1:1/0" in str(err.value) and "n0t-logged" not in str(err.value)


def test_a_worker_starting_during_a_redis_restart_waits_for_it(tmp_path: Path) -> None:
    import socket
    import subprocess
    import threading

    from dramatiq_encore.state import RedisState

    # Given a Redis port where nothing answers yet, and a server that starts there 1 s later
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path)]
    servers: list[subprocess.Popen[bytes]] = []
    timer = threading.Timer(1.0, lambda: servers.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL)))
    timer.start()
    try:
        # When a process connects with a wait of 15 s, Then it gets its state store
        state = RedisState.from_url(f"redis://127.0.0.1:{port}/0", wait=15)
        assert state.client.ping()
        state.close()
    finally:
        timer.cancel()
        timer.join()
        for server in servers:
            server.terminate()
            server.wait(10)
