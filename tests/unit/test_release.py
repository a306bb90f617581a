"""The release artefacts: ``python -m build`` into a temporary directory, then what each holds.

The wheel must carry what the package reads at run time besides its modules (the Lua
scripts, the dashboard's templates and static files, ``py.typed``) and the metadata an
index shows; the sdist must be enough to run the test suite (``make test-sdist`` runs it).
"""

from __future__ import annotations

import email.parser
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dramatiq_encore"
URL = "https://github.com/dramatiq-encore/dramatiq-encore"

pytestmark = [
    pytest.mark.slow,
    # build.__main__, not build: a leftover build/ folder in the tree imports as a namespace package.
    pytest.mark.skipif(importlib.util.find_spec("build.__main__") is None, reason="build is not installed (dev group)"),
]


#: Left out of the copy that is built: a stale ``*.egg-info/SOURCES.txt`` would put its
#: files into the sdist whatever MANIFEST.in says, and the rest is local clutter.
CLUTTER = shutil.ignore_patterns(
    ".git", ".venv*", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", "results", "*.pyc"
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source, out = tmp_path_factory.mktemp("source") / "tree", tmp_path_factory.mktemp("dist")
    shutil.copytree(ROOT, source, ignore=CLUTTER)
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


@pytest.fixture(scope="module")
def wheel(dist: Path) -> set[str]:
    with zipfile.ZipFile(_one(dist, "dramatiq_encore-*.whl")) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def metadata(dist: Path) -> Message:
    with zipfile.ZipFile(_one(dist, "dramatiq_encore-*.whl")) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


@pytest.fixture(scope="module")
def sdist(dist: Path) -> set[str]:
    with tarfile.open(_one(dist, "dramatiq_encore-*.tar.gz")) as archive:
        # Paths inside the top folder (dramatiq_encore-<version>/).
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def _package_files(*patterns: str) -> set[str]:
    files = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    assert files, patterns
    return {path.relative_to(ROOT).as_posix() for path in files}


def test_the_wheel_holds_the_package_data(wheel: set[str]) -> None:
    data = _package_files("state/lua/*.lua", "dashboard/templates/*", "dashboard/static/*", "py.typed")
    assert data <= wheel, sorted(data - wheel)
    assert _package_files("**/*.py") <= wheel
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel)
    assert not any(name.startswith(("tests/", "chaos/", "examples/", "benchmarks/")) for name in wheel)


def test_the_metadata_has_the_license_classifiers_and_urls(metadata: Message) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: System :: Distributed Computing",
        "Typing :: Typed",
    } <= classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert not any(c.startswith("License :: ") for c in classifiers)  # the SPDX expression says it
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog"}
    assert all(url.startswith(URL) for url in urls.values())


def test_every_requirement_has_an_upper_bound_and_dev_is_no_extra(metadata: Message) -> None:
    requirements = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("dramatiq<3,>=") for r in requirements), requirements
    unbounded = [r for r in requirements if "<" not in r.split(";")[0]]
    assert unbounded == []
    assert set(metadata.get_all("Provides-Extra") or []) == {"dashboard", "otel"}


def test_the_sdist_holds_what_the_tests_need(sdist: set[str]) -> None:
    support = {path.relative_to(ROOT).as_posix() for path in (ROOT / "tests" / "support").rglob("*.py")}
    golden = {path.relative_to(ROOT).as_posix() for path in (ROOT / "tests" / "golden").iterdir() if path.is_file()}
    needed = {
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "Makefile",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/integration/conftest.py",
        "tests/integration/workers.py",
        "docs/protocol.md",  # tests/unit/test_message_kinds.py
        "docker-compose.yml",  # tests/unit/test_compose.py
        "Dockerfile",
        "chaos/run.py",  # tests/unit/test_chaos_schedule.py
        "examples/order_processing/run.py",  # tests/unit/test_examples.py, test_golden_histories.py
        *support,
        *(golden - {name for name in golden if "__pycache__" in name}),
        *_package_files("state/lua/*.lua"),
    }
    assert needed <= sdist, sorted(needed - sdist)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in sdist)
