"""Scheduling: how jobs travel together in cluster submissions, how many a study submits, and
the priorities that order them (a model's generation jobs back to back, their inputs first).

A group job is one submission however many rules it holds; every ungrouped job is one; the
target rule runs on the login node. Groups never mix a GPU request with a CPU one (Snakemake
refuses to merge differing partitions, and a GPU would idle while the CPU work runs):

- all task builds travel as one CPU job, and all mixes as another (profile `group-components`);
- a model's (backbone x variant) generation is one GPU job: its tasks' jobs run one after
  another in that allocation, and the model's first job generates the others ahead, so its
  engine loads once (codeift.infer.generate);
- a model's scoring is one CPU job.

The group names carry wildcards; profiles/slurm joins each name's jobs with `group-components`
under the same pattern, which Snakemake looks up by the rule's unresolved group name.
Snakemake's SLURM executor runs a group's jobs one at a time in its allocation (`--jobs 1`);
each grouped job holds one GROUP_SLOTS, of which the profile provides one per allocation, so
the group asks for one job's GPUs, CPUs and memory and the sum of the jobs' times.
"""

from __future__ import annotations

import re
from collections import Counter

from codeift.io import stable_hash

TARGET_RULE = "all"
GENERATE_GROUP = "generate_{backbone}_{variant}"
SCORE_GROUP = "score_{backbone}_{variant}"
# Each grouped job holds one; profiles/slurm provides one per allocation (scope: local), so that
# a group's request is sized for its jobs in sequence, as the executor runs them.
GROUP_SLOTS = "group_slots"
# Generation jobs take priorities 1..MODEL_PRIORITIES; the small jobs that feed them (task files,
# mixes, base models) go above, so that no task file is left for last: a late task made every
# model's engine start a second time for its one remaining job (19 starts for 10 models).
MODEL_PRIORITIES = 10_000
INPUT_PRIORITY = MODEL_PRIORITIES + 1


def model_priority(backbone: str, variant: str) -> int:
    """Scheduling priority of a model's generation jobs: one fixed value per model, so that
    Snakemake runs the ready jobs of one model back to back and its engine starts once, instead
    of interleaving models and reloading evicted engines (33 starts for 10 models, measured)."""
    return 1 + int(stable_hash([backbone, variant], length=8), 16) % MODEL_PRIORITIES


_GROUP = re.compile(r"^\[[^\]]*\] Group job (\S+) ", re.MULTILINE)
_UNGROUPED = re.compile(r"^rule (\w+):$", re.MULTILINE)
_STATS = re.compile(r"^(\w+)\s+(\d+)$", re.MULTILINE)


def count_submissions(dry_run: str) -> dict[str, object]:
    """Submissions by kind (`group <name>` or the rule), their total, and the job total."""
    submissions: Counter[str] = Counter()
    submissions.update(f"group {_group_kind(name)}" for name in _GROUP.findall(dry_run))
    submissions.update(rule for rule in _UNGROUPED.findall(dry_run) if rule != TARGET_RULE)
    stats_block = dry_run.split("Job stats:", 1)[1] if "Job stats:" in dry_run else ""
    stats = dict(_STATS.findall(stats_block.split("\n\n", 1)[0]))
    return {
        "submissions": dict(sorted(submissions.items())),
        "total_submissions": sum(submissions.values()),
        "total_jobs": int(stats.get("total", 0)) - int(stats.get("all", 0)),
    }


def _group_kind(group_id: str) -> str:
    """A resolved group id back to its pattern (`generate_tiny_code0` -> GENERATE_GROUP), so
    that the counts read per kind of submission."""
    for pattern in (GENERATE_GROUP, SCORE_GROUP):
        if group_id.startswith(pattern.split("{", 1)[0]):
            return pattern
    return group_id
