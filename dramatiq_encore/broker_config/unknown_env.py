"""A warning for each ``ENCORE_*`` variable that names no setting.

pydantic-settings ignores variables it does not know (``extra="ignore"``: the environment
is shared with other programs), so a misspelt ``ENCORE_BROKR_URL`` would leave a process
embedded without a word. :func:`warn_unknown_variables` names each such variable once per
process, with the closest known name (``difflib``), when the settings are loaded.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import Collection, Iterable, Mapping

logger = logging.getLogger("dramatiq_encore.settings")

PREFIX = "ENCORE_"

#: ``ENCORE_*`` variables read outside :class:`EncoreSettings`: ``ENCORE_WORKER_CLI`` is set
#: by ``encore worker`` for its workers; the others are read by the test suite (``tests/``).
OTHER_VARIABLES = frozenset(
    {
        "ENCORE_WORKER_CLI",
        "ENCORE_SCREENSHOTS",
        "ENCORE_TEST_AMQP_URL",
        "ENCORE_TEST_REDIS_URL",
        "ENCORE_TEST_QUEUE",
        "ENCORE_TEST_SPANS_DIR",
        "ENCORE_TEST_CODE_VERSION",
    }
)

#: What ignoring a misspelt URL means while the real variable is unset.
_CONSEQUENCES = {
    "ENCORE_BROKER_URL": "so this process runs embedded unless its app is given a broker",
    "ENCORE_STATE_URL": "so this process keeps its state in memory unless its app is given a state store",
}

_warned: set[str] = set()
_lock = threading.Lock()


def known_variables(fields: Iterable[str]) -> frozenset[str]:
    """The variable of each settings field, and the other variables the project reads."""
    return frozenset(PREFIX + field.upper() for field in fields) | OTHER_VARIABLES


def unknown_variable_messages(environ: Mapping[str, str], known: Collection[str]) -> list[str]:
    """One message per ``ENCORE_*`` name in ``environ`` that is not in ``known`` (case-insensitive)."""
    return list(_unknown(environ, known).values())


def _unknown(environ: Mapping[str, str], known: Collection[str]) -> dict[str, str]:
    """Each unknown ``ENCORE_*`` name in ``environ`` -> the message that names it."""
    messages = {}
    # Compared without the prefix every name shares, which would make any two look alike.
    suffixes = sorted(known_name.removeprefix(PREFIX) for known_name in known)
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper.removeprefix(PREFIX), suffixes, n=1)
        if not close:
            messages[name] = f"{name} is not a dramatiq-encore setting (it is ignored)"
            continue
        match = PREFIX + close[0]
        unset = not any(key.upper() == match for key in environ)
        why = f"it is ignored, {_CONSEQUENCES[match]}" if unset and match in _CONSEQUENCES else "it is ignored"
        messages[name] = f"{name} is not a dramatiq-encore setting; did you mean {match}? ({why})"
    return messages


def warn_unknown_variables(fields: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Log a warning for each unknown ``ENCORE_*`` variable not warned about yet in this process."""
    found = _unknown(os.environ if environ is None else environ, known_variables(fields))
    with _lock:
        fresh = [message for name, message in found.items() if name not in _warned]
        _warned.update(found)
    for message in fresh:
        logger.warning(message)
    return fresh
