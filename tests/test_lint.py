"""The code style is part of the build: ruff for Python, snakefmt for the Snakemake files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint_and_format():
    lint = _run(str(BIN / "ruff"), "check", "src", "tests")
    assert lint.returncode == 0, lint.stdout
    fmt = _run(str(BIN / "ruff"), "format", "--check", "src", "tests")
    assert fmt.returncode == 0, fmt.stdout


def test_snakemake_files_are_formatted():
    result = _run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert result.returncode == 0, result.stderr
