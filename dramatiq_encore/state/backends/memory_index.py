"""The in-memory workflow index: root workflows by start time, per status and per type.

Written under the memory store's lock by the same critical sections that change a
workflow's status, as the Redis index is by the same scripts. Nothing expires here (the
memory store keeps everything while the process lives).
"""

from __future__ import annotations

import bisect
import dataclasses

from ..operations import After, IndexRow

_Key = tuple[str, ...]


class MemoryIndex:
    def __init__(self) -> None:
        self._rows: dict[str, IndexRow] = {}
        # Each list is sorted by (start ms, id): a page walks it backwards from a bisection.
        self._sets: dict[_Key, list[tuple[int, str]]] = {}

    @staticmethod
    def _keys(row: IndexRow) -> list[_Key]:
        return [("all",), ("s", row.status), ("t", row.type), ("st", row.status, row.type)]

    def _insert(self, row: IndexRow) -> None:
        for key in self._keys(row):
            bisect.insort(self._sets.setdefault(key, []), (row.started_ms, row.workflow_id))

    def _remove(self, row: IndexRow) -> None:
        for key in self._keys(row):
            members = self._sets[key]
            del members[bisect.bisect_left(members, (row.started_ms, row.workflow_id))]

    def add(self, workflow_id: str, workflow_type: str, status: str, started_ms: int) -> None:
        old = self._rows.get(workflow_id)
        if old is not None:
            self._remove(old)
        row = self._rows[workflow_id] = IndexRow(workflow_id, workflow_type, status, started_ms)
        self._insert(row)

    def set_status(self, workflow_id: str, status: str, finished: float | None = None) -> None:
        old = self._rows.get(workflow_id)
        if old is None or (old.status == status and old.finished == finished):
            return
        self._remove(old)
        row = self._rows[workflow_id] = dataclasses.replace(old, status=status, finished=finished)
        self._insert(row)

    def page(self, status: str | None, workflow_type: str | None, limit: int, after: After | None) -> list[IndexRow]:
        key: _Key = ("all",)
        if status is not None and workflow_type is not None:
            key = ("st", status, workflow_type)
        elif status is not None:
            key = ("s", status)
        elif workflow_type is not None:
            key = ("t", workflow_type)
        members = self._sets.get(key, [])
        end = len(members) if after is None else bisect.bisect_left(members, after)
        return [self._rows[workflow_id] for _, workflow_id in reversed(members[max(0, end - limit) : end])]

    def count(self, status: str) -> int:
        return len(self._sets.get(("s", status), []))
