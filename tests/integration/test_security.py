"""Security defaults: credentials never logged, JSON only (no pickle), keys under the prefix."""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

import dramatiq_encore
from dramatiq_encore import Encore, TaskError
from dramatiq_encore.broker_config import EncoreSettings
from dramatiq_encore.broker_config.encoder import CheckingEncoder
from dramatiq_encore.errors import ConfigurationError
from dramatiq_encore.state import RedisState
from tests.support.redis_cluster import free_ports, require_redis_server
from tests.support.services import require_real_services

pytestmark = pytest.mark.realservices
REDIS_SECRET = "Rd-" + uuid.uuid4().hex[:12]
AMQP_SECRET = "Mq-" + uuid.uuid4().hex[:12]
AMQP_USER = f"encore_sec_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def secret_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A Redis with a password on its own port and a RabbitMQ user with a password."""
    require_real_services()
    require_redis_server()
    port = free_ports(1)[0]
    directory = tmp_path_factory.mktemp("redis-secret")
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_SECRET,
                    "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(directory),
                    "--pidfile", str(directory / "redis.pid"), "--logfile", str(directory / "redis.log")], check=True)
    subprocess.run(["rabbitmqctl", "-q", "add_user", AMQP_USER, AMQP_SECRET], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", "/", AMQP_USER, ".*", ".*", ".*"], check=True,
                   capture_output=True)
    try:
        _wait_redis(port)
        yield (f"amqp://{AMQP_USER}:{AMQP_SECRET}@127.0.0.1:5672/%2F", f"redis://:{REDIS_SECRET}@127.0.0.1:{port}/0")
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", AMQP_USER], capture_output=True)
        subprocess.run(["redis-cli", "-p", str(port), "-a", REDIS_SECRET, "--no-auth-warning", "shutdown", "nosave"],
                       capture_output=True)


def _wait_redis(port: int) -> None:
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.05)


def test_a_run_with_passwords_in_both_urls_never_logs_them(
    secret_urls: tuple[str, str], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    amqp, redis_url = secret_urls
    queue = f"q-sec-{uuid.uuid4().hex[:6]}"
    caplog.set_level(logging.DEBUG)
    app = Encore(settings=EncoreSettings(broker_url=amqp, state_url=redis_url), default_queue=queue)

    @app.task(max_retries=0)
    def fails() -> None:
        raise RuntimeError("boom")

    @app.task
    def flow() -> str:
        try:
            flow.wf.execute_task(fails)
        except TaskError as exc:
            return exc.error_type
        return "no error"

    app.broker.declare_queue(queue, ensure=True)
    worker = dramatiq.Worker(app.broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        assert flow.send().wait(timeout=30) == "RuntimeError"
    finally:
        worker.stop()
        app.broker.channel.queue_delete(queue)
        app.broker.close()
    # Wrong passwords: the errors name the URL without any password.
    with pytest.raises(ConfigurationError) as err:
        RedisState.from_url(redis_url.replace(REDIS_SECRET, REDIS_SECRET + "x"))
    assert "***" in str(err.value)
    assert app.describe_broker().count("***") == 1 and app.state.describe().count("***") == 1
    out, errout = capfd.readouterr()
    for text in (caplog.text, out, errout, str(err.value), app.describe_broker(), app.state.describe()):
        assert REDIS_SECRET not in text and AMQP_SECRET not in text


def test_no_pickle_anywhere(secret_urls: tuple[str, str]) -> None:
    package = Path(dramatiq_encore.__file__).parent
    for source in package.rglob("*.py"):
        code = [line.strip() for line in source.read_text().splitlines()]
        assert not [line for line in code if line.startswith(("import pickle", "from pickle", "import dill",
                                                              "import cloudpickle", "import marshal"))], source
    encoder = dramatiq.get_encoder()  # JSON, checked (nothing else was installed before encore)
    assert isinstance(encoder, CheckingEncoder) and encoder.inner is None
    # Everything the store holds is JSON text (or plain strings and numbers).
    _, redis_url = secret_urls
    app = Encore(broker=dramatiq.get_broker(), state=RedisState.from_url(redis_url))
    client = app.state.client  # type: ignore[attr-defined]
    for key in client.scan_iter(match="encore:*"):
        kind = client.type(key)
        values = (client.lrange(key, 0, -1) if kind == "list" else
                  list(client.hgetall(key).values()) if kind == "hash" else [])
        for value in values:
            if value.startswith(("{", "[")):
                json.loads(value)
