"""Chained steps: validate -> store -> notify, each step fed by the previous one's result.

Step results are pydantic models: they travel as JSON and come back typed, because
arguments and results are (de)serialised from the tasks' type hints.

    python examples/chained_tasks/run.py
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dramatiq_encore import Encore

app = Encore()


class CheckReport(BaseModel):
    valid: bool
    readings: dict[str, float]
    problems: list[str]
    checked_at: datetime


class StoreReceipt(BaseModel):
    batch_id: str
    stored: int
    stored_at: datetime


@app.task
def check_readings(raw: dict[str, Any]) -> CheckReport:
    """Normalise sensor names and reject values that are not numbers."""
    readings: dict[str, float] = {}
    problems: list[str] = []
    for name, value in raw.items():
        if isinstance(value, int | float):
            readings[name.strip().lower()] = float(value)
        else:
            problems.append(f"{name}: {value!r} is not a number")
    if not raw:
        problems.append("no readings")
    return CheckReport(valid=not problems, readings=readings, problems=problems, checked_at=check_readings.wf.utc_now())


@app.task
def store_readings(station: str, readings: dict[str, float]) -> StoreReceipt:
    return StoreReceipt(batch_id=store_readings.wf.uuid(), stored=len(readings), stored_at=store_readings.wf.utc_now())


@app.task
def notify_operators(station: str, receipt: StoreReceipt) -> dict[str, Any]:
    return {
        "notice_id": notify_operators.wf.uuid(),
        "text": f"{station}: batch {receipt.batch_id} stored {receipt.stored} readings",
    }


@app.task
def ingest_station(station: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The workflow: each step runs only once the previous one has finished."""
    report: CheckReport = ingest_station.wf.execute_task(check_readings, raw).result
    if not report.valid:
        return {"station": station, "status": "rejected", "problems": report.problems}
    receipt: StoreReceipt = ingest_station.wf.execute_task(store_readings, station, report.readings).result
    notice = ingest_station.wf.execute_task(notify_operators, station, receipt).result
    return {
        "station": station,
        "status": "stored",
        "check": report.model_dump(mode="json"),
        "receipt": receipt.model_dump(mode="json"),
        "notice": notice,
    }


def main() -> None:
    good = ingest_station.send("north-ridge", {" Temp ": 11.5, "Humidity": 71, "WIND": 4.2})
    bad = ingest_station.send("south-gate", {"temp": "n/a"})
    for invocation in (good, bad):
        print(json.dumps(invocation.wait(timeout=60), indent=2))
    app.close()


if __name__ == "__main__":
    main()
