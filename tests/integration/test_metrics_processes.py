"""Prometheus metrics across two real ``dramatiq`` worker processes (ENCORE_METRICS_PORT set):
each process serves its own port (the first free one from the base up), every one is
scraped and the sums are what ran. dramatiq's own Prometheus middleware runs in the same
processes and keeps serving its metrics on its own port.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration.workers import WorkerProcess, stop_all, wait_until
from tests.support.rabbit import consumer_count
from tests.test_metrics import Samples, scrape, total, value

pytestmark = pytest.mark.realservices

MODULE = "tests.integration.metrics_app"
SERVING = re.compile(r"serving Prometheus metrics on port (\d+)")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + count < 65536 and all(_free(base + i) for i in range(count)):
            return list(range(base, base + count))
    raise AssertionError("no free ports")


class Metered:
    def __init__(self, workers: list[WorkerProcess], dramatiq_ports: list[int]) -> None:
        self.workers = workers
        self.dramatiq_ports = dramatiq_ports

    def ports(self) -> list[int]:
        """The port each worker process logged it took."""
        found = []
        for worker in self.workers:
            match = SERVING.search(worker.log.read_text(errors="replace"))
            if match:
                found.append(int(match.group(1)))
        return found

    def scrape_all(self) -> list[Samples]:
        return [scrape(port) for port in self.ports()]


@pytest.fixture
def metered(it_env: dict[str, str], wf_app: ModuleType, tmp_path: Path) -> Iterator[Metered]:
    base = _free_ports(2)[0]
    dramatiq_ports = _free_ports(2)
    group = []
    for n in range(2):
        db = tmp_path / f"dramatiq-prometheus-{n}"
        db.mkdir()
        env = {
            **it_env,
            "ENCORE_METRICS_PORT": str(base),
            "dramatiq_prom_port": str(dramatiq_ports[n]),
            "dramatiq_prom_db": str(db),
        }
        group.append(WorkerProcess(MODULE, env, tmp_path / f"worker-{n}.log").start())
    result = Metered(group, dramatiq_ports)
    try:
        assert wait_until(lambda: consumer_count(it_env["ENCORE_BROKER_URL"], it_env["ENCORE_TEST_QUEUE"]) >= 2, 30)
        assert wait_until(lambda: len(result.ports()) == 2, 10), [w.log.read_text() for w in group]
        yield result
    finally:
        stop_all(group)


def _summed(all_samples: list[Samples], name: str, **labels: str) -> float:
    return sum(value(samples, name, **labels) for samples in all_samples)


def test_every_worker_process_serves_its_metrics_and_the_sums_are_what_ran(
    wf_app: ModuleType, metered: Metered
) -> None:
    ports = metered.ports()
    assert len(set(ports)) == 2 and max(ports) - min(ports) == 1  # the base and the next one
    before = metered.scrape_all()
    plain = [wf_app.plain_steps.send(f"m-plain-{i}", 3, 0.02) for i in range(3)]
    rich = [wf_app.ten_steps.send(f"m-ten-{i}", 3, 0.02) for i in range(2)]
    for handle in plain + rich:
        handle.wait(timeout=60)

    def finished() -> float:
        scraped = metered.scrape_all()
        return _summed(scraped, "encore_workflows_finished_total", workflow_type="plain_steps", status="succeeded") + (
            _summed(scraped, "encore_workflows_finished_total", workflow_type="ten_steps", status="succeeded")
        )

    baseline = _summed(before, "encore_workflows_finished_total", workflow_type="plain_steps", status="succeeded")
    baseline += _summed(before, "encore_workflows_finished_total", workflow_type="ten_steps", status="succeeded")
    assert wait_until(lambda: finished() - baseline == 5, 10)
    time.sleep(0.2)  # the last passes' events come right after their commits
    after = metered.scrape_all()

    def grew(name: str, **labels: str) -> float:
        return _summed(after, name, **labels) - _summed(before, name, **labels)

    assert grew("encore_workflows_started_total", workflow_type="plain_steps") == 3
    assert grew("encore_workflows_started_total", workflow_type="ten_steps") == 2
    assert grew("encore_step_seconds_count") == 3 * 3 + 2 * 3
    assert grew("encore_passes_total", workflow_type="plain_steps") >= 3 * (3 + 1) + 3 * 3
    assert grew("encore_passes_total", workflow_type="ten_steps") >= 2 * (3 + 1) + 2 * 3
    passes = sum(total(s, "encore_passes_total") for s in after) - sum(total(s, "encore_passes_total") for s in before)
    assert grew("encore_replay_seconds_count") == passes
    suspended = [value(s, "encore_suspended_workflows") for s in after]
    assert suspended[0] == suspended[1] == wf_app.app.count_workflows("suspended")  # the index: max, not sum
    assert not any(name.startswith("dramatiq_") for s in after for name, _ in s)


def test_dramatiqs_own_prometheus_exporter_keeps_serving_beside_them(wf_app: ModuleType, metered: Metered) -> None:
    assert wf_app.plain_steps.send("m-dramatiq", 2, 0.0).wait(timeout=60)["steps"]
    assert not set(metered.ports()) & set(metered.dramatiq_ports)

    def dramatiq_messages() -> float:
        return sum(total(scrape(port), "dramatiq_messages_total") for port in metered.dramatiq_ports)

    assert wait_until(lambda: dramatiq_messages() >= 1, 15)
