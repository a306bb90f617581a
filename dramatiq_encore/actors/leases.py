"""Keeps the replay leases this process holds alive while passes run.

A short lease means a SIGKILLed holder blocks a redelivered message only briefly; renewing
it from a background thread means a slow pass does not lose it. The thread is started per
process (dramatiq forks worker processes, and threads do not survive a fork).
"""

from __future__ import annotations

import logging
import os
import threading

from ..state.backend import StateBackend

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, state: StateBackend) -> None:
        self._state = state
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._pid = 0
        self._wake = threading.Event()

    def hold(self, invocation_id: str, token: str) -> None:
        with self._lock:
            self._held[invocation_id] = token
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="encore-lease-keeper", daemon=True).start()

    def drop(self, invocation_id: str) -> None:
        with self._lock:
            self._held.pop(invocation_id, None)

    def _run(self) -> None:
        pid = os.getpid()
        interval = self._state.lease_ms / 3000
        while pid == os.getpid():
            self._wake.wait(interval)
            with self._lock:
                held = list(self._held.items())
            for invocation_id, token in held:
                try:
                    ok = self._state.renew(invocation_id, token)
                except Exception:  # the store is unreachable: the commit will tell
                    logger.warning("could not renew the lease of invocation %s", invocation_id, exc_info=True)
                    continue
                if not ok:  # the commit will fail and the message be re-sent
                    logger.warning("lost the lease of invocation %s (a pass ran longer than the lease?)", invocation_id)
