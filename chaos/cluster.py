"""The processes of a chaos run: a Redis with append-only persistence and `dramatiq` workers.

The Redis is optional: a run given an existing Redis (``--redis-url``) starts none, and
then cannot restart one either (:meth:`Cluster.restart_redis` refuses).

Everything started here is stopped by :meth:`Cluster.close`, which is idempotent and makes
any fault still in flight a no-op (a worker killed by a fault is not restarted after close).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pika
import redis

logger = logging.getLogger("chaos.cluster")

ROOT = Path(__file__).resolve().parents[1]
APP_MODULE = "chaos.app"


class QueueInUse(RuntimeError):
    """Another run's workers consume the run's queue: the run stops and leaves that queue alone."""


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ChaosRedis:
    """`redis-server` on a loopback port with AOF (fsync every second) in its own directory."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.pidfile = directory / "redis.pid"
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        if _answers(self.port):
            raise RuntimeError(f"port {self.port} is already in use: pick another with --redis-port")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--dir", str(self.directory), "--daemonize", "yes", "--pidfile", str(self.pidfile),
            "--logfile", str(self.directory / "redis.log"),
        ]
        subprocess.run(command, check=True, timeout=timeout)
        if not wait_until(self._ready, timeout):
            raise RuntimeError(f"the chaos Redis on port {self.port} did not become ready; see {self.directory}")
        self.pid = int(self.pidfile.read_text().strip())

    def _ready(self) -> bool:
        try:
            reply = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return reply.stdout.strip() == b"PONG"  # LOADING while the AOF is read back

    def shutdown(self, timeout: float = 30) -> None:
        """Graceful shutdown (the AOF is flushed); SIGKILL only if it does not exit in time."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=timeout)
        if not wait_until(lambda: not _pid_alive(pid), timeout):
            logger.warning("the chaos Redis (pid %d) ignored SHUTDOWN; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Worker:
    """One `dramatiq chaos.app` process group (parent and forked worker process)."""

    def __init__(self, index: int, env: dict[str, str], log: Path, threads: int) -> None:
        self.index = index
        self.env = env
        self.log = log
        self.command = [sys.executable, "-m", "dramatiq", APP_MODULE, "-p", "1", "-t", str(threads)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            out.write(f"=== chaos: start #{self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1

    def signal(self, signum: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group at once."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    def terminate(self) -> None:
        """SIGCONT (in case it is paused), then SIGTERM: dramatiq's graceful shutdown."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)

    def reap(self, timeout: float = 15) -> None:
        """Wait for a terminated worker; SIGKILL its group if it does not exit in time."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("worker %d did not stop in %.0f s; killing it", self.index, timeout)
        self.kill()


class Cluster:
    """Chaos Redis (unless ``redis_port`` is None) and workers, plus the fault primitives the injector calls.

    ``vhost`` is the RabbitMQ vhost of ``env["ENCORE_BROKER_URL"]``: the only one whose
    connections the ``conn`` fault closes.
    """

    def __init__(
        self, workdir: Path, *, redis_port: int | None, env: dict[str, str], workers: int, threads: int, vhost: str
    ) -> None:
        self.workdir = workdir
        self.redis = None if redis_port is None else ChaosRedis(redis_port, workdir / "redis")
        self.vhost = vhost
        self.env = env
        self.workers = [Worker(i, env, workdir / f"worker-{i}.log", threads) for i in range(workers)]
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def start_redis(self) -> None:
        if self.redis is not None:
            self.redis.start()

    def start_workers(self, queue: str, timeout: float = 60) -> None:
        for worker in self.workers:
            worker.start()
        url = self.env["ENCORE_BROKER_URL"]
        if not wait_until(lambda: consumer_count(url, queue) >= len(self.workers), timeout, interval=0.5):
            raise RuntimeError(f"the workers did not all consume {queue!r} within {timeout:.0f} s; see {self.workdir}")
        consumers = consumer_count(url, queue)
        if consumers > len(self.workers):  # another run's workers joined between the check and now
            raise QueueInUse(f"queue {queue!r} on vhost {self.vhost!r} has {consumers} consumers, "
                             f"{len(self.workers)} of them this run's: another run uses it; pick another --queue")

    def _hold(self, seconds: float) -> bool:
        """Sleep; True when the cluster was closed meanwhile."""
        return self._closed.wait(seconds)

    # -- faults ---------------------------------------------------------------------------
    def kill_worker(self, index: int, hold: float) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self.workers[index].kill()
        if self._hold(hold):
            return
        with self._lock:
            if not self._closed.is_set():
                self.workers[index].start()

    def pause_worker(self, index: int, hold: float) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self.workers[index].signal(signal.SIGSTOP)
        self._hold(hold)
        with self._lock:
            self.workers[index].signal(signal.SIGCONT)

    def close_connections(self) -> None:
        """Close every connection on the run's vhost, and none on any other vhost.

        ``rabbitmqctl close_all_connections --vhost V`` closes the connections of vhost V
        only (``--global`` would take every vhost; without ``--vhost`` it means ``/``,
        whatever vhost the run uses). Checked on this machine's RabbitMQ 3.10.8: a
        connection on ``/`` survives a close of another vhost. ``list_connections vhost pid``
        then ``close_connection <pid>`` per connection would do the same in many calls,
        racing reconnections in between. rabbitmqctl talks to its default (local) node.
        """
        command = ["rabbitmqctl", "close_all_connections", "--vhost", self.vhost, "chaos"]
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
        # "Closed N connections": 0 when rabbitmqctl reached a node without the run's vhost
        logger.info("vhost %s: %s", self.vhost, (done.stdout.strip().splitlines() or ["?"])[-1])

    def restart_redis(self, hold: float) -> None:
        server = self.redis
        if server is None:
            raise RuntimeError("the state Redis is not the runner's own (--redis-url): it cannot restart it")
        with self._lock:
            if self._closed.is_set():
                return
            server.shutdown()
        if self._hold(hold):
            return
        with self._lock:
            if not self._closed.is_set():
                server.start()

    def supervise(self) -> int:
        """Restart workers whose process exited on its own, as a process supervisor would.

        A worker that boots while the chaos Redis is down exits at import (``Encore()``
        cannot reach the state store) and dramatiq then stops its whole group.
        """
        restarted = 0
        with self._lock:
            if self._closed.is_set():
                return 0
            for worker in self.workers:
                code = None if worker.proc is None else worker.proc.poll()
                if code is not None:
                    logger.warning("worker %d exited on its own (code %s); restarting it", worker.index, code)
                    worker.kill()  # whatever is left of its group
                    worker.start()
                    restarted += 1
        return restarted

    # -- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker, shut the chaos Redis down and delete its directory (idempotent)."""
        self._closed.set()
        with self._lock:
            for worker in self.workers:
                worker.terminate()
            for worker in self.workers:
                worker.reap()
            if self.redis is not None:
                self.redis.shutdown()
                shutil.rmtree(self.redis.directory, ignore_errors=True)


def consumer_count(url: str, queue: str) -> int:
    """Consumers on ``queue`` (0 when RabbitMQ or the queue is not there yet)."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except Exception:
        return 0
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except Exception:
        return 0
    finally:
        if connection.is_open:
            connection.close()


def queue_depth(url: str, queue: str) -> int:
    """Messages ready on ``queue`` (e.g. the dead-letter queue ``<queue>.XQ``); -1 if unknown."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except Exception:
        return -1
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    except Exception:
        return -1
    finally:
        if connection.is_open:
            connection.close()


def purge(url: str, queue: str) -> None:
    """Empty dramatiq's three queues for ``queue`` on a fresh connection (best effort)."""
    for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
        except Exception:
            return
        try:
            connection.channel().queue_purge(name)
        except Exception:
            logger.debug("could not purge %s", name, exc_info=True)
        finally:
            if connection.is_open:
                connection.close()


def delete_keys(url: str, prefix: str) -> int:
    """Delete the keys under ``<prefix>:`` (the run's ENCORE_KEY_PREFIX) in a shared Redis; no other key.

    The prefix is a run token (``chaos-<hex>``, no glob characters), so the SCAN pattern
    matches this run's keys only. Returns how many were deleted.
    """
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    finally:
        client.close()
    return deleted
