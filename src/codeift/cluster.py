"""How many cluster jobs a study submits, read from a Snakemake dry run with the profile.

A group job (task builds, mixes, each generation with its scoring) is one submission however
many rules it holds; every ungrouped job is one; the target rule runs on the login node.
"""

from __future__ import annotations

import re
from collections import Counter

TARGET_RULE = "all"
_GROUP = re.compile(r"^\[[^\]]*\] Group job (\S+) ", re.MULTILINE)
_UNGROUPED = re.compile(r"^rule (\w+):$", re.MULTILINE)
_STATS = re.compile(r"^(\w+)\s+(\d+)$", re.MULTILINE)


def count_submissions(dry_run: str) -> dict[str, object]:
    """Submissions by kind (`group <name>` or the rule), their total, and the job total."""
    submissions: Counter[str] = Counter()
    submissions.update(f"group {name}" for name in _GROUP.findall(dry_run))
    submissions.update(rule for rule in _UNGROUPED.findall(dry_run) if rule != TARGET_RULE)
    stats_block = dry_run.split("Job stats:", 1)[1] if "Job stats:" in dry_run else ""
    stats = dict(_STATS.findall(stats_block.split("\n\n", 1)[0]))
    return {
        "submissions": dict(sorted(submissions.items())),
        "total_submissions": sum(submissions.values()),
        "total_jobs": int(stats.get("total", 0)) - int(stats.get("all", 0)),
    }
