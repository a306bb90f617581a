"""Every Redis key the state store uses, in one place.

All keys of one root workflow share the Redis Cluster hash tag ``{<root id>}``, so every
Lua script touches a single slot and the store runs on Redis Cluster unchanged::

    <prefix>:{<root>}:keys                          set: every key of the root (retention)
    <prefix>:{<root>}:lost                          hash: invocation id -> why it was marked lost
                                                    (a message named it, the store had no record)
    <prefix>:{<root>}:wf:<workflow id>:data         hash: workflow data, key -> JSON text
    <prefix>:{<root>}:inv:<invocation id>:meta      hash: rec, status, outcome, digest, root, wake, run,
                                                    fp, first, sigs
    <prefix>:{<root>}:inv:<invocation id>:journal   list: append-only JSON journal entries
    <prefix>:{<root>}:inv:<invocation id>:triggers  set: trigger keys already delivered
    <prefix>:{<root>}:inv:<invocation id>:resolved  set: step numbers whose result arrived
    <prefix>:{<root>}:inv:<invocation id>:waiting   set: step numbers and ``sig:<name>`` signal
                                                    names the last pass waits on
    <prefix>:{<root>}:inv:<invocation id>:steps     hash: step number -> what it recorded, for
                                                    checking the triggers that resolve it
                                                    (``c:<fingerprint>``, ``t:<due>``, ``w``)
    <prefix>:{<root>}:inv:<invocation id>:lock      string: the replay lease's owner token (PX)

Ids may contain ``:`` but never ``{``, ``}`` (refused by :func:`~dramatiq_encore.identity.check_workflow_id`),
and every key ends with a fixed colon-free suffix, so no two ids map to the same key.
"""

from __future__ import annotations

import dataclasses

from ..identity import root_of

# Fields of the meta hash.
META_RECORD = "rec"
META_STATUS = "status"
META_OUTCOME = "outcome"
META_DIGEST = "digest"  # compared on a duplicate start without decoding the record
META_ROOT = "root"  # "1" when the record has no parent: its finish starts the retention clock
META_RUN = "run"  # the record's run number once it continued as new (absent: 0)
META_WAKE = "wake"  # "any" when one resolved waiting member wakes the invocation (a race)
META_FINGERPRINT = "fp"  # a child's start fingerprint, which its parent's step recorded ('' for a root)
META_FIRST = "first"  # the last step of the runs before this one: older steps' triggers are ignored
META_SIGNALS = "sigs"  # signals received and not consumed yet


@dataclasses.dataclass(frozen=True, slots=True)
class InvocationKeys:
    """The keys of one invocation, in the order the Lua scripts expect them."""

    meta: str
    journal: str
    triggers: str
    resolved: str
    waiting: str
    lock: str
    registry: str
    steps: str
    lost: str


@dataclasses.dataclass(frozen=True, slots=True)
class Keys:
    """Key formats under one prefix (``encore`` unless configured)."""

    prefix: str = "encore"

    def tag(self, some_id: str) -> str:
        """The hash-tagged head shared by every key of ``some_id``'s root workflow."""
        return f"{self.prefix}:{{{root_of(some_id)}}}"

    def registry(self, some_id: str) -> str:
        return f"{self.tag(some_id)}:keys"

    def data(self, workflow_id: str) -> str:
        return f"{self.tag(workflow_id)}:wf:{workflow_id}:data"

    def meta(self, invocation_id: str) -> str:
        return f"{self.tag(invocation_id)}:inv:{invocation_id}:meta"

    def invocation(self, invocation_id: str) -> InvocationKeys:
        head = f"{self.tag(invocation_id)}:inv:{invocation_id}"
        return InvocationKeys(
            meta=f"{head}:meta",
            journal=f"{head}:journal",
            triggers=f"{head}:triggers",
            resolved=f"{head}:resolved",
            waiting=f"{head}:waiting",
            lock=f"{head}:lock",
            registry=self.registry(invocation_id),
            steps=f"{head}:steps",
            lost=f"{self.tag(invocation_id)}:lost",
        )

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix (tests and admin tools only)."""
        return f"{self.prefix}:*"
