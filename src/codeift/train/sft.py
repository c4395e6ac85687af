"""Supervised fine-tuning of one backbone on one mix with TRL's SFTTrainer.

Loss is on assistant tokens only (the chat template marks them with {% generation %}).
Checkpoints go to a folder Snakemake does not own, so a killed job resumes from its last
checkpoint; the final model is written to a temporary folder and renamed into place, so nothing
downstream ever sees a partial model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from codeift.errors import GpuOutOfMemory, TrainError
from codeift.io import publish, write_json
from codeift.settings import TrainSettings
from codeift.train import lora
from codeift.train.precision import (
    Precision,
    cast_saved_weights,
    resolved_settings,
    training_precision,
)
from codeift.train.reporting import reporting_settings


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` folder, or None."""
    if not checkpoint_dir.is_dir():
        return None
    candidates = [
        path
        for path in checkpoint_dir.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").exists()
    ]
    if not candidates:
        return None
    return str(max(candidates, key=lambda path: int(path.name.split("-")[-1])))


def checkpoint_callbacks() -> list[Any]:
    """Mid-run checkpoints only. transformers also saves one when the last step ends (weights
    and optimizer state: ~85 GB for a 7B model under AdamW) that `save_final_model` would delete
    at once; the final model is saved by itself. The log says how often a checkpoint comes
    (`save_steps` below 1 is a share of the run's steps, which transformers counts from the mix
    size, epochs and global batch)."""
    from transformers import TrainerCallback

    class MidRunCheckpointsOnly(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            every = state.save_steps
            print(
                f"[codeift] {state.max_steps} steps; a checkpoint every {every}"
                + (" (none mid-run)" if not 0 < every < state.max_steps else ""),
                flush=True,
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= state.max_steps:
                control.should_save = False

    return [MidRunCheckpointsOnly()]


def backbone_name(model_path: Path) -> str:
    """The backbone of a job's base model folder (`{results}/models/{backbone}/base`)."""
    return model_path.parent.name if model_path.name == "base" else model_path.name


@contextlib.contextmanager
def cuda_oom_reported(model_path: Path, settings: TrainSettings) -> Iterator[None]:
    """CUDA running out of memory (placing the model, or a step) reported as what it is: the
    backbone, the GPUs and the micro-batch that did not fit, and what to change."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError as error:
        gpus = int(os.environ.get("WORLD_SIZE", "1"))  # one process per GPU on the job's node
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        backbone = backbone_name(model_path)
        raise GpuOutOfMemory(
            f"CUDA out of memory training backbone {backbone} on {gpus} GPU(s) with a "
            f"micro-batch of {settings.per_device_train_batch_size} conversation(s) of up to "
            f"{settings.max_length} tokens per GPU (gradient_checkpointing: "
            f"{settings.gradient_checkpointing}, dtype: {settings.dtype}): lower "
            "train.per_device_train_batch_size and raise gradient_accumulation_steps by the same "
            "factor (same global batch), turn on gradient_checkpointing, or give the backbone "
            f"more GPUs (backbones.{backbone}.resources.sft.gpus). A retry with the same "
            f"settings fails the same way. ({first})"
        ) from error


def run_training(
    trainer: Any, resume: str | None, model_path: Path, settings: TrainSettings
) -> Any:
    """`trainer.train()`, a CUDA out-of-memory error reported as such (cuda_oom_reported)."""
    with cuda_oom_reported(model_path, settings):
        return trainer.train(resume_from_checkpoint=resume)


def load_mix_dataset(mix_path: str | Path) -> Any:
    """The mix as a `datasets.Dataset` with a conversational `messages` column."""
    from datasets import Dataset

    frame = pl.read_parquet(mix_path, columns=["id", "messages"])
    if frame.height == 0:
        raise TrainError(f"mix {mix_path}: no examples")
    return Dataset.from_list(frame.to_dicts())


# TrainSettings keys that SFTConfig also has but that reach training another way: padding-free
# steps come from our own collator (step_collator), as TRL's flag refuses max_length without
# packing.
NOT_IN_SFT_CONFIG = ("padding_free",)


def sft_config(settings: TrainSettings, checkpoint_dir: Path, use_cpu: bool) -> Any:
    """TRL's SFTConfig: every TrainSettings key that SFTConfig has under the same name, passed
    by name (so a new shared key reaches TRL without being written here), and the study's own
    choices beside them."""
    from trl import SFTConfig

    precision = training_precision(settings.dtype, use_cpu)
    theirs = {field.name for field in dataclasses.fields(SFTConfig)}
    shared = {
        name: value
        for name, value in settings.to_dict().items()
        if name in theirs and name not in NOT_IN_SFT_CONFIG
    }
    return SFTConfig(
        **shared,
        output_dir=str(checkpoint_dir),
        warmup_steps=float(settings.warmup_ratio),  # a float < 1 is a ratio
        assistant_only_loss=True,
        bf16=precision.autocast == "bfloat16",
        fp16=precision.autocast == "float16",
        use_cpu=use_cpu,
        save_strategy="steps",
        save_total_limit=2,
        data_seed=settings.seed,
        include_num_input_tokens_seen="all",  # padding included: the record's processed_tokens
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def step_collator(settings: TrainSettings, tokenizer: Any) -> Any:
    """TRL's collator in padding-free mode, or None (TRL's padded default). Passed as our own
    collator because TRL's `padding_free` flag refuses `max_length` without packing, and
    packing would change how many conversations a step holds. Each conversation keeps its own
    positions, and transformers masks attention to stay within each (a test checks the loss
    equals the padded one). TRL's packing is padding-free already and brings its own."""
    if not settings.padding_free or settings.packing:
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)


def sft_trainer(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    settings: TrainSettings,
    checkpoint_dir: Path,
    use_cpu: bool,
    callbacks: list[Any] | None = None,
) -> Any:
    """The SFTTrainer of a job (and of the SFT probe, scripts/measure_real_sft.py)."""
    from trl import SFTTrainer

    peft = lora.peft_settings(settings)
    return SFTTrainer(
        peft_config=lora.lora_config(peft) if peft else None,
        model=model,
        args=sft_config(settings, checkpoint_dir, use_cpu),
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=step_collator(settings, tokenizer),
        callbacks=callbacks or [],
    )


def trained_tokens(trainer: Any) -> int | None:
    """Non-padding tokens of the run, TRL's count (the last logged, cumulative)."""
    return next(
        (int(e["num_tokens"]) for e in reversed(trainer.state.log_history) if "num_tokens" in e),
        None,
    )


def train(
    model_dir: str | Path,
    mix_path: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    settings: TrainSettings,
) -> dict[str, Any]:
    """Fine-tune `model_dir` on the mix; write the tuned model and its training record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path = Path(model_dir)
    if not (model_path / "config.json").exists():
        raise TrainError(f"base model {model_path} is missing (run the prepare job first)")
    use_cpu = not torch.cuda.is_available()
    if use_cpu:
        torch.set_num_threads(settings.threads)
    configured = settings.dtype
    settings = resolved_settings(settings, on_gpu=not use_cpu)  # `auto` outside Snakemake
    precision = training_precision(settings.dtype, use_cpu)
    checkpoints = Path(checkpoint_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if not tokenizer.chat_template:
        raise TrainError(f"{model_path}: tokenizer has no chat template (prepare assigns one)")
    dtype = getattr(torch, precision.weights)
    peft = lora.peft_settings(settings)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=dtype, **lora.quantization_kwargs(peft, dtype, use_cpu)
    )
    settings = reporting_settings(settings, Path(out_dir))
    dataset = load_mix_dataset(mix_path)
    resume = last_checkpoint(checkpoints)
    with cuda_oom_reported(model_path, settings):  # the trainer places the model on the GPU
        trainer = sft_trainer(
            model,
            tokenizer,
            dataset,
            settings,
            checkpoints,
            use_cpu,
            callbacks=checkpoint_callbacks(),
        )
    if resume:
        print(f"[codeift] resuming from {resume}", flush=True)
    started = time.time()
    result = run_training(trainer, resume, model_path, settings)
    world_size = trainer.args.world_size
    record = {
        "base_model": str(model_path),
        "mix": str(mix_path),
        "examples": len(dataset),
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "loss_history": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "seconds": round(time.time() - started, 2),
        # Non-padding tokens trained on (TRL's count): the study benchmark's SFT rate; and the
        # token positions computed, padding included (their ratio is the padding waste).
        "train_tokens": trained_tokens(trainer),
        "processed_tokens": int(trainer.state.num_input_tokens_seen),
        "device": "cpu" if use_cpu else torch.cuda.get_device_name(0),
        "world_size": world_size,
        "global_batch_size": settings.per_device_train_batch_size
        * settings.gradient_accumulation_steps
        * world_size,
        "settings": settings.param_dict(),
        # What the configured dtype meant on this machine, and the dtype the model is saved in.
        "precision": precision.record(configured, use_cpu),
    }
    if peft:
        record.update(lora.parameter_counts(trainer.model, peft))
    merge = (model_path, dtype) if peft else None
    save_final_model(trainer, tokenizer, record, Path(out_dir), checkpoints, precision, merge)
    return record


def save_final_model(
    trainer: Any,
    tokenizer: Any,
    record: dict[str, Any],
    out_dir: Path,
    checkpoints: Path,
    precision: Precision | None = None,
    merge: tuple[Path, Any] | None = None,
) -> None:
    """Every rank writes its part into one staging folder (FSDP gathers the full weights
    there); rank 0 alone adds the tokenizer and record and moves it into place, so a killed
    job never leaves a folder that looks finished. A PEFT run (`merge`: base folder, dtype)
    saves its adapter there and rank 0 merges it into the base: generation loads the merge.
    The weights are saved in the training dtype (`precision.weights`)."""
    staging = out_dir.parent / f".{out_dir.name}.partial"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging / lora.ADAPTER_DIR if merge else staging))
    trainer.accelerator.wait_for_everyone()
    if main:
        if merge:
            lora.merge_adapter(merge[0], staging / lora.ADAPTER_DIR, staging, merge[1])
        if precision is not None:
            cast_saved_weights(staging, precision.weights)  # the training dtype, not FSDP's fp32
        tokenizer.save_pretrained(staging)
        write_json(record, staging / "codeift_training.json")
        staging.chmod(0o755)
        publish(staging, out_dir)
        shutil.rmtree(checkpoints, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def describe(record: dict[str, Any]) -> str:
    return json.dumps({k: record[k] for k in ("global_step", "train_loss", "seconds")})
