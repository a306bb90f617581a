"""The module the CLI's end-to-end test runs in a real `dramatiq` worker process.

Configured from the environment like a user's module (ENCORE_BROKER_URL, ENCORE_STATE_URL,
ENCORE_KEY_PREFIX, ENCORE_TEST_QUEUE). ``cli_app_v2`` is the same module after a code change.
"""

from __future__ import annotations

from dramatiq_encore import Encore
from tests.integration.cli_tasks import declare

app = Encore()
globals().update(declare(app))  # module:task names for `encore start`
