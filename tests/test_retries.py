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
    oom_halvings,
    previous_failure,
    record_gpu_oom,
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


def test_out_of_memory_at_the_gpu_cap_halves_the_micro_batch(tmp_path) -> None:
    """Each attempt that ran out of GPU memory is noted in the checkpoint folder; a retry with
    more GPUs keeps the micro-batch, one on no more GPUs halves it (4 x 8 x 4 GPUs = 128)."""
    settings = TrainSettings(per_device_train_batch_size=4, gradient_accumulation_steps=8)
    checkpoints = tmp_path / "checkpoints"
    assert oom_halvings(checkpoints, 4, settings) == 0  # a first attempt
    record_gpu_oom(checkpoints, 4, 0)
    assert oom_halvings(checkpoints, 8, settings) == 0  # the retry got 8 GPUs
    assert oom_halvings(checkpoints, 4, settings) == 1  # no more GPUs than before
    record_gpu_oom(checkpoints, 8, 0)
    record_gpu_oom(checkpoints, 8, 0)  # a second rank's note of the same error
    assert oom_halvings(checkpoints, 8, settings) == 1  # at the cap of 8
    wider = {"gpus": 8, "strategy": "fsdp", "planned_gpus": 4}
    halved = launch_settings(settings, wider, 1)
    assert (halved.per_device_train_batch_size, halved.gradient_accumulation_steps) == (2, 8)
    record_gpu_oom(checkpoints, 8, 1)
    quartered = launch_settings(settings, wider, oom_halvings(checkpoints, 8, settings))
    assert (quartered.per_device_train_batch_size, quartered.gradient_accumulation_steps) == (
        1,
        16,
    )
    record_gpu_oom(checkpoints, 8, 2)
    with pytest.raises(RetryError, match="micro-batch of 1 already"):
        oom_halvings(checkpoints, 8, settings)
    # On the planned GPUs (no planned_gpus in the launch) the halving applies as well.
    same = launch_settings(settings, {"gpus": 4, "strategy": "fsdp"}, 1)
    assert (same.per_device_train_batch_size, same.gradient_accumulation_steps) == (2, 16)


def test_the_halved_micro_batch_reaches_the_sft_config(tmp_path, monkeypatch) -> None:
    """Two attempts of `codeift sft` on the same single GPU: the first runs out of GPU memory,
    the second trains with half the micro-batch and twice the accumulation, from the same
    params (settings and launch JSON unchanged), so Snakemake sees nothing to rerun."""
    import argparse

    import codeift.train.sft as sft
    from codeift.cli import cmd_sft

    seen: list[TrainSettings] = []

    def fake_train(model, mix, out, checkpoints, settings):
        seen.append(settings)
        if len(seen) == 1:
            raise sft.GpuOutOfMemory("CUDA out of memory training backbone x")
        return {"world_size": 1, "global_step": 1, "train_loss": 0.0, "seconds": 0.0}

    monkeypatch.setattr(sft, "train", fake_train)
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for name in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    planned = TrainSettings(per_device_train_batch_size=4, gradient_accumulation_steps=2)
    args = argparse.Namespace(
        model="m",
        mix="x.parquet",
        out="out",
        checkpoints=str(tmp_path / "checkpoints"),
        settings=planned.to_json(),
        launch='{"gpus": 1, "strategy": "fsdp"}',
    )
    with pytest.raises(sft.GpuOutOfMemory):
        cmd_sft(argparse.Namespace(**vars(args)))
    cmd_sft(argparse.Namespace(**vars(args)))
    first, retry = seen
    assert (first.per_device_train_batch_size, first.gradient_accumulation_steps) == (4, 2)
    assert (retry.per_device_train_batch_size, retry.gradient_accumulation_steps) == (2, 4)
    config = sft.sft_config(retry, tmp_path / "checkpoints", use_cpu=True)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (2, 4)
    assert (
        retry.param_dict()
        | {
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 2,
        }
        == planned.param_dict()
    )
