"""Where the real services for the tests come from.

Order: ENCORE_TEST_AMQP_URL / ENCORE_TEST_REDIS_URL, else the service on localhost when it
answers, else a testcontainers container when a Docker engine answers. When none is
available a local run skips the real-service tests with the reason; under CI=true the
run fails instead (a green run that skipped them would prove nothing).
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any

import pytest

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


_containers: list[Any] = []


@functools.cache
def amqp_url() -> str | None:
    if os.environ.get("ENCORE_TEST_AMQP_URL"):
        return os.environ["ENCORE_TEST_AMQP_URL"]
    if _answers("127.0.0.1", 5672):
        return LOCAL_AMQP
    if _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3-management").start()
        _containers.append(container)
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/%2F"
    return None


@functools.cache
def redis_url() -> str | None:
    if os.environ.get("ENCORE_TEST_REDIS_URL"):
        return os.environ["ENCORE_TEST_REDIS_URL"]
    if _answers("127.0.0.1", 6379):
        return LOCAL_REDIS
    if _docker_answers():
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7").start()
        _containers.append(container)
        return f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
    return None


def require_real_services() -> tuple[str, str]:
    """The RabbitMQ and Redis URLs, or skip (locally) / fail (CI=true) with the reason."""
    amqp, redis = amqp_url(), redis_url()
    missing = [name for name, url in (("RabbitMQ", amqp), ("Redis", redis)) if url is None]
    if missing:
        reason = (
            f"{' and '.join(missing)} not available: set ENCORE_TEST_AMQP_URL / ENCORE_TEST_REDIS_URL, "
            "start them on localhost, or run a Docker engine for testcontainers"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    assert amqp is not None and redis is not None
    return amqp, redis


def stop_containers() -> None:
    while _containers:
        _containers.pop().stop()
