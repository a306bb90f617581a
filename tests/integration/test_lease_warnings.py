"""A lease is reported lost only when a pass still holds it: never for passes of milliseconds.

The renewer used to report the lease of any invocation that committed between its look at
what is held and its renewal (the commit had released the lease, as it should): under load
that was several false warnings a minute. 1,000 workflows on two worker processes now give none.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.integration.workers import WorkerProcess

pytestmark = [pytest.mark.realservices, pytest.mark.slow]


def test_a_thousand_workflows_on_two_processes_report_no_lost_lease(
    wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    # Given two worker processes (4 threads each) and 1,000 three-step workflows at once
    started = [wf_app.plain_steps.send(f"lease-{n}", 3, 0.0) for n in range(1000)]
    # When they all finish
    results = [inv.wait(timeout=180) for inv in started]
    assert all(len(result["steps"]) == 3 for result in results)
    # Then no worker said it lost a lease
    logs = "".join(worker.log.read_text(errors="replace") for worker in workers)
    assert "lost the lease" not in logs and "lease lost" not in logs
