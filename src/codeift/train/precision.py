"""The training precision of an SFT job: what `train.dtype` means on the machine that trains.

`train.dtype: auto` takes the fastest precision that trains correctly on the job's machine class:
bfloat16 on a GPU; on a CPU, bfloat16 autocast where the CPU has native bf16 matrix units (Intel
AMX, AVX512_BF16: about twice float32's step rate there, issue 24) and float32 elsewhere (AVX2
machines emulate bf16, which is slower than float32: docs/bench/cpu-dtype.md). A dtype changes
the model's bytes, so Snakemake resolves `auto` when it builds the job and passes the resolved
dtype in the job's params (`resolved_settings`, with `job_on_gpu`): the params change when the
machine class changes (GPU or not, native bf16 or not), and never otherwise. The job trains
with the dtype its params name, and its training record says which precision that was and why.
On a cluster, a CPU job's class is read from the driving machine's CPU: a site whose CPU nodes
differ from it in bf16 units sets `train.dtype` explicitly.

On a CPU, bfloat16 means float32 weights (the master copy AdamW updates) under bfloat16
autocast: bf16 weights would lose the small updates of fine-tuning. On a GPU the configured
dtype is the weights' dtype, as before, and the final model is saved in it (a 7B model in bf16
is ~14 GB, not ~28).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeift.settings import TrainSettings

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flags of native bf16 matrix arithmetic (x86: AMX tiles, AVX-512 BF16 dot
# products; arm64: the BF16 extension).
NATIVE_BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16", "bf16")
AUTO = "auto"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, arm64 `Features`); empty where unreadable."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def this_machine_flags() -> frozenset[str]:
    return cpu_flags()


def native_bf16(flags: frozenset[str]) -> tuple[str, ...]:
    """The flags that show native bf16 matrix units (empty: none)."""
    return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in flags)


def resolve_dtype(configured: str, on_gpu: bool, flags: frozenset[str] | None = None) -> str:
    """The dtype `configured` means on a machine of this class; `auto` is the fastest correct."""
    if configured != AUTO:
        return configured
    if on_gpu:
        return "bfloat16"
    flags = this_machine_flags() if flags is None else flags
    return "bfloat16" if native_bf16(flags) else "float32"


def machine_class(on_gpu: bool, flags: frozenset[str] | None = None) -> str:
    """What the resolved dtype depends on, in words: `gpu`, `cpu-bf16` or `cpu`."""
    if on_gpu:
        return "gpu"
    flags = this_machine_flags() if flags is None else flags
    return "cpu-bf16" if native_bf16(flags) else "cpu"


# Device files a GPU driver puts in place (NVIDIA's, ROCm's, WSL's): with none of them, torch
# sees no GPU, so the answer needs no torch import (a second or more of every workflow's dry run).
GPU_DEVICE_PATHS = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


@functools.cache
def cuda_here() -> bool:
    """Whether this process sees a CUDA GPU (torch is asked once per process, and only where a
    GPU driver's device files exist)."""
    if not any(os.path.exists(path) for path in GPU_DEVICE_PATHS):
        return False
    import torch

    return bool(torch.cuda.is_available())


def job_on_gpu(requested_gpus: int, local: bool) -> bool:
    """Whether an SFT job will train on a GPU: on a cluster, where it asked for one (its node is
    then a GPU node); run locally, where this machine has one (the trainer takes a visible GPU
    whatever the request, and a request does not make one appear)."""
    return cuda_here() if local else requested_gpus > 0


def resolved_settings(
    settings: TrainSettings, on_gpu: bool, flags: frozenset[str] | None = None
) -> TrainSettings:
    """The settings with `dtype: auto` replaced by its dtype on this machine class: what the
    sft job's params carry, so that a dtype (which changes the model) is part of them."""
    dtype = resolve_dtype(settings.dtype, on_gpu, flags)
    return settings if dtype == settings.dtype else dataclasses.replace(settings, dtype=dtype)


@dataclass(frozen=True)
class Precision:
    """How a job trains: the weights' dtype (loaded, updated, saved) and the autocast dtype of
    forward and backward (None: none)."""

    weights: str
    autocast: str | None

    def record(self, configured: str, use_cpu: bool) -> dict[str, Any]:
        flags = this_machine_flags()
        return {
            "configured": configured,
            "weights": self.weights,
            "autocast": self.autocast,
            "machine_class": machine_class(not use_cpu, flags),
            "native_bf16_flags": list(native_bf16(flags)) if use_cpu else None,
        }


def training_precision(dtype: str, use_cpu: bool) -> Precision:
    """The precision of a resolved dtype. On a CPU, bfloat16 is autocast over float32 weights
    (float16 has no fast CPU path: float32); on a GPU, the weights are in the dtype and the
    trainer's matching mixed-precision flag is on."""
    if dtype == AUTO:
        dtype = resolve_dtype(dtype, not use_cpu)
    if use_cpu:
        return Precision("float32", "bfloat16" if dtype == "bfloat16" else None)
    return Precision(dtype, dtype if dtype in ("bfloat16", "float16") else None)


def cast_saved_weights(folder: Path, dtype: str) -> int:
    """Rewrite the floating tensors of a saved model folder in `dtype` (FSDP's mixed precision
    upcasts the sharded weights to float32, so a bf16 run would otherwise publish a float32
    model twice its size); `config.json` then names the dtype. Returns the tensors cast."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    cast = 0
    for path in sorted(folder.glob("*.safetensors")):
        tensors = load_file(path)
        todo = [name for name, t in tensors.items() if t.is_floating_point() and t.dtype != target]
        if not todo:
            continue
        for name in todo:
            tensors[name] = tensors[name].to(target)
        cast += len(todo)
        staged = path.with_name(f".{path.name}.partial")
        save_file(tensors, staged, metadata={"format": "pt"})
        staged.replace(path)
    if cast:
        _rewrite_index_size(folder)
        config_path = folder / "config.json"
        if config_path.exists():
            config = json.loads(config_path.read_text())
            config["dtype"] = dtype
            if "torch_dtype" in config:
                config["torch_dtype"] = dtype
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return cast


def _rewrite_index_size(folder: Path) -> None:
    """A sharded model's index states its total size in bytes: keep it true after a cast."""
    from safetensors import safe_open

    index_path = folder / "model.safetensors.index.json"
    if not index_path.exists():
        return
    index = json.loads(index_path.read_text())
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = handle.get_slice(name)
                shape = tensor.get_shape()
                numel = 1
                for size in shape:
                    numel *= size
                total += numel * _itemsize(tensor.get_dtype())
    index.setdefault("metadata", {})["total_size"] = total
    index_path.write_text(json.dumps(index, indent=2) + "\n")


def _itemsize(safetensors_dtype: str) -> int:
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1}
    return sizes.get(safetensors_dtype, 1)
