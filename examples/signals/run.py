"""Signals: a workflow waits for a human decision sent from outside with ``app.signal``.

``wf.wait_for_signal(name, timeout=...)`` is a step; a signal sent before the workflow
waits for it is kept, not lost. ``app.cancel`` stops a workflow at its next step, after
its ``finally`` blocks have run their cleanup steps.

    python examples/signals/run.py
"""

from __future__ import annotations

import json
import time
from typing import Any

from dramatiq_encore import Encore, TaskError

app = Encore()


@app.task
def publish(article_id: str, editor: str) -> dict[str, Any]:
    return {"article_id": article_id, "url": f"https://news.example/{article_id}", "approved_by": editor}


@app.task
def notify_author(article_id: str, text: str) -> str:
    return f"{article_id}: {text}"


@app.task
def review_article(article_id: str) -> dict[str, Any]:
    wf = review_article.wf
    wf.set_data("stage", "in review")
    try:
        decision = wf.wait_for_signal("decision", timeout=60)
    except TimeoutError:
        return {"article_id": article_id, "status": "expired"}
    finally:
        wf.execute_task(notify_author, article_id, "review finished")  # runs even when cancelled
    if not decision["approve"]:
        return {"article_id": article_id, "status": "rejected", "reason": decision["reason"]}
    published = wf.execute_task(publish, article_id, decision["by"]).result
    return {"article_id": article_id, "status": "published", **published}


def wait_for_stage(workflow_id: str, stage: str) -> None:
    while app.get_workflow_data(workflow_id).get("stage") != stage:
        time.sleep(0.01)


def main() -> None:
    approved = review_article.send("A-100")
    wait_for_stage(approved.invocation_id, "in review")
    app.signal(approved.invocation_id, "decision", {"approve": True, "by": "ada"})
    print(json.dumps(approved.wait(timeout=60), indent=2))

    withdrawn = review_article.send("A-101")
    wait_for_stage(withdrawn.invocation_id, "in review")
    app.cancel(withdrawn.invocation_id, reason="author withdrew the article")
    try:
        withdrawn.wait(timeout=60)
    except TaskError as exc:
        print(f"A-101: {withdrawn.status} ({exc.error_type}: {exc.message})")
    app.close()


if __name__ == "__main__":
    main()
