"""Cluster requests per job from the config, and the command each SFT allocation runs."""

from __future__ import annotations

import copy
import sys

import pytest

from codeift.config import ConfigError, backbone_inference, load_yaml, validate_config
from codeift.resources import (
    DEFAULT_TIERS,
    ResourceError,
    job_request,
    parse_size,
    train_launch,
)
from codeift.train.launch import LaunchError, is_worker, needs_relaunch, train_command
from tests.conftest import REPO

PAPER = load_yaml(REPO / "config" / "paper.yaml")


@pytest.mark.parametrize(
    ("label", "parameters"),
    [("0.6M", 6e5), ("1.8m", 1.8e6), ("7B", 7e9), ("8x7B", 56e9), ("125K", 1.25e5)],
)
def test_size_labels(label, parameters):
    assert parse_size(label) == pytest.approx(parameters)


def test_unreadable_size_names_the_key(config):
    config["backbones"]["tiny-llama"]["size"] = "tiny"
    with pytest.raises(ConfigError, match=r"backbones\.tiny-llama\.size.*'tiny'"):
        validate_config(config)


def test_tiny_backbones_need_no_gpu(config):
    for stage in ("sft", "generate"):
        request = job_request(config, stage, "tiny-llama")
        assert request["gpu"] == 0
        assert request["cpus_per_task"] >= 1


def test_paper_backbones_get_gpus_by_size():
    sft = job_request(PAPER, "sft", "llama-2-7b")
    generate = job_request(PAPER, "generate", "llama-2-7b")
    assert sft["gpu"] == 4 and sft["mem_mb"] >= 128000
    assert generate["gpu"] == 1
    assert train_launch(PAPER, "llama-2-7b") == {"gpus": 4, "strategy": "fsdp"}
    # vLLM spans the generation job's GPUs.
    assert backbone_inference(PAPER, "llama-2-7b").tensor_parallel_size == 1


def test_backbone_overrides_its_tier_key_by_key(config):
    config["backbones"]["tiny-llama"]["resources"] = {
        "sft": {"gpus": 2, "strategy": "ddp"},
        "generate": {"gpus": 2, "runtime": 90},
    }
    validate_config(config)
    sft = job_request(config, "sft", "tiny-llama")
    tier = DEFAULT_TIERS["sft"][0]
    assert sft["gpu"] == 2 and sft["mem_mb"] == tier["mem_mb"]
    assert train_launch(config, "tiny-llama") == {"gpus": 2, "strategy": "ddp"}
    assert job_request(config, "generate", "tiny-llama")["runtime"] == 90
    assert backbone_inference(config, "tiny-llama").tensor_parallel_size == 2
    # The other backbone keeps its tier.
    assert job_request(config, "sft", "tiny-qwen2")["gpu"] == 0


def test_study_tiers_replace_the_defaults(config):
    config["resources"] = {
        "sft": [{"max_size": "1M", "gpus": 1, "cpus": 4, "mem_mb": 1000, "runtime": 5}]
    }
    validate_config(config)
    assert job_request(config, "sft", "tiny-llama")["gpu"] == 1


def test_a_size_above_every_tier_takes_the_largest():
    config = copy.deepcopy(PAPER)
    config["backbones"]["llama-2-7b"]["size"] = "405B"
    assert job_request(config, "sft", "llama-2-7b")["gpu"] == DEFAULT_TIERS["sft"][-1]["gpus"]


def test_retries_grow_memory_and_time(config):
    config["resources"] = {"retry_scale": 2}
    first = job_request(config, "sft", "tiny-llama", attempt=1)
    third = job_request(config, "sft", "tiny-llama", attempt=3)
    assert third["mem_mb"] == 4 * first["mem_mb"]
    assert third["runtime"] == 4 * first["runtime"]
    assert third["gpu"] == first["gpu"] and third["cpus_per_task"] == first["cpus_per_task"]


def test_the_judge_pool_build_asks_for_a_gpu(config):
    assert job_request(config, "build_pool")["gpu"] == 0
    assert job_request(PAPER, "build_pool")["gpu"] == 1


def test_bad_resource_values_name_the_key(config):
    config["resources"] = {"sft": [{"max_size": "1B", "gpus": -1, "cpus": 1, "mem_mb": 1000}]}
    with pytest.raises(ConfigError, match=r"resources\.sft\[0\]"):
        validate_config(config)
    config["resources"] = {"retry_scale": 0.5}
    with pytest.raises(ConfigError, match="resources.retry_scale"):
        validate_config(config)


def test_unknown_stage():
    with pytest.raises(ResourceError, match="unknown stage"):
        job_request(PAPER, "nope")


TRAIN_ARGS = ["--model", "m", "--mix", "x.parquet", "--out", "o"]


def test_cpu_and_single_gpu_jobs_run_a_plain_process():
    for gpus in (0, 1):
        command = train_command({"gpus": gpus, "strategy": "fsdp"}, TRAIN_ARGS, port=1234)
        assert command == [sys.executable, "-m", "codeift", "sft", *TRAIN_ARGS]


def test_multi_gpu_fsdp_uses_accelerate_with_the_repo_config():
    command = train_command({"gpus": 4, "strategy": "fsdp"}, TRAIN_ARGS, port=29611)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    config_file = command[command.index("--config_file") + 1]
    assert config_file == str(REPO / "src" / "codeift" / "train" / "accelerate" / "fsdp.yaml")
    assert load_yaml(config_file)["distributed_type"] == "FSDP"
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[command.index("--main_process_port") + 1] == "29611"
    assert command[-len(TRAIN_ARGS) - 3 :] == ["-m", "codeift", "sft", *TRAIN_ARGS]


def test_multi_gpu_ddp_uses_torchrun():
    command = train_command({"gpus": 2, "strategy": "ddp"}, TRAIN_ARGS, port=29700)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[command.index("--rdzv_endpoint") + 1] == "127.0.0.1:29700"
    assert command[-len(TRAIN_ARGS) - 3 :] == ["-m", "codeift", "sft", *TRAIN_ARGS]


def test_workers_never_relaunch():
    launch = {"gpus": 4, "strategy": "fsdp"}
    assert needs_relaunch(launch, environ={})
    assert not needs_relaunch(launch, environ={"LOCAL_RANK": "0", "WORLD_SIZE": "4"})
    assert not needs_relaunch({"gpus": 1}, environ={})
    assert is_worker({"WORLD_SIZE": "2"}) and not is_worker({})


def test_unknown_strategy():
    with pytest.raises(LaunchError, match="deepspeed"):
        train_command({"gpus": 2, "strategy": "deepspeed"}, TRAIN_ARGS, port=1)


def test_the_pretraining_request_is_configurable(config):
    assert job_request(config, "pretrain")["runtime"] == 120
    config["resources"] = {"pretrain": {"gpus": 1, "cpus": 8, "mem_mb": 16000, "runtime": 30}}
    validate_config(config)
    assert job_request(config, "pretrain") == {
        "gpu": 1,
        "cpus_per_task": 8,
        "mem_mb": 16000,
        "runtime": 30,
    }
