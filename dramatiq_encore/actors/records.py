"""Invocation records: built from a start message, and again for each run after continue-as-new."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from dramatiq.broker import MessageProxy

from ..state.models import InvocationRecord
from .codec import digest
from .messages import StartEnvelope

if TYPE_CHECKING:
    from .task import Task

CALLBACKS = ("on_success", "on_failure")


def seed_for(invocation_id: str, run: int = 0) -> str:
    """The deterministic streams' seed of one run of an invocation.

    Derived from the id: a re-run of the same workflow id (e.g. a reference run in another
    namespace) draws the same values; distinct ids, and distinct runs, never share a stream.
    """
    text = f"encore-seed\x00{invocation_id}" + (f"\x00{run}" if run else "")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def start_record(
    task: Task[Any, Any], message: MessageProxy, envelope: StartEnvelope, args: list[Any], kwargs: dict[str, Any]
) -> InvocationRecord:
    """The record of an invocation started by ``message`` (its callbacks fire at completion)."""
    callbacks = {}
    for name in CALLBACKS:
        target = message.options.get(name) or task.callbacks.get(name)
        if target:
            callbacks[name] = target
    return InvocationRecord(
        invocation_id=envelope.invocation_id,
        task=task.name,
        queue=task.queue_name,
        identity=envelope.identity,
        args=args,
        kwargs=kwargs,
        digest=digest(args, kwargs),
        seed=seed_for(envelope.invocation_id),
        parent=envelope.parent,
        callbacks=callbacks,
        message_id=message.message_id,
        created_at=message.message_timestamp / 1000,
    )


def next_run(record: InvocationRecord, args: list[Any], kwargs: dict[str, Any], last_step: int) -> InvocationRecord:
    """The record of the run after ``record``'s: new arguments and seed, step numbers going on.

    The digest stays the start message's, so a redelivered start still matches its run.
    """
    run = record.run + 1
    return record.model_copy(
        update={
            "args": args,
            "kwargs": kwargs,
            "run": run,
            "seed": seed_for(record.invocation_id, run),
            "first_step": last_step,
        }
    )
