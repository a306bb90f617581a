"""The chaos runner's fault schedule is a pure function of its seed (``--seed N`` reproduces it)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chaos.faults import HOLDS, KINDS, make_schedule
from chaos.reference import compare, plan_workload


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert make_schedule(7, 210.0, 35, 3, min_each=5) == make_schedule(7, 210.0, 35, 3, min_each=5)
    assert make_schedule(7, 210.0, 35, 3, min_each=5) != make_schedule(8, 210.0, 35, 3, min_each=5)


@pytest.mark.parametrize(("duration", "count", "min_each"), [(45.0, 8, 1), (210.0, 35, 5)])
@pytest.mark.parametrize("seed", range(20))
def test_every_kind_appears_within_the_window(seed: int, duration: float, count: int, min_each: int) -> None:
    schedule = make_schedule(seed, duration, count, workers=3, min_each=min_each)

    kinds = Counter(fault.kind for fault in schedule)
    assert len(schedule) == count
    assert all(kinds[kind] >= min_each for kind in KINDS)
    times = [fault.at for fault in schedule]
    assert times == sorted(times) and times[0] > 0 and times[-1] < duration
    assert all(0 <= fault.worker < 3 for fault in schedule)
    assert all(HOLDS[fault.kind][0] <= fault.hold <= HOLDS[fault.kind][1] for fault in schedule)


def test_pauses_outlast_the_replay_lease() -> None:
    pauses = [f for f in make_schedule(3, 210.0, 35, 3, min_each=5) if f.kind == "pause"]
    assert pauses and all(f.hold > 5.0 for f in pauses)


def test_too_few_faults_for_every_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="of each"):
        make_schedule(1, 60.0, 3, 3, min_each=1)


def test_the_workload_is_seeded_too() -> None:
    first, again = plan_workload(5, 40), plan_workload(5, 40)
    assert first == again and first != plan_workload(6, 40)
    assert {spec.task for spec in plan_workload(1, 300)} == {"chain", "family", "guarded"}


def _record(uuid: str, clock: list[str]) -> dict[str, Any]:
    outcome = {"ok": True, "value": [uuid], "error": None, "invocation": "w"}
    invocation = {
        "task": "chain", "status": "succeeded", "outcome": outcome,
        "values": {"uuid": [[None, uuid]]}, "clock": clock, "steps": {}, "results": {},
    }
    return {"status": "succeeded", "invocations": {"w": invocation}, "data": {"w": {"k": uuid}}}


def test_the_verdict_compares_values_exactly_and_clocks_by_count_and_order() -> None:
    reference = _record("u-1", ["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00"])

    assert compare(reference, _record("u-1", ["2026-02-01T00:00:00+00:00", "2026-02-01T00:00:05+00:00"])) == []
    assert len(compare(reference, _record("u-2", reference["invocations"]["w"]["clock"]))) == 3
    backwards = compare(reference, _record("u-1", ["2026-02-01T00:00:05+00:00", "2026-02-01T00:00:00+00:00"]))
    assert backwards and "strictly increase" in backwards[0]
    assert "utc_now values" in compare(reference, _record("u-1", ["2026-02-01T00:00:00+00:00"]))[0]
