"""Retries that raise what failed, never past a site's caps.

Why: growing host memory and time on every failure (resources.scaled) never helps a GPU
out-of-memory error, and can push a request past what the partition allows, so the retry is
refused by SLURM instead of run. Here a failure is classified from the job's log and the next
request grows only what ran out:

- a GPU out-of-memory error gets more GPUs (doubled, up to `resources.limits.gpus`); the job then
  keeps the global batch by dividing its gradient accumulation over the GPUs it has
  (`keep_global_batch`), so the trained model's hyperparameters, and the job's params, do not
  change. Where the GPUs are at their cap (the retry has no more GPUs than the attempt that ran
  out), the job halves its micro-batch and doubles the accumulation instead (the same global
  batch): each SFT job notes its out-of-memory errors (GPUs, halvings) in its checkpoint folder,
  which survives a failed attempt, and the next attempt reads them (oom_halvings). A runtime
  override, not a param: a retry never makes Snakemake rerun a finished job;
- a time-out (the log ends without the job's own end line) gets more time, up to
  `resources.limits.runtime`, the partition's limit;
- a host out-of-memory kill gets more memory, up to `resources.limits.mem_mb`;
- any other failure grows memory and time as before, within the same caps.

A first request above a cap is refused when the config is validated (check_limits).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from codeift.errors import RetryError
from codeift.layout import LOGS
from codeift.layout import path as path_in
from codeift.settings import TrainSettings

FAILURES = ("gpu_oom", "host_oom", "timeout", "other")
LIMIT_KEYS = {"gpus": "gpus", "mem_mb": "mem_mb", "runtime": "runtime"}
_GPU_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED", re.I)
_HOST_OOM = re.compile(r"oom[-_ ]kill|Out Of Memory|MemoryError|Killed\s*$", re.I | re.M)
_TIMEOUT = re.compile(r"DUE TO TIME LIMIT|TIMEOUT", re.I)
# Every stage ends its log with this line (cli.main): a log without it and without a Python
# traceback was cut short from outside, as a time limit does.
_FINISHED = re.compile(r"^\[codeift\] \S+ done in|^Traceback|^codeift \S+: ", re.M)


def classify_failure(log_text: str | None) -> str:
    """What made an attempt fail, from its log: gpu_oom, host_oom, timeout or other."""
    if not log_text:
        return "other"
    if _GPU_OOM.search(log_text):
        return "gpu_oom"
    if _TIMEOUT.search(log_text):
        return "timeout"
    if _HOST_OOM.search(log_text):
        return "host_oom"
    if not _FINISHED.search(log_text):
        return "timeout"
    return "other"


def limits(config: dict[str, Any]) -> dict[str, int]:
    """The site's caps per job (config `resources.limits`); absent keys cap nothing."""
    return dict(config.get("resources", {}).get("limits") or {})


def check_limits(config: dict[str, Any], request: dict[str, Any], where: str) -> None:
    """A first request above a cap cannot be submitted at all: say so in the dry run."""
    for key, cap in limits(config).items():
        if key in request and request[key] > cap:
            raise RetryError(
                f"config key '{where}.{key}': {request[key]} is above the site's cap "
                f"resources.limits.{key} = {cap}"
            )


def retry_request(
    request: dict[str, Any], attempt: int, failure: str, scale: float, caps: dict[str, int]
) -> dict[str, Any]:
    """The request of `attempt` (1 = first try) after a `failure` of the one before: only what
    ran out grows (module docstring), each key capped."""
    if attempt <= 1:
        return dict(request)
    grown = dict(request)
    steps = attempt - 1
    if failure == "gpu_oom":
        if request["gpus"] > 0:
            grown["gpus"] = request["gpus"] * 2**steps
    elif failure == "timeout":
        grown["runtime"] = math.ceil(request["runtime"] * scale**steps)
    elif failure == "host_oom":
        grown["mem_mb"] = math.ceil(request["mem_mb"] * scale**steps)
    else:
        grown["runtime"] = math.ceil(request["runtime"] * scale**steps)
        grown["mem_mb"] = math.ceil(request["mem_mb"] * scale**steps)
    for key, cap in caps.items():
        if key in grown:
            grown[key] = min(grown[key], cap)
    if grown.get("gpus", 0) > request.get("gpus", 0):
        # More GPUs bring their host share: CPUs and memory grow with them.
        factor = grown["gpus"] / request["gpus"]
        for key in ("cpus", "mem_mb"):
            if key in grown:
                grown[key] = math.ceil(request[key] * factor)
                if key in caps:
                    grown[key] = min(grown[key], caps[key])
    return grown


def keep_global_batch(
    settings: TrainSettings, planned_gpus: int, gpus: int, halvings: int = 0
) -> TrainSettings:
    """The micro-batch and accumulation of a job that runs on `gpus` GPUs (and has halved its
    micro-batch `halvings` times after out-of-memory errors) with the global batch the params
    planned on `planned_gpus`: per_device x accumulation x GPUs stays equal."""
    planned = max(planned_gpus, 1)
    gpus = max(gpus, 1)
    global_batch = (
        settings.per_device_train_batch_size * settings.gradient_accumulation_steps * planned
    )
    micro = max(1, settings.per_device_train_batch_size // 2**halvings)
    if global_batch % (micro * gpus):
        raise RetryError(
            f"a global batch of {global_batch} (train.per_device_train_batch_size "
            f"{settings.per_device_train_batch_size} x gradient_accumulation_steps "
            f"{settings.gradient_accumulation_steps} x {planned} GPUs) cannot be split into "
            f"micro-batches of {micro} on {gpus} GPUs"
        )
    return replace(
        settings,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=global_batch // (micro * gpus),
    )


def allocated_gpus(environ: dict[str, str]) -> int | None:
    """GPUs the job's allocation holds (SLURM's count, else the visible devices), or None."""
    if environ.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(environ["SLURM_GPUS_ON_NODE"])
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible != "-1":
        return len([part for part in visible.split(",") if part.strip()])
    return None


def allocation_launch(launch: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """The launch of a job whose retry was given more GPUs than its params planned (after a GPU
    out-of-memory error): it trains on all of them, remembering the planned count so the global
    batch stays the planned one (keep_global_batch). Otherwise the launch as planned."""
    planned = int(launch.get("gpus", 0))
    have = allocated_gpus(environ)
    if planned < 1 or have is None or have <= planned or "planned_gpus" in launch:
        return launch
    return {**launch, "gpus": have, "planned_gpus": planned}


def launch_settings(
    settings: TrainSettings, launch: dict[str, Any], halvings: int = 0
) -> TrainSettings:
    """The settings a job trains with on its launch: the planned global batch on its GPUs, in
    micro-batches halved `halvings` times (oom_halvings)."""
    if "planned_gpus" not in launch and not halvings:
        return settings
    gpus = int(launch.get("gpus", 0))
    planned = int(launch.get("planned_gpus", gpus))
    return keep_global_batch(settings, planned, gpus, halvings)


# In the job's checkpoint folder (a param, not an output: Snakemake keeps it when an attempt
# fails, and the finished job removes it with its checkpoints).
GPU_OOM_FILE = "codeift_gpu_oom.json"


def _oom_events(checkpoints: str | Path) -> list[dict[str, int]]:
    path = Path(checkpoints) / GPU_OOM_FILE
    try:
        events = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise RetryError(f"{path}: unreadable ({error}); delete it to start afresh") from None
    return [{"gpus": int(e["gpus"]), "halvings": int(e["halvings"])} for e in events]


def record_gpu_oom(checkpoints: str | Path, gpus: int, halvings: int) -> None:
    """Note that the job ran out of GPU memory on `gpus` GPUs with its micro-batch halved
    `halvings` times. Every rank that ran out may call it: the same event is noted once."""
    events = _oom_events(checkpoints)
    event = {"gpus": max(int(gpus), 1), "halvings": int(halvings)}
    if event in events:
        return
    path = Path(checkpoints) / GPU_OOM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps([*events, event]))
    partial.replace(path)


def oom_halvings(checkpoints: str | Path, gpus: int, settings: TrainSettings) -> int:
    """How many times this attempt halves its micro-batch: none where it has more GPUs than
    every attempt that ran out of GPU memory (the retry got more GPUs); else once more than the
    attempt that ran out on as many GPUs as it has (the GPUs are at their cap). Refused where
    the micro-batch is 1 already: no retry with the same request can fit."""
    ran_out = [e["halvings"] for e in _oom_events(checkpoints) if e["gpus"] >= max(gpus, 1)]
    if not ran_out:
        return 0
    halvings = max(ran_out) + 1
    if settings.per_device_train_batch_size // 2 ** (halvings - 1) <= 1:
        raise RetryError(
            f"out of GPU memory on {gpus} GPU(s) with a micro-batch of 1 already "
            f"({Path(checkpoints) / GPU_OOM_FILE}): give the backbone more GPUs than "
            "resources.limits.gpus allows, turn on train.gradient_checkpointing, or lower "
            "train.max_length"
        )
    return halvings


def log_tail(path: str, size: int = 20_000) -> str | None:
    """The end of a job's log, or None where there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def previous_failure(results: str, stage: str, wildcards: Any, attempt: int) -> str | None:
    """Why the attempt before this one failed, read from the SFT job's log (kept by Snakemake
    when a job fails); None on a first attempt and for stages whose logs are not read."""
    if attempt <= 1 or stage != "sft":
        return None
    path = path_in(
        results, LOGS["sft"], backbone=wildcards.get("backbone"), arm=wildcards.get("arm")
    )
    return classify_failure(log_tail(str(path)))
