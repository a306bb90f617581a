"""A throwaway Redis Cluster on loopback ports, for tests that must prove cluster safety.

>>> with redis_cluster(tmp_path) as cluster:
...     state = RedisState.from_url(cluster.url)

Needs ``redis-server`` and ``redis-cli`` on PATH (skipped otherwise). Each node keeps its
cluster config, log and pid file in the given directory; the nodes are shut down (without
saving) when the block ends, even if it fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BUS_OFFSET = 10_000  # Redis Cluster's node-to-node bus listens on port + 10000


@dataclasses.dataclass(frozen=True)
class Cluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """The URL of one node: cluster clients discover the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def require_redis_server() -> None:
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: cannot start a Redis Cluster")


def bindable(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` (the cluster helpers pick free ports)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Loopback ports that are free, together with their cluster-bus ports."""
    ports: list[int] = []
    candidate = random.randint(20_000, 40_000)
    while len(ports) < count:
        candidate += 1
        if bindable(candidate) and bindable(candidate + BUS_OFFSET):
            ports.append(candidate)
    return ports


def _cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)


def _wait_for(port: int, args: tuple[str, ...], expected: str, deadline: float) -> None:
    while expected not in _cli(port, *args).stdout:
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis node on port {port}: no {expected!r} from {' '.join(args)}")
        time.sleep(0.05)


def _start_node(directory: Path, port: int) -> None:
    subprocess.run(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
            "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(directory),
            "--pidfile", str(directory / f"redis-{port}.pid"), "--logfile", str(directory / f"redis-{port}.log"),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )


def _our_pid(directory: Path, port: int) -> int | None:
    """The pid of the node this fixture started on ``port``, if it still runs."""
    try:
        pid = int((directory / f"redis-{port}.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"redis-server" in cmdline and f":{port}".encode() in cmdline else None


def _stop_node(directory: Path, port: int) -> None:
    # Only ever stop our own node: if it failed to bind, another server may own the port.
    pid = _our_pid(directory, port)
    if pid is None:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        if f"process_id:{pid}" in _cli(port, "info", "server").stdout:
            _cli(port, "shutdown", "nosave")
    for _ in range(50):
        if _our_pid(directory, port) is None:
            return
        time.sleep(0.05)
    with contextlib.suppress(OSError):  # did not answer: stop it by the pid it wrote
        os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def redis_cluster(directory: Path, nodes: int = 3, timeout: float = 30.0) -> Iterator[Cluster]:
    """Start ``nodes`` primaries (no replicas), join them, wait for ``cluster_state:ok``."""
    require_redis_server()
    deadline = time.monotonic() + timeout
    started: list[int] = []
    try:
        for port in free_ports(nodes):
            _start_node(directory, port)
            started.append(port)
        for port in started:
            _wait_for(port, ("ping",), "PONG", deadline)
        addresses = [f"127.0.0.1:{port}" for port in started]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        for port in started:
            _wait_for(port, ("cluster", "info"), "cluster_state:ok", deadline)
        yield Cluster(tuple(started))
    finally:
        for port in started:
            _stop_node(directory, port)
