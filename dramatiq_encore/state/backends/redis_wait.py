"""Waiting for an invocation to finish on Redis, for :meth:`RedisState.wait_finished`.

A root workflow is awaited by subscribing to its meta key's name, on which ``commit.lua``
publishes its end (and ``deliver.lua`` its loss); anything else, or anything on Redis
Cluster, by polling its status. The subscription exists before the status is read, so an
end cannot slip between them; the status is read again at least every second all the same.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ...errors import StateLost
from ..models import FINISHED, InvocationMeta
from .redis_client import TRANSIENT

if TYPE_CHECKING:
    from .redis import RedisState

POLL_FIRST_S = 0.002
POLL_MAX_S = 0.05
SUBSCRIBED_RECHECK_S = 1.0


def wait_finished(state: RedisState, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
    pool = getattr(state.client, "connection_pool", None)
    if pool is None or "/" in invocation_id:  # Cluster, or a child: poll
        return _poll(state, invocation_id, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        pubsub = state.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(state.keys.meta(invocation_id))
    except TRANSIENT:  # poll instead: that tells an outage apart from a slow workflow
        return _poll(state, invocation_id, timeout)
    try:
        pauses = itertools.repeat(SUBSCRIBED_RECHECK_S)
        return _await(state, invocation_id, deadline, pauses, lambda pause: pubsub.get_message(timeout=pause))
    except TRANSIENT:  # the subscription's connection went away: poll instead
        return _poll(state, invocation_id, None if deadline is None else deadline - time.monotonic())
    finally:
        pubsub.close()


def _poll(state: RedisState, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
    # Polls the status only (the record may be large); backs off from 2 ms to 50 ms.
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = itertools.chain((POLL_FIRST_S * 2**n for n in range(5)), itertools.repeat(POLL_MAX_S))
    return _await(state, invocation_id, deadline, (min(p, POLL_MAX_S) for p in backoff), time.sleep)


def _await(
    state: RedisState,
    invocation_id: str,
    deadline: float | None,
    pauses: Iterator[float],
    pause_for: Callable[[float], Any],
) -> InvocationMeta | None:
    """Read the status until it is finished or the deadline passed, pausing in between."""
    for pause in pauses:
        status, lost = state.status(invocation_id)
        if status in FINISHED:
            return state.get_meta(invocation_id)
        if status is None and lost is not None:
            raise StateLost(invocation_id, state.describe(), lost)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None if status is None else state.get_meta(invocation_id)
            pause = min(pause, remaining)
        pause_for(pause)
    raise AssertionError("unreachable: the pauses never end")
