"""Training precision and checkpoints of an SFT job, without training: `dtype: auto` by machine
class, the saved model's dtype and size, which steps save a checkpoint, and a CUDA OOM reported
as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeift.settings import TrainSettings
from codeift.train import precision
from codeift.train.precision import (
    Precision,
    cast_saved_weights,
    cpu_flags,
    resolve_dtype,
    resolved_settings,
    training_precision,
)

TINY_LLAMA = Path(precision.__file__).parents[1] / "assets" / "tiny_bases" / "llama"
AVX2 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("configured", "on_gpu", "flags", "expected"),
    [
        ("auto", True, AVX2, "bfloat16"),
        ("auto", False, SAPPHIRE_RAPIDS, "bfloat16"),
        ("auto", False, AVX2 | {"avx512_bf16"}, "bfloat16"),
        ("auto", False, AVX2, "float32"),
        ("float32", True, SAPPHIRE_RAPIDS, "float32"),
        ("bfloat16", False, AVX2, "bfloat16"),
    ],
)
def test_auto_takes_bf16_only_where_it_is_native(configured, on_gpu, flags, expected):
    assert resolve_dtype(configured, on_gpu, flags) == expected


def test_the_job_params_change_with_the_machine_class_only():
    """Two AVX2 machines (or two bf16 ones) give the same settings JSON; the classes differ."""
    auto = TrainSettings(dtype="auto")
    plain = {resolved_settings(auto, False, AVX2 | {extra}).to_json() for extra in ("sse3", "aes")}
    native = {
        resolved_settings(auto, False, flags).to_json()
        for flags in (SAPPHIRE_RAPIDS, AVX2 | {"avx512_bf16"})
    }
    assert len(plain) == len(native) == 1 and plain != native
    assert json.loads(plain.pop())["dtype"] == "float32"
    assert json.loads(resolved_settings(auto, True, AVX2).to_json())["dtype"] == "bfloat16"
    fixed = TrainSettings(dtype="float32")
    assert resolved_settings(fixed, False, SAPPHIRE_RAPIDS) is fixed


def test_a_local_job_trains_where_this_machine_has_a_gpu_a_cluster_job_where_it_asked(
    monkeypatch,
):
    """A 135M backbone asks for a GPU (its size tier) yet runs on the CPU of a machine without
    one: locally the machine decides, on a cluster the request does (the node has what the job
    asked for)."""
    monkeypatch.setattr(precision, "cuda_here", lambda: False)
    assert precision.job_on_gpu(1, local=True) is False
    assert precision.job_on_gpu(1, local=False) is True
    assert precision.job_on_gpu(0, local=False) is False
    monkeypatch.setattr(precision, "cuda_here", lambda: True)
    assert precision.job_on_gpu(0, local=True) is True


def test_torch_is_asked_for_a_gpu_only_where_a_driver_is(monkeypatch):
    """No GPU driver's device files: no GPU, and torch is not imported to say so (it is not
    importable here: sys.modules maps it to None). With one, torch's answer is the answer."""
    import sys
    import types

    precision.cuda_here.cache_clear()
    monkeypatch.setattr(precision, "GPU_DEVICE_PATHS", ("/nonexistent/nvidiactl",))
    monkeypatch.setitem(sys.modules, "torch", None)
    assert precision.cuda_here() is False
    precision.cuda_here.cache_clear()
    monkeypatch.setattr(precision, "GPU_DEVICE_PATHS", ("/nonexistent/nvidiactl", "/"))
    with pytest.raises(ImportError):
        precision.cuda_here()
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert precision.cuda_here() is True
    precision.cuda_here.cache_clear()


def test_a_cpu_trains_bf16_as_autocast_over_float32_weights_and_a_gpu_in_the_dtype():
    assert training_precision("bfloat16", use_cpu=True) == Precision("float32", "bfloat16")
    assert training_precision("float32", use_cpu=True) == Precision("float32", None)
    assert training_precision("float16", use_cpu=True) == Precision("float32", None)
    assert training_precision("bfloat16", use_cpu=False) == Precision("bfloat16", "bfloat16")
    assert training_precision("float32", use_cpu=False) == Precision("float32", None)


def test_the_sft_config_turns_on_cpu_autocast_for_bf16(tmp_path):
    from codeift.train.sft import sft_config

    on_cpu = sft_config(TrainSettings(dtype="bfloat16", threads=1), tmp_path, use_cpu=True)
    assert on_cpu.bf16 is True and on_cpu.fp16 is False and on_cpu.use_cpu is True
    plain = sft_config(TrainSettings(dtype="float32", threads=1), tmp_path, use_cpu=True)
    assert plain.bf16 is False and plain.fp16 is False


def test_a_float32_save_is_rewritten_in_the_training_dtype_at_half_the_size(tmp_path):
    """What FSDP's mixed precision publishes (float32 weights) becomes the bf16 model."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "model"
    AutoModelForCausalLM.from_pretrained(TINY_LLAMA, dtype=torch.float32).save_pretrained(folder)
    before = (folder / "model.safetensors").stat().st_size
    assert cast_saved_weights(folder, "bfloat16") > 0
    after = (folder / "model.safetensors").stat().st_size
    assert after < 0.52 * before
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_slice(name).get_dtype() for name in handle.keys()} == {"BF16"}  # noqa: SIM118
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    assert reloaded.dtype == torch.bfloat16
    assert cast_saved_weights(folder, "bfloat16") == 0  # already in the dtype: untouched
    assert not list(folder.glob(".*.partial"))


def _step_end(step: int, max_steps: int, save_steps: float) -> bool:
    """Whether transformers' own flow callback, followed by ours, saves after `step`."""
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import DefaultFlowCallback
    from transformers.training_args import TrainingArguments

    from codeift.train.sft import checkpoint_callbacks

    args = TrainingArguments(output_dir="unused", save_strategy="steps", save_steps=save_steps)
    state = TrainerState(global_step=step, max_steps=max_steps)
    state.compute_steps(args, max_steps)
    control = TrainerControl()
    for callback in [DefaultFlowCallback(), *checkpoint_callbacks()]:
        control = callback.on_step_end(args, state, control) or control
    return control.should_save


def test_checkpoints_come_mid_run_and_not_after_the_last_step():
    """The paper recipe: 8,000 conversations, 3 epochs, global batch 128 -> 188 steps. A share
    of 0.25 checkpoints every 47 steps; the last step saves nothing (the final model is saved
    alone, with no optimizer state to delete)."""
    saved = [step for step in range(1, 189) if _step_end(step, 188, 0.25)]
    assert saved == [47, 94, 141]
    assert not _step_end(200, 200, 200)  # a checkpoint step that is the last: no checkpoint


class _OomTrainer:
    def train(self, resume_from_checkpoint=None):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_cuda_out_of_memory_names_the_backbone_gpus_and_micro_batch(tmp_path, monkeypatch):
    from codeift.errors import CodeiftError
    from codeift.train.sft import GpuOutOfMemory, run_training

    monkeypatch.setenv("WORLD_SIZE", "4")  # set by torchrun / accelerate in each of 4 workers
    settings = TrainSettings(per_device_train_batch_size=4, max_length=4096)
    with pytest.raises(GpuOutOfMemory) as raised:
        run_training(_OomTrainer(), None, tmp_path / "models" / "mistral-7b" / "base", settings)
    message = str(raised.value)
    assert "CUDA out of memory" in message and "mistral-7b" in message
    assert "4 GPU(s)" in message and "micro-batch of 4" in message and "4096 tokens" in message
    assert "gradient_accumulation_steps" in message and "Tried to allocate 2.00 GiB" in message
    assert isinstance(raised.value, CodeiftError)  # the CLI's one-line stage error, exit 2
