"""Every Redis key the state store uses, in one place.

Every workflow tree is placed in one of ``shards`` hash-tag shards, ``{s<n>}`` with n the
CRC32 of its root workflow id modulo ``shards``: all keys of one tree and the workflow index
of its shard share a Redis Cluster slot, so every Lua script touches a single slot, the
index is written in the same script that changes a workflow's status, and the store runs on
Redis Cluster unchanged. The cost: a cluster spreads the workflows over ``shards`` slots (so
over at most that many nodes), and a listing reads every shard (one pipelined round trip)::

    <prefix>:{s<n>}:r:<root>:keys                      set: the tree's invocations (``i:<id>``) and
                                                       workflows with data (``w:<id>``), whose keys
                                                       get the retention when the root finishes
    <prefix>:{s<n>}:r:<root>:lost                      hash: invocation id -> why it was marked lost
                                                       (a message named it, the store had no record)
    <prefix>:{s<n>}:r:<root>:notes                     hash: invocation id -> an operator's note (a
                                                       message whose task a worker lacks)
    <prefix>:{s<n>}:wf:<workflow id>:data              hash: workflow data, key -> JSON text
    <prefix>:{s<n>}:inv:<invocation id>:meta           hash: rec, status, outcome, digest, root, wake, run,
                                                       fp, first, sigs, passes, done, ix, at
    <prefix>:{s<n>}:inv:<invocation id>:journal        list: append-only JSON journal entries
    <prefix>:{s<n>}:inv:<invocation id>:triggers       set: trigger keys already delivered
    <prefix>:{s<n>}:inv:<invocation id>:resolved       set: step numbers whose result arrived
    <prefix>:{s<n>}:inv:<invocation id>:waiting        set: step numbers and ``sig:<name>`` signal
                                                       names the last pass waits on
    <prefix>:{s<n>}:inv:<invocation id>:steps          hash: step number -> what it recorded, for
                                                       checking the triggers that resolve it
                                                       (``c:<fingerprint>``, ``t:<due>``, ``w``)
    <prefix>:{s<n>}:inv:<invocation id>:lock           string: the replay lease's owner token (PX)

The workflow index of a shard (root workflows only; scores are start times in ms, members
workflow ids), written by deliver.lua, commit.lua, acquire.lua and reopen.lua::

    <prefix>:{s<n>}:ix:all                             zset: every root workflow
    <prefix>:{s<n>}:ix:s:<status>                      zset: by status
    <prefix>:{s<n>}:ix:t:<type>                        zset: by workflow type (task name)
    <prefix>:{s<n>}:ix:st:<status>:<type>              zset: by both
    <prefix>:{s<n>}:ix:due                             zset: unresolved timer steps by due time, member
                                                       "<invocation id>\x1f<step>\x1f<due>" (polled)
    <prefix>:{s<n>}:ix:exp                             zset: finished roots by expiry time (seconds)
    <prefix>:{s<n>}:ix:fin                             hash: finished root -> "<status>\n<type>", to
                                                       remove it from the index once it expired

Ids may contain ``:`` but never ``{``, ``}`` (refused by :func:`~dramatiq_encore.identity.check_workflow_id`),
and every key ends with a fixed colon-free suffix, so no two ids map to the same key.
"""

from __future__ import annotations

import dataclasses
import zlib

from ..identity import root_of

DEFAULT_SHARDS = 16

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
META_PASSES = "passes"  # passes run (each lease granted)
META_DONE = "done"  # when it finished (epoch seconds, the store's clock)
META_INDEXED = "ix"  # a root workflow's type: the index lists it
META_AT = "at"  # a root workflow's start (epoch ms, the store's clock): its index score


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
    """Key formats under one prefix (``encore`` unless configured) and shard count."""

    prefix: str = "encore"
    shards: int = DEFAULT_SHARDS

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix may not contain '{{' or '}}' (hash tags): {self.prefix!r}")

    def shard_of(self, some_id: str) -> int:
        """The shard of ``some_id``'s tree (every id of one tree maps to the same one)."""
        return zlib.crc32(root_of(some_id).encode()) % self.shards

    def shard_head(self, shard: int) -> str:
        """The hash-tagged head of one shard's keys."""
        return f"{self.prefix}:{{s{shard}}}"

    def tag(self, some_id: str) -> str:
        """The hash-tagged head shared by every key of ``some_id``'s root workflow."""
        return self.shard_head(self.shard_of(some_id))

    def registry(self, some_id: str) -> str:
        return f"{self.tag(some_id)}:r:{root_of(some_id)}:keys"

    def notes(self, some_id: str) -> str:
        return f"{self.tag(some_id)}:r:{root_of(some_id)}:notes"

    def data(self, workflow_id: str) -> str:
        return f"{self.tag(workflow_id)}:wf:{workflow_id}:data"

    def meta(self, invocation_id: str) -> str:
        return f"{self.tag(invocation_id)}:inv:{invocation_id}:meta"

    def journal(self, invocation_id: str) -> str:
        return f"{self.tag(invocation_id)}:inv:{invocation_id}:journal"

    def index(self, shard: int, status: str | None = None, workflow_type: str | None = None) -> str:
        """The index zset of one shard for a status and/or a type filter."""
        head = f"{self.shard_head(shard)}:ix:"
        if status is not None and workflow_type is not None:
            return f"{head}st:{status}:{workflow_type}"
        if status is not None:
            return f"{head}s:{status}"
        if workflow_type is not None:
            return f"{head}t:{workflow_type}"
        return f"{head}all"

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
            lost=f"{self.tag(invocation_id)}:r:{root_of(invocation_id)}:lost",
        )

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix (tests and admin tools only)."""
        return f"{self.prefix}:*"
