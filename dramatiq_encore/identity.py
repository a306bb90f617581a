"""Workflow identity and the invocation-id scheme.

A root invocation's id is its workflow's id. A child's id is ``<parent id>/<step>``, so every
id starts with its root workflow's id and any process can find the root (and with it the
Redis Cluster hash tag) from an id alone. That is why user-chosen ids may not contain ``/``
(the separator) nor ``{`` and ``}`` (Redis Cluster hash-tag delimiters).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .errors import ConfigurationError

SEPARATOR = "/"
_REFUSED = frozenset("{}/")
MAX_ID_LENGTH = 200


class WorkflowIdentity(BaseModel):
    """Who a workflow is and where it sits in its tree.

    >>> task.workflow.workflow_id, task.workflow.parent_workflow_id
    """

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    parent_workflow_id: str | None = None
    root_workflow_id: str
    workflow_type: str

    @classmethod
    def root(cls, workflow_id: str, workflow_type: str) -> WorkflowIdentity:
        return cls(workflow_id=workflow_id, root_workflow_id=workflow_id, workflow_type=workflow_type)

    def child_workflow(self, workflow_id: str, workflow_type: str) -> WorkflowIdentity:
        return WorkflowIdentity(
            workflow_id=workflow_id,
            parent_workflow_id=self.workflow_id,
            root_workflow_id=self.root_workflow_id,
            workflow_type=workflow_type,
        )


def child_invocation_id(parent_invocation_id: str, step: int) -> str:
    return f"{parent_invocation_id}{SEPARATOR}{step}"


def root_of(invocation_id: str) -> str:
    """The root workflow id that every id in one tree starts with."""
    return invocation_id.split(SEPARATOR, 1)[0]


def check_workflow_id(workflow_id: str) -> str:
    """Refuse ids that would break the id scheme or Redis Cluster hash tags."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ConfigurationError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
    bad = sorted(set(workflow_id) & _REFUSED)
    if bad:
        raise ConfigurationError(
            f"workflow_id {workflow_id!r} contains {''.join(bad)!r}; the characters '{{', '}}' and '/' "
            "are reserved (hash tags and child ids). Use letters, digits, '-', '_', ':' or '.'."
        )
    if len(workflow_id) > MAX_ID_LENGTH:
        raise ConfigurationError(f"workflow_id is {len(workflow_id)} characters long; the limit is {MAX_ID_LENGTH}")
    return workflow_id
