"""Keeps the replay leases this process holds alive while passes run.

A short lease means a SIGKILLed holder blocks a redelivered message only briefly; renewing
it from a background thread means a slow pass does not lose it. The thread is started per
process (dramatiq forks worker processes, and threads do not survive a fork).

A holder drops its lease from here as soon as its commit released it (before publishing),
and only its own token: another thread of this process may hold the next lease of the same
invocation. A renewal that fails is not reported at once: the holder may have committed
between the renewer's look at what is held and its renewal (the commit released the lease,
as it should). Only a lease still held with the same token one round later was really lost
(a pass longer than the lease, a store that restarted): that one is reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from ..observe import logs
from ..state.backend import StateBackend

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """``background=False`` starts no renewing thread (the caller runs :meth:`renew_all`)."""

    def __init__(self, state: StateBackend, *, background: bool = True) -> None:
        self._state = state
        self._background = background
        self._held: dict[str, str] = {}
        self._suspect: dict[str, str] = {}
        self._lock = threading.Lock()
        self._pid = 0
        self._wake = threading.Event()

    def hold(self, invocation_id: str, token: str) -> None:
        with self._lock:
            self._held[invocation_id] = token
            if self._background and self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="encore-lease-keeper", daemon=True).start()

    def drop(self, invocation_id: str, token: str | None) -> None:
        """Stop renewing the lease ``token`` holds (a no-op for None or another token)."""
        with self._lock:
            if token is not None and self._held.get(invocation_id) == token:
                del self._held[invocation_id]

    @contextlib.contextmanager
    def holding(self, invocation_id: str, token: str) -> Iterator[None]:
        """Keep the lease ``token`` holds renewed for the block (the one place a lease is held)."""
        self.hold(invocation_id, token)
        try:
            yield
        finally:
            self.drop(invocation_id, token)

    def held(self, invocation_id: str) -> str | None:
        with self._lock:
            return self._held.get(invocation_id)

    def _run(self) -> None:
        pid = os.getpid()
        interval = self._state.lease_ms / 3000
        while pid == os.getpid():
            self._wake.wait(interval)
            self.renew_all()

    def renew_all(self) -> None:
        """Renew every lease held; report the ones lost (see the module docstring)."""
        with self._lock:
            held = list(self._held.items())
            suspects, self._suspect = self._suspect, {}
        for invocation_id, token in held:
            with logs.about(invocation_id):  # its records name the invocation (a thread of its own)
                self._renew(invocation_id, token, suspects)

    def _renew(self, invocation_id: str, token: str, suspects: dict[str, str]) -> None:
        try:
            ok = self._state.renew(invocation_id, token)
        except Exception:  # the store is unreachable: the commit will tell
            logger.warning("could not renew the lease of invocation %s", invocation_id, exc_info=True)
            return
        if ok:
            return
        with self._lock:
            if self._held.get(invocation_id) != token:
                return  # committed meanwhile: released, not lost
            if suspects.get(invocation_id) != token:
                self._suspect[invocation_id] = token  # judged at the next round
                return
        logger.warning(
            "lost the lease of invocation %s while a pass still holds it (it expired or the store lost it): "
            "its commit will be refused and its message re-sent",
            invocation_id,
        )
