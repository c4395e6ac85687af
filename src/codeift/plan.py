"""A GPU-hour plan of a study before anything is submitted: `python -m codeift plan`.

Per rule and in total: jobs, GPUs per job, tokens per job, estimated GPU-hours and peak GPU
memory per GPU. Work is model FLOPs (codeift.models.flops): training 6 N T on every token of a
mix (4 N T under LoRA: the frozen base gets no weight gradients; + 2 N T when gradient
checkpointing recomputes the forward), generation 2 N per prompt and new token. Seconds are
FLOPs over the GPUs' dense bf16 peak times an assumed utilisation per GPU class, plus, for
generation, one engine start per model (backbone x variant: a model's tasks share one engine
load). Memory is codeift.models.memory's estimate for SFT and what vLLM reserves for
generation. Every assumption is stated in the output and can be set (`--set key=value`).

A task's prompts are its config `size`, else its generator's size, else (a hub task using its
whole split) the row count the task catalogue pins (`hub.rows`, which a build checks): before a
`where` filter that count is an upper bound, and where the catalogue has none (`rows: null`,
unverified) the plan assumes `hub_task_examples` and says which tasks it did that for. Lengths
that only the data can tell (mean tokens of an IFT conversation and of a prompt) are assumptions
too; replies are counted at max_new_tokens, an upper bound.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from codeift.config import arms, backbone_inference, backbone_train, variants, with_defaults
from codeift.errors import ConfigError
from codeift.models.flops import generation_flops, training_flops
from codeift.models.memory import sft_memory
from codeift.resources import base_request, parse_size, pool_request, train_launch
from codeift.settings import LabellerSettings


@dataclass(frozen=True)
class GpuClass:
    """A GPU as the plan sees it: dense bf16 peak, memory, and the share of the peak assumed
    reached in training (MFU of FSDP SFT at 7B) and in generation (decode is memory-bound)."""

    tflops: float
    memory_gb: float
    train_utilisation: float
    generate_utilisation: float


# Dense bf16 peaks from the vendors' data sheets; utilisations are our assumptions.
GPU_CLASSES: dict[str, GpuClass] = {
    "a100-40gb": GpuClass(312, 40, 0.40, 0.10),
    "a100-80gb": GpuClass(312, 80, 0.40, 0.10),
    "h100-80gb": GpuClass(989, 80, 0.35, 0.08),
    "h200-141gb": GpuClass(989, 141, 0.35, 0.10),
    "l40s-48gb": GpuClass(362, 48, 0.35, 0.10),
}


@dataclass(frozen=True)
class Assumptions:
    """What the plan assumes; each may be set with `--set key=value`."""

    gpu: str = field(default="a100-80gb", metadata={"help": f"GPU class: {sorted(GPU_CLASSES)}"})
    train_utilisation: float | None = field(
        default=None, metadata={"help": "share of peak FLOP/s in SFT (default: the GPU class')"}
    )
    generate_utilisation: float | None = field(
        default=None, metadata={"help": "share of peak FLOP/s in generation (GPU class')"}
    )
    engine_start_seconds: float = field(
        default=120.0, metadata={"help": "one vLLM start of a 7B model (load, graphs, compile)"}
    )
    example_tokens: int = field(
        default=1000, metadata={"help": "mean tokens of an IFT conversation (cut at max_length)"}
    )
    prompt_tokens: int = field(default=200, metadata={"help": "mean tokens of a task prompt"})
    hub_task_examples: int = field(
        default=1000,
        metadata={"help": "examples of a whole-split hub task whose catalogue rows are null"},
    )
    pool_conversations: int = field(
        default=90_000, metadata={"help": "conversations the LLM judge labels (build_pool)"}
    )

    def gpu_class(self) -> GpuClass:
        if self.gpu not in GPU_CLASSES:
            raise ConfigError(
                f"plan gpu {self.gpu!r} is not known (allowed: {sorted(GPU_CLASSES)})"
            )
        base = GPU_CLASSES[self.gpu]
        return dataclasses.replace(
            base,
            train_utilisation=self.train_utilisation or base.train_utilisation,
            generate_utilisation=self.generate_utilisation or base.generate_utilisation,
        )

    @classmethod
    def from_pairs(cls, pairs: list[str]) -> Assumptions:
        """`key=value` strings, typed by the field's default."""
        types = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep or key not in types:
                raise ConfigError(
                    f"plan --set {pair!r}: expected key=value, key in {sorted(types)}"
                )
            kind = str if key == "gpu" else (int if isinstance(types[key].default, int) else float)
            try:
                values[key] = kind(raw)
            except ValueError:
                raise ConfigError(
                    f"plan --set {pair!r}: {raw!r} is not a {kind.__name__}"
                ) from None
        return cls(**values)


@dataclass
class RulePlan:
    """One rule's row: its jobs, and what each costs."""

    rule: str
    jobs: int
    gpus_per_job: int
    tokens_per_job: float
    gpu_hours: float
    peak_gpu_mem_gb: float
    note: str = ""


def sft_tokens(config: dict[str, Any], backbone: str, assumed: Assumptions) -> float:
    """Tokens one SFT job trains on: its steps' conversations x their assumed mean length."""
    settings = backbone_train(config, backbone)
    per_example = min(assumed.example_tokens, settings.max_length)
    if settings.max_steps > 0:
        gpus = max(1, train_launch(config, backbone)["gpus"])
        batch = settings.per_device_train_batch_size * settings.gradient_accumulation_steps * gpus
        examples = settings.max_steps * batch
    else:
        examples = config["ift"]["total"] * settings.num_train_epochs
    return examples * per_example


def sft_flops(config: dict[str, Any], backbone: str, tokens: float) -> float:
    """6 N T, 4 N T under LoRA (no weight gradients of the frozen base), + 2 N T recompute
    under gradient checkpointing."""
    settings = backbone_train(config, backbone)
    parameters = parse_size(config["backbones"][backbone]["size"])
    full = training_flops((int(parameters), 0), int(tokens))
    work = full if settings.peft is None else full * 4 / 6
    if settings.gradient_checkpointing:
        work += full / 3
    return work


@dataclass(frozen=True)
class TaskSize:
    """A task's prompts in the plan and where the count comes from: `size` (the config's),
    `generator` (its default size), `rows` (the catalogue's pinned hub.rows), `rows_before_where`
    (pinned rows before the `where` filter: an upper bound) or `assumed` (hub.rows is null:
    unverified, `hub_task_examples` used)."""

    examples: int
    basis: str


def task_sizes(config: dict[str, Any], assumed: Assumptions) -> dict[str, TaskSize]:
    """Prompts per task (TaskSize): its `size`, else the generator's, else the catalogue's rows."""
    from codeift.tasks import resolve_task

    sizes = {}
    for name, entry in config["tasks"].items():
        spec = resolve_task(name, entry)
        if spec["size"]:
            sizes[name] = TaskSize(int(spec["size"]), "size")
        elif spec["source"] == "generator":
            sizes[name] = TaskSize(int(spec["generator"]["size"]), "generator")
        elif spec["hub"].get("rows") is None:
            sizes[name] = TaskSize(assumed.hub_task_examples, "assumed")
        elif spec["hub"].get("where"):
            sizes[name] = TaskSize(int(spec["hub"]["rows"]), "rows_before_where")
        else:
            sizes[name] = TaskSize(int(spec["hub"]["rows"]), "rows")
    return sizes


def _sizes_note(sizes: dict[str, TaskSize], assumed: Assumptions) -> str:
    """What the generation row's prompt count rests on, where it is not a pinned count."""
    unverified = sorted(name for name, size in sizes.items() if size.basis == "assumed")
    filtered = sorted(name for name, size in sizes.items() if size.basis == "rows_before_where")
    notes = []
    if unverified:
        notes.append(
            f"{', '.join(unverified)}: rows unverified (null), "
            f"{assumed.hub_task_examples} assumed each"
        )
    if filtered:
        notes.append(f"{', '.join(filtered)}: rows before `where`, an upper bound")
    return "; ".join(notes)


def plan(config: dict[str, Any], assumed: Assumptions) -> list[RulePlan]:
    """The rows of the plan: GPU rules (build_pool's judge, sft, generate), then the CPU rules."""
    config = with_defaults(config)
    gpu = assumed.gpu_class()
    peak = gpu.tflops * 1e12
    rows: list[RulePlan] = []
    judge = config["ift"]["labeller"].get("method") == "llm_judge"
    if judge:
        rows.append(_judge_row(config, assumed, gpu))
    backbones = sorted(config["backbones"])
    n_arms, n_variants = len(arms(config)), len(variants(config))
    sized = task_sizes(config, assumed)
    sizes = {name: size.examples for name, size in sized.items()}
    sizes_note = _sizes_note(sized, assumed)
    for backbone in backbones:
        gpus = int(train_launch(config, backbone)["gpus"])
        tokens = sft_tokens(config, backbone, assumed)
        hours = sft_flops(config, backbone, tokens) / (peak * gpu.train_utilisation) / 3600
        memory = _sft_memory_gb(config, backbone) if gpus else 0.0
        rows.append(
            RulePlan(
                f"sft[{backbone}]", n_arms, gpus, tokens, n_arms * hours if gpus else 0.0, memory
            )
        )
    for backbone in backbones:
        settings = backbone_inference(config, backbone)
        gpus = int(base_request(config, backbone, "generate")["gpus"])
        parameters = parse_size(config["backbones"][backbone]["size"])
        prompts = sum(sizes.values())
        work = generation_flops(
            (int(parameters), 0), prompts * assumed.prompt_tokens, prompts * settings.max_new_tokens
        )
        seconds = work / (max(gpus, 1) * peak * gpu.generate_utilisation)
        seconds += assumed.engine_start_seconds
        hours = gpus * seconds / 3600
        memory = settings.gpu_memory_utilization * gpu.memory_gb if gpus else 0.0
        rows.append(
            RulePlan(
                f"generate[{backbone}]",
                n_variants,
                gpus,
                prompts * (assumed.prompt_tokens + settings.max_new_tokens),
                n_variants * hours,
                memory,
                note=f"{len(sizes)} tasks, {prompts} prompts and 1 engine load per model"
                + (f"; {sizes_note}" if sizes_note else ""),
            )
        )
    n_models = len(backbones) * n_variants
    cpu = {
        "prepare_backbone": len(backbones),
        "build_task": len(config["tasks"]),
        "build_pool": 0 if judge else 1,
        "build_mix": n_arms,
        "score": n_models * len(config["tasks"]),
        "aggregate": 1,
    }
    rows += [RulePlan(rule, jobs, 0, 0, 0.0, 0.0) for rule, jobs in cpu.items() if jobs]
    return rows


def _sft_memory_gb(config: dict[str, Any], backbone: str) -> float:
    spec = config["backbones"][backbone]
    launch = train_launch(config, backbone)
    estimate = sft_memory(
        parse_size(spec["size"]),
        spec["family"],
        backbone_train(config, backbone),
        launch["gpus"],
        launch["strategy"],
    )
    return estimate.total_gb


def _judge_row(config: dict[str, Any], assumed: Assumptions, gpu: GpuClass) -> RulePlan:
    """The LLM judge labels the pool: prompts of up to max_chars (~4 characters a token) and a
    one-token answer, on a model of the backbones' class (7B unless its name says otherwise)."""
    labeller = LabellerSettings.from_mapping(config["ift"]["labeller"])
    gpus = int(pool_request(config)["gpus"])
    per_prompt = min(labeller.max_chars / 4, labeller.max_model_len)
    parameters = _size_in_name(labeller.model or "") or 7e9
    work = generation_flops(
        (int(parameters), 0),
        int(assumed.pool_conversations * per_prompt),
        assumed.pool_conversations,
    )
    seconds = work / (max(gpus, 1) * gpu.tflops * 1e12 * gpu.generate_utilisation)
    seconds += assumed.engine_start_seconds
    memory = labeller.gpu_memory_utilization * gpu.memory_gb
    return RulePlan(
        "build_pool (llm_judge)",
        1,
        gpus,
        assumed.pool_conversations * (per_prompt + 1),
        gpus * seconds / 3600,
        memory,
        note=f"{assumed.pool_conversations} conversations, {parameters / 1e9:g}B judge",
    )


def _size_in_name(model: str) -> float | None:
    """'Qwen/Qwen2.5-7B-Instruct' -> 7e9: the judge's size from its hub id, where it says."""
    import re

    match = re.search(r"(\d+(?:\.\d+)?)[Bb]\b", model)
    return float(match.group(1)) * 1e9 if match else None


def render(rows: list[RulePlan], assumed: Assumptions) -> str:
    """The plan as a Markdown table with its totals and assumptions."""
    gpu = assumed.gpu_class()
    lines = [
        "| rule | jobs | GPUs/job | tokens/job | GPU-hours | peak GPU mem (GB/GPU) | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.rule} | {row.jobs} | {row.gpus_per_job} | {_tokens(row.tokens_per_job)} | "
            f"{row.gpu_hours:.1f} | {row.peak_gpu_mem_gb:.1f} | {row.note} |"
        )
    rules: dict[str, list[RulePlan]] = {}
    for row in rows:
        rules.setdefault(row.rule.split("[")[0], []).append(row)
    for rule, group in rules.items():
        if len(group) > 1:
            lines.append(
                f"| {rule} (all) | {sum(r.jobs for r in group)} | | | "
                f"{sum(r.gpu_hours for r in group):.1f} | "
                f"{max(r.peak_gpu_mem_gb for r in group):.1f} | |"
            )
    jobs = sum(row.jobs for row in rows)
    gpu_jobs = sum(row.jobs for row in rows if row.gpus_per_job)
    hours = sum(row.gpu_hours for row in rows)
    peak = max((row.peak_gpu_mem_gb for row in rows), default=0.0)
    lines.append(
        f"| **total** | {jobs} ({gpu_jobs} on GPUs) | | | **{hours:.1f}** | {peak:.1f} | |"
    )
    lines += [
        "",
        f"Assumed: GPU {assumed.gpu} ({gpu.tflops:g} dense bf16 TFLOP/s, {gpu.memory_gb:g} GB), "
        f"utilisation {gpu.train_utilisation:g} in SFT and {gpu.generate_utilisation:g} in "
        f"generation; engine start {assumed.engine_start_seconds:g} s per model; "
        f"{assumed.example_tokens} tokens per IFT conversation (at most max_length); "
        f"{assumed.prompt_tokens} tokens per prompt, replies at max_new_tokens; "
        "hub tasks without a size at the catalogue's pinned rows "
        f"({assumed.hub_task_examples} examples where those are unverified). Set any with "
        "`--set key=value`.",
    ]
    return "\n".join(lines)


def _tokens(count: float) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    if count >= 1e6:
        return f"{count / 1e6:.1f}M"
    if count >= 1e3:
        return f"{count / 1e3:.1f}K"
    return f"{math.ceil(count)}"
