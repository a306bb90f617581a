"""The checking encoder: what it accepts and refuses, and how it is installed."""

from __future__ import annotations

import json

import dramatiq
import pytest
from dramatiq.encoder import Encoder, JSONEncoder, MessageData

from dramatiq_encore.actors.messages import ENVELOPE, FRESH, NUDGES, RESENT
from dramatiq_encore.broker_config.encoder import CheckingEncoder, check_body, install_encoder
from tests.support.bad_bodies import PAST_THE_ENCODER, bad_bodies, body


def test_every_bad_body_is_refused_with_its_reason() -> None:
    for name, (raw, reason) in bad_bodies("q", "wf").items():
        if "queue_name" in name or name in PAST_THE_ENCODER:
            continue  # checked in a consumer thread (the queue it consumes), or after decoding
        with pytest.raises(ValueError) as err:
            check_body(raw)
        assert reason in str(err.value), name


def test_a_valid_body_comes_back_whole() -> None:
    fields = body("q", "wf", options={"eta": 1.5, "retries": 2, ENVELOPE: {"kind": "cancel"}})
    assert check_body(json.dumps(fields).encode()) == fields
    minimal = {k: v for k, v in fields.items() if k not in ("message_id", "message_timestamp")}
    assert check_body(json.dumps(minimal).encode()) == minimal  # dramatiq fills them in


@pytest.mark.parametrize(("option", "value"), [(NUDGES, "3"), (NUDGES, -1), (FRESH, "yes"), (RESENT, 1),
                                                (ENVELOPE, "abc"), ("workflow_id", 7)])
def test_the_engines_own_options_are_typed(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        check_body(json.dumps(body("q", "wf", options={option: value})).encode())


def test_nan_is_refused_on_the_way_out_too() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        CheckingEncoder().encode(body("q", "wf", args=[float("nan")]))


class _Reversed(Encoder):
    """A deployment's own encoder, with a format of its own (JSON, reversed)."""

    def encode(self, data: MessageData) -> bytes:
        return json.dumps(data).encode()[::-1]

    def decode(self, data: bytes) -> MessageData:
        return dict(json.loads(data[::-1]))


def test_a_deployments_own_encoder_is_kept_and_checked() -> None:
    saved = dramatiq.get_encoder()
    try:
        dramatiq.set_encoder(_Reversed())
        install_encoder()
        encoder = dramatiq.get_encoder()
        assert isinstance(encoder, CheckingEncoder) and isinstance(encoder.inner, _Reversed)
        raw = encoder.encode(body("q", "wf"))
        assert encoder.decode(raw)["actor_name"] == "wf"
        with pytest.raises(dramatiq.errors.DecodeError, match="kwargs"):
            encoder.decode(_Reversed().encode({**body("q", "wf"), "kwargs": []}))
        install_encoder()
        assert dramatiq.get_encoder() is encoder  # once
    finally:
        dramatiq.set_encoder(saved)
    assert isinstance(saved, CheckingEncoder | JSONEncoder)
