"""Golden histories of the reference scenarios replay on today's code (``assert_replays``);
one recorded by an older version of the order workflow must diverge.

Recorded by ``python -m tests.golden.record`` (see its docstring).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from dramatiq_encore.errors import NonDeterminismError
from dramatiq_encore.testing import assert_replays
from tests.golden.record import SCENARIOS

GOLDEN = Path(__file__).parent / "golden"


# --8<-- [start:golden] (docs/how-to/testing.md includes these two tests)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_scenarios_history_replays_on_todays_code(scenario: str) -> None:
    app = importlib.import_module(f"examples.{scenario}.run").app
    path = GOLDEN / f"{scenario}.json"
    assert_replays(app, path)  # the file
    assert_replays(app, json.loads(path.read_text()))  # its parsed JSON


def test_a_history_recorded_by_older_code_diverges_and_names_the_step() -> None:
    app = importlib.import_module("examples.order_processing.run").app
    with pytest.raises(NonDeterminismError) as caught:
        assert_replays(app, GOLDEN / "order_processing_v0.json")
    error = caught.value
    assert error.workflow_id == "golden-order-v0" and error.step == "step 1"
    assert "take_payment" in error.recorded and "take_payment" in error.requested
    assert error.recorded != error.requested  # the arguments changed
# --8<-- [end:golden]


def test_a_history_whose_workflow_finished_diverges_when_the_code_asks_for_more() -> None:
    history = json.loads((GOLDEN / "order_processing.json").read_text())
    root = next(i for i in history["invocations"] if i["invocation_id"] == history["workflow_id"])
    root["journal"] = [e for e in root["journal"] if e.get("e") not in ("step", "res")]  # as if it had no step
    root["journal"].append({"e": "timer", "n": 1, "seconds": 5.0, "due": 0.0})
    app = importlib.import_module("examples.order_processing.run").app
    with pytest.raises(NonDeterminismError, match="step 1"):
        assert_replays(app, history)


def test_a_file_that_is_not_a_history_is_a_clear_error(tmp_path: Path) -> None:
    app = importlib.import_module("examples.order_processing.run").app
    bad = tmp_path / "not-a-history.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(Exception, match="not a history written by `encore export`"):
        assert_replays(app, bad)
