"""A workflow that sleeps, served by `dramatiq` CLI workers in benchmarks/timer_latency.py."""

from __future__ import annotations

from typing import Any

from dramatiq_encore import Encore

app = Encore()


@app.task(queue_name="bench_timer")
def sleeper(seconds: float) -> dict[str, Any]:
    before = sleeper.wf.utc_now()
    sleeper.wf.sleep(seconds)
    return {"before": before.isoformat(), "after": sleeper.wf.utc_now().isoformat()}
