"""Workflow identity and the invocation-id scheme.

A root invocation's id is its workflow's id. A child's id is ``<parent id>/<step>``, so every
id starts with its root workflow's id and any process can find the root (and with it the
Redis Cluster hash tag) from an id alone. That is why user-chosen ids may not contain ``/``
(the separator) nor ``{`` and ``}`` (Redis Cluster hash-tag delimiters).
"""

from __future__ import annotations

import unicodedata

from pydantic import BaseModel, ConfigDict

from .errors import ConfigurationError

SEPARATOR = "/"
_REFUSED = frozenset("{}/")
MAX_ID_LENGTH = 200
# Control and format characters (newline, NUL, bidi overrides...), surrogates, line and
# paragraph separators: an id is printed in logs and terminals as it is.
_UNPRINTABLE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


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


def unprintable(text: str) -> list[str]:
    """The characters of ``text`` that logs and terminals would not show as they are."""
    return sorted({char for char in text if unicodedata.category(char) in _UNPRINTABLE})


def check_workflow_id(workflow_id: str) -> str:
    """Refuse ids that would break the id scheme or Redis Cluster hash tags, or garble logs."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ConfigurationError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
    if len(workflow_id) > MAX_ID_LENGTH:
        raise ConfigurationError(f"workflow_id is {len(workflow_id)} characters long; the limit is {MAX_ID_LENGTH}")
    bad = sorted(set(workflow_id) & _REFUSED)
    if bad:
        raise ConfigurationError(
            f"workflow_id {workflow_id!r} contains {''.join(bad)!r}; the characters '{{', '}}' and '/' "
            "are reserved (hash tags and child ids). Use letters, digits, '-', '_', ':' or '.'."
        )
    hidden = unprintable(workflow_id)
    if hidden:
        raise ConfigurationError(
            f"workflow_id {workflow_id!r} contains control or format characters ({', '.join(map(repr, hidden))}); "
            "use printable characters only"
        )
    return workflow_id


def check_invocation_id(invocation_id: str) -> str:
    """Refuse anything but a workflow id followed by ``/<step>`` parts (positive integers)."""
    if not isinstance(invocation_id, str):
        raise ConfigurationError(f"an invocation id must be a string, got {invocation_id!r}")
    root, *steps = invocation_id.split(SEPARATOR)
    check_workflow_id(root)
    for step in steps:
        if not (step.isascii() and step.isdigit()) or step != str(int(step)) or int(step) < 1:
            raise ConfigurationError(
                f"invocation id {invocation_id!r} is not a workflow id followed by /<step> numbers"
            )
    return invocation_id
