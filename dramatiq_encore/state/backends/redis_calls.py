"""The calling conventions of the Lua scripts: primitives to KEYS and ARGV, replies back.

Each function mirrors the header comment of its script in ``dramatiq_encore/state/lua``;
:class:`~.redis.RedisState` sends what they build and reads what they parse.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..backend import Commit, Delivery, Trigger
from ..keys import Keys
from ..models import FINISHED, InvocationRecord
from .redis_client import text


def _payload(trigger: Trigger) -> str:
    """What deliver.lua appends for a trigger: a timer's outcome or a signal's/cancel's entry."""
    if trigger.outcome is not None:
        return trigger.outcome.model_dump_json()
    return trigger.entry or ""


def deliver_call(
    keys: Keys,
    invocation_id: str,
    trigger: Trigger,
    record: InvocationRecord | None,
    load_from: int | None,
    run: int,
    token: str,
    lease_ms: int,
    retention_s: int,
) -> tuple[list[str], list[Any]]:
    """deliver.lua's KEYS and ARGV (``token`` is the lease's, when it grants one)."""
    k = keys.invocation(invocation_id)
    rel_meta, rel_steps = k.meta, k.steps
    parent = None if record is None else record.parent
    step = trigger.step
    if trigger.child is not None:  # a result: the reporting child's record
        rel_meta = keys.meta(trigger.child)
    elif parent is not None:  # a child's start: its parent's record of the step
        rel = keys.invocation(parent.invocation_id)
        rel_meta, rel_steps, step = rel.meta, rel.steps, parent.step
    script_keys = [k.meta, k.journal, k.triggers, k.resolved, k.waiting, k.lock, k.registry, k.steps, k.lost]
    script_keys += [rel_meta, rel_steps]
    args = [
        trigger.kind,
        trigger.key,
        "" if record is None else record.model_dump_json(),
        "" if record is None else record.digest,
        "1" if record is not None and parent is None else "0",
        "" if step is None else step,
        token,
        lease_ms,
        "" if load_from is None else load_from,
        _payload(trigger),
        trigger.name or "",
        run,
        invocation_id,
        "" if record is None else record.fingerprint,
        "" if trigger.due is None else repr(trigger.due),
        trigger.limit,
        retention_s,
        "" if record is None else record.task,
    ]
    return script_keys, args


def delivery(reply: Any, record: InvocationRecord | None) -> Delivery:
    """deliver.lua's reply; ``record`` is the one the call created the invocation from, if any."""
    verdict, detail, duplicate, status, token, locked, *loaded = reply
    delivered = Delivery(
        verdict=text(verdict),
        duplicate=bool(duplicate),
        status=text(status),
        token=text(token) or None,
        locked=bool(locked),
        detail=text(detail),
    )
    if not loaded:
        return delivered
    start, rec, entries = loaded
    return dataclasses.replace(
        delivered,
        # An empty record from 0 means the delivery created it from the caller's own.
        record=InvocationRecord.model_validate_json(rec) if rec else (record if int(start) == 0 else None),
        entries=tuple(text(entry) for entry in entries),
        loaded_from=int(start),
    )


def commit_call(
    keys: Keys, invocation_id: str, token: str, commit: Commit, lease_ms: int, retention_s: int
) -> tuple[list[str], list[Any]]:
    """commit.lua's KEYS and ARGV."""
    k = keys.invocation(invocation_id)
    script_keys = [k.meta, k.journal, k.resolved, k.waiting, k.lock, k.registry, k.steps]
    args: list[Any] = [
        token,
        lease_ms,
        commit.status,
        "" if commit.outcome is None else commit.outcome.model_dump_json(),
        "1" if commit.status in FINISHED else "0",
        retention_s,
        "1" if commit.wake_any else "0",
        "" if commit.seen is None else commit.seen,
        "" if commit.reset is None else commit.reset.model_dump_json(),
        0 if commit.reset is None else commit.reset.run,
        "1" if commit.empty_only else "",
        0 if commit.reset is None else commit.reset.first_step,
        len(commit.entries),
        *commit.entries,
        len(commit.waiting),
        *commit.waiting,
        len(commit.signals),
        *commit.signals,
        len(commit.claims),
        *commit.claims,
        len(commit.steps),
        *(item for pair in commit.steps.items() for item in pair),
    ]
    for workflow_id, values in commit.data.items():
        script_keys.append(keys.data(workflow_id))
        args.append(len(values))
        for field, value in values.items():
            args += (field, value)
    return script_keys, args
