"""Retries grow what failed, within the site's caps, and keep the planned global batch."""

from __future__ import annotations

import copy

import pytest

from codeift.config import ConfigError, load_yaml, validate_config
from codeift.resources import job_request
from codeift.retries import (
    RetryError,
    allocation_launch,
    classify_failure,
    keep_global_batch,
    launch_settings,
    previous_failure,
    retry_request,
)
from codeift.settings import TrainSettings
from tests.conftest import REPO

PAPER = load_yaml(REPO / "config" / "paper.yaml")
REQUEST = {"gpus": 4, "cpus": 32, "mem_mb": 256000, "runtime": 1440}
CAPS = {"gpus": 8, "mem_mb": 500000, "runtime": 2880}


@pytest.mark.parametrize(
    ("log", "kind"),
    [
        (
            "step 3\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "gpu_oom",
        ),
        ("codeift sft: GpuOutOfMemory: CUDA out of memory training backbone x", "gpu_oom"),
        ("slurmstepd: error: *** JOB 12 CANCELLED AT 2026-01-01 DUE TO TIME LIMIT ***", "timeout"),
        ("{'loss': 1.2}\n 40%|####  | 400/1000", "timeout"),  # cut short: no end, no traceback
        ("slurmstepd: error: Detected 1 oom_kill event in StepId=12.batch", "host_oom"),
        ("Traceback (most recent call last):\nValueError: bad mix", "other"),
        (None, "other"),
    ],
)
def test_a_failure_is_read_from_the_log(log, kind) -> None:
    assert classify_failure(log) == kind


def test_each_failure_grows_only_what_ran_out_and_never_past_a_cap() -> None:
    assert retry_request(REQUEST, 1, "gpu_oom", 1.5, CAPS) == REQUEST
    oom = retry_request(REQUEST, 2, "gpu_oom", 1.5, CAPS)
    assert (oom["gpus"], oom["runtime"]) == (8, 1440)  # more GPUs, not more time
    assert oom["cpus"] == 64 and oom["mem_mb"] == 500000  # host share grows with them, capped
    assert retry_request(REQUEST, 3, "gpu_oom", 1.5, CAPS)["gpus"] == 8  # at the cap
    timeout = retry_request(REQUEST, 2, "timeout", 1.5, CAPS)
    assert (timeout["runtime"], timeout["gpus"], timeout["mem_mb"]) == (2160, 4, 256000)
    assert retry_request(REQUEST, 3, "timeout", 1.5, CAPS)["runtime"] == 2880  # 3240 capped
    host = retry_request(REQUEST, 2, "host_oom", 1.5, CAPS)
    assert (host["mem_mb"], host["runtime"]) == (384000, 1440)
    other = retry_request(REQUEST, 2, "other", 1.5, {})
    assert (other["mem_mb"], other["runtime"]) == (384000, 2160)  # as before: both grow


def test_the_workflow_request_reads_the_previous_attempts_log(tmp_path) -> None:
    config = copy.deepcopy(PAPER)
    config["resources"]["limits"] = {"runtime": 2000}
    log = tmp_path / "logs" / "sft" / "llama-2-7b" / "code50.log"
    log.parent.mkdir(parents=True)
    log.write_text("RuntimeError: CUDA out of memory.")
    wildcards = {"backbone": "llama-2-7b", "arm": "code50"}
    assert previous_failure(str(tmp_path), "sft", wildcards, 1) is None
    failure = previous_failure(str(tmp_path), "sft", wildcards, 2)
    assert job_request(config, "sft", "llama-2-7b", 2, failure)["gpu"] == 8
    log.write_text("{'loss': 1.1}\n")  # killed mid-run: a time-out
    failure = previous_failure(str(tmp_path), "sft", wildcards, 2)
    request = job_request(config, "sft", "llama-2-7b", 2, failure)
    assert (request["gpu"], request["runtime"]) == (4, 2000)  # 2160 capped at the partition's


def test_a_first_request_above_a_cap_fails_validation() -> None:
    config = copy.deepcopy(PAPER)
    config["resources"]["limits"] = {"gpus": 2}
    with pytest.raises(
        ConfigError, match=r"backbones.gemma-7b.resources.sft.gpus': 4 .*limits.gpus = 2"
    ):
        validate_config(config)


def test_more_gpus_keep_the_planned_global_batch() -> None:
    settings = TrainSettings(per_device_train_batch_size=4, gradient_accumulation_steps=8)
    launch = allocation_launch({"gpus": 4, "strategy": "fsdp"}, {"SLURM_GPUS_ON_NODE": "8"})
    assert launch == {"gpus": 8, "strategy": "fsdp", "planned_gpus": 4}
    wider = launch_settings(settings, launch)
    assert (wider.per_device_train_batch_size, wider.gradient_accumulation_steps) == (4, 4)
    # 4 x 8 x 4 GPUs = 128 = 4 x 4 x 8 GPUs; halving the micro-batch doubles the accumulation.
    smaller = keep_global_batch(settings, 4, 8, halvings=1)
    assert (smaller.per_device_train_batch_size, smaller.gradient_accumulation_steps) == (2, 8)
    with pytest.raises(RetryError, match="global batch of 128"):
        keep_global_batch(settings, 4, 3)
    # As planned: nothing changes, and a worker (planned_gpus set) is not widened again.
    assert allocation_launch({"gpus": 4}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == {"gpus": 4}
    assert allocation_launch(launch, {"SLURM_GPUS_ON_NODE": "16"}) == launch
    assert launch_settings(settings, {"gpus": 4}) is settings
