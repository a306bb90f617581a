"""The dashboard end to end in headless Chromium, over RabbitMQ and Redis.

The dashboard is served by uvicorn on a free loopback port with a token. The test opens the
list, clicks into an order workflow and finds one timeline bar per step, logs in with the
token and cancels a sleeping workflow, then sees it become cancelled. It saves the
screenshots: to the test's temporary directory, or, with ENCORE_SCREENSHOTS=1, over the ones
the README shows (docs/images/dashboard.png and dashboard-list.png).

Needs Playwright for Python and Debian's chromium (/usr/bin/chromium; Playwright's own browser
download is not used): skipped when either is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dramatiq_encore import Encore, TaskError
from dramatiq_encore.dashboard import create_app
from tests.conftest import Harness
from tests.support.waiting import wait_until

pytestmark = pytest.mark.realservices

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-test-token"
WAIT = 30.0
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def require_browser() -> None:
    reason = None
    if importlib.util.find_spec("playwright") is None:
        reason = "Playwright for Python is not installed (pip install --group dev)"
    elif not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the dashboard browser test cannot run under CI: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def dashboard(real_harness: Harness) -> Iterator[str]:
    """The dashboard of ``real_harness.app`` served by uvicorn in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(real_harness.app, token=TOKEN), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10.0), "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def declare(app: Encore) -> dict[str, Any]:
    @app.task
    def reserve_stock(order_id: str, skus: list[str]) -> dict[str, Any]:
        time.sleep(0.25)
        return {"reserved": skus, "warehouse": "LIS-2"}

    @app.task
    def charge_card(order_id: str, amount: float) -> dict[str, Any]:
        time.sleep(0.45)
        return {"charge_id": f"ch_{order_id.lower()}", "amount": amount}

    @app.task
    def ship_parcel(order_id: str) -> str:
        time.sleep(0.3)
        return f"TRK-{order_id}"

    @app.task
    def send_receipt(order_id: str, tracking: str) -> bool:
        time.sleep(0.1)
        return True

    @app.task
    def process_order(order_id: str, skus: list[str], amount: float) -> dict[str, Any]:
        wf = process_order.wf
        wf.set_data("customer", {"name": "Ada Lovelace", "tier": "gold"})
        wf.execute_task(reserve_stock, order_id, skus)
        charge = wf.execute_task(charge_card, order_id, amount).result
        tracking = wf.execute_task(ship_parcel, order_id).result
        wf.set_data("tracking", tracking)
        wf.execute_task(send_receipt, order_id, tracking)
        return {"order_id": order_id, "charge": charge["charge_id"], "tracking": tracking}

    @app.task
    def hold_reservation(order_id: str) -> str:
        hold_reservation.wf.sleep(3600)
        return "kept"

    @app.task(max_retries=0)
    def fraud_check(order_id: str) -> str:
        raise PermissionError(f"order {order_id} flagged for review")

    @app.task
    def refund_order(order_id: str) -> str:
        return str(refund_order.wf.execute_task(fraud_check, order_id).result)

    return {"order": process_order, "hold": hold_reservation, "refund": refund_order}


def seed(harness: Harness) -> None:
    """Two orders that succeeded, a refund that failed, a reservation asleep for an hour."""
    app = harness.app
    tasks = declare(app)
    harness.start()
    for n, amount in ((1001, 42.5), (1002, 18.0)):
        order_id = f"order-{n}"
        tasks["order"].send_with_options(args=(order_id, ["apple", "pear"], amount), workflow_id=order_id)
    with pytest.raises(TaskError):
        tasks["refund"].send_with_options(args=("R-77",), workflow_id="refund-R-77").wait(timeout=WAIT)
    tasks["hold"].send_with_options(args=("H-7",), workflow_id="hold-H-7")
    for order_id in ("order-1001", "order-1002"):
        app.get_invocation(order_id).wait(timeout=WAIT)
    assert wait_until(lambda: app.get_invocation("hold-H-7").status == "suspended", WAIT)


def test_dashboard_in_a_browser(real_harness: Harness, dashboard: str, tmp_path: Path) -> None:
    require_browser()
    images = IMAGES if os.environ.get("ENCORE_SCREENSHOTS") == "1" else tmp_path
    from playwright.sync_api import expect, sync_playwright

    app = real_harness.app
    seed(real_harness)
    IMAGES.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            page.goto(f"{dashboard}/")
            rows = page.locator("#workflows tbody tr")
            expect(rows).to_have_count(4)
            page.screenshot(path=str(images / "dashboard-list.png"), full_page=True)
            as_of = page.locator("#as-of").inner_text()
            expect(page.locator("#as-of")).not_to_have_text(as_of, timeout=10_000)  # refreshed by the script
            expect(rows).to_have_count(4)

            page.get_by_role("link", name="order-1001", exact=True).click()
            page.wait_for_url(f"{dashboard}/workflows/order-1001")
            expect(page.locator("#status")).to_have_text("succeeded")
            bars = page.locator("svg#timeline rect.bar")
            expect(bars).to_have_count(4)  # one per step
            assert [bars.nth(i).get_attribute("data-step") for i in range(4)] == ["1", "2", "3", "4"]
            expect(page.locator("#cancel")).to_be_disabled()  # not logged in (and finished)
            page.screenshot(path=str(images / "dashboard.png"), full_page=True)

            page.goto(f"{dashboard}/workflows/hold-H-7")
            expect(page.locator("#cancel")).to_be_disabled()
            page.get_by_role("link", name="Log in").first.click()
            page.fill("#token", TOKEN)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{dashboard}/workflows/hold-H-7")
            expect(page.locator("#cancel")).to_be_enabled()
            page.fill("input[name=reason]", "customer withdrew")
            page.locator("#cancel").click()
            expect(page.locator(".flash")).to_have_text("Cancellation requested.")
            expect(page.locator("#status")).to_have_text("cancelled", timeout=WAIT * 1000)  # auto-refresh
            assert errors == []
        finally:
            browser.close()
    assert app.get_invocation("hold-H-7").status == "cancelled"
