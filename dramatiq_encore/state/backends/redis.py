"""Redis state: production. Each primitive is one round trip (one EVALSHA or one command).

Multi-key atomicity lives in the Lua scripts of ``dramatiq_encore/state/lua``; every key
format lives in :mod:`dramatiq_encore.state.keys`. The semantics are those of
:class:`~dramatiq_encore.state.MemoryState`, primitive for primitive.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import ClusterDownError, ReadOnlyError, RedisClusterException, TryAgainError

from ...broker_config.settings import redact
from ...errors import ConfigurationError
from ..backend import DEFAULT_RETENTION_S, Commit, CommitResult, Delivery, StateBackend, Trigger
from ..keys import META_OUTCOME, META_RECORD, META_STATUS, Keys
from ..models import ACTIVE, FINISHED, InvocationMeta, InvocationRecord, Outcome

_T = TypeVar("_T")
logger = logging.getLogger(__name__)


class RedisClient(Protocol):
    """What this backend uses of a client: ``redis.Redis`` and ``redis.cluster.RedisCluster`` fit.

    Typed structurally because redis-py's own annotations and the types-redis stubs disagree
    on whether the client classes are generic.
    """

    def register_script(self, script: str) -> Script: ...
    def hget(self, name: str, key: str) -> Any: ...
    def hmget(self, name: str, keys: list[str]) -> Any: ...
    def hgetall(self, name: str) -> Any: ...
    def info(self, section: str) -> Any: ...
    def pipeline(self, transaction: bool = ...) -> Any: ...
    def close(self) -> None: ...


# Errors that mean "no Redis answers there" (a wrong password is a ConnectionError too).
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, RedisClusterException)
_POLL_FIRST_S = 0.002
_POLL_MAX_S = 0.05
_SUBSCRIBED_RECHECK_S = 1.0


@functools.cache
def _script_source(name: str) -> str:
    lua = resources.files("dramatiq_encore.state").joinpath("lua")
    # Generated from models.ACTIVE so the statuses are defined once, in Python.
    active = "local ACTIVE = {" + ", ".join(f"[{s!r}] = true" for s in ACTIVE) + "}\n"
    common = lua.joinpath("common.lua").read_text("utf-8")
    return active + common + lua.joinpath(f"{name}.lua").read_text("utf-8")


def _text(value: Any) -> Any:
    # from_url clients decode replies; a client handed to __init__ may not.
    return value.decode() if isinstance(value, bytes) else value


def _payload(trigger: Trigger) -> str:
    """What deliver.lua appends for a trigger: a timer's outcome or a signal's/cancel's entry."""
    if trigger.outcome is not None:
        return trigger.outcome.model_dump_json()
    return trigger.entry or ""


def _unreachable(where: str, secret: str | None, exc: BaseException) -> ConfigurationError:
    detail = f"{type(exc).__name__}: {exc}"
    if secret:
        detail = detail.replace(secret, "***")
    return ConfigurationError(
        f"cannot reach the Redis state store at {where} ({detail}). "
        "Check ENCORE_STATE_URL (scheme, host, port, password) and that Redis is running."
    )


def _cluster_enabled(probe: RedisClient) -> bool:
    try:
        info = probe.info("cluster")
    except redis.ResponseError:  # INFO refused by an ACL: assume a standalone server
        return False
    return int(info.get("cluster_enabled", 0)) == 1


def _connect(url: str, cluster: bool | None) -> RedisClient:
    if cluster is None:
        probe: RedisClient = redis.Redis.from_url(url, decode_responses=True)
        if not _cluster_enabled(probe):
            return probe
        probe.close()
        cluster = True
    if cluster:
        # The types-redis stub of RedisCluster lacks register_script; redis-py has it.
        return cast(RedisClient, RedisCluster.from_url(url, decode_responses=True))
    return redis.Redis.from_url(url, decode_responses=True)


def _where(client: RedisClient) -> str:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not kwargs:
        return "Redis (client given)"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class RedisState(StateBackend):
    """State in Redis, standalone or Cluster: shared by every worker, survives restarts.

    >>> state = RedisState.from_url("redis://:secret@localhost:6379/0", prefix="orders")
    >>> app = Encore(broker=broker, state=state)

    All keys of one root workflow share a hash tag (see :mod:`dramatiq_encore.state.keys`),
    so every script runs on one Cluster slot. When a root workflow finishes, all of its
    tree's keys expire after ``retention`` seconds. ``lease_ms`` is the replay lease; a
    worker renews it while a pass runs. An existing redis-py client may be handed to the
    constructor instead; ``url_for_errors`` then names it (password removed) in messages.
    """

    # A restart or failover: the runtime re-sends the message later. A script is atomic, so
    # one that did run before its reply was lost shows up as a duplicate trigger, which the
    # runtime repairs.
    transient_errors = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError, ReadOnlyError)

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "encore",
        retention: int = DEFAULT_RETENTION_S,
        lease_ms: int | None = None,
        url_for_errors: str = "",
    ) -> None:
        # Public for admin and test code (cleanup, inspection): the redis-py client itself,
        # not the narrow protocol this backend needs.
        self.client: Any = client
        self.keys = Keys(prefix)
        self.retention_s = retention
        if lease_ms is not None:
            self.lease_ms = lease_ms
        self._where = redact(url_for_errors) if url_for_errors else _where(client)
        # Kept only to scrub it from driver messages; never logged or shown.
        self._secret = urlsplit(url_for_errors).password if url_for_errors else None
        self._reached = False
        self._deliver = self._register("deliver")
        self._acquire = self._register("acquire")
        self._load = self._register("load")
        self._commit = self._register("commit")
        self._release = self._register("release")
        self._renew = self._register("renew")
        self._is_waiting_on = self._register("is_waiting_on")
        self._needs_result = self._register("needs_result")

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
    ) -> RedisState:
        """Connect to ``redis://`` or ``rediss://`` (password in the URL is fine).

        ``cluster=None`` asks the server (``INFO cluster``) whether it is a Redis Cluster
        node; ``True`` or ``False`` skips the question. ``wait`` is how long to keep trying
        while nobody answers (a worker started during a Redis restart), logging each try;
        ``Encore()`` waits ``ENCORE_STATE_WAIT`` seconds (10 by default).
        """
        deadline = time.monotonic() + wait
        pause = 0.2
        while True:
            try:
                client = _connect(url, cluster)
                break
            except _UNREACHABLE as exc:
                if time.monotonic() + pause > deadline:
                    raise _unreachable(redact(url), urlsplit(url).password, exc) from None
                logger.warning("Redis at %s does not answer (%s); trying again", redact(url), type(exc).__name__)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
            except ValueError as exc:  # redis-py's message on a bad URL never repeats the URL
                raise ConfigurationError(f"invalid Redis URL {redact(url)}: {exc}. Check ENCORE_STATE_URL.") from None
        state = cls(client, prefix=prefix, retention=retention, lease_ms=lease_ms, url_for_errors=url)
        # Probing (cluster=None) or discovering the cluster's nodes already reached Redis:
        # a later outage is transient, not a configuration error.
        state._reached = cluster is not False
        return state

    def _register(self, name: str) -> Script:
        script: Script = self.client.register_script(_script_source(name))
        return script

    def _do(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run one command; turn "nobody answers" on the very first one into a clear error."""
        if self._reached:
            return fn(*args)
        try:
            result = fn(*args)
        except _UNREACHABLE as exc:
            raise _unreachable(self._where, self._secret, exc) from None
        self._reached = True
        return result

    def _token(self) -> str:
        return secrets.token_hex(16)

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
        return self._delivery(self._do(self._deliver, keys, args), record)

    def deliver_soon(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord | None,
        load_from: int | None = None,
        run: int = 0,
    ) -> Callable[[], Delivery]:
        keys, args = self._deliver_call(invocation_id, trigger, record, load_from, run)
        reply = self._soon(self._deliver, keys, args)
        return lambda: self._delivery(reply(), record)

    def _deliver_call(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord | None,
        load_from: int | None,
        run: int,
    ) -> tuple[list[str], list[Any]]:
        k = self.keys.invocation(invocation_id)
        child = k.meta if trigger.child is None else self.keys.meta(trigger.child)
        keys = [k.meta, k.journal, k.triggers, k.resolved, k.waiting, k.lock, k.registry, child]
        args = [
            trigger.kind,
            trigger.key,
            "" if record is None else record.model_dump_json(),
            "" if record is None else record.digest,
            "1" if record is not None and record.parent is None else "0",
            "" if trigger.step is None else trigger.step,
            self._token(),
            self.lease_ms,
            "" if load_from is None else load_from,
            _payload(trigger),
            trigger.name or "",
            run,
        ]
        return keys, args

    @staticmethod
    def _delivery(reply: Any, record: InvocationRecord | None) -> Delivery:
        exists, duplicate, status, token, locked, conflict, *loaded = reply
        delivery = Delivery(
            exists=bool(exists),
            duplicate=bool(duplicate),
            status=_text(status),
            token=_text(token) or None,
            locked=bool(locked),
            conflict=bool(conflict),
        )
        if not loaded:
            return delivery
        start, rec, entries = loaded
        return dataclasses.replace(
            delivery,
            # An empty record from 0 means the delivery created it from the caller's own.
            record=InvocationRecord.model_validate_json(rec) if rec else (record if int(start) == 0 else None),
            entries=tuple(_text(entry) for entry in entries),
            loaded_from=int(start),
        )

    def finish_first_pass(
        self, invocation_id: str, trigger: Trigger, record: InvocationRecord, commit: Commit
    ) -> tuple[Delivery, CommitResult | None]:
        if getattr(self.client, "connection_pool", None) is None or not self._reached:
            return super().finish_first_pass(invocation_id, trigger, record, commit)  # Cluster: two calls
        keys, args = self._deliver_call(invocation_id, trigger, record, 0, 0)
        token = str(args[6])
        commit_keys, commit_args = self._commit_call(invocation_id, token, dataclasses.replace(commit, empty_only=True))
        # One round trip: the commit runs right after the delivery and applies only if the
        # delivery granted this token the lease on the empty state (its own check).
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", self._deliver.sha, len(keys), *keys, *args)  # type: ignore[attr-defined]
        pipe.execute_command("EVALSHA", self._commit.sha, len(commit_keys), *commit_keys, *commit_args)  # type: ignore[attr-defined]
        delivered, committed = self._do(pipe.execute, False)
        if isinstance(delivered, redis.exceptions.NoScriptError):  # a restarted server: load them
            return super().finish_first_pass(invocation_id, trigger, record, commit)
        if isinstance(delivered, Exception):
            raise delivered
        delivery = self._delivery(delivered, record)
        if isinstance(committed, Exception):
            raise committed
        ok, rerun, *at = committed
        if not ok:
            return delivery, None
        return delivery, CommitResult(ok=True, rerun=bool(rerun), appended_at=int(at[0]) if at else None)

    def _soon(self, script: Script, keys: list[str], args: list[Any]) -> Callable[[], Any]:
        """Send one script call now; the returned function reads its reply.

        redis-py has no split send and receive for a single command outside a pipeline (whose
        execute() does both), so this takes a pooled connection itself: the script runs on
        the server while the caller does other work. On Redis Cluster (no single pool), and
        before the first command reached the server, the call is made at once.
        """
        pool = getattr(self.client, "connection_pool", None)
        if pool is None or not self._reached:
            reply = self._do(script, keys, args)
            return lambda: reply
        connection = pool.get_connection()
        try:
            connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[attr-defined]
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise

        def read() -> Any:
            try:
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                return self._do(script, keys, args)  # a restarted server: load the script and run it
            except BaseException:
                connection.disconnect()  # its reply may still be on the way: never reuse it
                raise
            finally:
                pool.release(connection)

        return read

    def acquire(self, invocation_id: str) -> str | None:
        k = self.keys.invocation(invocation_id)
        token = self._do(self._acquire, [k.meta, k.waiting, k.lock], [self._token(), self.lease_ms])
        return None if token is None else str(_text(token))

    def load(self, invocation_id: str, start: int) -> tuple[InvocationMeta | None, list[str]]:
        k = self.keys.invocation(invocation_id)
        reply = self._do(self._load, [k.meta, k.journal], [start])
        if reply is None:
            return None, []
        record, status, outcome, entries = reply
        return self._meta(record, status, outcome), [_text(entry) for entry in entries]

    def commit(self, invocation_id: str, token: str, commit: Commit) -> CommitResult:
        keys, args = self._commit_call(invocation_id, token, commit)
        ok, rerun, *at = self._do(self._commit, keys, args)
        return CommitResult(ok=bool(ok), rerun=bool(rerun), appended_at=int(at[0]) if at else None)

    def _commit_call(self, invocation_id: str, token: str, commit: Commit) -> tuple[list[str], list[Any]]:
        k = self.keys.invocation(invocation_id)
        keys = [k.meta, k.journal, k.resolved, k.waiting, k.lock, k.registry]
        args: list[Any] = [
            token,
            self.lease_ms,
            commit.status,
            "" if commit.outcome is None else commit.outcome.model_dump_json(),
            "1" if commit.status in FINISHED else "0",
            self.retention_s,
            "1" if commit.wake_any else "0",
            "" if commit.seen is None else commit.seen,
            "" if commit.reset is None else commit.reset.model_dump_json(),
            0 if commit.reset is None else commit.reset.run,
            "1" if commit.empty_only else "",
            len(commit.entries),
            *commit.entries,
            len(commit.waiting),
            *commit.waiting,
            len(commit.signals),
            *commit.signals,
            len(commit.claims),
            *commit.claims,
        ]
        for workflow_id, values in commit.data.items():
            keys.append(self.keys.data(workflow_id))
            args.append(len(values))
            for field, value in values.items():
                args += (field, value)
        return keys, args

    def release(self, invocation_id: str, token: str) -> None:
        self._do(self._release, [self.keys.invocation(invocation_id).lock], [token])

    def renew(self, invocation_id: str, token: str) -> bool:
        lock = self.keys.invocation(invocation_id).lock
        return bool(self._do(self._renew, [lock], [token, self.lease_ms]))

    # -- reads --------------------------------------------------------------------------
    @staticmethod
    def _meta(record: Any, status: Any, outcome: Any) -> InvocationMeta:
        return InvocationMeta(
            record=InvocationRecord.model_validate_json(record),
            status=_text(status),
            outcome=Outcome.model_validate_json(outcome) if outcome else None,
        )

    def get_meta(self, invocation_id: str) -> InvocationMeta | None:
        fields = [META_RECORD, META_STATUS, META_OUTCOME]
        record, status, outcome = self._do(self.client.hmget, self.keys.meta(invocation_id), fields)
        return None if record is None else self._meta(record, status, outcome)

    def read_data(self, workflow_id: str, key: str) -> tuple[bool, str | None]:
        value = self._do(self.client.hget, self.keys.data(workflow_id), key)
        return (value is not None, _text(value))

    def workflow_data(self, workflow_id: str) -> dict[str, str]:
        values = self._do(self.client.hgetall, self.keys.data(workflow_id))
        return {_text(key): _text(value) for key, value in values.items()}

    def is_waiting_on(self, invocation_id: str, step: int) -> bool:
        k = self.keys.invocation(invocation_id)
        return bool(self._do(self._is_waiting_on, [k.meta, k.resolved], [step]))

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
        """Wait for a root workflow by subscribing to its meta key's name, on which commit.lua
        publishes its end; wait for anything else (or on Redis Cluster) by polling its status.

        The subscription exists before the status is read, so an end cannot slip between
        them; the status is read again at least every second all the same.
        """
        pool = getattr(self.client, "connection_pool", None)
        if pool is None or "/" in invocation_id:  # Cluster, or a child: poll
            return self._poll_finished(invocation_id, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.keys.meta(invocation_id))
            return self._await_finished(
                invocation_id,
                deadline,
                itertools.repeat(_SUBSCRIBED_RECHECK_S),
                lambda pause: pubsub.get_message(timeout=pause),
            )
        except self.transient_errors:  # the subscription's connection went away: poll instead
            return self._poll_finished(invocation_id, None if deadline is None else deadline - time.monotonic())
        finally:
            pubsub.close()

    def _poll_finished(self, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
        # Polls the status only (the record may be large); backs off from 2 ms to 50 ms.
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = itertools.chain((_POLL_FIRST_S * 2**n for n in range(5)), itertools.repeat(_POLL_MAX_S))
        return self._await_finished(invocation_id, deadline, (min(p, _POLL_MAX_S) for p in backoff), time.sleep)

    def _await_finished(
        self, invocation_id: str, deadline: float | None, pauses: Iterator[float], pause_for: Callable[[float], Any]
    ) -> InvocationMeta | None:
        """Read the status until it is finished or the deadline passed, pausing in between."""
        meta_key = self.keys.meta(invocation_id)
        for pause in pauses:
            status = _text(self._do(self.client.hget, meta_key, META_STATUS))
            if status in FINISHED:
                return self.get_meta(invocation_id)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None if status is None else self.get_meta(invocation_id)
                pause = min(pause, remaining)
            pause_for(pause)
        raise AssertionError("unreachable: the pauses never end")

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        return self._where
