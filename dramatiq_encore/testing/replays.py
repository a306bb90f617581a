"""`assert_replays`: a recorded history replays against the current code.

>>> from dramatiq_encore.testing import assert_replays
>>> assert_replays(app, "tests/histories/order-A-1.json")   # a file `encore export` wrote
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..operate.replayer import load_history, replay
from ..views import History

if TYPE_CHECKING:
    from ..app import Encore

__all__ = ["assert_replays"]


def assert_replays(app: Encore, history: str | Path | dict[str, Any] | History) -> None:
    """Replay a recorded history against ``app``'s current code, with no broker, no state
    writes and no side effects; raise :class:`~dramatiq_encore.errors.NonDeterminismError`
    naming the first divergence (workflow, step, what was recorded, what the code asks for).

    ``history`` is the path of a file ``encore export`` wrote, or its parsed JSON. Keep
    golden histories of your workflows next to your tests: a code change that would break
    the workflows in flight fails the test before it is deployed.
    """
    divergences = replay(app, load_history(history))
    if divergences:
        raise divergences[0].error()
