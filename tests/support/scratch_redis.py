"""A throwaway redis-server on a free loopback port, restartable, for state-loss tests."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.redis_cluster import free_ports, require_redis_server


class ScratchRedis:
    """``redis-server`` with a password and the given persistence, on its own port and directory."""

    def __init__(self, directory: Path, password: str, *settings: str) -> None:
        self.port = free_ports(1)[0]
        self.directory = directory
        self.password = password
        self.settings = settings or ("--save", "", "--appendonly", "no")

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                self.password,
                *self.settings,
                "--daemonize",
                "yes",
                "--dir",
                str(self.directory),
                "--pidfile",
                str(self.directory / "redis.pid"),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while self._cli("ping").stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "the scratch Redis did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut down without saving: what a crash or a restart without persistence loses."""
        self._cli("shutdown", "nosave")
        deadline = time.monotonic() + 10
        while self._cli("ping").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.02)

    def _cli(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), "-a", self.password, "--no-auth-warning", *command],
            capture_output=True,
            text=True,
        )


@contextlib.contextmanager
def scratch_redis(directory: Path, password: str, *settings: str) -> Iterator[ScratchRedis]:
    require_redis_server()
    server = ScratchRedis(directory, password, *settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
