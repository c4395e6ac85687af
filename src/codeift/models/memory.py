"""GPU memory of an SFT job, estimated from its backbone before anything is submitted.

Why: a request that cannot hold its model fails only after it waited in the queue and loaded the
weights; the estimate lets the dry run (config validation, when the Snakefile is parsed) refuse it
with the numbers. The estimate needs no download: parameters come from the backbone's size label,
the shape from the usual aspect ratio of decoder LMs (hidden size ~ 128 x layers, as in Llama,
Mistral and Qwen at 7B and 13B) and the vocabulary from the family. It is an estimate: stated
terms, rounded up, not a measurement.

Terms per GPU (bytes; b = bytes of the training dtype, g = GPUs the job shards over: FSDP
shards every parameter, frozen or trained, and the gradients and optimizer state of its shard;
DDP or one GPU: g = 1):
- weights:     N b / g, the LoRA's frozen base alike; QLoRA: N x 0.55 / g (NF4 plus its scales;
               the packed 4-bit weights are stored in the training dtype,
               `bnb_4bit_quant_storage` in codeift.train.lora, so that FSDP shards them too);
- gradients and AdamW state: full tuning 3 N b / g (TRL keeps them in the model's dtype: the
               model is loaded in `train.dtype`); LoRA and QLoRA only for the adapter, in float32
               (PEFT upcasts it): 16 A / g bytes, A = r x (inputs + outputs) of every adapted
               linear;
- activations: with gradient checkpointing each layer keeps its input (s h b per sequence) and one
               layer at a time is recomputed (~34 s h b, Korthikanti et al. 2022, attention by
               SDPA: no s^2 term); without it every layer keeps its ~34 s h b;
               per micro-batch of `per_device_train_batch_size` rows of `max_length` tokens;
- logits:      micro-batch x max_length x vocabulary x 4 bytes, twice (float32 logits and their
               gradient in the loss): at a 256K vocabulary this is the largest term;
- a fixed 2 GB for the CUDA context, kernels' workspace and the allocator's fragmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from codeift.errors import SftMemoryError
from codeift.settings import PeftSettings, ResourceSettings, TrainSettings

GB = 1e9
OVERHEAD_GB = 2.0
# Vocabulary by family (the largest released model of the family, to stay on the safe side).
FAMILY_VOCAB = {
    "llama": 128_256,
    "mistral": 32_768,
    "qwen2": 151_936,
    "gemma": 256_000,
    "gemma3": 262_144,
}
DEFAULT_VOCAB = 128_256
# "auto" (another branch's default) is bfloat16 on a GPU: 2 bytes.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # any other ("auto"): 2 on a GPU
# Activation bytes per token, hidden unit and dtype byte of one transformer layer's forward.
LAYER_ACTIVATION_FACTOR = 34
QLORA_BYTES_PER_PARAMETER = 0.55


@dataclass(frozen=True)
class Shape:
    """A decoder LM's shape as the estimate sees it."""

    parameters: float
    hidden: int
    layers: int
    vocab: int

    @classmethod
    def guess(cls, parameters: float, family: str) -> Shape:
        vocab = FAMILY_VOCAB.get(family, DEFAULT_VOCAB)
        # body ~ 12 L h^2 with h = 128 L; the embedding (and an untied head) take vocab x h each.
        hidden = 64
        while True:
            body = 12 * (hidden / 128) * hidden**2
            if body + 2 * vocab * hidden >= parameters or hidden > 65_536:
                break
            hidden += 64
        return cls(parameters, hidden, max(1, round(hidden / 128)), vocab)

    def adapter_parameters(self, r: int) -> float:
        """LoRA on every linear of a layer (q, k, v, o; gate, up, down at 8/3 h): r x (in + out)
        summed, an upper bound for grouped-query attention (smaller k, v)."""
        inner = 8 * self.hidden / 3
        per_layer = 4 * 2 * self.hidden + 3 * (self.hidden + inner)
        return r * per_layer * self.layers


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU bytes by term, and their sum in GB."""

    weights: float
    optimizer: float
    activations: float
    logits: float
    overhead: float

    @property
    def total_gb(self) -> float:
        total = self.weights + self.optimizer + self.activations + self.logits + self.overhead
        return total / GB

    def terms_gb(self) -> dict[str, float]:
        return {
            name: round(getattr(self, name) / GB, 1)
            for name in ("weights", "optimizer", "activations", "logits", "overhead")
        }


def sft_memory(
    parameters: float,
    family: str,
    settings: TrainSettings,
    gpus: int,
    strategy: str = ResourceSettings.default("strategy"),
    shape: Shape | None = None,
) -> MemoryEstimate:
    """Peak GPU memory per device of one SFT job (module docstring: the terms); `shape`
    replaces the guess from the parameter count where the real one is known."""
    shape = shape or Shape.guess(parameters, family)
    b = DTYPE_BYTES.get(settings.dtype, 2)
    shards = max(1, gpus) if strategy == "fsdp" else 1
    peft = None if settings.peft is None else PeftSettings.from_mapping(settings.peft)
    if peft is None:
        weights = parameters * b / shards
        optimizer = 3 * parameters * b / shards
    else:
        weight_bytes = QLORA_BYTES_PER_PARAMETER if peft.method == "qlora" else b
        weights = parameters * weight_bytes / shards
        optimizer = 16 * shape.adapter_parameters(peft.r) / shards
    tokens = settings.per_device_train_batch_size * settings.max_length
    per_layer = LAYER_ACTIVATION_FACTOR * tokens * shape.hidden * b
    if settings.gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * b + per_layer
    else:
        activations = shape.layers * per_layer
    logits = 2 * tokens * shape.vocab * 4
    return MemoryEstimate(weights, optimizer, activations, logits, OVERHEAD_GB * GB)


def check_fits(
    backbone: str, estimate: MemoryEstimate, gpu_mem_gb: float | None, gpus: int, where: str
) -> None:
    """Refuse a request whose GPUs cannot hold the estimate, with the numbers and what helps."""
    if gpu_mem_gb is None or gpus == 0:
        return
    if estimate.total_gb <= gpu_mem_gb:
        return
    terms = ", ".join(f"{name} {value}" for name, value in estimate.terms_gb().items())
    raise SftMemoryError(
        f"backbone {backbone}: its SFT job needs ~{math.ceil(estimate.total_gb)} GB per GPU "
        f"({terms} GB) on {gpus} GPU(s), but {where} guarantees {gpu_mem_gb:g} GB. More GPUs "
        "(backbones.NAME.resources.sft.gpus, with FSDP), a smaller per_device_train_batch_size "
        "with more gradient_accumulation_steps, gradient_checkpointing or train.peft would fit"
    )


def guaranteed_gpu_memory(config: dict[str, Any], backbone: str) -> tuple[float | None, str]:
    """GPU memory the SFT request guarantees, and the config key that says so: the backbone's
    `resources.sft.gpu_mem_gb`, else the study's `resources.gpu_mem_gb` (the smallest GPU its
    partition or constraint can give), else None (no check)."""
    own = config["backbones"][backbone].get("resources", {}).get("sft", {})
    if "gpu_mem_gb" in own:
        return float(own["gpu_mem_gb"]), f"backbones.{backbone}.resources.sft.gpu_mem_gb"
    site = config.get("resources", {}).get("gpu_mem_gb")
    if site is not None:
        return float(site), "resources.gpu_mem_gb"
    return None, ""


@dataclass(frozen=True)
class SftJob:
    """What the estimate needs of one backbone's SFT job (built by codeift.config, which reads
    the size label, the train settings and the launch)."""

    backbone: str
    parameters: float
    family: str
    settings: TrainSettings
    gpus: int
    strategy: str

    def estimate(self) -> MemoryEstimate:
        return sft_memory(self.parameters, self.family, self.settings, self.gpus, self.strategy)


def check_sft_requests(config: dict[str, Any], jobs: list[SftJob]) -> None:
    """Every backbone's SFT request holds its estimate: run when the config is validated, so
    an impossible request fails in the dry run. All failing backbones are named at once."""
    problems = []
    for job in jobs:
        gpu_mem_gb, where = guaranteed_gpu_memory(config, job.backbone)
        if gpu_mem_gb is None:
            continue
        try:
            check_fits(job.backbone, job.estimate(), gpu_mem_gb, job.gpus, where)
        except SftMemoryError as error:
            problems.append(str(error))
    if problems:
        raise SftMemoryError("\n  ".join(problems))
