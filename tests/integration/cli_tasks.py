"""The tasks of the CLI's end-to-end test, declared on an app by ``cli_app`` (the code the
worker runs) and ``cli_app_v2`` (the same code after a change)."""

from __future__ import annotations

import os
from typing import Any

import redis

from dramatiq_encore import Encore
from dramatiq_encore.actors.task import Task

QUEUE = os.environ.get("ENCORE_TEST_QUEUE", "encore_cli")
#: A queue no worker serves: a step sent there waits, as one whose worker is down does.
NOBODY = f"{QUEUE}_nobody"
_redis = redis.Redis.from_url(os.environ["ENCORE_STATE_URL"])
_prefix = os.environ.get("ENCORE_KEY_PREFIX", "encore")


def counted(name: str) -> None:
    _redis.hincrby(f"{_prefix}:cli-executions", name, 1)


def declare(app: Encore, *, sleeper_reminds_first: bool = False) -> dict[str, Task[..., Any]]:
    """The module's tasks on ``app``; ``sleeper_reminds_first`` is the code change of v2."""

    @app.task(queue_name=QUEUE)
    def cli_step(name: str) -> str:
        counted(name)
        return name.upper()

    @app.task(queue_name=QUEUE, max_retries=0)
    def cli_flaky() -> str:
        counted("flaky")
        if _redis.get(f"{_prefix}:cli-broken"):
            raise ConnectionError("card processor down")
        return "charged"

    @app.task(queue_name=NOBODY)
    def cli_elsewhere() -> str:
        return "never runs here"

    @app.task(queue_name=QUEUE)
    def cli_order(order_id: str) -> dict[str, Any]:
        wf = cli_order.wf
        token = str(wf.uuid())
        wf.set_data("stage", "prepared")
        prepared = wf.execute_task(cli_step, "a").result
        charged = wf.execute_task(cli_flaky).result
        shipped = wf.execute_task(cli_step, "c").result
        wf.set_data("stage", "shipped")
        return {"order": order_id, "steps": [prepared, charged, shipped], "token": token}

    @app.task(queue_name=QUEUE)
    def cli_sleeper() -> str:
        if sleeper_reminds_first:
            cli_sleeper.wf.execute_task(cli_step, "reminder")
        cli_sleeper.wf.sleep(3600)
        return "woke"

    @app.task(queue_name=QUEUE)
    def cli_waiter() -> Any:
        return cli_waiter.wf.wait_for_signal("go")

    @app.task(queue_name=QUEUE)
    def cli_stuck() -> str:
        return str(cli_stuck.wf.execute_task(cli_elsewhere).result)

    if sleeper_reminds_first:  # a task only the new code declares: the running worker lacks it

        @app.task(queue_name=QUEUE)
        def cli_only_in_v2() -> str:
            return "new"

    return {name: value for name, value in locals().items() if isinstance(value, Task)}
