"""``cli_app`` after a code change: ``cli_sleeper`` now runs a step before it sleeps, which
the workflows already sleeping did not record (``encore check`` must catch it)."""

from __future__ import annotations

from dramatiq_encore import Encore
from tests.integration.cli_tasks import declare

app = Encore()
globals().update(declare(app, sleeper_reminds_first=True))  # module:task names for `encore start`
