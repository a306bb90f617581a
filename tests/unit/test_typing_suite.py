"""The typing suite (``tests/typing``) passes ``mypy --strict``, and its expected errors are real.

``make lint`` runs the same check; running it here too keeps ``make test`` guarding it. The
suite pins errors with ``# type: ignore[<code>]`` under ``--warn-unused-ignores``: these tests
show that an ignore mypy no longer needs fails the check, and that every pinned error is
reported, with that code, once its ignore is removed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "typing"
MYPY = [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", "--no-error-summary"]
IGNORE = re.compile(r"\s*# type: ignore\[([a-z, -]+)\]\s*$")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)  \[(?P<code>[a-z-]+)\]$")

pytest.importorskip("mypy", reason="mypy is a dev dependency (pip install -e '.[dev]')")


def _mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    # From the repository root, so pyproject.toml's [tool.mypy] settings apply as in `make lint`.
    return subprocess.run([*MYPY, *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def _errors(output: str) -> set[tuple[str, int, str]]:
    found = set()
    for line in output.splitlines():
        match = ERROR.match(line)
        if match:
            found.add((Path(match["file"]).name, int(match["line"]), match["code"]))
    return found


def _suite_files() -> list[Path]:
    files = sorted(SUITE.glob("*.py"))
    assert files, f"no typing suite in {SUITE}"
    return files


def test_the_typing_suite_is_clean_under_mypy_strict() -> None:
    result = _mypy(SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_a_stale_expected_error_fails_the_check(tmp_path: Path) -> None:
    # A correct call marked as an expected error: mypy must report the ignore as unused.
    stale = tmp_path / "stale_expectation.py"
    stale.write_text(
        "from dramatiq_encore import Encore\n"
        "app = Encore()\n\n\n"
        "@app.task\n"
        "def place_order(order_id: str) -> str:\n"
        "    return order_id\n\n\n"
        'place_order.send("A-1")  # type: ignore[arg-type]\n'
    )
    result = _mypy(stale)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _errors(result.stdout) == {("stale_expectation.py", 10, "unused-ignore")}, result.stdout


def test_every_expected_error_is_reported_once_its_ignore_is_removed(tmp_path: Path) -> None:
    expected: set[tuple[str, int, str]] = set()
    for source in _suite_files():
        lines = source.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            match = IGNORE.search(line)
            if match:
                expected |= {(f"stripped_{source.name}", number, code.strip()) for code in match[1].split(",")}
                lines[number - 1] = line[: match.start()]
        # Another module name than the suite's, so mypy's cache never mixes the two up.
        (tmp_path / f"stripped_{source.name}").write_text("\n".join(lines) + "\n")
    assert len(expected) >= 20, "the typing suite pins fewer expected errors than it did"
    result = _mypy(*sorted(tmp_path.glob("*.py")))
    assert _errors(result.stdout) == expected, result.stdout
