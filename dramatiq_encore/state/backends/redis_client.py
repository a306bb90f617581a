"""Connecting to Redis for :class:`~.redis.RedisState`: clients, scripts, errors, durability.

Everything here is about the server rather than the state: finding out whether a URL names
a Redis Cluster node, loading the Lua scripts, turning "nobody answers" into an error that
names the store without its password, and warning once when the server can lose state.
"""

from __future__ import annotations

import functools
import logging
import threading
from importlib import resources
from typing import Any, Protocol, cast

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import ClusterDownError, ReadOnlyError, RedisClusterException, TryAgainError

from ...errors import ConfigurationError, StateUnavailable
from ..backend import DUE_SLACK_S
from ..models import ACTIVE

logger = logging.getLogger(__name__)


class RedisClient(Protocol):
    """What the backend uses of a client: ``redis.Redis`` and ``redis.cluster.RedisCluster`` fit.

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


#: Errors that mean "no Redis answers there" (a wrong password is a ConnectionError too).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, RedisClusterException)
#: A restart or failover: the call may succeed later.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError, ReadOnlyError)


@functools.cache
def script_source(name: str) -> str:
    lua = resources.files("dramatiq_encore.state").joinpath("lua")
    # Generated from Python so each constant is defined once.
    constants = (
        "local ACTIVE = {" + ", ".join(f"[{s!r}] = true" for s in ACTIVE) + f"}}\nlocal DUE_SLACK_S = {DUE_SLACK_S!r}\n"
    )
    common = lua.joinpath("common.lua").read_text("utf-8")
    return constants + common + lua.joinpath(f"{name}.lua").read_text("utf-8")


def text(value: Any) -> Any:
    # from_url clients decode replies; a client handed to RedisState may not.
    return value.decode() if isinstance(value, bytes) else value


def _detail(exc: BaseException, secret: str | None) -> str:
    detail = f"{type(exc).__name__}: {exc}"
    return detail.replace(secret, "***") if secret else detail


def unreachable_at_start(where: str, secret: str | None, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(
        f"cannot reach the Redis state store at {where} ({_detail(exc, secret)}). "
        "Check ENCORE_STATE_URL (scheme, host, port, password) and that Redis is running."
    )


def unavailable(where: str, secret: str | None, exc: BaseException) -> StateUnavailable:
    return StateUnavailable(
        f"the Redis state store at {where} did not answer ({_detail(exc, secret)}); "
        "check that Redis is running and reachable, then try again"
    )


def _cluster_enabled(probe: RedisClient) -> bool:
    try:
        info = probe.info("cluster")
    except redis.ResponseError:  # INFO refused by an ACL: assume a standalone server
        return False
    return int(info.get("cluster_enabled", 0)) == 1


def connect(url: str, cluster: bool | None) -> RedisClient:
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


def where(client: RedisClient) -> str:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not kwargs:
        return "Redis (client given)"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


_checked: set[str] = set()
_checked_lock = threading.Lock()


def _config(client: Any) -> dict[str, str]:
    """``appendonly``, ``save`` and ``maxmemory-policy`` (a cluster answers for its default node)."""
    names = ("appendonly", "save", "maxmemory-policy")
    try:
        reply = client.config_get(*names)
    except redis.ResponseError:  # Redis before 7 takes one pattern per call
        reply = {k: v for name in names for k, v in client.config_get(name).items()}
    return {str(k): str(v) for k, v in reply.items()}


def durability_risks(config: dict[str, str]) -> list[str]:
    """What in a server's configuration can lose workflow state (empty: nothing)."""
    risks = []
    if config.get("appendonly", "yes") == "no" and not config.get("save", "x").strip():
        risks.append('it keeps nothing on disk (appendonly no, save ""): a restart loses every workflow in flight')
    elif config.get("appendonly", "yes") == "no":
        risks.append(f"it only snapshots (save {config.get('save')!r}): a crash loses the writes since the last one")
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        risks.append(f"maxmemory-policy {policy} may evict workflow keys when memory runs out")
    return risks


def warn_if_state_can_be_lost(client: Any, where: str) -> None:
    """Log one warning per process and server when its configuration can lose state.

    ``CONFIG GET`` may be refused (ACLs, managed services rename it): then nothing is said.
    A server that does not answer yet is asked again by the next client made for it.
    """
    with _checked_lock:
        if where in _checked:
            return
    try:
        risks = durability_risks(_config(client))
    except UNREACHABLE:
        return
    except (redis.ResponseError, AttributeError, TypeError) as exc:
        logger.debug("could not read the configuration of the Redis state store at %s: %s", where, exc)
        risks = []
    with _checked_lock:
        if where in _checked:
            return
        _checked.add(where)
    if risks:
        logger.warning(
            "the Redis state store at %s can lose workflow state: %s. Run it with appendonly yes, "
            "appendfsync everysec and maxmemory-policy noeviction (see the README's Redis settings).",
            where,
            "; ".join(risks),
        )
