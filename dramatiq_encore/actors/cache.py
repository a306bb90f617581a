"""Snapshots of recently driven invocations, so that a pass loads only the journal's tail.

A cache, never the truth: the journal in the state store is. A snapshot is taken out while
a pass owns it and put back once the pass committed (extended with the pass's own entries
when nothing arrived in between); a snapshot of another run (after continue-as-new) or of a
longer journal than the store's (an id reused after its retention) is dropped. Bounded
(least recently used first out): memory does not grow with the number of suspended
workflows beyond ``size`` snapshots per process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..state.backend import Delivery, StateBackend
from ..state.models import InvocationMeta
from .replay import Snapshot

DEFAULT_SIZE = 1024


class SnapshotCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def position(self, invocation_id: str) -> tuple[int, int]:
        """The journal length and the run of the cached snapshot ((0, 0) when none): where
        the delivery is asked to load the journal from."""
        with self._lock:
            snapshot = self._snapshots.get(invocation_id)
            return (0, 0) if snapshot is None else (snapshot.length, snapshot.meta.record.run)

    def put(self, invocation_id: str, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshots[invocation_id] = snapshot
            self._snapshots.move_to_end(invocation_id)
            while len(self._snapshots) > self.size:
                self._snapshots.popitem(last=False)

    def take(self, state: StateBackend, invocation_id: str, delivery: Delivery | None, cached: int) -> Snapshot:
        """The invocation's snapshot, owned by the caller until it is :meth:`put` back.

        ``delivery`` carries the journal tail that ``deliver`` returned with the lease (asked
        from ``cached``); it is used when the cache still ends where it ended then (another
        thread of this process may have advanced it meanwhile), else the tail is loaded.
        """
        with self._lock:
            snapshot = self._snapshots.pop(invocation_id, None)
        length = 0 if snapshot is None else snapshot.length
        if delivery is not None and delivery.entries is not None and length == cached:
            if delivery.loaded_from == 0:
                assert delivery.record is not None
                snapshot = Snapshot(InvocationMeta(record=delivery.record, status="running"))
            if snapshot is not None and snapshot.length == delivery.loaded_from:
                snapshot.apply(list(delivery.entries))
                return snapshot
        meta, tail = state.load(invocation_id, length)
        assert meta is not None, f"invocation {invocation_id} vanished while leased"
        if snapshot is None or snapshot.meta.record.seed != meta.record.seed:
            snapshot = Snapshot(meta)
            if length:
                _, tail = state.load(invocation_id, 0)
        snapshot.meta = meta
        snapshot.apply(tail)
        return snapshot
