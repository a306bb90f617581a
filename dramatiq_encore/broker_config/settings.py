"""Settings read from ``ENCORE_*`` environment variables, validated by pydantic-settings."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import ConfigurationError
from ..state.backend import DEFAULT_MAX_SIGNALS, DEFAULT_RETENTION_S
from .unknown_env import warn_unknown_variables

BROKER_SCHEMES = ("amqp", "amqps")
STATE_SCHEMES = ("redis", "rediss")


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages (each of ``;``-separated URLs)."""
    if ";" in url:
        return ";".join(redact(part) for part in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _check_scheme(url: str | None, schemes: tuple[str, ...], variable: str) -> str | None:
    if url is None or url == "":
        return None
    # Several RabbitMQ nodes are separated by ";" (dramatiq's broker tries them in order).
    for part in url.split(";") if variable == "ENCORE_BROKER_URL" else [url]:
        if urlsplit(part).scheme not in schemes:
            raise ValueError(
                f"{variable}={redact(url)!r}: the scheme of each URL must be one of "
                f"{', '.join(s + '://' for s in schemes)}"
            )
    return url


class EncoreSettings(BaseSettings):
    """Configuration; unset URLs mean embedded mode (stub broker, in-memory state)."""

    model_config = SettingsConfigDict(env_prefix="ENCORE_", extra="ignore")

    broker_url: str | None = Field(
        default=None, description="amqp:// or amqps:// URL of RabbitMQ; several nodes separated by ';', tried in order"
    )
    queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description="type of the RabbitMQ queues encore declares (each with its .DQ and .XQ); quorum for a cluster",
    )
    state_url: str | None = Field(default=None, description="redis:// or rediss:// URL of Redis")
    retention: int = Field(default=DEFAULT_RETENTION_S, ge=1, description="seconds finished workflows are kept")
    key_prefix: str = Field(default="encore", pattern=r"^[A-Za-z0-9_.:-]+$", description="prefix of every Redis key")
    max_payload: int = Field(default=1024 * 1024, ge=1024, description="largest arguments or result, in bytes")
    max_pending_signals: int = Field(
        default=DEFAULT_MAX_SIGNALS, ge=1, description="most signals a workflow keeps unconsumed; more are refused"
    )
    fast_path: bool = Field(
        default=True, description="the speculative paths (first passes before delivery, parents resumed in place)"
    )
    cache_size: int = Field(default=1024, ge=0, description="snapshots of recently driven workflows kept per process")
    index_shards: int = Field(
        default=16, ge=1, le=1024, description="Redis hash-tag shards of workflow keys and the workflow index"
    )
    timer_poll: bool = Field(
        default=True,
        description="workers poll the store's timer index for due timers (Redis); 0: a delayed message per timer",
    )
    timer_poll_interval: float = Field(default=0.5, gt=0, le=10, description="seconds between two polls")
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="serve Prometheus metrics here")
    dashboard_token: str | None = Field(default=None, description="bearer token the dashboard's actions require")
    state_wait: float = Field(
        default=10.0, ge=0, description="seconds a starting process waits for an unreachable Redis before failing"
    )

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        return _check_scheme(value, BROKER_SCHEMES, "ENCORE_BROKER_URL")

    @field_validator("state_url")
    @classmethod
    def _state(cls, value: str | None) -> str | None:
        return _check_scheme(value, STATE_SCHEMES, "ENCORE_STATE_URL")


def load_settings() -> EncoreSettings:
    """Settings from the environment, or a ConfigurationError naming the bad variable.

    An ``ENCORE_*`` variable that names no setting is logged once (with the closest name).
    """
    warn_unknown_variables(EncoreSettings.model_fields)
    try:
        return EncoreSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ENCORE_{str(err['loc'][0]).upper()}: {err['msg']}" if err["loc"] else err["msg"] for err in exc.errors()
        )
        raise ConfigurationError(f"invalid encore configuration: {problems}") from None
