"""The fault injector: a seeded schedule of faults, played against a running cluster.

The schedule is a pure function of the seed and the run's shape, so ``--seed N`` replays
the same faults at the same offsets against the same workers (the interleaving with
messages depends on timing, the schedule does not).

Fault kinds:

- ``kill``: SIGKILL a worker's process group, wait ``hold`` seconds, start it again;
- ``conn``: ``rabbitmqctl close_all_connections --vhost <the run's vhost>`` (every worker
  and the driver reconnect; connections on other vhosts are left alone);
- ``redis``: graceful ``redis-cli shutdown`` of the chaos Redis, ``hold`` seconds down,
  then started again on the same directory and append-only file (only when the runner
  started that Redis itself: a schedule for a shared ``--redis-url`` has no ``redis`` faults);
- ``pause``: SIGSTOP a worker's process group for ``hold`` seconds (longer than the 5 s
  replay lease), then SIGCONT.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter
from typing import Literal, Protocol

logger = logging.getLogger("chaos.faults")

FaultKind = Literal["kill", "conn", "redis", "pause"]
KINDS: tuple[FaultKind, ...] = ("kill", "conn", "redis", "pause")
# Weights of the kinds drawn beyond the minimum of each.
WEIGHTS: dict[FaultKind, int] = {"kill": 4, "conn": 2, "redis": 2, "pause": 2}
# Seconds each kind keeps its fault in place: (low, high).
HOLDS: dict[FaultKind, tuple[float, float]] = {
    "kill": (0.3, 2.0),
    "conn": (0.0, 0.0),
    "redis": (0.2, 1.5),
    "pause": (6.0, 8.0),
}


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault: ``at`` seconds after the injector starts; ``worker`` for kill and pause."""

    at: float
    kind: FaultKind
    worker: int
    hold: float

    def describe(self) -> str:
        target = f" worker {self.worker}" if self.kind in ("kill", "pause") else ""
        hold = f" for {self.hold:.1f} s" if self.hold else ""
        return f"{self.kind}{target}{hold}"


def make_schedule(
    seed: int, duration: float, count: int, workers: int, min_each: int = 1, kinds: tuple[FaultKind, ...] = KINDS
) -> list[Fault]:
    """``count`` faults spread over ``duration`` seconds, at least ``min_each`` of each of ``kinds``.

    ``kinds`` leaves out the faults a run cannot apply (``redis`` on a Redis it does not own);
    with every kind the schedule of a seed is the one earlier runs of that seed played.
    """
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise ValueError(f"fault kinds {kinds!r}: pick some of {', '.join(KINDS)}")
    if count < min_each * len(kinds):
        raise ValueError(f"{count} faults cannot hold {min_each} of each of {len(kinds)} kinds")
    rng = random.Random(f"faults-{seed}")
    drawn = [kind for kind in kinds for _ in range(min_each)]
    drawn += rng.choices(kinds, weights=[WEIGHTS[kind] for kind in kinds], k=count - len(drawn))
    rng.shuffle(drawn)
    slot = duration / count
    schedule = []
    for i, kind in enumerate(drawn):
        low, high = HOLDS[kind]
        schedule.append(
            Fault(
                at=round(i * slot + rng.uniform(0.1, 0.9) * slot, 3),
                kind=kind,
                worker=rng.randrange(workers),
                hold=round(rng.uniform(low, high), 2),
            )
        )
    return schedule


class Target(Protocol):
    """What the injector needs from the cluster."""

    def kill_worker(self, index: int, hold: float) -> None: ...
    def close_connections(self) -> None: ...
    def restart_redis(self, hold: float) -> None: ...
    def pause_worker(self, index: int, hold: float) -> None: ...


class Injector:
    """Plays a schedule in a background thread; faults run one at a time, late ones at once."""

    def __init__(self, target: Target, schedule: list[Fault]) -> None:
        self.target = target
        self.schedule = schedule
        self.done: list[Fault] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-injector", daemon=True)

    @property
    def counts(self) -> Counter[str]:
        return Counter(fault.kind for fault in self.done)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the schedule to finish; False if it is still running."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        for fault in self.schedule:
            if self._stop.wait(max(0.0, self._started + fault.at - time.monotonic())):
                return
            logger.info("t=%6.1f s  fault %d/%d: %s", time.monotonic() - self._started,
                        len(self.done) + 1, len(self.schedule), fault.describe())
            try:
                self._apply(fault)
            except Exception as exc:  # a fault that could not be applied is reported, not fatal
                self.errors.append(f"{fault.describe()}: {type(exc).__name__}: {exc}")
                logger.exception("fault %s failed", fault.describe())
                continue
            self.done.append(fault)

    def _apply(self, fault: Fault) -> None:
        if fault.kind == "kill":
            self.target.kill_worker(fault.worker, fault.hold)
        elif fault.kind == "conn":
            self.target.close_connections()
        elif fault.kind == "redis":
            self.target.restart_redis(fault.hold)
        else:
            self.target.pause_worker(fault.worker, fault.hold)
