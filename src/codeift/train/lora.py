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


# The oldest bitsandbytes whose 4-bit NF4 base trains here on a CPU as on a GPU: its CPU backend
# dequantises packed weights stored in the training dtype (`bnb_4bit_quant_storage`, below) from
# 0.47.0; 0.46.1 (transformers' own floor) refuses any storage but uint8 on a CPU. Measured with
# transformers 5.19, peft 0.21, torch 2.13 (docs/lora.md).
BITSANDBYTES_MIN = "0.47.0"


def require_bitsandbytes() -> str:
    """The installed bitsandbytes version, or a PeftError naming the config key, the package and
    the version needed: checked before the base is loaded, so the job fails at once and says
    what to install rather than deep inside transformers' quantiser."""
    from importlib import metadata

    from packaging.version import Version

    if importlib.util.find_spec("bitsandbytes") is None:
        raise PeftError(
            "config key 'train.peft.method': qlora needs the bitsandbytes package "
            f"(pip install 'bitsandbytes>={BITSANDBYTES_MIN}', or the qlora extra), which is "
            "not installed"
        )
    installed = metadata.version("bitsandbytes")
    if Version(installed) < Version(BITSANDBYTES_MIN):
        raise PeftError(
            f"config key 'train.peft.method': qlora needs bitsandbytes>={BITSANDBYTES_MIN} "
            f"(its CPU backend, and transformers' 4-bit loader); {installed} is installed"
        )
    return installed


def quantization_kwargs(peft: PeftSettings | None, dtype: Any, use_cpu: bool) -> dict[str, Any]:
    """`from_pretrained` keyword arguments of the base: a 4-bit NF4 base for QLoRA, nothing
    otherwise. bitsandbytes quantises on a CUDA GPU or, from BITSANDBYTES_MIN, on the CPU (its
    CPU backend), so a CPU job trains the same 4-bit base a GPU job does, only slower."""
    if peft is None or peft.method != "qlora":
        return {}
    require_bitsandbytes()
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            # Packed 4-bit weights stored in the training dtype: what FSDP needs to shard them
            # alongside the rest (transformers' FSDP + QLoRA recipe); no effect on one device.
            bnb_4bit_quant_storage=dtype,
        ),
        # Each process quantises its copy onto its own GPU (a multi-GPU job has one per GPU);
        # a CPU job, every rank included, onto the CPU.
        "device_map": {"": "cpu"} if use_cpu else {"": int(os.environ.get("LOCAL_RANK", "0"))},
    }


def parameter_counts(model: Any, peft: PeftSettings | None = None) -> dict[str, int]:
    """Trainable and total parameters of the model being trained (the adapter's share; a 4-bit
    base counts its packed elements), and for QLoRA how many of its layers are bitsandbytes'
    4-bit linear layers: the record shows the run trained on a 4-bit base."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts = {"trainable_parameters": int(trainable), "total_parameters": int(total)}
    if peft is not None and peft.method == "qlora":
        import bitsandbytes as bnb

        counts["linear4bit_layers"] = sum(
            isinstance(module, bnb.nn.Linear4bit) for module in model.modules()
        )
    return counts


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
