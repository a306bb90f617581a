"""A throwaway 3-node RabbitMQ cluster on loopback, for the tests of quorum queues.

>>> with rabbit_cluster(tmp_path) as cluster:
...     broker = QuorumRabbitmqBroker(url=cluster.urls(first=1), confirm_delivery=True)

Each node is a ``rabbitmq-server`` of its own: node name ``encore-<x>-<tag>@localhost``,
AMQP and distribution ports picked free on 127.0.0.1 (never 5672/15672/15692/25672, which
a system node may hold), its config, enabled-plugins file (no plugin), data, logs and pid
file under the given directory. The nodes and their CLI share an Erlang cookie written
under that directory (``HOME`` points there), so neither the system node's cookie
(``/var/lib/rabbitmq/.erlang.cookie``) nor the running user's ``~/.erlang.cookie`` is read
or written. On Debian, ``/usr/sbin/rabbitmq-server`` is a wrapper that switches to the
``rabbitmq`` user and writes to ``/var/log/rabbitmq``: the scripts it calls are used instead.

Every node started is stopped when the block ends, even when it fails: ``rabbitmqctl stop``,
then SIGKILL of the node's process group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.redis_cluster import bindable
from tests.support.services import LOCAL_AMQP

DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
# The ports a system node and its plugins hold by default: never used here.
RESERVED = {4369, 5671, 5672, 15672, 15692, 25672}


def rabbitmq_scripts() -> Path | None:
    """The directory of the real ``rabbitmq-server`` and ``rabbitmqctl`` scripts, if installed."""
    if (DEBIAN_SCRIPTS / "rabbitmq-server").exists() and (DEBIAN_SCRIPTS / "rabbitmqctl").exists():
        return DEBIAN_SCRIPTS
    found = shutil.which("rabbitmq-server")
    if found and shutil.which("rabbitmqctl"):
        return Path(found).resolve().parent
    return None


def require_rabbitmq_server() -> Path:
    """The scripts' directory, or skip (locally) / fail (CI=true) with the reason."""
    scripts = rabbitmq_scripts()
    if scripts is None:
        reason = "rabbitmq-server and rabbitmqctl are not installed: cannot start a RabbitMQ cluster"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return scripts


def _free_port(taken: set[int]) -> int:
    while True:
        port = random.randint(30_000, 50_000)
        if port not in taken and port not in RESERVED and bindable(port):
            taken.add(port)
            return port


@dataclasses.dataclass
class Node:
    name: str
    port: int
    dist_port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return LOCAL_AMQP.replace(":5672/", f":{self.port}/")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclasses.dataclass
class Cluster:
    scripts: Path
    home: Path
    nodes: list[Node]

    def env(self) -> dict[str, str]:
        """The environment of the CLI: the cluster's cookie, not the system node's."""
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf")}

    def ctl(self, node: Node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", node.name, *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout,
        )

    def urls(self, first: int) -> str:
        """Every node's URL, ``;``-separated, starting with node ``first``: the order a
        client tries them in (dramatiq's broker and pika)."""
        order = self.nodes[first:] + self.nodes[:first]
        return ";".join(node.url for node in order)

    def queues(self, node: Node) -> dict[str, dict[str, str]]:
        """``name -> {type, leader, online}`` of every queue, as ``node`` sees them."""
        out = self.ctl(node, "list_queues", "-q", "--no-table-headers", "name", "type", "leader", "online")
        assert out.returncode == 0, out.stderr
        rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
        return {row[0]: {"type": row[1], "leader": row[2], "online": row[3]} for row in rows if len(row) >= 4}

    def client_ports(self, node: Node) -> list[int]:
        """The AMQP port of every client connection in the cluster (which node each one is on)."""
        out = self.ctl(node, "list_connections", "-q", "--no-table-headers", "port")
        assert out.returncode == 0, out.stderr
        return [int(line) for line in out.stdout.split() if line.isdigit()]

    def stop_node(self, node: Node, timeout: float = 30) -> None:
        """``rabbitmqctl stop`` (connections are closed, quorum leaders move), else SIGKILL."""
        if node.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            if node.running:
                self.ctl(node, "stop", timeout=timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # the node's whole group: erl, beam, helpers
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=10)
        node.proc = None


def _write_files(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20).upper())
    cookie.chmod(0o400)
    (home / "enabled_plugins").write_text("[].\n")
    # Replaces /etc/rabbitmq/rabbitmq-env.conf, which names the system node.
    (home / "rabbitmq-env.conf").write_text("")


def _start_node(cluster: Cluster, node: Node) -> None:
    node.directory.mkdir(parents=True, exist_ok=True)
    config = node.directory / "rabbitmq.conf"
    config.write_text(f"listeners.tcp.1 = 127.0.0.1:{node.port}\n")
    env = {
        **cluster.env(),
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(node.port),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        "RABBITMQ_CONFIG_FILE": str(config),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(cluster.home / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(node.directory / "log"),
        "RABBITMQ_PID_FILE": str(node.directory / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    with open(node.directory / "stdout.log", "ab") as out:
        node.proc = subprocess.Popen(
            [str(cluster.scripts / "rabbitmq-server")], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=node.directory,
        )


def await_node(cluster: Cluster, node: Node, deadline: float) -> None:
    """Until the node answers ``await_startup`` (it refuses before it registers with epmd)."""
    while True:
        if not node.running:
            raise RuntimeError(f"{node.name} exited; see {node.directory / 'stdout.log'}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{node.name} did not start; see {node.directory / 'log'}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            answer = cluster.ctl(node, "await_startup", "--timeout", str(int(max(left, 1))), timeout=left + 5)
            if answer.returncode == 0:
                return
        time.sleep(0.5)


def _join(cluster: Cluster, node: Node, seed: Node, deadline: float) -> None:
    for args in (("stop_app",), ("join_cluster", seed.name), ("start_app",)):
        out = cluster.ctl(node, *args, timeout=max(deadline - time.monotonic(), 5))
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: {out.stderr or out.stdout}")
    await_node(cluster, node, deadline)


@contextlib.contextmanager
def rabbit_cluster(directory: Path, size: int = 3, timeout: float = 120.0) -> Iterator[Cluster]:
    """Start ``size`` nodes, join the others to the first, wait until all run."""
    scripts = require_rabbitmq_server()
    deadline = time.monotonic() + timeout
    tag = secrets.token_hex(3)
    taken: set[int] = set()
    nodes = [
        Node(f"encore-{chr(ord('a') + n)}-{tag}@localhost", _free_port(taken), _free_port(taken), directory / f"n{n}")
        for n in range(size)
    ]
    cluster = Cluster(scripts, directory / "home", nodes)
    _write_files(cluster.home)
    try:
        for node in nodes:
            _start_node(cluster, node)
        for node in nodes:
            await_node(cluster, node, deadline)
        for node in nodes[1:]:
            _join(cluster, node, nodes[0], deadline)
        yield cluster
    finally:
        with ThreadPoolExecutor(len(nodes)) as pool:  # in parallel: each stop takes seconds
            list(pool.map(cluster.stop_node, nodes))
