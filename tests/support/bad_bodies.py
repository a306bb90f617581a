"""Message bodies that are not valid dramatiq messages for their queue, as a careless or hostile
producer publishes them: each must be dead-lettered at once, and the worker must keep serving."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def body(queue: str, actor: str, **fields: Any) -> dict[str, Any]:
    """A valid 7-key body for ``actor`` on ``queue``, with ``fields`` replaced."""
    base: dict[str, Any] = {
        "queue_name": queue,
        "actor_name": actor,
        "args": ["x"],
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    base.update(fields)
    return base


def _dump(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def _raw(queue: str, actor: str, replace: str, by: str) -> bytes:
    text = json.dumps(body(queue, actor, args=["PLACEHOLDER"]))
    return text.replace('"PLACEHOLDER"', by if replace == "args" else '"x"').encode()


def bad_bodies(queue: str, actor: str, max_payload: int = 1024 * 1024) -> dict[str, tuple[bytes, str]]:
    """Case name -> (body, a fragment of the reason logged for it).

    The encoder refuses them all but the last four (see :data:`PAST_THE_ENCODER`), and the
    two ``queue_name`` cases only in a consumer thread (it checks the queue being consumed).
    """
    missing = body(queue, actor)
    del missing["kwargs"]
    extra = body(queue, actor)
    extra["priority"] = 3
    return {
        "not json": (b"{this is not json", "not JSON"),
        "invalid utf-8": (b'{"queue_name": "\xff\xfe"}', "not JSON"),
        "missing keys": (_dump(missing), "kwargs: Field required"),
        "an unknown key": (_dump(extra), "priority: Extra inputs are not permitted"),
        "options null": (_dump(body(queue, actor, options=None)), "options: Input should be a valid dictionary"),
        "options a string": (_dump(body(queue, actor, options="abc")), "options: Input should be a valid dictionary"),
        "actor_name a list": (
            _dump(body(queue, actor, actor_name=[actor])),
            "actor_name: Input should be a valid string",
        ),
        "kwargs a list": (_dump(body(queue, actor, kwargs=["x"])), "kwargs: Input should be a valid dictionary"),
        "args an object": (_dump(body(queue, actor, args={"a": 1})), "args"),
        "message_timestamp a string": (
            _dump(body(queue, actor, message_timestamp="1764000000000")),
            "message_timestamp: Input should be a valid integer",
        ),
        "message_id a number": (_dump(body(queue, actor, message_id=12)), "message_id: Input should be a valid string"),
        "queue_name elsewhere": (_dump(body(queue, actor, queue_name="elsewhere")), "is not the queue"),
        "queue_name of the delay queue": (_dump(body(queue, actor, queue_name=f"{queue}.DQ")), "is not the queue"),
        "nesting depth 900": (_raw(queue, actor, "args", "[" * 900 + "]" * 900), "recursion limit"),
        "a lone surrogate": (_raw(queue, actor, "args", '"\\ud800"'), "not JSON"),
        "NaN": (_raw(queue, actor, "args", "NaN"), "NaN"),
        "Infinity": (_raw(queue, actor, "args", "-Infinity"), "NaN"),
        "options.throws": (_dump(body(queue, actor, options={"throws": ["ValueError"]})), "throws cannot be set"),
        "options.retry_when": (_dump(body(queue, actor, options={"retry_when": "x"})), "retry_when cannot be set"),
        "options.retries a string": (_dump(body(queue, actor, options={"retries": "x"})), "options.retries"),
        "options.eta a string": (_dump(body(queue, actor, options={"eta": "soon"})), "options.eta"),
        "options.max_retries negative": (_dump(body(queue, actor, options={"max_retries": -1})), "options.max_retries"),
        # Well-formed dramatiq messages that dramatiq or the engine dead-letters:
        "an unknown actor": (_dump(body(queue, "no_such_task")), "no_such_task"),
        "an invalid envelope": (
            _dump(body(queue, actor, options={"encore": {"kind": "result", "step": "x"}})),
            "invalid encore envelope",
        ),
        "a reserved workflow id": (_dump(body(queue, actor, options={"workflow_id": "a/b"})), "reserved"),
        "arguments over the payload limit": (
            _dump(body(queue, actor, args=["x" * (max_payload + 10)])),
            "payload limit",
        ),
    }


#: The cases the encoder lets through: dramatiq (unknown actor) or the engine refuses them.
PAST_THE_ENCODER = (
    "an unknown actor",
    "an invalid envelope",
    "a reserved workflow id",
    "arguments over the payload limit",
)
