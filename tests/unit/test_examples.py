"""Every example runs with no servers (embedded mode) and prints what its README promises.

Each ``examples/<name>/run.py`` runs as its own process, the way a reader runs it, with
every ``ENCORE_*`` variable removed so it cannot reach real services by accident.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 60

# What each example must print: the behaviour its scenario is about.
EXPECTED: dict[str, list[str]] = {
    "order_processing": ['"tracking_code": "TRK-ORD-7731-', '"status": "captured"', "status: succeeded", '"remind_at"'],
    "workflow_boundaries": [
        "workflows differ: True",
        '"staging_shares_workflow": true',
        '"audit_is_new_workflow": true',
    ],
    "deterministic_operations": [
        "random in [0, 1): True",
        "clock moves forward: True",
        "values identical on replay: True",
        '"ticket_number"',
        '"batch_code": "B-',
    ],
    "state_management": ["every stage recorded: True", '"stages_done": 3', '"owner": "unassigned"'],
    "chained_tasks": ['"status": "stored"', '"status": "rejected"', "is not a number", '"stored": 3'],
    "error_handling": [
        '"status": "dispatched"',
        '"error_type": "OutOfStock"',
        "desk: 3 requested, 1 available",
        '"release_stock"',
        '{"status": "error", "error": "OutOfStock: desk: 3 requested, 1 available"}',
    ],
    "fan_out": ['"quotes": 3', '"umbrella": "umbrella is offline"', "best supplier: globex", '"budget": "BUD-BOLT-M8-'],
    "durable_timer": ["slept between reminders: True", '"credit": "no answer in time: escalate to a person"'],
    "signals": ['"status": "published"', '"approved_by": "ada"', "A-101: cancelled (Cancelled:", "author withdrew"],
    "versioning": ['"log": ["P-1 packed", "P-1 shipped"]', '"P-2 insured"'],
    "long_running": ['"cursor": 100', "bounded history: True", '"last_cursor": 80'],
    "async_tasks": [
        '"source": "north"',
        '"checked": 3',
        '"cost": 94.0',
        "overlapped on the event loop: True",
        "order_no stored: True",
    ],
}


def _embedded_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("ENCORE_")}


@functools.cache
def run_example(name: str) -> subprocess.CompletedProcess[str]:
    """Run one example once per test session (several tests read its output)."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name / "run.py")],
        cwd=ROOT,
        env=_embedded_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_every_example_folder_is_tested_and_documented() -> None:
    folders = {path.parent.name for path in EXAMPLES.glob("*/run.py")}
    assert folders == set(EXPECTED)
    for name in folders:
        assert (EXAMPLES / name / "README.md").is_file(), f"examples/{name} has no README.md"
    index = (EXAMPLES / "README.md").read_text()
    assert all(f"{name}/" in index for name in folders), "examples/README.md does not list every example"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_embedded(name: str) -> None:
    completed = run_example(name)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    for text in EXPECTED[name]:
        assert text in completed.stdout, f"{name}: {text!r} missing from:\n{completed.stdout}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_imports_as_a_worker_module_without_starting_a_worker(name: str) -> None:
    # Given the module path `encore worker` / `dramatiq` would import
    # When it is imported
    # Then no in-process worker thread starts (the dramatiq CLI runs its own workers)
    code = f"import threading, examples.{name}.run as m; assert threading.active_count() == 1; print(m.app.tasks)"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_embedded_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert completed.returncode == 0, completed.stderr


def test_workflow_boundaries_parent_and_root_ids() -> None:
    out = run_example("workflow_boundaries").stdout
    ids = dict(re.findall(r"^([a-z_ ]+?):\s+(\S+)", out, flags=re.MULTILINE))
    importer, audit, archive = ids["importer workflow"], ids["audit workflow"], ids["archive workflow"]
    assert len({importer, audit, archive}) == 3
    assert ids["staging workflow"] == importer
    assert ids["audit parent_workflow_id"] == importer
    assert ids["audit root_workflow_id"] == importer
    assert ids["archive parent_workflow_id"] == audit
    assert ids["archive root_workflow_id"] == importer
