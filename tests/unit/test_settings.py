"""ENCORE_* settings: validated, with errors that name the variable and hide passwords."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_encore import Encore
from dramatiq_encore.broker_config import EncoreSettings, load_settings, redact, unknown_env
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


# -- unknown ENCORE_* variables ------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
#: Misspellings used on purpose, here and in ``unknown_env``'s docstring.
TYPOS = {"ENCORE_BROKR_URL", "ENCORE_STATE_URLL", "ENCORE_TIMER_POL", "ENCORE_NOTHING_LIKE_IT"}


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable warned about yet, and no ENCORE_* variable set."""
    monkeypatch.setattr(unknown_env, "_warned", set())
    for name in [name for name in os.environ if name.upper().startswith("ENCORE_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dramatiq_encore.settings" and r.levelname == "WARNING"]


def test_a_misspelt_variable_is_named_once_with_the_closest_setting(
    fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_process.setenv("ENCORE_BROKR_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    assert load_settings().broker_url is None  # ignored...
    load_settings()
    assert _warnings(caplog) == [  # ...and said once per process, however often settings are loaded
        "ENCORE_BROKR_URL is not a dramatiq-encore setting; did you mean ENCORE_BROKER_URL? "
        "(it is ignored, so this process runs embedded unless its app is given a broker)"
    ]


def test_the_consequence_is_said_only_while_the_real_variable_is_unset(
    fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_process.setenv("ENCORE_STATE_URLL", "redis://127.0.0.1:6379/0")
    fresh_process.setenv("ENCORE_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    fresh_process.setenv("ENCORE_BROKR_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    fresh_process.setenv("ENCORE_TIMER_POL", "0")
    fresh_process.setenv("ENCORE_NOTHING_LIKE_IT", "1")
    load_settings()
    assert sorted(_warnings(caplog)) == [
        "ENCORE_BROKR_URL is not a dramatiq-encore setting; did you mean ENCORE_BROKER_URL? (it is ignored)",
        "ENCORE_NOTHING_LIKE_IT is not a dramatiq-encore setting (it is ignored)",
        "ENCORE_STATE_URLL is not a dramatiq-encore setting; did you mean ENCORE_STATE_URL? "
        "(it is ignored, so this process keeps its state in memory unless its app is given a state store)",
        "ENCORE_TIMER_POL is not a dramatiq-encore setting; did you mean ENCORE_TIMER_POLL? (it is ignored)",
    ]


def test_every_setting_and_every_variable_the_project_reads_is_known(
    fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Every ENCORE_* name written in the code, the tests, the examples and the chaos runner...
    pattern = re.compile(r"\bENCORE_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
    written = {
        name
        for folder in ("dramatiq_encore", "tests", "examples", "chaos")
        for path in (ROOT / folder).rglob("*.py")
        for name in pattern.findall(path.read_text())
    }
    # ...is a setting or a variable the project reads, and none of them draws a warning.
    known = unknown_env.known_variables(EncoreSettings.model_fields)
    assert written - TYPOS <= known, f"unknown to unknown_env: {sorted(written - TYPOS - known)}"
    assert unknown_env.unknown_variable_messages({name: "1" for name in known}, known) == []
