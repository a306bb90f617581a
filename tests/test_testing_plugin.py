"""The testing kit's pytest plugin, as a user's suite gets it: installed with the package
(its ``pytest11`` entry point), loaded by a pytest run in a fresh process and directory."""

from __future__ import annotations

import pytest

USER_TESTS = '''
import datetime as dt

import pytest

from dramatiq_encore import Encore

app = Encore()


@app.task
def remind(name: str) -> str:
    remind.wf.sleep(dt.timedelta(days=3))
    return f"reminded {name}"


def test_the_plugin_came_from_the_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("encore")


def test_encore_app_runs_a_task(encore_app):
    @encore_app.task
    def greet(name: str) -> str:
        return f"hello {name}"

    assert greet.send("ada").wait(timeout=10) == "hello ada"


@pytest.mark.encore(skip_time=True)
def test_a_bound_module_app_skips_three_days(encore_env):
    encore_env.bind(app)
    assert remind.send("ada").wait(timeout=10) == "reminded ada"
    assert encore_env.clock.skipped > dt.timedelta(days=2).total_seconds()  # 3 days less the real time


def test_an_unbound_fixture_leaves_time_alone(encore_env):
    assert not encore_env.skip_time
'''


def test_the_plugin_gives_user_suites_the_fixtures_and_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_suite=USER_TESTS)
    # --strict-markers: the plugin registers the encore marker.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers", "-q")
    result.assert_outcomes(passed=4)
