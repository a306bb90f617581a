"""The chaos runner's fault schedule is a pure function of its seed (``--seed N`` reproduces it)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chaos.config import DEFAULT_AMQP_URL, DEFAULT_COUNT_URL, cluster_env, fault_kinds, parse_config, vhost_of
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


# -- sharing a broker and Redis: the conn fault's vhost, and no redis faults on a shared Redis --------
@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "/"),
        ("amqp://guest:guest@127.0.0.1:5672", "/"),
        ("amqp://guest:guest@127.0.0.1:5672/", "/"),
        ("amqp://guest:guest@127.0.0.1:5672/chaos-shared", "chaos-shared"),
        ("amqps://u:p@broker.example:5671/team%2Fa?heartbeat=5", "team/a"),
    ],
)
def test_the_conn_fault_targets_the_urls_vhost(url: str, vhost: str) -> None:
    assert vhost_of(url) == vhost


@pytest.mark.parametrize("seed", range(20))
def test_a_shared_redis_gets_no_redis_faults(seed: int) -> None:
    kinds = fault_kinds(shared_state=True)
    schedule = make_schedule(seed, 45.0, 8, 3, min_each=1, kinds=kinds)

    assert kinds == ("kill", "conn", "pause") and fault_kinds(shared_state=False) == KINDS
    assert len(schedule) == 8 and "redis" not in {fault.kind for fault in schedule}
    assert all(Counter(fault.kind for fault in schedule)[kind] >= 1 for kind in kinds)


def test_every_kind_keeps_the_schedules_of_earlier_runs() -> None:
    assert make_schedule(7, 45.0, 8, 3, kinds=KINDS) == make_schedule(7, 45.0, 8, 3)
    with pytest.raises(ValueError, match="fault kinds"):
        make_schedule(7, 45.0, 8, 3, kinds=())


def test_the_options_pick_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAOS_AMQP_URL", raising=False)
    monkeypatch.delenv("CHAOS_COUNT_URL", raising=False)
    default = parse_config(["--short", "--seed", "1"])
    assert (default.amqp_url, default.vhost, default.queue) == (DEFAULT_AMQP_URL, "/", "chaos")
    assert default.count_url == DEFAULT_COUNT_URL and default.kinds == KINDS
    assert default.state_url() == "redis://127.0.0.1:6390/0"

    monkeypatch.setenv("CHAOS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/from-env")
    monkeypatch.setenv("CHAOS_COUNT_URL", "redis://127.0.0.1:6379/3")
    shared = parse_config(["--short", "--queue", "chaos-b", "--redis-url", "redis://127.0.0.1:6379/2"])
    assert (shared.vhost, shared.queue, shared.count_url) == ("from-env", "chaos-b", "redis://127.0.0.1:6379/3")
    assert shared.state_url() == "redis://127.0.0.1:6379/2" and "redis" not in shared.kinds
    env = cluster_env(shared, "abcd")
    assert env["ENCORE_KEY_PREFIX"] == "chaos-abcd" and env["CHAOS_QUEUE"] == "chaos-b"
    assert env["ENCORE_STATE_URL"] == shared.state_url() and env["CHAOS_COUNT_URL"] == shared.count_url


@pytest.mark.parametrize(
    "argv", [["--queue", "x.XQ"], ["--queue", "-x"], ["--redis-url", "redis://h", "--redis-port", "7000"]]
)
def test_bad_server_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv)


def test_the_summary_says_when_redis_faults_were_left_out() -> None:
    from chaos.run import Injector, Progress, Verdict, summary

    for argv, said in ((["--short"], False), (["--short", "--redis-url", "redis://127.0.0.1:6379/2"], True)):
        config = parse_config(argv)
        line = summary(config, Injector(None, []), Verdict(), 0, Progress(), 0)  # type: ignore[arg-type]
        assert ("no redis faults" in line) is said and ("redis 0" in line) is not said
