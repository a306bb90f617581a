"""The operator's side of the Redis store: the workflow index, tree reads, retry and fork.

Mixed into :class:`~.redis.RedisState`; the scripts are ``list.lua``, ``reopen.lua`` and
``seed.lua`` (their headers give their calling conventions).
"""

from __future__ import annotations

from typing import Any

from ..backend import TimerIndex
from ..keys import META_DONE, META_OUTCOME, META_PASSES, META_RECORD, META_SIGNALS, META_STATUS, Keys
from ..models import InvocationMeta, InvocationRecord, Outcome
from ..operations import After, IndexRow, Operations, StoredInvocation
from .redis_client import text

_FIELDS = [META_RECORD, META_STATUS, META_OUTCOME, META_SIGNALS, META_PASSES, META_DONE]


def _rows(reply: list[Any]) -> list[IndexRow]:
    values = [text(v) for v in reply]
    return [
        IndexRow(
            workflow_id=values[i],
            started_ms=int(float(values[i + 1])),
            type=values[i + 2],
            status=values[i + 3],
            finished=float(values[i + 4]) if values[i + 4] else None,
        )
        for i in range(0, len(values), 5)
    ]


class RedisOperations(Operations, TimerIndex):
    keys: Keys
    client: Any
    retention_s: int

    def _do(self, fn: Any, *args: Any) -> Any:  # RedisState's
        raise NotImplementedError

    def _script(self, name: str) -> Any:  # RedisState's
        raise NotImplementedError

    def list_index(
        self, status: str | None, workflow_type: str | None, limit: int, after: After | None
    ) -> list[IndexRow]:
        # One script per shard (the shards are different Cluster slots), merged here.
        script = self._script("list")
        top = "+inf" if after is None else str(after[0])
        after_id = "" if after is None else after[1]
        rows: list[IndexRow] = []
        for shard in range(self.keys.shards):
            key = self.keys.index(shard, status, workflow_type)
            rows += _rows(self._do(script, [key], [top, after_id, limit]))
        rows.sort(key=lambda row: (row.started_ms, row.workflow_id), reverse=True)
        return rows[:limit]

    def claim_due_timers(self, limit: int, claim_s: float) -> list[tuple[str, int, float]]:
        # One small script per shard (a Cluster slot each); on a single Redis, all of them in
        # one pipelined round trip (the poller runs a few times a second in every process).
        script = self._script("poll_timers")
        keys = [f"{self.keys.shard_head(shard)}:ix:due" for shard in range(self.keys.shards)]
        if getattr(self.client, "connection_pool", None) is None:  # Cluster
            replies = [self._do(script, [key], [limit, claim_s]) for key in keys]
        else:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                script([key], [limit, claim_s], client=pipe)
            replies = self._do(pipe.execute)
        due: list[tuple[str, int, float]] = []
        for members in replies:
            for member in members:
                invocation_id, step, when = text(member).split("\x1f")
                due.append((invocation_id, int(step), float(when)))
        return due

    def count_index(self, status: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.zcard(self.keys.index(shard, status))
        return sum(int(n) for n in self._do(pipe.execute))

    def read_invocations(self, invocation_ids: list[str]) -> dict[str, StoredInvocation | None]:
        pipe = self.client.pipeline(transaction=False)
        for invocation_id in invocation_ids:
            pipe.hmget(self.keys.meta(invocation_id), _FIELDS)
            pipe.lrange(self.keys.journal(invocation_id), 0, -1)
        replies = self._do(pipe.execute)
        found: dict[str, StoredInvocation | None] = {}
        for i, invocation_id in enumerate(invocation_ids):
            (record, status, outcome, sigs, passes, done), journal = replies[2 * i], replies[2 * i + 1]
            if record is None:
                found[invocation_id] = None
                continue
            meta = InvocationMeta(
                record=InvocationRecord.model_validate_json(record),
                status=text(status),
                outcome=Outcome.model_validate_json(outcome) if outcome else None,
                signals_waiting=int(sigs or 0),
            )
            found[invocation_id] = StoredInvocation(
                meta=meta,
                journal=[text(entry) for entry in journal],
                passes=int(passes or 0),
                finished=float(done) if done else None,
            )
        return found

    def note(self, invocation_id: str, text: str) -> None:
        key = self.keys.notes(invocation_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, invocation_id, text)
        pipe.expire(key, self.retention_s)
        self._do(pipe.execute)

    def notes(self, invocation_ids: list[str]) -> dict[str, str]:
        pipe = self.client.pipeline(transaction=False)
        for invocation_id in invocation_ids:
            pipe.hget(self.keys.notes(invocation_id), invocation_id)
        replies = self._do(pipe.execute)
        return {i: text(note) for i, note in zip(invocation_ids, replies, strict=True) if note is not None}

    def reopen(self, record: InvocationRecord, expect_run: int, entries: list[str], signals: int) -> str | None:
        k = self.keys.invocation(record.invocation_id)
        keys = [k.meta, k.journal, k.resolved, k.waiting, k.lock, k.registry, k.steps]
        args = [record.model_dump_json(), record.run, record.first_step, expect_run, signals, len(entries), *entries]
        why = text(self._do(self._script("reopen"), keys, args))
        return why or None

    def seed(self, record: InvocationRecord, entries: list[str], data: dict[str, str]) -> bool:
        k = self.keys.invocation(record.invocation_id)
        keys = [k.meta, k.journal, k.triggers, k.resolved, k.waiting, k.steps, k.registry]
        keys.append(self.keys.data(record.identity.workflow_id))
        args: list[Any] = [record.model_dump_json(), record.digest, record.task, len(entries), *entries, len(data)]
        for field, value in data.items():
            args += (field, value)
        return bool(self._do(self._script("seed"), keys, args))
