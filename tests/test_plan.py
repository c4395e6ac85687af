"""The GPU-hour plan's arithmetic, worked by hand on the tiny study given a 1B backbone."""

from __future__ import annotations

import pytest

from codeift.config import ConfigError
from codeift.plan import Assumptions, plan, render

ASSUMED = Assumptions(
    gpu="a100-80gb",  # 312 dense bf16 TFLOP/s
    train_utilisation=0.5,
    generate_utilisation=0.1,
    engine_start_seconds=60,
    example_tokens=100,
    prompt_tokens=50,
)


@pytest.fixture
def study(config: dict) -> dict:
    """The embedded study with tiny-llama relabelled 1B: one GPU for SFT and for generation."""
    config["backbones"]["tiny-llama"]["size"] = "1B"
    return config


def _rows(config: dict, assumed: Assumptions = ASSUMED) -> dict:
    return {row.rule: row for row in plan(config, assumed)}


def test_sft_row_by_hand(study: dict) -> None:
    row = _rows(study)["sft[tiny-llama]"]
    # 60 steps x 8 conversations x 1 GPU, each min(100 assumed, max_length 448) tokens.
    assert row.tokens_per_job == 60 * 8 * 100
    assert (row.jobs, row.gpus_per_job) == (4, 1)  # code0, code50, code100, code50r1
    seconds_per_job = 6 * 1e9 * 48_000 / (312e12 * 0.5)
    assert row.gpu_hours == pytest.approx(4 * seconds_per_job / 3600)


def test_generation_row_by_hand(study: dict) -> None:
    row = _rows(study)["generate[tiny-llama]"]
    prompts = 12 * 24
    assert row.tokens_per_job == prompts * (50 + 200)  # prompt + max_new_tokens
    seconds = 2 * 1e9 * prompts * 250 / (312e12 * 0.1) + 60  # one engine start per model
    assert (row.jobs, row.gpus_per_job) == (5, 1)  # base and four arms
    assert row.gpu_hours == pytest.approx(5 * seconds / 3600)
    assert row.peak_gpu_mem_gb == pytest.approx(0.85 * 80)  # what vLLM reserves


def test_lora_and_checkpointing_change_the_training_work(study: dict) -> None:
    full = _rows(study)["sft[tiny-llama]"].gpu_hours
    study["backbones"]["tiny-llama"]["train"] = {"peft": {"method": "lora"}}
    assert _rows(study)["sft[tiny-llama]"].gpu_hours == pytest.approx(full * 4 / 6)
    study["backbones"]["tiny-llama"]["train"]["gradient_checkpointing"] = True
    assert _rows(study)["sft[tiny-llama]"].gpu_hours == pytest.approx(full * 6 / 6)


def test_cpu_backbones_cost_no_gpu_hours_and_totals_add_up(study: dict) -> None:
    rows = plan(study, ASSUMED)
    by_rule = {row.rule: row for row in rows}
    assert (
        by_rule["sft[tiny-qwen2]"].gpu_hours == 0 and by_rule["sft[tiny-qwen2]"].gpus_per_job == 0
    )
    assert by_rule["score"].jobs == 2 * 5 * 12
    text = render(rows, ASSUMED)
    total = sum(row.gpu_hours for row in rows)
    assert f"**{total:.1f}**" in text and "engine start 60 s" in text


def test_assumptions_from_the_command_line() -> None:
    assumed = Assumptions.from_pairs(
        ["gpu=h100-80gb", "engine_start_seconds=90", "prompt_tokens=7"]
    )
    assert (assumed.gpu, assumed.engine_start_seconds, assumed.prompt_tokens) == (
        "h100-80gb",
        90,
        7,
    )
    with pytest.raises(ConfigError, match="engine_start"):
        Assumptions.from_pairs(["engine_start=3"])
    with pytest.raises(ConfigError, match="not known"):
        Assumptions(gpu="tpu").gpu_class()


def test_hub_tasks_take_the_catalogues_pinned_rows(study: dict) -> None:
    """GSM8K's test split is 1,319 problems (Cobbe et al. 2021), the catalogue's pinned rows;
    coin_flip's rows are null (unverified): the assumed count is used and the plan says so."""
    study["tasks"] = {
        "gsm8k": {"domain": "arithmetic", "source": "hub"},
        "coin_flip": {"domain": "symbolic", "source": "hub"},
        "proofwriter": {"domain": "logical", "source": "hub"},
        "svamp": {"domain": "arithmetic", "source": "hub", "size": 300},
    }
    assumed = Assumptions(**{**ASSUMED.__dict__, "hub_task_examples": 700})
    row = _rows(study, assumed)["generate[tiny-llama]"]
    # proofwriter: 174,476 test rows before its `where` filter (an upper bound).
    prompts = 1319 + 700 + 174_476 + 300
    assert row.tokens_per_job == prompts * (50 + 200)
    assert "coin_flip: rows unverified (null), 700 assumed each" in row.note
    assert "proofwriter: rows before `where`, an upper bound" in row.note
    assert "gsm8k" not in row.note and "svamp" not in row.note
