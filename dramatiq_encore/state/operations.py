"""What operators need from a state store beyond the engine's primitives.

The workflow index (root workflows by start time, per status and type) is written by the
same atomic steps that change a workflow's status (see :mod:`.keys` for Redis), so a
listing never disagrees with the records. :class:`Operations` reads it, reads a tree's
records and journals, and makes the two writes that ``retry`` and ``fork`` need. Both
backends implement it; :mod:`dramatiq_encore.operate` builds the operator's views on it.
"""

from __future__ import annotations

import abc
import dataclasses

from .models import InvocationMeta, InvocationRecord


@dataclasses.dataclass(frozen=True, slots=True)
class IndexRow:
    """One root workflow as the index lists it."""

    workflow_id: str
    type: str
    status: str
    #: Start (epoch ms, the store's clock): the listing's order.
    started_ms: int
    finished: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredInvocation:
    """An invocation's metadata, its counters and its whole journal (raw JSON entries)."""

    meta: InvocationMeta
    journal: list[str]
    passes: int = 0
    finished: float | None = None


#: Where a page ended: (start ms, workflow id) of its last row.
After = tuple[int, str]


class Operations(abc.ABC):
    @abc.abstractmethod
    def list_index(
        self, status: str | None, workflow_type: str | None, limit: int, after: After | None
    ) -> list[IndexRow]:
        """Up to ``limit`` root workflows, newest first (ties: greater id first), after ``after``."""

    @abc.abstractmethod
    def count_index(self, status: str) -> int:
        """How many root workflows have this status."""

    @abc.abstractmethod
    def read_invocations(self, invocation_ids: list[str]) -> dict[str, StoredInvocation | None]:
        """Each invocation's stored state (None when the store has no record of it)."""

    @abc.abstractmethod
    def reopen(self, record: InvocationRecord, expect_run: int, entries: list[str], signals: int) -> str | None:
        """Start a new run of a failed root workflow from ``record`` and ``entries`` (retry).

        Applied only while the workflow is failed, in run ``expect_run`` and not leased: its
        journal becomes ``entries``, what it waited on and resolved is forgotten, its outcome
        is removed, its status becomes ``pending`` and its tree's keys lose their retention
        expiry. Returns None when applied, else why not.
        """

    @abc.abstractmethod
    def seed(self, record: InvocationRecord, entries: list[str], data: dict[str, str]) -> bool:
        """Create root workflow ``record`` with a journal and workflow data (fork); False when
        the id exists. Its start message (sent next) finds it and runs it."""

    @abc.abstractmethod
    def note(self, invocation_id: str, text: str) -> None:
        """Keep an operator's note about an invocation, even one that does not exist (a stray
        message: see :mod:`dramatiq_encore.operate.strays`); it expires with the retention."""

    @abc.abstractmethod
    def notes(self, invocation_ids: list[str]) -> dict[str, str]:
        """The notes kept about these invocations (absent: none)."""
