"""Messages a worker cannot run because it does not declare their task.

dramatiq fails such a message with ``ActorNotFound`` and dead-letters it, and the workflow it
was for would stay ``pending`` or ``queued`` with nothing that says why. The encore
middleware (:class:`~dramatiq_encore.broker_config.middleware.EncoreMiddleware`) calls
:func:`record_stray` first: the store keeps a note under the invocation the message was for,
which ``describe`` (``encore show``, the dashboard) and ``encore result`` show.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ..actors.messages import ENVELOPE
from .tree import operations

if TYPE_CHECKING:
    from ..app import Encore

logger = logging.getLogger(__name__)


def invocation_of(message: Any) -> str | None:
    """The invocation a message is for: its envelope's, or a plain start's workflow id."""
    options = getattr(message, "options", None) or {}
    envelope = options.get(ENVELOPE)
    if isinstance(envelope, dict):
        target = envelope.get("invocation_id")
        return target if isinstance(target, str) else None
    workflow_id = options.get("workflow_id") or getattr(message, "message_id", None)
    return workflow_id if isinstance(workflow_id, str) else None


def record_stray(app: Encore, message: Any) -> None:
    """Note, under the invocation ``message`` is for, that this worker lacks its task."""
    invocation_id = invocation_of(message)
    if invocation_id is None:
        return
    queue = getattr(message, "queue_name", "?")
    note = (
        f"a worker on {socket.gethostname()} (pid {os.getpid()}) took a message for task "
        f"{message.actor_name!r} from queue {queue!r} at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC "
        f"but does not declare that task: dramatiq dead-letters it to {queue}.XQ. Deploy the module that "
        f"declares {message.actor_name!r} to every worker that serves queue {queue!r}, then move the message "
        "back from the dead-letter queue (or retry the workflow)"
    )
    try:
        operations(app.state).note(invocation_id, note)
    except Exception:  # best effort: the message is dead-lettered and logged by dramatiq anyway
        logger.warning("could not record that task %r is missing here", message.actor_name, exc_info=True)
