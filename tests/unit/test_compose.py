"""docker-compose.yml: no Docker engine runs here, so the file itself is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_images() -> None:
    services = _compose()["services"]
    assert set(services) == {"rabbitmq", "redis", "worker", "demo"}
    assert services["rabbitmq"]["image"].startswith("rabbitmq:") and "management" in services["rabbitmq"]["image"]
    assert "15672:15672" in services["rabbitmq"]["ports"]
    assert services["redis"]["image"].startswith("redis:")
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert services["worker"]["build"] == "." and services["demo"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_health_checks_gate_the_workers() -> None:
    services = _compose()["services"]
    for name in ("rabbitmq", "redis"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("worker", "demo"):
        depends = services[name]["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_worker_environment_and_scaling() -> None:
    worker = _compose()["services"]["worker"]
    env = worker["environment"]
    assert env["ENCORE_BROKER_URL"].startswith("amqp://") and "@rabbitmq:5672" in env["ENCORE_BROKER_URL"]
    assert env["ENCORE_STATE_URL"] == "redis://redis:6379/0"
    # `--scale worker=4` needs a service without container_name or fixed host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:2] == ["encore", "worker"]
    demo = _compose()["services"]["demo"]
    script = " ".join(demo["command"])
    assert "encore start examples.order_processing.run:handle_order" in script and "encore result" in script
    assert demo["restart"] == "no"
