"""A workflow that runs forever with bounded state: continue-as-new.

An inbox poller handles one batch per step. Every few steps it calls
``wf.continue_as_new(cursor)``: the run ends and the same workflow id starts again with an
empty journal, so its history never grows past a few steps (``wf.step_count`` tells when).

    python examples/long_running/run.py
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq_encore import Encore

app = Encore()
STEPS_PER_RUN = 4


@app.task
def handle_batch(cursor: int) -> int:
    return cursor + 10  # the next cursor


@app.task
def poll_inbox(cursor: int, stop_at: int) -> dict[str, Any]:
    wf = poll_inbox.wf
    while cursor < stop_at:
        cursor = wf.execute_task(handle_batch, cursor).result
        if wf.step_count >= STEPS_PER_RUN:
            wf.set_data("last_cursor", cursor)
            wf.continue_as_new(cursor, stop_at)  # nothing after this line runs
    return {"cursor": cursor, "steps_in_last_run": wf.step_count}


def main() -> None:
    inv = poll_inbox.send(0, 100)
    result = inv.wait(timeout=30)
    print(json.dumps(result))
    print("workflow data:", json.dumps(app.get_workflow_data(inv.invocation_id)))
    print(f"bounded history: {result['steps_in_last_run'] <= STEPS_PER_RUN}")
    app.close()


if __name__ == "__main__":
    main()
