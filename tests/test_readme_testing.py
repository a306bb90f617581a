import datetime as dt

import pytest

from dramatiq_encore import Encore
from dramatiq_encore.testing import EncoreEnv, run_workflow, start_workflow

app = Encore()  # in your suite: from myproject.workflows import app, chase


@app.task
def send_reminder(invoice_id: str) -> str:
    return f"reminded {invoice_id}"


@app.task
def chase(invoice_id: str) -> str:
    wf = chase.wf
    wf.execute_task(send_reminder, invoice_id)
    try:
        wf.wait_for_signal("paid", timeout=dt.timedelta(days=7))
        return "paid"
    except TimeoutError:
        return "escalated"


def test_unpaid_invoice_escalates_after_a_week() -> None:
    assert run_workflow(chase, "INV-1", skip_time=True) == "escalated"  # in milliseconds


def test_payment_arrives_between_steps() -> None:
    with start_workflow(chase, "INV-2", skip_time=True) as run:
        run.wait_suspended(signal="paid")  # the reminder went out; it waits now
        run.signal("paid", {"amount": 120})
        assert run.result() == "paid"


@pytest.mark.encore(skip_time=True)
def test_the_module_app_itself(encore_env: EncoreEnv) -> None:
    encore_env.bind(app)  # stub broker + memory state until the test ends
    assert chase.send("INV-3").wait(timeout=10) == "escalated"
