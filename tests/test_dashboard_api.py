"""The dashboard's JSON API and pages, on both backend pairs: listings, descriptions, the actions'
authorization (read-only without a token, 401 with a wrong one) and escaping of user data."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from dramatiq_encore import Encore, TaskError
from dramatiq_encore.actors.task import Task
from dramatiq_encore.dashboard import create_app
from tests.conftest import Harness
from tests.support.waiting import wait_until

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what the dev extra installs
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

WAIT = 20.0
TOKEN = "s3cret-dashboard-token"
SCRIPT = "<script>alert(1)</script>"


@dataclasses.dataclass
class Flows:
    order: Task[..., Any]
    sleeper: Task[..., Any]
    breaking: Task[..., Any]
    repaired: threading.Event


def declare(app: Encore) -> Flows:
    repaired = threading.Event()

    @app.task
    def line_item(sku: str) -> str:
        return f"packed {sku}"

    @app.task
    def order_flow(order_id: str) -> list[str]:
        wf = order_flow.wf
        wf.set_data("note", SCRIPT)
        return [wf.execute_task(line_item, sku).result for sku in ("apple", "pear", "fig")]

    @app.task
    def hold(order_id: str) -> str:
        hold.wf.sleep(3600)
        return "kept"

    @app.task(max_retries=0)
    def charge(order_id: str) -> str:
        if not repaired.is_set():
            raise ConnectionError("payment provider down")
        return f"charged {order_id}"

    @app.task
    def payment(order_id: str) -> str:
        return str(payment.wf.execute_task(charge, order_id).result)

    return Flows(order_flow, hold, payment, repaired)


@pytest.fixture
def flows(harness: Harness) -> Flows:
    flows = declare(harness.app)
    harness.start()
    return flows


@pytest.fixture
def client(harness: Harness, flows: Flows) -> Iterator[TestClient]:
    with TestClient(create_app(harness.app, token=TOKEN)) as client:
        yield client


def status_of(app: Encore, workflow_id: str) -> str:
    return app.get_invocation(workflow_id).status


def start_sleeper(app: Encore, flows: Flows, workflow_id: str = "hold-1") -> str:
    flows.sleeper.send_with_options(args=("A-1",), workflow_id=workflow_id)
    assert wait_until(lambda: status_of(app, workflow_id) == "suspended", WAIT)
    return workflow_id


def start_failed(app: Encore, flows: Flows, workflow_id: str = "pay-1") -> str:
    inv = flows.breaking.send_with_options(args=("A-1",), workflow_id=workflow_id)
    with pytest.raises(TaskError):
        inv.wait(timeout=WAIT)
    return workflow_id


def run_orders(flows: Flows, count: int) -> list[str]:
    ids = [f"ord-{i}" for i in range(count)]
    for workflow_id in ids:
        flows.order.send_with_options(args=(workflow_id,), workflow_id=workflow_id).wait(timeout=WAIT)
    return ids


def stays(app: Encore, workflow_id: str, status: str, seconds: float = 0.5) -> bool:
    """The workflow keeps ``status`` (and no cancel was requested) for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if status_of(app, workflow_id) != status:
            return False
        time.sleep(0.05)
    return not app.describe(workflow_id).cancel_requested


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["workflow_id"] for item in response.json()["items"]]


# -- reading ------------------------------------------------------------------------------
def test_list_filters_by_status_and_type_and_pages_with_the_cursor(
    harness: Harness, flows: Flows, client: TestClient
) -> None:
    orders = run_orders(flows, 3)
    sleeper = start_sleeper(harness.app, flows)

    assert set(ids_of(client.get("/api/workflows"))) == {*orders, sleeper}
    assert set(ids_of(client.get("/api/workflows", params={"status": "succeeded"}))) == set(orders)
    assert ids_of(client.get("/api/workflows", params={"status": "suspended"})) == [sleeper]
    assert ids_of(client.get("/api/workflows", params={"type": flows.sleeper.name})) == [sleeper]
    assert ids_of(client.get("/api/workflows", params={"status": "failed"})) == []

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/workflows", params=params).json()
        assert len(page["items"]) <= 2
        seen += [item["workflow_id"] for item in page["items"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([*orders, sleeper])  # every workflow once, over the pages

    html = client.get("/", params={"status": "succeeded"}).text
    assert all(workflow_id in html for workflow_id in orders) and sleeper not in html
    first = client.get("/", params={"limit": "2"}).text
    assert 'id="next-page"' in first


def test_list_refuses_bad_queries(client: TestClient) -> None:
    for params in ({"status": "sleeping"}, {"limit": "zero"}, {"limit": "0"}, {"limit": "100000"}):
        response = client.get("/api/workflows", params=params)
        assert response.status_code == 400 and response.json()["error"], params
    assert client.get("/", params={"status": "sleeping"}).status_code == 400


def test_describe_returns_the_tree_and_the_page_draws_one_bar_per_step(
    harness: Harness, flows: Flows, client: TestClient
) -> None:
    (order,) = run_orders(flows, 1)

    body = client.get(f"/api/workflows/{order}").json()
    assert body["workflow_id"] == order and body["status"] == "succeeded"
    assert body["type"] == flows.order.name and body["args"] == [order]
    assert [s["kind"] for s in body["steps"]] == ["task"] * 3
    assert [s["status"] for s in body["steps"]] == ["succeeded"] * 3
    assert [s["result"] for s in body["steps"]] == ["packed apple", "packed pear", "packed fig"]
    assert body["data"] == {"note": SCRIPT}
    assert body == harness.app.describe(order).model_dump(mode="json")

    page = client.get(f"/workflows/{order}")
    assert page.status_code == 200
    assert len(re.findall(r'<rect class="bar s-succeeded"', page.text)) == 3
    assert "packed pear" in page.text


def test_unknown_workflow_is_a_404(client: TestClient) -> None:
    response = client.get("/api/workflows/no-such-workflow")
    assert response.status_code == 404 and "no-such-workflow" in response.json()["error"]
    assert client.get("/workflows/no-such-workflow").status_code == 404
    nested = client.get("/api/workflows/no-such-workflow/1")  # no route: still a JSON error
    assert nested.status_code == 404 and nested.json()["error"]
    cancel = client.post("/api/workflows/no-such-workflow/cancel", headers={"Authorization": f"Bearer {TOKEN}"})
    assert cancel.status_code == 404


# -- actions ------------------------------------------------------------------------------
def test_without_a_token_the_dashboard_is_read_only(harness: Harness, flows: Flows) -> None:
    app = harness.app
    sleeper = start_sleeper(app, flows)
    failed = start_failed(app, flows)
    app.settings.dashboard_token = None
    with TestClient(create_app(app)) as client:
        for workflow_id, action in ((sleeper, "cancel"), (failed, "retry")):
            for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                response = client.post(f"/api/workflows/{workflow_id}/{action}", headers=headers)
                assert response.status_code == 403
                assert "ENCORE_DASHBOARD_TOKEN" in response.json()["error"]
        page = client.get(f"/workflows/{sleeper}").text
        assert re.search(r'id="cancel"\s+disabled', page) and "read-only" in page
        assert client.post("/login", data={"token": TOKEN}).status_code == 403
    assert stays(app, sleeper, "suspended") and stays(app, failed, "failed")


def test_a_wrong_or_missing_token_is_401_and_changes_nothing(
    harness: Harness, flows: Flows, client: TestClient
) -> None:
    app = harness.app
    sleeper = start_sleeper(app, flows)
    failed = start_failed(app, flows)
    flows.repaired.set()  # a retry would now succeed: it must not happen
    for workflow_id, action in ((sleeper, "cancel"), (failed, "retry")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = client.post(f"/api/workflows/{workflow_id}/{action}", headers=headers)
            assert response.status_code == 401, (action, headers)
        client.cookies.set("encore_dashboard_session", "1.forged.0000")
        assert client.post(f"/api/workflows/{workflow_id}/{action}").status_code == 401
        client.cookies.clear()
    assert client.post("/login", data={"token": "wrong"}).status_code == 401
    assert "encore_dashboard_session" not in client.cookies
    assert stays(app, sleeper, "suspended") and stays(app, failed, "failed")


def test_the_right_token_cancels_a_sleeping_workflow_and_retries_a_failed_one(
    harness: Harness, flows: Flows, client: TestClient
) -> None:
    app = harness.app
    sleeper = start_sleeper(app, flows)
    failed = start_failed(app, flows)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    response = client.post(f"/api/workflows/{sleeper}/cancel", headers=auth)
    assert response.status_code == 200 and response.json()["action"] == "cancel"
    assert wait_until(lambda: status_of(app, sleeper) == "cancelled", WAIT)

    conflict = client.post(f"/api/workflows/{sleeper}/retry", headers=auth)  # not failed: 409
    assert conflict.status_code == 409 and conflict.json()["error"]

    flows.repaired.set()
    response = client.post(f"/api/workflows/{failed}/retry", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["resumed_from_step"] == 1
    assert app.get_invocation(failed).wait(timeout=WAIT) == "charged A-1"


def test_page_actions_need_the_login_cookie_and_its_csrf_token(
    harness: Harness, flows: Flows, client: TestClient
) -> None:
    app = harness.app
    sleeper = start_sleeper(app, flows)
    url = f"/api/workflows/{sleeper}/cancel"

    login = client.post("/login", data={"token": TOKEN, "next": f"/workflows/{sleeper}"}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == f"/workflows/{sleeper}"
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie

    page = client.get(f"/workflows/{sleeper}").text
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page)
    assert match is not None and re.search(r'id="cancel"\s*>', page)  # enabled once logged in
    csrf = match.group(1)
    assert client.post(url, data={"reason": "x"}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"csrf_token": "0" * 64}, follow_redirects=False).status_code == 403
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.post(url, data={"csrf_token": csrf}, headers=evil, follow_redirects=False).status_code == 403
    assert stays(app, sleeper, "suspended")

    same = {"Origin": "http://testserver"}
    done = client.post(url, data={"csrf_token": csrf, "reason": "by hand"}, headers=same, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/workflows/{sleeper}?done=cancel"
    assert wait_until(lambda: status_of(app, sleeper) == "cancelled", WAIT)
    error = app.describe(sleeper).error
    assert error is not None and "by hand" in error.message

    client.post("/logout", follow_redirects=False)
    assert client.post(url, data={"csrf_token": csrf}, follow_redirects=False).status_code == 401


# -- escaping -----------------------------------------------------------------------------
def test_user_data_is_rendered_as_text(harness: Harness, flows: Flows, client: TestClient) -> None:
    workflow_id = "o<b>1"
    flows.order.send_with_options(args=("<img src=x onerror=alert(2)>",), workflow_id=workflow_id).wait(timeout=WAIT)

    listing = client.get("/").text
    assert "o&lt;b&gt;1" in listing and "o<b>1" not in listing
    assert f'href="/workflows/{quote(workflow_id, safe="")}"' in listing

    page = client.get("/workflows/" + quote(workflow_id, safe=""))
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and SCRIPT not in page.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in page.text and "<img" not in page.text
    assert "o<b>1" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/api/workflows/" + quote(workflow_id, safe="")).json()["data"]["note"] == SCRIPT


# -- the timeline's geometry --------------------------------------------------------------
def test_timeline_places_steps_from_the_start_and_runs_unfinished_ones_to_now() -> None:
    import datetime as dt

    from dramatiq_encore.dashboard.timeline import TRACK_W, TRACK_X, build_timeline
    from dramatiq_encore.views import InvocationView, StepView, WorkflowDescription

    t0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

    def at(seconds: float) -> dt.datetime:
        return t0 + dt.timedelta(seconds=seconds)

    child = InvocationView(
        invocation_id="w/2",
        workflow_id="w",
        type="sub",
        status="running",
        queue="q",
        steps=[StepView(n=1, kind="task", task="inner", status="succeeded", started_at=at(3), finished_at=at(4))],
    )
    steps = [
        StepView(n=1, kind="task", task="first", status="succeeded", started_at=at(0), finished_at=at(2)),
        StepView(n=2, kind="task", task="sub", status="running", started_at=at(2), child=child),
        StepView(n=3, kind="timer", task="sleep", status="waiting", started_at=at(5), due_at=at(3600)),
        StepView(n=4, kind="task", task="later", status="queued"),
    ]
    root = WorkflowDescription(
        invocation_id="w", workflow_id="w", type="t", status="running", queue="q", started_at=t0, steps=steps
    )
    timeline = build_timeline(root, now=at(10))
    assert [bar.path for bar in timeline.bars] == ["1", "2", "2.1", "3", "4"]
    first, sub, inner, sleep, later = timeline.bars
    assert timeline.span_s == 10
    assert first.x == TRACK_X and first.width == pytest.approx(0.2 * TRACK_W, abs=0.01)
    assert inner.depth == 1 and inner.x == pytest.approx(TRACK_X + 0.3 * TRACK_W, abs=0.01)
    assert sub.running and sub.x is not None and sub.x + sub.width == pytest.approx(TRACK_X + TRACK_W, abs=0.01)
    assert sleep.running and sleep.width == pytest.approx(0.5 * TRACK_W, abs=0.01)  # to now, not to its due time
    assert later.x is None and "not started" in later.title
    assert [tick.label for tick in timeline.ticks][:3] == ["0 s", "2 s", "4 s"]
