"""Versioning: change a workflow's code while runs of the old code are in flight.

``wf.patched("change-id")`` is True for a run that reaches that point with the new code
(and stays True on its replays), and False for a run that the old code already took past
it, so in-flight runs replay the branch they recorded.

    python examples/versioning/run.py
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from dramatiq_encore import Encore

app = Encore()
DEPLOYED = {"version": 1}  # stands for the code a worker runs; a real deploy restarts workers
courier_ready = threading.Event()


@app.task
def pack(parcel: str) -> str:
    return f"{parcel} packed"


@app.task
def insure(parcel: str) -> str:
    return f"{parcel} insured"


@app.task
def hand_to_courier(parcel: str) -> str:
    courier_ready.wait(30)  # the courier is late: the run waits on this step
    return f"{parcel} shipped"


@app.task
def ship(parcel: str) -> dict[str, Any]:
    wf = ship.wf
    log = [wf.execute_task(pack, parcel).result]
    # Version 2 insures every parcel before it leaves.
    if DEPLOYED["version"] >= 2 and wf.patched("insure-parcels"):
        log.append(wf.execute_task(insure, parcel).result)
    log.append(wf.execute_task(hand_to_courier, parcel).result)
    return {"parcel": parcel, "log": log}


def main() -> None:
    in_flight = ship.send("P-1")  # started by version 1
    while app.get_invocation(f"{in_flight.invocation_id}/2").status == "pending":
        time.sleep(0.01)  # version 1 is waiting on the courier: past the patch point
    DEPLOYED["version"] = 2  # deploy version 2
    courier_ready.set()
    print("in flight since version 1:", json.dumps(in_flight.wait(timeout=30)))
    print("started on version 2:     ", json.dumps(ship.send("P-2").wait(timeout=30)))
    app.close()


if __name__ == "__main__":
    main()
