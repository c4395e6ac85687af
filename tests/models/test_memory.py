"""The SFT memory estimate, by hand, and the dry run's refusal of a request that cannot hold it."""

from __future__ import annotations

import copy

import pytest

from codeift.config import ConfigError, load_yaml, validate_config
from codeift.models.memory import Shape, sft_memory
from codeift.settings import TrainSettings
from tests.conftest import REPO

PAPER = load_yaml(REPO / "config" / "paper.yaml")
SHAPE = Shape(parameters=1e9, hidden=2048, layers=16, vocab=32000)
SETTINGS = TrainSettings(
    dtype="bfloat16", per_device_train_batch_size=2, max_length=1024, gradient_checkpointing=True
)


def test_full_tuning_terms_by_hand() -> None:
    estimate = sft_memory(1e9, "llama", SETTINGS, gpus=2, strategy="fsdp", shape=SHAPE)
    assert estimate.weights == 1e9  # 1e9 parameters x 2 bytes / 2 shards
    assert estimate.optimizer == 3e9  # gradients + two AdamW moments, sharded alike
    # 2 x 1024 tokens: 16 layer inputs of 2048 x 2 bytes, plus one layer recomputed (34 x).
    assert estimate.activations == 16 * 2048 * 2048 * 2 + 34 * 2048 * 2048 * 2
    assert estimate.logits == 2 * 2048 * 32000 * 4
    assert estimate.total_gb == pytest.approx(6.9437184)
    ddp = sft_memory(1e9, "llama", SETTINGS, gpus=2, strategy="ddp", shape=SHAPE)
    assert ddp.weights == 2e9 and ddp.optimizer == 6e9  # replicated, not sharded


def test_lora_keeps_the_frozen_base_and_a_small_float32_adapter() -> None:
    lora = TrainSettings(**{**SETTINGS.to_dict(), "peft": {"method": "lora", "r": 8}})
    estimate = sft_memory(1e9, "llama", lora, gpus=1, shape=SHAPE)
    assert estimate.weights == 2e9
    # r x (in + out): q, k, v, o at 2 h each, gate, up, down at h + 8/3 h; 16 bytes each.
    per_layer = 4 * 2 * 2048 + 3 * (2048 + 8 * 2048 / 3)
    assert estimate.optimizer == pytest.approx(16 * 8 * per_layer * 16)
    qlora = TrainSettings(**{**SETTINGS.to_dict(), "peft": {"method": "qlora", "r": 8}})
    assert sft_memory(1e9, "llama", qlora, gpus=1, shape=SHAPE).weights == pytest.approx(0.55e9)


def test_checkpointing_keeps_one_layer_of_activations() -> None:
    off = TrainSettings(**{**SETTINGS.to_dict(), "gradient_checkpointing": False})
    assert sft_memory(1e9, "llama", off, 1, shape=SHAPE).activations == 16 * 34 * 2048 * 2048 * 2


def test_a_request_that_cannot_fit_fails_validation_with_the_numbers() -> None:
    config = copy.deepcopy(PAPER)
    config["resources"]["gpu_mem_gb"] = 80
    validate_config(config)  # 4 x 80 GB holds every 7B full fine-tune of the paper
    config["resources"]["gpu_mem_gb"] = 50
    with pytest.raises(ConfigError, match=r"backbone gemma-7b: .*~58 GB per GPU.*guarantees 50 GB"):
        validate_config(config)
    # The backbone's own guarantee wins, and LoRA brings it under.
    config["backbones"]["gemma-7b"]["resources"] = {"sft": {"gpu_mem_gb": 80}}
    validate_config(config)
    config["backbones"]["gemma-7b"]["resources"] = {"sft": {"gpus": 1}}
    with pytest.raises(ConfigError, match="gemma-7b.*on 1 GPU"):
        validate_config(config)
    config["backbones"]["gemma-7b"]["train"]["per_device_train_batch_size"] = 1
    config["backbones"]["gemma-7b"]["train"]["peft"] = {"method": "lora"}
    validate_config(config)


def test_the_shape_guess_is_a_7b_llama() -> None:
    shape = Shape.guess(7e9, "mistral")
    assert 3900 <= shape.hidden <= 4200 and shape.layers == 32


def test_fsdp_shards_the_qlora_base_and_the_adapter_like_full_weights() -> None:
    """The 4-bit weights are stored in the training dtype (bnb_4bit_quant_storage) so that FSDP
    shards them: on 4 GPUs each holds a quarter of them, and of the adapter's float32 state."""
    shape = Shape(parameters=7e9, hidden=4096, layers=32, vocab=32000)
    qlora = TrainSettings(**{**SETTINGS.to_dict(), "peft": {"method": "qlora", "r": 16}})
    one = sft_memory(7e9, "llama", qlora, gpus=1, strategy="fsdp", shape=shape)
    four = sft_memory(7e9, "llama", qlora, gpus=4, strategy="fsdp", shape=shape)
    assert one.weights == pytest.approx(3.85e9)  # 7e9 x 0.55 bytes
    assert four.weights == pytest.approx(0.9625e9)  # 7e9 x 0.55 / 4
    # Adapter: 16 x (4 x 2 x 4096 + 3 x (4096 + 8 x 4096 / 3)) x 32 layers = 39,845,888
    # parameters at 16 bytes (float32 weight, gradient, two AdamW moments).
    assert one.optimizer == pytest.approx(637_534_208)
    assert four.optimizer == pytest.approx(159_383_552)
    assert (one.activations, one.logits) == (four.activations, four.logits)  # per micro-batch
    assert one.total_gb - four.total_gb == pytest.approx(3.365650656)
    ddp = sft_memory(7e9, "llama", qlora, gpus=4, strategy="ddp", shape=shape)
    assert ddp.weights == pytest.approx(3.85e9)  # DDP replicates
    lora = TrainSettings(**{**SETTINGS.to_dict(), "peft": {"method": "lora", "r": 16}})
    assert sft_memory(7e9, "llama", lora, 4, "fsdp", shape).weights == pytest.approx(3.5e9)
