"""The code style is part of the build: ruff for Python, snakefmt and `snakemake --lint` for the
Snakemake files."""

from __future__ import annotations

import re
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


# `snakemake --lint` warnings that are wrong for this workflow, each with why: (what the lint is
# for, the start of its title). Anything else it reports fails the test.
LINT_FALSE_POSITIVES = {
    # The engine-pool knobs and the study's task names reach the generate job as arguments
    # formatted into its command, deliberately not params: they change speed, never the output,
    # so changing them must rerun nothing (workflow/rules/common.smk says why).
    ("rule", "Shell command directly uses variable ENGINES_JSON"),
    ("rule", "Shell command directly uses variable PLANNED_TASKS"),
}
LINT_ITEM = re.compile(r"^Lints for (snakefile|rule) (.+?):$")


def snakemake_lints(text: str) -> list[tuple[str, str, str]]:
    """(kind, item, title) of every lint in `snakemake --lint`'s text report (its `json` form
    is ignored by the snakemake 9 command line)."""
    lints, item = [], None
    for line in text.splitlines():
        if match := LINT_ITEM.match(line):
            item = match.groups()
        elif line.startswith("    * ") and item:
            lints.append((*item, line.removeprefix("    * ")))
    return lints


def test_snakemake_lint_reports_nothing_but_the_known_false_positives():
    result = _run(str(BIN / "snakemake"), "--lint")
    lints = snakemake_lints(result.stdout + result.stderr)
    real = [
        lint
        for lint in lints
        if not any(lint[0] == kind and lint[2].startswith(t) for kind, t in LINT_FALSE_POSITIVES)
    ]
    assert not real, "snakemake --lint:\n" + "\n".join(f"{k} {i}: {t}" for k, i, t in real)
    assert result.returncode == (1 if lints else 0), result.stderr[-2000:]


def test_lint_report_parser_reads_snakemake_text():
    text = (
        "Lints for rule aggregate (line 6, /w/analysis.smk):\n"
        "    * Param outdir is a prefix of input or output file but hardcoded:\n"
        "      If this is meant to represent a file path prefix, it will fail\n"
        "Lints for snakefile /w/common.smk:\n"
        "    * Environment variable X used but not asserted with envvars directive in line 3.:\n"
    )
    assert snakemake_lints(text) == [
        ("rule", "aggregate (line 6, /w/analysis.smk)", TITLE_OUTDIR),
        ("snakefile", "/w/common.smk", TITLE_ENV),
    ]


TITLE_OUTDIR = "Param outdir is a prefix of input or output file but hardcoded:"
TITLE_ENV = "Environment variable X used but not asserted with envvars directive in line 3.:"
