"""LoRA and QLoRA through PEFT: the adapter a job trains instead of every weight, and the merged
model it publishes.

Why merged: generation (our vLLM and hf engines, the shared-engine pool, the GGUF-free model
folders every later stage fingerprints) loads a plain model folder. Merging once at the end of
training costs one load of the base on the CPU; serving an adapter would make every engine load
the base and the adapter and would key the engine pool on two folders. The adapter itself is kept
inside the published folder (`adapter/`), small, for anyone who wants it.

QLoRA trains the adapter on a 4-bit (NF4) base from bitsandbytes; the merge then goes into the
base in the training dtype, as the QLoRA paper's authors and PEFT's docs do, since a merge into
4-bit weights would round the adapter away.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from codeift.errors import PeftError
from codeift.settings import PeftSettings, TrainSettings

# The adapter's subfolder inside a published model folder (not at the top: a top-level
# adapter_config.json would make transformers load the folder as an adapter, not a model).
ADAPTER_DIR = "adapter"


def peft_settings(settings: TrainSettings) -> PeftSettings | None:
    return None if settings.peft is None else PeftSettings.from_mapping(settings.peft)


def lora_config(peft: PeftSettings) -> Any:
    """PEFT's LoraConfig for a causal LM. `all-linear` targets every linear layer but the
    output head (PEFT's own shorthand), the QLoRA paper's choice."""
    from peft import LoraConfig

    targets = peft.target_modules
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=peft.r,
        lora_alpha=peft.alpha,
        lora_dropout=peft.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none",
    )


def quantization_kwargs(peft: PeftSettings | None, dtype: Any, use_cpu: bool) -> dict[str, Any]:
    """`from_pretrained` keyword arguments of the base: a 4-bit NF4 base for QLoRA, nothing
    otherwise. QLoRA needs CUDA and bitsandbytes; without either it fails here, by name."""
    if peft is None or peft.method != "qlora":
        return {}
    if use_cpu:
        raise PeftError(
            "config key 'train.peft.method': qlora needs a CUDA GPU (bitsandbytes 4-bit); this "
            "job has none (use method: lora on a CPU)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PeftError(
            "config key 'train.peft.method': qlora needs the bitsandbytes package "
            "(pip install bitsandbytes), which is not installed"
        )
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            # Packed 4-bit weights stored in the training dtype: what FSDP needs to shard them
            # alongside the rest (transformers' FSDP + QLoRA recipe); no effect on one GPU.
            bnb_4bit_quant_storage=dtype,
        ),
        # Each process quantises its copy onto its own GPU (a multi-GPU job has one per GPU).
        "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))},
    }


def parameter_counts(model: Any) -> dict[str, int]:
    """Trainable and total parameters of the model being trained (the adapter's share)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": int(trainable), "total_parameters": int(total)}


def merge_adapter(
    base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, dtype: Any
) -> None:
    """Write base + adapter as one plain model folder (safetensors) into `out_dir`: what
    generation loads. The base is loaded unquantised on the CPU in `dtype`, so the merge is
    exact up to that dtype's rounding and needs no GPU."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, device_map={"": "cpu"})
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)
