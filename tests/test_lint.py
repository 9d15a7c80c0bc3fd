"""The house style, checked with the suite: ruff's lint rules and formatter (configuration in ruff.toml), and mypy's
type check of the package (configuration in setup.cfg's ``[mypy]``)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    if shutil.which(name):
        return shutil.which(name)
    pytest.fail(f'{name} is not installed: pip install -e ".[dev]" brings it (it is part of the test command)')


@pytest.mark.parametrize(
    "command", [["check", "--no-cache"], ["format", "--check", "--no-cache"]], ids=["lint", "format"]
)
def test_ruff(command):
    result = subprocess.run([_tool("ruff"), *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"


def test_mypy(request, tmp_path):
    # mypy's cache goes to pytest's (.pytest_cache, ignored by git), never into the checkout: the first run reads
    # torch's types (about 45 s on 2 cores), later runs take seconds.
    pytest_cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy") if pytest_cache is not None else tmp_path
    command = [
        _tool("mypy"),
        "--config-file",
        str(ROOT / "setup.cfg"),
        "--cache-dir",
        str(cache),
        "--python-executable",  # the installed packages of the interpreter running the tests, whichever mypy runs
        sys.executable,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mypy (setup.cfg's [mypy]):\n{result.stdout}{result.stderr}"
