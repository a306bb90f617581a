"""Arguments and results (de)serialised with pydantic from a task's type hints.

Messages carry JSON only. On the way out each argument is dumped in JSON mode through a
``TypeAdapter`` of its parameter's annotation; on the way in it is validated back, so a
pydantic model, a ``datetime`` or nested containers round-trip.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import EncoreError, PayloadTooLarge


class ArgumentError(EncoreError):
    """Arguments that do not fit the task's signature or type hints."""

    error_type = "ValidationError"


class ResultError(EncoreError):
    """A result that cannot be serialised to JSON."""

    error_type = "ResultSerializationError"


def digest(args: list[Any], kwargs: dict[str, Any]) -> str:
    """Short stable digest of serialised arguments (the non-determinism check compares it)."""
    text = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class InvalidJSON(EncoreError):
    """A value JSON cannot carry: NaN or Infinity (refused rather than turned into ``null``)."""

    error_type = "InvalidJSON"


def _json_text(what: str, value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        raise InvalidJSON(
            f"{what} contains NaN or Infinity, which JSON cannot carry; send None or a string instead"
        ) from None


def check_size(what: str, value: Any, limit: int) -> None:
    """Refuse JSON payloads over ``limit`` bytes, naming the limit, and NaN or Infinity."""
    size = len(_json_text(what, value))
    if size > limit:
        raise PayloadTooLarge(what, size, limit)


def to_json_value(value: Any, what: str) -> Any:
    """Any value to its JSON-compatible form, or a clear error naming ``what``."""
    try:
        converted = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise ResultError(f"{what} is not JSON-serialisable ({exc}); return plain data or a pydantic model") from None
    _json_text(what, converted)
    return converted


_PLAIN = frozenset((str, int, float, bool, type(None)))
_PLAIN_HINTS = frozenset((Any, str, int, float, bool, type(None), inspect.Parameter.empty))

# NaN and Infinity kept as floats (pydantic's JSON mode makes them null by default), so that
# check_size refuses them instead of a null arriving where a number was sent.
_KEEP_NAN = ConfigDict(ser_json_inf_nan="constants")


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(annotation, config=_KEEP_NAN)
    except PydanticUserError:  # a model or dataclass with a config of its own: its choice holds
        return TypeAdapter(annotation)


class TaskCodec:
    """Per-task converter between Python values and message JSON."""

    def __init__(self, fn: Callable[..., Any], task_name: str) -> None:
        self.task_name = task_name
        self._fn = fn
        self.signature = inspect.signature(fn)

    @functools.cached_property
    def _hints(self) -> dict[str, Any]:
        # Resolved lazily: a module may define the types it annotates with after the task.
        try:
            return typing.get_type_hints(self._fn)
        except Exception:  # unresolvable forward references: fall back to no validation
            return {}

    def _param_adapter(self, name: str) -> TypeAdapter[Any]:
        return _adapter(self._hints.get(name, Any))

    def _bind(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"arguments do not fit task {self.task_name!r}{self.signature}: {exc}") from None

    @functools.cached_property
    def _positional(self) -> list[tuple[str, TypeAdapter[Any]]] | None:
        """The parameters and their adapters when every one is a plain positional-or-keyword
        parameter (the common case, replayed at every step): then a call with exactly that
        many positional arguments needs no ``Signature.bind``."""
        params = list(self.signature.parameters.values())
        if any(param.kind is not param.POSITIONAL_OR_KEYWORD for param in params):
            return None
        return [(param.name, self._param_adapter(param.name)) for param in params]

    def _convert(
        self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], load: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        positional = self._positional
        if positional is not None and not kwargs and len(args) == len(positional):
            return [
                self._one(adapter, name, value, load) for (name, adapter), value in zip(positional, args, strict=True)
            ], {}
        bound = self._bind(args, kwargs)
        out_args: list[Any] = []
        out_kwargs: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            param = self.signature.parameters[name]
            adapter = self._param_adapter(name)
            if param.kind is param.VAR_POSITIONAL:
                out_args.extend(self._one(adapter, name, v, load) for v in value)
            elif param.kind is param.VAR_KEYWORD:
                out_kwargs.update({k: self._one(adapter, k, v, load) for k, v in value.items()})
            elif param.kind is param.KEYWORD_ONLY or name in kwargs:
                out_kwargs[name] = self._one(adapter, name, value, load)
            else:
                out_args.append(self._one(adapter, name, value, load))
        return out_args, out_kwargs

    def _one(self, adapter: TypeAdapter[Any], name: str, value: Any, load: bool) -> Any:
        try:
            return adapter.validate_python(value) if load else adapter.dump_python(value, mode="json")
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
            raise ArgumentError(f"task {self.task_name!r} got an invalid value for {name!r}: {detail}") from None
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise ArgumentError(
                f"task {self.task_name!r}: argument {name!r} is not JSON-serialisable ({exc})"
            ) from None

    @functools.cached_property
    def _plain_params(self) -> int | None:
        """How many positional parameters there are when each takes a plain JSON value (str,
        int, float, bool, None) as it is: dumping such a value changes nothing."""
        positional = self._positional
        if positional is None or not all(self._hints.get(name, Any) in _PLAIN_HINTS for name, _ in positional):
            return None
        return len(positional)

    @functools.cached_property
    def _plain_result(self) -> bool:
        return self._hints.get("return", Any) in _PLAIN_HINTS

    def same_plain_args(self, args: tuple[Any, ...], recorded: list[Any]) -> bool:
        """True when ``args`` are plain JSON values equal, type for type, to the ``recorded``
        (dumped) ones: then they dump to them, and their digest is the recorded one (a replay
        skips dumping and digesting). False means "not known": compare the digests."""
        count = len(args)
        if self._plain_params != count or len(recorded) != count:
            return False
        for index in range(count):  # indexing beats zip() here: this runs at every replayed step
            value, was = args[index], recorded[index]
            kind = type(value)
            if kind is not type(was) or kind not in _PLAIN or value != was:
                return False
        return True

    def plain_result(self, value: Any) -> bool:
        """A recorded result that loads as it is (an immutable plain value): no copy, no validation."""
        return type(value) in _PLAIN and self._plain_result

    def dump_args(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Python arguments -> JSON-compatible args and kwargs for a message."""
        return self._convert(args, kwargs, load=False)

    def load_args(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Message args and kwargs -> validated Python values for the function."""
        return self._convert(args, kwargs, load=True)

    def dump_result(self, value: Any) -> Any:
        try:
            return _adapter(self._hints.get("return", Any)).dump_python(value, mode="json")
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise ResultError(
                f"task {self.task_name!r} returned a value that cannot be serialised to JSON ({exc}); "
                "return plain data, a datetime or a pydantic model"
            ) from None

    def load_result(self, value: Any) -> Any:
        try:
            return _adapter(self._hints.get("return", Any)).validate_python(value)
        except ValidationError:
            return value
