"""Study configuration: schema validation, defaults and the per-job views of the config.

Every job reads only the slice of the config that belongs to its own wildcards (its backbone,
its task, its proportion), so adding a backbone, task or proportion never changes the params of
an existing job and never reruns it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
DOMAINS = ("symbolic", "logical", "arithmetic")

DEFAULT_TRAIN: dict[str, Any] = {
    "epochs": 1,
    "max_steps": -1,
    "learning_rate": 2e-5,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "per_device_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_length": 2048,
    "packing": False,
    "gradient_checkpointing": False,
    "dtype": "bfloat16",
    "save_steps": 200,
    "logging_steps": 10,
    "seed": 42,
    "threads": 2,
}

DEFAULT_INFERENCE: dict[str, Any] = {
    "engine": "vllm",
    "dtype": "auto",
    "max_new_tokens": 256,
    "max_num_seqs": 256,
    "max_model_len": 2048,
    "batch_size": 16,
    "enforce_eager": False,
    "tensor_parallel_size": 1,
    "gpu_memory_utilization": 0.85,
    "cpu_kvcache_gib": 1,
    "threads": 2,
}

DEFAULT_ENGINES: dict[str, Any] = {"idle_seconds": 120, "max_alive": 2}


class ConfigError(ValueError):
    """A config value the study cannot run with; the message names the key and what is allowed."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _key_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _describe_error(error: Any) -> str:
    """Turn a jsonschema error into 'config key X: what is wrong (allowed: ...)'."""
    where = _key_path(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"config key '{where}': unknown key(s) {unknown} (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        return f"config key '{where}': {error.message}"
    if error.validator in ("maxProperties", "minProperties") and "source" in where:
        options = ", ".join(schema.get("properties", {}))
        return f"config key '{where}': give exactly one of {options}"
    if error.validator == "oneOf" and all(set(s) == {"required"} for s in error.validator_value):
        options = ", ".join(s["required"][0] for s in error.validator_value)
        return f"config key '{where}': give exactly one of {options}"
    if error.validator == "enum":
        allowed = error.validator_value
        return f"config key '{where}': {error.instance!r} is not allowed (allowed: {allowed})"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        span = f"{low}..{high}" if low is not None and high is not None else error.message
        return f"config key '{where}': {error.instance!r} is out of range (allowed: {span})"
    if error.validator == "propertyNames":
        return f"config key '{where}': name {error.instance!r} must match {schema.get('pattern')}"
    return f"config key '{where}': {error.message}"


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Check the config against the schema and the study's own rules; raise ConfigError."""
    import jsonschema

    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.path))
    )
    if errors:
        lines = [_describe_error(error) for error in errors[:5]]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    _check_tasks(config["tasks"])
    _check_replicates(config)
    _check_resources(config)
    _check_ift_sources(config["ift"]["sources"])
    _check_ift_settings(config["ift"])


def _check_ift_settings(ift: dict[str, Any]) -> None:
    """Cross-key rules the schema cannot say: a token limit needs a tokenizer, a judge a model."""
    cleaning = ift.get("cleaning", {})
    if cleaning.get("max_tokens") and not cleaning.get("tokenizer"):
        raise ConfigError(
            "config key 'ift.cleaning.max_tokens': needs ift.cleaning.tokenizer (a tokenizer "
            "folder or hub id); without one use ift.cleaning.max_chars"
        )
    labeller = ift.get("labeller", {})
    if labeller.get("method") == "llm_judge" and not labeller.get("model"):
        raise ConfigError("config key 'ift.labeller.model': the llm_judge labeller needs a model")
    prompt = labeller.get("prompt")
    if prompt is not None and "{conversation}" not in prompt:
        raise ConfigError("config key 'ift.labeller.prompt': must contain {conversation}")
    if ift.get("mix", {}).get("total_tokens") and ift.get("mix", {}).get("match") != "tokens":
        raise ConfigError("config key 'ift.mix.total_tokens': only used with match: tokens")


def _check_replicates(config: dict[str, Any]) -> None:
    """A replicate arm repeats an arm of the study, so its proportion must be one of them."""
    listed = (config.get("replicates") or {}).get("proportions", [])
    unknown = sorted(set(listed) - set(config["proportions"]))
    if unknown:
        raise ConfigError(
            f"config key 'replicates.proportions': {unknown} not in proportions "
            f"(allowed: {sorted(config['proportions'])})"
        )


def _check_resources(config: dict[str, Any]) -> None:
    from codeift.resources import ResourceError, validate_resources

    try:
        validate_resources(config)
    except ResourceError as error:
        raise ConfigError(str(error)) from error


def _check_tasks(tasks: dict[str, Any]) -> None:
    from codeift.tasks import TaskError, resolve_task

    for name, entry in tasks.items():
        try:
            resolve_task(name, entry)
        except TaskError as error:
            raise ConfigError(f"config key 'tasks.{name}': {error}") from error


def _check_ift_sources(sources: list[dict[str, Any]]) -> None:
    for index, source in enumerate(sources):
        key = f"ift.sources[{index}]"
        if source["kind"] == "generator":
            if source.get("n_general", 0) + source.get("n_code", 0) == 0:
                raise ConfigError(f"config key '{key}': a generator needs n_general or n_code > 0")
        elif not (source.get("path") or source.get("hub")):
            raise ConfigError(f"config key '{key}': a {source['kind']} source needs path or hub")


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Fill the optional top-level keys so rules can index them directly."""
    filled = copy.deepcopy(config)
    filled.setdefault("results", "results")
    filled.setdefault("seed", 0)
    filled.setdefault("evaluate_base", True)
    filled["ift"].setdefault("seed", filled["seed"])
    filled["ift"].setdefault("cleaning", {})
    filled["ift"].setdefault("labeller", {"method": "heuristic"})
    filled["ift"]["mix"] = {"nested": True, "match": "examples", **filled["ift"].get("mix", {})}
    filled["engines"] = {**DEFAULT_ENGINES, **filled.get("engines", {})}
    return filled


def backbone_train(config: dict[str, Any], backbone: str) -> dict[str, Any]:
    """SFT settings of one backbone: defaults < study-wide `train` < the backbone's `train`."""
    spec = config["backbones"][backbone]
    return {**DEFAULT_TRAIN, **config.get("train", {}), **spec.get("train", {})}


def backbone_inference(config: dict[str, Any], backbone: str) -> dict[str, Any]:
    """Generation settings; vLLM's tensor parallelism spans the job's GPUs unless set."""
    from codeift.resources import base_request

    spec = config["backbones"][backbone]
    gpus = base_request(config, backbone, "generate")["gpus"]
    derived = {"tensor_parallel_size": max(1, int(gpus))}
    return {
        **DEFAULT_INFERENCE,
        **derived,
        **config.get("inference", {}),
        **spec.get("inference", {}),
    }


VARIANT_RE = re.compile(r"^code(\d+)(?:r(\d+))?$")


def variant_name(proportion: int, replicate: int = 0) -> str:
    return f"code{proportion}" + (f"r{replicate}" if replicate else "")


def _parse_variant(variant: str) -> tuple[int, int]:
    match = VARIANT_RE.match(variant)
    if match is None:
        raise ConfigError(
            f"variant {variant!r}: expected 'base', 'code<percent>' or 'code<percent>r<replicate>'"
        )
    return int(match.group(1)), int(match.group(2) or 0)


def variant_proportion(variant: str) -> int | None:
    """The coding share of a variant, None for the untuned base."""
    return None if variant == "base" else _parse_variant(variant)[0]


def variant_replicate(variant: str) -> int:
    """0 for an arm's first seed, r for its replicate arm code{p}r{r}."""
    return 0 if variant == "base" else _parse_variant(variant)[1]


def replicate_arms(config: dict[str, Any]) -> list[str]:
    """code{p}r{r} for every listed proportion and r = 1..count (config key `replicates`)."""
    spec = config.get("replicates") or {}
    count = spec.get("count", 1)
    return [
        variant_name(p, r) for p in sorted(spec.get("proportions", [])) for r in range(1, count + 1)
    ]


def arms(config: dict[str, Any]) -> list[str]:
    """Every tuned arm: one per proportion, then the replicate arms."""
    return [variant_name(p) for p in config["proportions"]] + replicate_arms(config)


def variants(config: dict[str, Any]) -> list[str]:
    return (["base"] if config.get("evaluate_base", True) else []) + arms(config)


def arm_train(config: dict[str, Any], backbone: str, arm: str) -> dict[str, Any]:
    """SFT settings of one arm: its backbone's, with the seed moved by the arm's replicate."""
    settings = backbone_train(config, backbone)
    return {**settings, "seed": settings["seed"] + variant_replicate(arm)}
