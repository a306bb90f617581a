"""ENCORE_* settings: validated, with errors that name the variable and hide passwords."""

from __future__ import annotations

import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_encore import Encore
from dramatiq_encore.broker_config import load_settings, redact
from dramatiq_encore.errors import ConfigurationError


def test_unset_urls_mean_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENCORE_BROKER_URL", raising=False)
    monkeypatch.delenv("ENCORE_STATE_URL", raising=False)
    app = Encore()
    assert app.embedded and isinstance(app.broker, StubBroker)
    assert app.state.describe() == "in-memory state"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ENCORE_BROKER_URL", "http://x"), ("ENCORE_STATE_URL", "mysql://u:secret@h/db"), ("ENCORE_RETENTION", "-5")],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert variable in str(err.value)
    assert "secret" not in str(err.value)


def test_amqps_and_rediss_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCORE_BROKER_URL", "amqps://u:p@host:5671/%2F")
    monkeypatch.setenv("ENCORE_STATE_URL", "rediss://:p@host:6380/0")
    settings = load_settings()
    assert settings.broker_url is not None and settings.broker_url.startswith("amqps://")
    assert settings.state_url is not None and settings.state_url.startswith("rediss://")


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://:hunter2@db:6379/0") == "redis://:***@db:6379/0"
    assert redact("amqp://guest:hunter2@mq/%2F") == "amqp://guest:***@mq/%2F"
    assert redact("redis://db:6379/0") == "redis://db:6379/0"


@pytest.mark.parametrize(("value", "on"), [("0", False), ("1", True), ("false", False)])
def test_encore_fast_path_switches_every_fast_path(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("ENCORE_FAST_PATH", value)
    app = Encore(broker=StubBroker())
    assert (app.runtime.fast is not None) is on
    monkeypatch.delenv("ENCORE_FAST_PATH")
    assert Encore(broker=StubBroker()).runtime.fast is not None  # on by default
