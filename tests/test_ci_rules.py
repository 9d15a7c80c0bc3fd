"""The suite's own rules: under CI=true a missing real-data source fails the run instead of skipping."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _pytest_real_tests(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HF_FMNIST_TEST_REAL_DIR"] = str(tmp_path / "no-debian-package")  # a machine without the package
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(TESTS / "test_real.py")],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("ci", [False, True], ids=["local", "ci"])
def test_missing_real_data_skips_locally_and_fails_under_ci(tmp_path, ci):
    result = _pytest_real_tests(tmp_path, ci)
    summary = result.stdout.strip().splitlines()[-1]
    if ci:
        assert result.returncode == 1, result.stdout[-2000:]
        assert "3 failed" in summary or "3 error" in summary, summary
        assert "CI=true requires the real-data tests" in result.stdout
    else:
        assert result.returncode == 0, result.stdout[-2000:]
        assert "3 skipped" in summary and "failed" not in summary, summary
