"""Cluster resources per job: GPUs, CPUs, memory and run time, from the config.

SFT and generation take a tier by backbone size (a tiny model needs no GPU, a 7B full fine-tune
needs several), which a backbone may override key by key. Small jobs (task builds, scoring,
mixes, the aggregate) share one modest request. A failed job is retried with more of what it
ran out of (codeift.retries): each attempt multiplies it by `retry_scale`, within
`resources.limits`.

These are Snakemake `resources:`, not params: changing them never reruns a finished job. The
one exception is the SFT GPU count, which changes the global batch and so travels to the
training job as a param as well (see `train_launch`).
"""

from __future__ import annotations

import re
from typing import Any

from codeift.errors import ResourceError
from codeift.settings import ResourceSettings

STAGES = ("sft", "generate")
REQUEST_KEYS = ("gpus", "cpus", "mem_mb", "runtime")
# Stages whose job runs on one node whatever its GPU count (train/launch.py starts one process
# per GPU of its own node; vLLM's tensor parallelism stays on one node): they ask `nodes: 1`.
SINGLE_NODE_STAGES = STAGES
# The Snakemake resources a job of each stage carries (what the SLURM executor submits).
RESOURCE_NAMES = ("gpu", "cpus_per_task", "mem_mb", "runtime")


def resource_names(stage: str) -> tuple[str, ...]:
    return RESOURCE_NAMES + (("nodes",) if stage in SINGLE_NODE_STAGES else ())


# Tiers by parameter count; the first whose max_size holds the backbone applies.
DEFAULT_TIERS: dict[str, list[dict[str, Any]]] = {
    "sft": [
        {"max_size": "100M", "gpus": 0, "cpus": 2, "mem_mb": 4000, "runtime": 30},
        {"max_size": "3B", "gpus": 1, "cpus": 8, "mem_mb": 64000, "runtime": 480},
        {"max_size": "15B", "gpus": 4, "cpus": 32, "mem_mb": 256000, "runtime": 1440},
        {"max_size": "80B", "gpus": 8, "cpus": 64, "mem_mb": 512000, "runtime": 2880},
    ],
    # Per task: a model's generation jobs run one after another in one allocation, which asks
    # for the sum of their times (12 tasks of a 7B model: 6 h), the engine loaded once.
    "generate": [
        {"max_size": "100M", "gpus": 0, "cpus": 2, "mem_mb": 4000, "runtime": 10},
        {"max_size": "15B", "gpus": 1, "cpus": 8, "mem_mb": 64000, "runtime": 30},
        {"max_size": "80B", "gpus": 4, "cpus": 32, "mem_mb": 256000, "runtime": 60},
    ],
}
DEFAULT_SMALL: dict[str, Any] = {"gpus": 0, "cpus": 1, "mem_mb": 2000, "runtime": 15}
DEFAULT_PREPARE: dict[str, Any] = {"gpus": 0, "cpus": 2, "mem_mb": 8000, "runtime": 120}
DEFAULT_PRETRAIN: dict[str, Any] = {"gpus": 0, "cpus": 2, "mem_mb": 4000, "runtime": 120}
DEFAULT_POOL: dict[str, Any] = {"gpus": 0, "cpus": 2, "mem_mb": 8000, "runtime": 60}
DEFAULT_JUDGE_POOL: dict[str, Any] = {"gpus": 1, "cpus": 8, "mem_mb": 64000, "runtime": 480}

_SIZE = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*([KMBT])\s*$", re.IGNORECASE)
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_size(label: str, key: str = "size") -> float:
    """Parameters in a size label: '0.6M', '7B', '8x7B' (a mixture: 56B)."""
    match = _SIZE.match(str(label))
    if not match:
        raise ResourceError(
            f"config key '{key}': cannot read a parameter count from {label!r} "
            "(allowed: a number with K, M, B or T, e.g. 1.8M, 7B, 8x7B)"
        )
    experts, number, unit = match.groups()
    return (int(experts) if experts else 1) * float(number) * _UNITS[unit.upper()]


def _tier_for(tiers: list[dict[str, Any]], size: float, key: str) -> dict[str, Any]:
    ordered = sorted(tiers, key=lambda tier: parse_size(tier["max_size"], f"{key}.max_size"))
    for tier in ordered:
        if size <= parse_size(tier["max_size"]):
            return tier
    return ordered[-1]


def base_request(config: dict[str, Any], backbone: str, stage: str) -> dict[str, Any]:
    """One backbone's request for `sft` or `generate`: its size tier < its own override."""
    spec = config["backbones"][backbone]
    settings = config.get("resources", {})
    tiers = settings.get(stage, DEFAULT_TIERS[stage])
    size = parse_size(spec["size"], f"backbones.{backbone}.size")
    tier = _tier_for(tiers, size, f"resources.{stage}")
    request = {key: tier[key] for key in REQUEST_KEYS if key in tier}
    request = {**DEFAULT_SMALL, **request, **spec.get("resources", {}).get(stage, {})}
    return request


def small_request(config: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_SMALL, **config.get("resources", {}).get("small", {})}


def prepare_request(config: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_PREPARE, **config.get("resources", {}).get("prepare", {})}


def pool_request(config: dict[str, Any]) -> dict[str, Any]:
    """The pool build loads an instruct model when the labeller is the LLM judge."""
    judge = config["ift"].get("labeller", {}).get("method") == "llm_judge"
    default = DEFAULT_JUDGE_POOL if judge else DEFAULT_POOL
    return {**default, **config.get("resources", {}).get("build_pool", {})}


def retry_scale(config: dict[str, Any]) -> float:
    return float(config.get("resources", {}).get("retry_scale", ResourceSettings().retry_scale))


def train_launch(config: dict[str, Any], backbone: str) -> dict[str, Any]:
    """How the SFT job starts: GPUs of its allocation and the multi-GPU strategy."""
    request = base_request(config, backbone, "sft")
    spec = config["backbones"][backbone]
    strategy = spec.get("resources", {}).get("sft", {}).get("strategy") or config.get(
        "resources", {}
    ).get("strategy", ResourceSettings().strategy)
    return {"gpus": int(request["gpus"]), "strategy": strategy}


def validate_resources(config: dict[str, Any]) -> None:
    """Every backbone's size must be readable and every tier list non-empty: fail before jobs."""
    settings = config.get("resources", {})
    for stage in STAGES:
        tiers = settings.get(stage, DEFAULT_TIERS[stage])
        for index, tier in enumerate(tiers):
            parse_size(tier["max_size"], f"resources.{stage}[{index}].max_size")
    for name in config["backbones"]:
        for stage in STAGES:
            base_request(config, name, stage)


def job_request(
    config: dict[str, Any],
    stage: str,
    backbone: str | None = None,
    attempt: int = 1,
    failure: str | None = None,
) -> dict[str, Any]:
    """The request of one job of `stage`, named as Snakemake's SLURM executor reads it. A retry
    grows what the previous attempt's `failure` ran out of, within the site's caps
    (codeift.retries.retry_request; no failure known: memory and time, as before)."""
    if stage in STAGES:
        if backbone is None:
            raise ResourceError(f"stage {stage!r} needs a backbone")
        request = base_request(config, backbone, stage)
    elif stage == "prepare":
        request = prepare_request(config)
    elif stage == "build_pool":
        request = pool_request(config)
    elif stage == "pretrain":
        request = {**DEFAULT_PRETRAIN, **config.get("resources", {}).get("pretrain", {})}
    elif stage == "small":
        request = small_request(config)
    else:
        raise ResourceError(f"unknown stage {stage!r}")
    from codeift.retries import limits, retry_request

    grown = retry_request(request, attempt, failure or "other", retry_scale(config), limits(config))
    named = {
        "gpu": int(grown["gpus"]),
        "cpus_per_task": int(grown["cpus"]),
        "mem_mb": grown["mem_mb"],
        "runtime": grown["runtime"],
        "nodes": 1,
    }
    return {name: named[name] for name in resource_names(stage)}
