"""Where each rule's files go under the study's `results` folder: one template per kind of file.

The rules (workflow/rules/*.smk) build their inputs, outputs and logs from these templates, and
a stage that needs a sibling of its own files (generation finds the other task files of its
model, a retry reads the failed SFT job's log) derives it from the same template, so the layout
is written once. Templates are relative to `results` and name their wildcards as the rules do.
"""

from __future__ import annotations

import re
from pathlib import Path

POOL = "ift/pool.parquet"
POOL_REPORT = "ift/pool.report.json"
MIX = "ift/mixes/{arm}.parquet"
MIX_CARD = "ift/mixes/{arm}.card.json"
TASK = "tasks/{task}.parquet"
BASE_MODEL = "models/{backbone}/base"
MODEL = "models/{backbone}/{variant}"
TUNED_MODEL = "models/{backbone}/{arm}"
CHECKPOINTS = "checkpoints/{backbone}/{arm}"
GENERATIONS = "generations/{backbone}/{variant}/{task}.parquet"
SCORES = "scores/{backbone}/{variant}/{task}.parquet"
SUMMARY_DIR = "summary"
FIGURE_DIR = "figures"

# Job logs: kept by Snakemake when a job fails, so a retry can read why (codeift.retries).
LOGS = {
    "build_pool": "logs/build_pool.log",
    "build_mix": "logs/build_mix/{arm}.log",
    "build_task": "logs/build_task/{task}.log",
    "prepare_backbone": "logs/prepare_backbone/{backbone}.log",
    "pretrain": "logs/pretrain/{architecture}.log",
    "sft": "logs/sft/{backbone}/{arm}.log",
    "generate": "logs/generate/{backbone}/{variant}/{task}.log",
    "score": "logs/score/{backbone}/{variant}/{task}.log",
    "aggregate": "logs/aggregate.log",
}

_WILDCARD = re.compile(r"\{(\w+)\}")


def under(results: str | Path, template: str) -> str:
    """`template` under the results folder, its wildcards left for Snakemake to fill."""
    return f"{results}/{template}"


def path(results: str | Path, template: str, **wildcards: object) -> Path:
    """One file of the layout: `template` under `results` with its wildcards filled."""
    return Path(results) / template.format(**wildcards)


def parse(file: str | Path, template: str) -> tuple[str, dict[str, str]]:
    """(results folder, wildcards) of a file laid out by `template`; ValueError if it is not.
    The inverse of `path`: a stage given one of its files finds the results folder and its own
    wildcards without writing the layout again."""
    pattern, position = "", 0
    for match in _WILDCARD.finditer(template):
        pattern += re.escape(template[position : match.start()]) + f"(?P<{match[1]}>[^/]+)"
        position = match.end()
    pattern += re.escape(template[position:])
    found = re.fullmatch(rf"(?:(?P<_results>.*)/)?{pattern}", Path(file).as_posix())
    if found is None:
        raise ValueError(f"{file}: not laid out as <results>/{template}")
    wildcards = found.groupdict()
    results = wildcards.pop("_results")
    return ("." if results is None else results or "/"), wildcards


def sibling(file: str | Path, template: str, **changes: str) -> Path:
    """The file of the same layout `template` whose wildcards are `file`'s with `changes`: e.g.
    the generations of another task of the same model."""
    results, wildcards = parse(file, template)
    return path(results, template, **{**wildcards, **changes})
