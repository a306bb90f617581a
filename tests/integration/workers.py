"""Real `dramatiq` worker processes for integration tests, each in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """`dramatiq <module> -p P -t T` started in a new session so its whole group can be killed."""

    def __init__(self, module: str, env: dict[str, str], log: Path, processes: int = 1, threads: int = 4) -> None:
        self.cmd = [sys.executable, "-m", "dramatiq", module, "-p", str(processes), "-t", str(threads)]
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: parent and forked worker processes die at once."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        self.proc = None


def stop_all(group: list[WorkerProcess]) -> None:
    """Stop a group of workers, then print the end of each log that holds a traceback."""
    for worker in group:
        worker.stop()
    for worker in group:
        text = worker.log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"--- {worker.log.name} ---\n{text[-4000:]}")


def wait_until(condition, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False
