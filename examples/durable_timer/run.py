"""Durable timers: a reminder workflow that sleeps between steps.

``wf.sleep`` is a step: its due time is recorded, the worker does not wait in memory, and
a crash or a deploy during the sleep loses nothing. ``execute_task_with_options(timeout=)``
races a child against such a timer and raises ``TimeoutError`` when the child is late.

    python examples/durable_timer/run.py
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from dramatiq_encore import Encore

app = Encore()


@app.task
def send_reminder(invoice_id: str, attempt: int) -> dict[str, Any]:
    return {"reminder_id": send_reminder.wf.uuid(), "invoice_id": invoice_id, "attempt": attempt}


@app.task
def slow_credit_check(customer: str) -> str:
    time.sleep(3)  # a partner API that hangs
    return "approved"


@app.task
def chase_invoice(invoice_id: str, reminders: int, gap_s: float) -> dict[str, Any]:
    wf = chase_invoice.wf
    sent = []
    started = wf.utc_now()
    for attempt in range(1, reminders + 1):
        sent.append(wf.execute_task(send_reminder, invoice_id, attempt).result["reminder_id"])
        if attempt < reminders:
            wf.sleep(timedelta(seconds=gap_s))  # days in real life
    try:
        credit = wf.execute_task_with_options(slow_credit_check, args=("ACME",), timeout=0.5).result
    except TimeoutError:
        credit = "no answer in time: escalate to a person"
    elapsed = (wf.utc_now() - started).total_seconds()
    return {"invoice_id": invoice_id, "reminders": sent, "credit": credit, "elapsed_s": round(elapsed, 1)}


def main() -> None:
    result = chase_invoice.send("INV-2024-117", 3, 1.0).wait(timeout=60)
    print(json.dumps(result, indent=2))
    print(f"slept between reminders: {result['elapsed_s'] >= 2.0}")
    app.close()


if __name__ == "__main__":
    main()
