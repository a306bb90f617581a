"""The ``encore`` command: demo, worker front, and start/result argument handling.

A start/result round trip needs a shared state store and broker (in-memory state dies
with the process), so it lives with the real-service tests; here ``report_result`` is
driven in-process against an embedded app instead.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_encore import Encore
from dramatiq_encore import demo as demo_module
from dramatiq_encore.cli import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_PENDING, dramatiq_command, main, report_result
from dramatiq_encore.state import MemoryState
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60


def encore(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in a fresh process, with no ENCORE_* variables."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ENCORE_")}
    return subprocess.run(
        [sys.executable, "-m", "dramatiq_encore.cli", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("encore: error: "), err
    return lines[0]


# -- demo --------------------------------------------------------------------------------
def test_demo_exits_0_and_reports_equal_values() -> None:
    completed = encore("demo")
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "deterministic values equal: yes" in out
    assert "every pass saw the same values: yes" in out
    assert "crashed while step 2 (charge payment) was running" in out
    assert "run 1 (before interrupt)" in out and "resumed run" in out
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_demo_resumes_from_every_step(step: int) -> None:
    report = demo_module.run_demo(step)
    probe = report.probe
    assert report.equal
    assert probe.count("run 1") == step  # one pass per step reached before the crash
    assert report.result["tracking_number"].startswith("TRK-ORD-1042-")
    # Values met before the crash are the same in both runs; the rest only in the resumed run.
    seen_before = [name for name in probe.names() if probe.first("run 1", name) is not None]
    assert len(seen_before) == 2 * step - 1
    assert all(probe.first("resumed", name) == probe.first("run 1", name) for name in seen_before)
    assert all(probe.first("resumed", name) is not None for name in probe.names())


def test_demo_says_whether_the_resumed_run_waited_for_a_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # The normal path alone: worker A took the step's lease before it crashed, so worker B's
    # redelivered message is refused until the lease lapses, and the report says so.
    monkeypatch.setenv("ENCORE_FAST_PATH", "0")
    report = demo_module.run_demo(2)
    out = io.StringIO()
    demo_module.print_report(report, out)
    assert report.equal and not report.fast_path and report.lease_refusals >= 1
    assert f"was refused {report.lease_refusals} time(s) until worker A's lease expired" in out.getvalue()
    assert "no lease to wait for" not in out.getvalue()
    # Each term the report uses is explained under it.
    assert all(f"{term} is" in out.getvalue() for term in ("a pass", "a lease", "an unacknowledged message"))


def test_demo_refuses_a_step_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--interrupt-at", "9"])
    assert exited.value.code == EXIT_ERROR
    assert "invalid choice: 9" in capsys.readouterr().err


# -- worker ------------------------------------------------------------------------------
def test_worker_command_passes_every_argument_to_dramatiq() -> None:
    args = ["examples.order_processing.run", "-p", "2", "--threads", "4", "--queues", "orders"]
    assert dramatiq_command(args) == [sys.executable, "-m", "dramatiq", *args]


def test_worker_without_a_module_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == EXIT_ERROR
    assert "needs at least one module" in one_line_error(capsys.readouterr().err)


def test_worker_help_shows_encore_and_dramatiq_options() -> None:
    completed = encore("worker", "--help")
    assert completed.returncode == 0, completed.stderr
    assert "encore worker MODULE" in completed.stdout
    assert "--processes" in completed.stdout and "--threads" in completed.stdout


def test_worker_runs_dramatiq_and_returns_its_exit_code() -> None:
    # Given a module that does not exist, dramatiq itself fails the import (its exit code 2)
    completed = encore("worker", "no_such_module_for_encore_tests", "-p", "1", "-t", "1")
    assert completed.returncode == 2
    assert "No module named 'no_such_module_for_encore_tests'" in completed.stderr
    assert "ENCORE_BROKER_URL is not set" not in completed.stderr  # no app was built: nothing to warn about


# -- start -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["json:loads", "--args", "[1,"], "--args is not valid JSON"),
        (["json:loads", "--args", '{"a": 1}'], "--args must be a JSON list"),
        (["json:loads", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["json:loads", "--kwargs", "{nope}"], "--kwargs is not valid JSON"),
        (["no_colon_here"], "expected module:task"),
        (["no_such_module_for_encore_tests:task"], "cannot import module 'no_such_module_for_encore_tests'"),
        (["json:no_such_task"], "module 'json' has no attribute 'no_such_task'"),
        (["json:loads"], "'json:loads' is a function, not an encore task"),
        (["json:loads", "--workflow-id", "a/b"], "'{', '}' and '/' are reserved"),
    ],
)
def test_start_reports_bad_input_in_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start", *args]) == EXIT_ERROR
    assert message in one_line_error(capsys.readouterr().err)


def test_start_refuses_an_embedded_app() -> None:
    completed = encore("start", "examples.order_processing.run:handle_order", "--args", '["ORD-1"]')
    assert completed.returncode == EXIT_ERROR
    assert "in-process stub broker" in one_line_error(completed.stderr)
    assert completed.stdout == ""


# -- result ------------------------------------------------------------------------------
def test_result_needs_a_state_store(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ENCORE_STATE_URL", raising=False)
    assert main(["result", "some-id"]) == EXIT_ERROR
    assert "ENCORE_STATE_URL is not set" in one_line_error(capsys.readouterr().err)


def test_result_reports_a_bad_state_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENCORE_STATE_URL", "http://localhost:6379")
    assert main(["result", "some-id"]) == EXIT_ERROR
    assert "ENCORE_STATE_URL" in one_line_error(capsys.readouterr().err)


def test_result_app_module_without_an_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["result", "some-id", "--app", "json"]) == EXIT_ERROR
    assert "defines no Encore instance" in one_line_error(capsys.readouterr().err)


def test_result_refuses_an_in_memory_app() -> None:
    completed = encore("result", "some-id", "--app", "examples.order_processing.run")
    assert completed.returncode == EXIT_ERROR
    assert "keeps its state in memory" in one_line_error(completed.stderr)


def test_result_rejects_a_wait_that_is_not_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["result", "some-id", "--wait", "soon"])
    assert exited.value.code == EXIT_ERROR
    assert "invalid float value" in capsys.readouterr().err


@pytest.fixture
def embedded() -> Iterator[tuple[Encore, dict[str, Any]]]:
    """An app on a stub broker with a worker, and two tasks: one succeeds, one fails."""
    app = Encore(broker=StubBroker(), state=MemoryState())

    @app.task
    def greet(name: str) -> dict[str, Any]:
        return {"greeting": f"hello {name}", "at": greet.wf.utc_now()}

    @app.task(max_retries=0)
    def explode(reason: str) -> None:
        raise ValueError(reason)

    @app.task
    def waits() -> Any:
        return waits.wf.wait_for_signal("go")

    worker = dramatiq.Worker(app.broker, worker_threads=2, worker_timeout=20)
    worker.start()
    try:
        yield app, {"greet": greet, "explode": explode, "waits": waits}
    finally:
        worker.stop()


def test_report_result_prints_json_for_a_success(
    embedded: tuple[Encore, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    app, tasks = embedded
    invocation = tasks["greet"].send("ada")
    assert report_result(app, invocation.invocation_id, wait=10) == EXIT_OK
    out = capsys.readouterr().out
    assert '"greeting": "hello ada"' in out and '"at": "' in out  # the datetime printed as ISO text


def test_report_result_prints_the_error_of_a_failure(
    embedded: tuple[Encore, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    app, tasks = embedded
    invocation = tasks["explode"].send("card declined")
    assert report_result(app, invocation.invocation_id, wait=10) == EXIT_FAILED
    assert capsys.readouterr().out.strip() == "ValueError: card declined"
    # Without --wait, a finished invocation reads the same way.
    assert report_result(app, invocation.invocation_id, wait=None) == EXIT_FAILED


def test_report_result_prints_the_status_of_an_unfinished_invocation(
    embedded: tuple[Encore, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    app, tasks = embedded
    invocation = tasks["waits"].send()
    assert wait_until(lambda: invocation.status == "suspended", timeout=10)
    assert report_result(app, invocation.invocation_id, wait=None) == EXIT_PENDING
    assert report_result(app, invocation.invocation_id, wait=0.05) == EXIT_PENDING
    assert capsys.readouterr().out.split() == ["suspended", "suspended"]


def test_report_result_says_an_id_no_start_named_is_unknown(
    embedded: tuple[Encore, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    app, _ = embedded
    assert report_result(app, "never-sent", wait=None) == EXIT_ERROR
    assert report_result(app, "never-sent", wait=0.05) == EXIT_ERROR  # waits for a start, then says so
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("no start message has named it") == 2


def test_help_lists_the_commands() -> None:
    completed = encore("--help")
    assert completed.returncode == 0
    for command in ("demo", "worker", "start", "result"):
        assert command in completed.stdout


def test_no_command_is_a_usage_error() -> None:
    completed = encore()
    assert completed.returncode == EXIT_ERROR
    assert "required: COMMAND" in completed.stderr


def _worker_stderr(module: str) -> str:
    """``encore worker MODULE`` for a few seconds (it boots, serves, is stopped): its stderr."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ENCORE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dramatiq_encore.cli", "worker", module, "-p", "1", "-t", "1"],
        cwd=ROOT,
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = process.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 15)
        _, err = process.communicate(timeout=TIMEOUT_S)
    return err


def test_worker_warns_only_for_an_app_that_fell_back_to_the_stub_broker() -> None:
    assert "ENCORE_BROKER_URL is not set" in _worker_stderr("tests.support.apps.embedded")
    assert "ENCORE_BROKER_URL is not set" not in _worker_stderr("tests.support.apps.given_broker")


def test_worker_names_a_misspelt_setting_and_the_closest_one() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    env["ENCORE_BROKR_URL"] = "amqp://guest:guest@127.0.0.1:5672/%2F"
    command = [sys.executable, "-m", "dramatiq_encore.cli", "worker", "tests.support.apps.embedded", "-p", "1"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    stderr = process.stderr
    assert stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True)
    reader.start()
    try:  # until the worker process is up (a loaded machine boots it slowly), then stop it
        assert wait_until(lambda: any("ready for action" in line for line in lines), TIMEOUT_S), "".join(lines)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=TIMEOUT_S)
        reader.join(timeout=TIMEOUT_S)
    warned = [line for line in lines if "ENCORE_BROKR_URL is not a dramatiq-encore setting" in line]
    assert len(warned) == 1, "".join(lines)  # one worker process (-p 1), once
    assert "did you mean ENCORE_BROKER_URL?" in warned[0]


def test_version_prints_the_installed_version() -> None:
    completed = encore("--version")
    installed = metadata.version("dramatiq-encore")  # what pip installed, not a constant of the code
    assert completed.returncode == 0 and completed.stdout == f"encore (dramatiq-encore) {installed}\n"


@pytest.mark.parametrize(
    "command",
    [
        "demo",
        "start",
        "list",
        "show",
        "result",
        "signal",
        "cancel",
        "retry",
        "fork",
        "export",
        "replay",
        "check",
        "dashboard",
    ],
)
def test_every_command_has_help(command: str) -> None:
    completed = encore(command, "--help")
    assert completed.returncode == 0 and completed.stdout.startswith(f"usage: encore {command}")


def test_commands_that_read_workflows_need_a_shared_store() -> None:
    for args in (["list"], ["show", "x"], ["export", "x"], ["cancel", "x"], ["retry", "x"]):
        completed = encore(*args)
        assert completed.returncode == EXIT_ERROR
        assert "ENCORE_STATE_URL is not set" in one_line_error(completed.stderr)
