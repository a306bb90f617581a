"""Workflow data: set_data/get_data inside a workflow, get_workflow_data from outside.

A loop of steps writes one key per step. Each step suspends the workflow and the
function replays from the top; writes that already took effect are not applied again,
and reads return what they returned the first time.

    python examples/state_management/run.py
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq_encore import Encore

app = Encore()

STAGES = ("profile", "preferences", "purchase_history")


@app.task
def copy_stage(account_id: str, stage: str) -> dict[str, Any]:
    """One step of the migration: copies one part of the account."""
    return {"stage": stage, "copy_id": copy_stage.wf.uuid(), "copied_at": copy_stage.wf.utc_now().isoformat()}


@app.task
def migrate_account(account_id: str) -> dict[str, Any]:
    wf = migrate_account.wf
    wf.set_data("account_id", account_id)
    wf.set_data("started_at", wf.utc_now().isoformat())

    copies = []
    for number, stage in enumerate(STAGES, start=1):
        # On the final replay the store already says 3, yet this read returns what it
        # returned the first time through the loop: 0, then 1, then 2.
        done_before = wf.get_data("stages_done", default=0)
        copied = wf.execute_task(copy_stage, account_id, stage).result
        copies.append({**copied, "stages_done_before": done_before})
        wf.set_data(f"stage_{number}_copy_id", copied["copy_id"])
        wf.set_data("stages_done", number)

    return {
        "account_id": wf.get_data("account_id"),
        "started_at": wf.get_data("started_at"),
        "stages_done": wf.get_data("stages_done"),
        "owner": wf.get_data("owner", default="unassigned"),  # never set: the default
        "copies": copies,
        "finished_at": wf.utc_now().isoformat(),
    }


def main() -> None:
    invocation = migrate_account.send("ACC-311")
    result = invocation.wait(timeout=60)
    print("result:", json.dumps(result, indent=2))
    # Readable from any process that shares the state store, while it runs or afterwards.
    data = app.get_workflow_data(invocation.workflow.workflow_id)
    print("workflow data:", json.dumps(data, indent=2))
    print("every stage recorded:", all(f"stage_{n}_copy_id" in data for n in range(1, len(STAGES) + 1)))
    app.close()


if __name__ == "__main__":
    main()
