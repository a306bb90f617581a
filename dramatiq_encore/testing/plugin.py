"""The pytest plugin (entry point ``encore``): the ``encore_env`` and ``encore_app`` fixtures.

>>> def test_greets(encore_app):
...     @encore_app.task
...     def greet(name: str) -> str:
...         return f"hello {name}"
...     assert greet.send("ada").wait(timeout=10) == "hello ada"

``@pytest.mark.encore(skip_time=True)`` turns time skipping on for the test's environment
(or set ``encore_env.skip_time``). ``encore_env.bind(app)`` rebinds a module's own app to
the test's environment until the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..app import Encore
    from .env import EncoreEnv


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "encore(skip_time=False): options of the encore_env fixture")


@pytest.fixture
def encore_env(request: pytest.FixtureRequest) -> Iterator[EncoreEnv]:
    """An isolated embedded environment for this test (:class:`~dramatiq_encore.testing.EncoreEnv`)."""
    from .env import EncoreEnv

    marker = request.node.get_closest_marker("encore")
    env = EncoreEnv(skip_time=bool(marker.kwargs.get("skip_time", False)) if marker else False)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def encore_app(encore_env: EncoreEnv) -> Encore:
    """A fresh app in this test's ``encore_env``: declare tasks on it, then send."""
    return encore_env.app()
