"""Every message body is checked before dramatiq's consumer and worker code touch it.

Dramatiq decodes each body with its global encoder (:func:`dramatiq.set_encoder`) in the
consumer thread, and rejects a message whose decoding raises :class:`~dramatiq.errors.DecodeError`
at once: RabbitMQ then routes it to ``<queue>.XQ``, without retries. That is the one seam
that runs before anything else reads the body, so the checks live here, once:

- the body is JSON as RFC 8259 defines it: UTF-8 without lone surrogates, no ``NaN`` or
  ``Infinity``, nested at most 200 deep (the parser's limit);
- it has the seven keys of a dramatiq message with their types (``args`` a list,
  ``kwargs`` and ``options`` objects, ``message_timestamp`` an integer...) and nothing else;
- the options that dramatiq's own middleware and the engine read have the types they expect,
  and the Python-only ones (``throws``, ``retry_when``) are absent: they cannot come from JSON;
- ``queue_name`` is the queue it was consumed from (dramatiq acks through the consumer of
  the body's queue: another name leaves the message unacked or kills the worker thread).

Without these checks such bodies halt a queue (the consumer crashes on each redelivery) or
kill worker threads. The encoder is process-wide: it checks the messages of a deployment's
own actors too, with rules any dramatiq message already obeys.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Annotated, Any, NotRequired

import dramatiq
from dramatiq.encoder import Encoder, JSONEncoder, MessageData
from dramatiq.errors import DecodeError
from dramatiq.worker import ConsumerThread
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json
from typing_extensions import TypedDict  # pydantic needs it for TypedDict on Python < 3.12

logger = logging.getLogger(__name__)

_Name = Annotated[str, Field(min_length=1, max_length=255)]
_Count = Annotated[int, Field(ge=0)]
#: Options that hold Python objects (exception classes, callables): never in a body.
PYTHON_ONLY_OPTIONS = ("throws", "retry_when")


class _Options(TypedDict, total=False):
    """The options dramatiq's own middleware and the engine read, typed as they use them
    (the engine's names are those of :mod:`dramatiq_encore.actors.messages`); others pass."""

    __pydantic_config__ = ConfigDict(extra="allow", strict=True)  # type: ignore[misc]
    eta: int | float
    retries: _Count
    max_retries: _Count | None
    min_backoff: _Count
    max_backoff: _Count
    time_limit: _Count
    max_age: _Count
    notify_shutdown: bool
    broker_priority: int
    on_success: str
    on_failure: str
    on_retry_exhausted: str
    pipe_ignore: bool
    pipe_target: dict[str, Any] | None
    encore: dict[str, Any]
    workflow_id: str
    encore_nudges: _Count
    encore_fresh: bool
    encore_resent: bool
    encore_trace: Annotated[str, Field(max_length=512)]


def _no_python_options(options: dict[str, Any]) -> dict[str, Any]:
    found = [name for name in PYTHON_ONLY_OPTIONS if name in options]
    if found:
        raise ValueError(f"{', '.join(found)} cannot be set in a message body (a Python object, not JSON)")
    return options


class _Body(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    queue_name: _Name
    actor_name: _Name
    args: list[Any]
    kwargs: dict[str, Any]
    options: Annotated[_Options, AfterValidator(_no_python_options)]
    message_id: NotRequired[_Name]
    message_timestamp: NotRequired[int]


_body = TypeAdapter(_Body)


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


def check_body(data: bytes) -> MessageData:
    """The fields of a valid dramatiq message body, or a ``ValueError`` saying what is wrong."""
    try:
        fields = from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise ValueError(
            f"not JSON ({exc}); NaN, Infinity, invalid UTF-8, lone surrogates and nesting deeper than 200 are refused"
        ) from None
    return check_fields(fields)


def check_fields(fields: Any) -> MessageData:
    """``fields`` when they make a dramatiq message for the queue being consumed, else a ``ValueError``."""
    if isinstance(fields, dict) and isinstance(fields.get("args"), tuple):  # from a deployment's own encoder
        fields = {**fields, "args": list(fields["args"])}
    try:
        checked: MessageData = dict(_body.validate_python(fields))
    except ValidationError as exc:
        raise ValueError(f"not a dramatiq message: {_problems(exc)}") from None
    consumer = threading.current_thread()
    if isinstance(consumer, ConsumerThread) and checked["queue_name"] != consumer.queue_name:
        raise ValueError(
            f"queue_name {checked['queue_name']!r} is not the queue it was published to ({consumer.queue_name!r})"
        )
    return checked


class CheckingEncoder(Encoder):
    """JSON bodies, checked on the way in (see the module docstring).

    ``inner`` is an encoder that was installed before this one (a deployment's own): its
    decoding runs first and the structure of what it returns is checked.
    """

    def __init__(self, inner: Encoder | None = None) -> None:
        self.inner = inner

    def encode(self, data: MessageData) -> bytes:
        if self.inner is not None:
            return self.inner.encode(data)
        # allow_nan=False: a NaN sent would be refused by every receiver.
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def decode(self, data: bytes) -> MessageData:
        try:
            if self.inner is None:
                return check_body(data)
            return check_fields(self.inner.decode(data))
        except (ValueError, DecodeError) as exc:
            logger.error("dead-lettering a message body (%d bytes): %s", len(data), exc)
            raise DecodeError(f"refused message body: {exc}", data, exc) from None  # type: ignore[no-untyped-call]


def install_encoder() -> None:
    """Make dramatiq decode with a :class:`CheckingEncoder` (once per process).

    Dramatiq's default JSON encoder is replaced; an encoder the deployment set itself is
    kept and wrapped, so its format stays what its producers send.
    """
    current = dramatiq.get_encoder()
    if isinstance(current, CheckingEncoder):
        return
    dramatiq.set_encoder(CheckingEncoder(None if type(current) is JSONEncoder else current))
