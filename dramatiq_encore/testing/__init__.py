"""Testing helpers for users' own test suites.

>>> from dramatiq_encore.testing import assert_replays, run_workflow, start_workflow
>>> assert run_workflow(remind, "INV-1", skip_time=True) == {"reminded": 3}   # days of sleeps, in ms
>>> assert_replays(app, "tests/histories/order-A-1.json")   # a file `encore export` wrote

The pytest plugin (:mod:`.plugin`, installed with the package) adds the ``encore_env`` and
``encore_app`` fixtures.
"""

from .env import EncoreEnv
from .replays import assert_replays
from .runs import Run, run_workflow, start_workflow

__all__ = ["EncoreEnv", "Run", "assert_replays", "run_workflow", "start_workflow"]
