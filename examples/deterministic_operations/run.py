"""Deterministic operations: wf.random(), wf.uuid(), wf.utc_now() and custom operations.

Each value is produced once, recorded, and returned unchanged on every replay. The
workflow proves it: it hands the values to a step and, after the replay that step
causes, compares what it sees now with what the step received the first time.

    python examples/deterministic_operations/run.py
"""

from __future__ import annotations

import json
import random
import secrets
from datetime import timedelta
from typing import Any

from dramatiq_encore import Encore

app = Encore()


def pick_ticket_number() -> int:
    """Not deterministic at all: the engine makes it so by recording its first answer."""
    return random.randint(1000, 9999)


def new_batch_code() -> str:
    return f"B-{secrets.token_hex(3).upper()}"


def draw_values() -> dict[str, Any]:
    wf = raffle_draw.wf
    first_clock = wf.utc_now()
    second_clock = wf.utc_now()  # real time, recorded: strictly after the first reading
    return {
        "random": wf.random(),
        "uuid": wf.uuid(),
        "first_clock": first_clock.isoformat(),
        "second_clock": second_clock.isoformat(),
        "elapsed_us": (second_clock - first_clock) / timedelta(microseconds=1),
        # The public spelling of a custom operation ...
        "ticket_number": wf.side_effect("ticket_number", pick_ticket_number),
        # ... and the seed API's spelling, kept for code written against it.
        "batch_code": wf.deterministic._deterministic_operation("batch_code", new_batch_code),
    }


@app.task
def record_draw(values: dict[str, Any]) -> dict[str, Any]:
    """A step that keeps what it was given; the workflow replays after it returns."""
    return {"recorded": values, "receipt": record_draw.wf.uuid()}


@app.task
def raffle_draw(raffle: str) -> dict[str, Any]:
    values = draw_values()
    # If a replay produced other values, the step's arguments would differ from the recorded
    # ones and the engine would raise NonDeterminismError here instead of replaying.
    receipt = raffle_draw.wf.execute_task(record_draw, values).result
    return {
        "raffle": raffle,
        "values": values,
        "same_after_replay": receipt["recorded"] == values,
        "receipt": receipt["receipt"],
    }


def main() -> None:
    result = raffle_draw.send("spring-fair").wait(timeout=60)
    print(json.dumps(result, indent=2))
    values = result["values"]
    print("random in [0, 1):", 0 <= values["random"] < 1)
    print("clock moves forward:", values["second_clock"] > values["first_clock"])
    print("values identical on replay:", result["same_after_replay"])
    app.close()


if __name__ == "__main__":
    main()
