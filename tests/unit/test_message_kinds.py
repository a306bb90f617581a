"""Every message kind is handled everywhere it must be: a new kind fails here until it is.

A kind needs its envelope (``messages.py``), its handler at the mailbox's door, its branch
in ``deliver.lua`` and in ``MemoryState``, and a section in ``docs/protocol.md``.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from dramatiq_encore.actors import messages
from dramatiq_encore.actors.mailbox import Mailbox
from dramatiq_encore.state.backends.memory import MemoryState

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_has_an_envelope_a_door_a_lua_branch_a_memory_branch_and_a_protocol_section() -> None:
    kinds = set(messages.KINDS)
    classes = typing.get_args(messages.AnyEnvelope)
    envelopes = {typing.get_args(cls.model_fields["kind"].annotation)[0] for cls in classes}
    assert envelopes == kinds
    assert set(Mailbox._DOOR) == kinds
    assert set(MemoryState._APPLY) == kinds
    lua = (ROOT / "dramatiq_encore" / "state" / "lua" / "deliver.lua").read_text()
    lua_kinds = set(re.findall(r"kind [~=]= '(\w+)'", lua))
    assert lua_kinds == kinds, f"deliver.lua names {sorted(lua_kinds)}"
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    sections = set(re.findall(r"^### `(\w+)`", protocol, flags=re.MULTILINE))
    assert sections == kinds, f"docs/protocol.md has sections for {sorted(sections)}"


def test_every_test_the_protocol_names_exists() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", protocol)
    named += [(file, test) for file, test in re.findall(r"`(tests/[\w/]+\.py)::\w+`, `::(\w+)`", protocol)]
    assert len(named) >= 15
    for file, test in named:
        source = (ROOT / file).read_text()
        assert f"def {test}(" in source, f"docs/protocol.md names {file}::{test}, which does not exist"
