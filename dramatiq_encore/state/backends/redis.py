"""Redis state: production. Each primitive is one round trip (one EVALSHA or one command).

Multi-key atomicity lives in the Lua scripts of ``dramatiq_encore/state/lua``; every key
format lives in :mod:`dramatiq_encore.state.keys`. The semantics are those of
:class:`~dramatiq_encore.state.MemoryState`, primitive for primitive.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.commands.core import Script

from ...broker_config.settings import redact
from ...errors import ConfigurationError, StateUnavailable
from ..backend import (
    DEFAULT_RETENTION_S,
    Commit,
    CommitResult,
    Delivery,
    FirstPass,
    StateBackend,
    Then,
    Trigger,
    deliver_then_commit,
)
from ..keys import DEFAULT_SHARDS, META_OUTCOME, META_RECORD, META_SIGNALS, META_STATUS, Keys
from ..models import InvocationMeta, InvocationRecord, Outcome
from . import redis_calls as calls
from . import redis_wait
from .redis_client import (
    TRANSIENT,
    UNREACHABLE,
    RedisClient,
    connect,
    script_source,
    text,
    unavailable,
    unreachable_at_start,
    warn_if_state_can_be_lost,
    where,
)
from .redis_ops import RedisOperations

_T = TypeVar("_T")
logger = logging.getLogger(__name__)


class RedisState(RedisOperations, StateBackend, FirstPass):
    """State in Redis, standalone or Cluster: shared by every worker, survives restarts.

    >>> state = RedisState.from_url("redis://:secret@localhost:6379/0", prefix="orders")
    >>> app = Encore(broker=broker, state=state)

    All keys of one root workflow share a hash tag (see :mod:`dramatiq_encore.state.keys`),
    so every script runs on one Cluster slot. When a root workflow finishes, all of its
    tree's keys expire after ``retention`` seconds. ``lease_ms`` is the replay lease; a
    worker renews it while a pass runs. An existing redis-py client may be handed to the
    constructor instead; ``url_for_errors`` then names it (password removed) in messages.
    """

    # A restart or failover (every Redis error of that kind is raised as StateUnavailable):
    # the runtime re-sends the message later. A script is atomic, so one that did run before
    # its reply was lost shows up as a duplicate trigger, which the runtime repairs.
    transient_errors = (StateUnavailable,)
    timer_index = True

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "encore",
        retention: int = DEFAULT_RETENTION_S,
        lease_ms: int | None = None,
        url_for_errors: str = "",
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        # Public for admin and test code (cleanup, inspection): the redis-py client itself,
        # not the narrow protocol this backend needs.
        self.client: Any = client
        self.keys = Keys(prefix, shards)
        self.retention_s = retention
        if lease_ms is not None:
            self.lease_ms = lease_ms
        self._where = redact(url_for_errors) if url_for_errors else where(client)
        # Kept only to scrub it from driver messages; never logged or shown.
        self._secret = urlsplit(url_for_errors).password if url_for_errors else None
        self._reached = False
        self._deliver = self._register("deliver")
        self._acquire = self._register("acquire")
        self._load = self._register("load")
        self._commit = self._register("commit")
        self._release = self._register("release")
        self._renew = self._register("renew")
        self._timer_due = self._register("timer_due")
        self._needs_result = self._register("needs_result")
        self._status = self._register("status")
        self._scripts: dict[str, Script] = {}

    def _script(self, name: str) -> Script:
        """A script registered on first use (the operator's ones: most processes never run them)."""
        if name not in self._scripts:
            self._scripts[name] = self._register(name)
        return self._scripts[name]

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "encore",
        retention: int = DEFAULT_RETENTION_S,
        lease_ms: int | None = None,
        cluster: bool | None = None,
        wait: float = 0.0,
        shards: int = DEFAULT_SHARDS,
    ) -> RedisState:
        """Connect to ``redis://`` or ``rediss://`` (password in the URL is fine).

        ``cluster=None`` asks the server (``INFO cluster``) whether it is a Redis Cluster
        node; ``True`` or ``False`` skips the question. ``shards`` is the number of hash-tag shards
        (see :mod:`dramatiq_encore.state.keys`; every process of a deployment must use the same).
        ``wait`` is how long to keep trying
        while nobody answers (a worker started during a Redis restart), logging each try;
        ``Encore()`` waits ``ENCORE_STATE_WAIT`` seconds (10 by default).
        """
        deadline = time.monotonic() + wait
        pause = 0.2
        while True:
            try:
                client = connect(url, cluster)
                break
            except UNREACHABLE as exc:
                if time.monotonic() + pause > deadline:
                    raise unreachable_at_start(redact(url), urlsplit(url).password, exc) from None
                logger.warning("Redis at %s does not answer (%s); trying again", redact(url), type(exc).__name__)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
            except ValueError as exc:  # redis-py's message on a bad URL never repeats the URL
                raise ConfigurationError(f"invalid Redis URL {redact(url)}: {exc}. Check ENCORE_STATE_URL.") from None
        state = cls(client, prefix=prefix, retention=retention, lease_ms=lease_ms, url_for_errors=url, shards=shards)
        # Probing (cluster=None) or discovering the cluster's nodes already reached Redis:
        # a later outage is transient, not a configuration error.
        state._reached = cluster is not False
        warn_if_state_can_be_lost(client, redact(url))
        return state

    def _register(self, name: str) -> Script:
        script: Script = self.client.register_script(script_source(name))
        return script

    def _do(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run one command; "nobody answers" becomes an error that names the store: a
        :class:`~dramatiq_encore.errors.ConfigurationError` on the very first command (the URL
        is likely wrong), a :class:`~dramatiq_encore.errors.StateUnavailable` later."""
        try:
            result = fn(*args)
        except (*UNREACHABLE, *TRANSIENT) as exc:
            raise self.error(exc) from None
        self._reached = True
        return result

    def error(self, exc: BaseException) -> ConfigurationError | StateUnavailable:
        """The library's error for a Redis client's error ``exc`` (password removed)."""
        if not self._reached:
            return unreachable_at_start(self._where, self._secret, exc)
        return unavailable(self._where, self._secret, exc)

    def _deliver_call(
        self, invocation_id: str, trigger: Trigger, record: InvocationRecord | None, load_from: int | None, run: int
    ) -> tuple[list[str], list[Any]]:
        token = secrets.token_hex(16)
        return calls.deliver_call(
            self.keys, invocation_id, trigger, record, load_from, run, token, self.lease_ms, self.retention_s
        )

    def _commit_call(self, invocation_id: str, token: str, commit: Commit) -> tuple[list[str], list[Any]]:
        return calls.commit_call(self.keys, invocation_id, token, commit, self.lease_ms, self.retention_s)

    # -- primitives ---------------------------------------------------------------------
    def deliver(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord | None,
        load_from: int | None = None,
        run: int = 0,
    ) -> Delivery:
        keys, args = self._deliver_call(invocation_id, trigger, record, load_from, run)
        return calls.delivery(self._do(self._deliver, keys, args), record)

    def finish_first_pass(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord,
        commit: Commit,
        then: Then | None = None,
    ) -> tuple[Delivery, CommitResult | None, Delivery | None]:
        if getattr(self.client, "connection_pool", None) is None or not self._reached:
            return deliver_then_commit(self, invocation_id, trigger, record, commit, then)  # Cluster: one by one
        keys, args = self._deliver_call(invocation_id, trigger, record, 0, 0)
        commit_keys, commit_args = self._commit_call(
            invocation_id, str(args[6]), dataclasses.replace(commit, empty_only=True)
        )
        # One round trip: the commit runs right after the delivery and applies only if the
        # delivery granted this token the lease on the empty state (its own check); ``then``
        # runs after it (a parent's delivery reads the outcome the commit recorded).
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", self._deliver.sha, len(keys), *keys, *args)  # type: ignore[attr-defined]
        pipe.execute_command("EVALSHA", self._commit.sha, len(commit_keys), *commit_keys, *commit_args)  # type: ignore[attr-defined]
        if then is not None:
            then_keys, then_args = self._deliver_call(then.invocation_id, then.trigger, None, then.load_from, then.run)
            pipe.execute_command("EVALSHA", self._deliver.sha, len(then_keys), *then_keys, *then_args)  # type: ignore[attr-defined]
        replies = self._do(pipe.execute, False)
        if isinstance(replies[0], redis.exceptions.NoScriptError):  # a restarted server: load them
            return deliver_then_commit(self, invocation_id, trigger, record, commit, then)
        for reply in replies:
            if isinstance(reply, Exception):
                raise self.error(reply) if isinstance(reply, TRANSIENT) else reply
        delivery = calls.delivery(replies[0], record)
        ok, rerun, *at = replies[1]
        if not ok:
            self._unused(then, replies)
            return delivery, None, None
        committed = CommitResult(ok=True, rerun=bool(rerun), appended_at=int(at[0]) if at else None)
        return delivery, committed, None if then is None else calls.delivery(replies[2], None)

    def _unused(self, then: Then | None, replies: list[Any]) -> None:
        """A follow-up delivery made although the commit before it did not apply: give back a
        lease it was granted (it has no pass to run: the caller falls back)."""
        if then is not None:
            token = calls.delivery(replies[2], None).token
            if token is not None:
                self.release(then.invocation_id, token)

    def acquire(self, invocation_id: str) -> str | None:
        """Take the lease if the invocation is runnable and free (tests and admin tools)."""
        k = self.keys.invocation(invocation_id)
        token = self._do(self._acquire, [k.meta, k.waiting, k.lock], [secrets.token_hex(16), self.lease_ms])
        return None if token is None else str(text(token))

    def load(self, invocation_id: str, start: int) -> tuple[InvocationMeta | None, list[str]]:
        k = self.keys.invocation(invocation_id)
        reply = self._do(self._load, [k.meta, k.journal], [start])
        if reply is None:
            return None, []
        record, status, outcome, entries = reply
        return self._meta(record, status, outcome), [text(entry) for entry in entries]

    def commit(self, invocation_id: str, token: str, commit: Commit) -> CommitResult:
        keys, args = self._commit_call(invocation_id, token, commit)
        ok, rerun, *at = self._do(self._commit, keys, args)
        return CommitResult(ok=bool(ok), rerun=bool(rerun), appended_at=int(at[0]) if at else None)

    def release(self, invocation_id: str, token: str) -> None:
        self._do(self._release, [self.keys.invocation(invocation_id).lock], [token])

    def renew(self, invocation_id: str, token: str) -> bool:
        lock = self.keys.invocation(invocation_id).lock
        return bool(self._do(self._renew, [lock], [token, self.lease_ms]))

    # -- reads --------------------------------------------------------------------------
    @staticmethod
    def _meta(record: Any, status: Any, outcome: Any, signals: Any = 0) -> InvocationMeta:
        return InvocationMeta(
            record=InvocationRecord.model_validate_json(record),
            status=text(status),
            outcome=Outcome.model_validate_json(outcome) if outcome else None,
            signals_waiting=int(signals or 0),
        )

    def get_meta(self, invocation_id: str) -> InvocationMeta | None:
        fields = [META_RECORD, META_STATUS, META_OUTCOME, META_SIGNALS]
        record, status, outcome, signals = self._do(self.client.hmget, self.keys.meta(invocation_id), fields)
        return None if record is None else self._meta(record, status, outcome, signals)

    def read_data(self, workflow_id: str, key: str) -> tuple[bool, str | None]:
        value = self._do(self.client.hget, self.keys.data(workflow_id), key)
        return (value is not None, text(value))

    def workflow_data(self, workflow_id: str) -> dict[str, str]:
        values = self._do(self.client.hgetall, self.keys.data(workflow_id))
        return {text(key): text(value) for key, value in values.items()}

    def timer_due(self, invocation_id: str, step: int) -> float | None:
        k = self.keys.invocation(invocation_id)
        due = text(self._do(self._timer_due, [k.meta, k.resolved, k.steps], [step]))
        return float(due) if due else None

    def lost_reason(self, invocation_id: str) -> str | None:
        status, lost = self.status(invocation_id)
        return lost if status is None else None

    def status(self, invocation_id: str) -> tuple[str | None, str | None]:
        """The invocation's status (None when unknown) and, when unknown, why it was marked lost."""
        k = self.keys.invocation(invocation_id)
        status, lost = self._do(self._status, [k.meta, k.lost], [invocation_id])
        return text(status) or None, text(lost) or None

    def needs_result(self, invocation_id: str) -> bool:
        return bool(self._do(self._needs_result, [self.keys.meta(invocation_id)], []))

    def existing(self, invocation_ids: list[str]) -> list[bool]:
        if not invocation_ids:
            return []
        # Not one script: the ids may belong to different roots, hence different slots.
        pipe = self.client.pipeline(transaction=False)
        for invocation_id in invocation_ids:
            pipe.exists(self.keys.meta(invocation_id))
        return [bool(found) for found in self._do(pipe.execute)]

    def wait_finished(self, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
        return redis_wait.wait_finished(self, invocation_id, timeout)

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        return self._where
