"""Workflow boundaries: a step joins its caller's workflow unless it is declared
``force_new_workflow=True``, in which case it starts a child workflow of its own.

    python examples/workflow_boundaries/run.py
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq_encore import Encore

app = Encore()


def describe_workflow() -> dict[str, str | None]:
    """Identity of the workflow of the task running in this thread (any task's .workflow works)."""
    identity = audit_batch.workflow
    return {
        "workflow_id": identity.workflow_id,
        "parent_workflow_id": identity.parent_workflow_id,
        "root_workflow_id": identity.root_workflow_id,
        "workflow_type": identity.workflow_type,
    }


@app.task(force_new_workflow=True)
def archive_report(rows: int) -> dict[str, Any]:
    """A grandchild workflow: its parent is the audit, its root is still the import."""
    return {"identity": describe_workflow(), "archive_key": f"audit/{archive_report.wf.uuid()}", "rows": rows}


@app.task(force_new_workflow=True)
def audit_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Always its own workflow: its own id, its own data, its own deterministic values."""
    sample_ratio = audit_batch.wf.random()
    archive = audit_batch.wf.execute_task(archive_report, len(batch["rows"]))
    return {
        "identity": describe_workflow(),
        "sample_ratio": sample_ratio,
        "audited_at": audit_batch.wf.utc_now().isoformat(),
        "archive": archive.result,
    }


@app.task
def stage_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """An ordinary step: it runs inside the caller's workflow."""
    return {"identity": describe_workflow(), "staged": len(batch["rows"])}


@app.task
def nightly_import(batch: dict[str, Any]) -> dict[str, Any]:
    """The root workflow: one step in the same workflow, one in a child workflow."""
    own_id = nightly_import.workflow.workflow_id
    staged = nightly_import.wf.execute_task(stage_rows, batch)
    audit = nightly_import.wf.execute_task(audit_batch, batch)
    # A finished step's handle carries the identity of the workflow it ran in.
    child_id = audit.workflow.workflow_id
    return {
        "importer_workflow_id": own_id,
        "staging_workflow_id": staged.workflow.workflow_id,
        "audit_workflow_id": child_id,
        "audit": audit.result,
        "staging_shares_workflow": staged.workflow.workflow_id == own_id,
        "audit_is_new_workflow": child_id != own_id,
    }


def main() -> None:
    result = nightly_import.send({"source": "crm-export", "rows": [101, 102, 103]}).wait(timeout=60)
    print(json.dumps(result, indent=2))
    audit = result["audit"]["identity"]
    archive = result["audit"]["archive"]["identity"]
    print("importer workflow:", result["importer_workflow_id"])
    print("staging workflow: ", result["staging_workflow_id"], "(same workflow)")
    print("audit workflow:   ", result["audit_workflow_id"])
    print("workflows differ:", result["audit_workflow_id"] != result["importer_workflow_id"])
    print("audit parent_workflow_id:", audit["parent_workflow_id"])
    print("audit root_workflow_id:  ", audit["root_workflow_id"])
    print("archive workflow:", archive["workflow_id"])
    print("archive parent_workflow_id:", archive["parent_workflow_id"], "(the audit)")
    print("archive root_workflow_id:  ", archive["root_workflow_id"], "(the import)")
    app.close()


if __name__ == "__main__":
    main()
