"""Study configuration: schema validation, defaults and the per-job views of the config.

Every job reads only the slice of the config that belongs to its own wildcards (its backbone,
its task, its proportion), so adding a backbone, task or proportion never changes the params of
an existing job and never reruns it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import re
from pathlib import Path
from typing import Any

import yaml

from codeift.errors import ConfigError
from codeift.io import CONTROL_CHARACTERS, local_input_problem
from codeift.settings import (
    DEFAULT_CHAT_TEMPLATE,
    STUDY_DEFAULTS,
    CleaningSettings,
    EngineSettings,
    InferenceSettings,
    LabellerSettings,
    MixSettings,
    ScoringSettings,
    TrainSettings,
)
from codeift.study import variant_name, variant_replicate

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"
LOG = logging.getLogger("codeift.config")

# A study config has hundreds of values; YAML aliases can make a 420-byte file expand into
# millions (each alias is one shared object, copied out by every consumer that serialises it).
# The expanded tree is counted with an early stop, so even an exponential bomb is refused fast.
MAX_CONFIG_NODES = 100_000
MAX_CONFIG_TEXT = 4 << 20  # characters in all keys and strings together

# Folders an output root must not be or be inside (the system's own), and folders it must not
# be itself (their other contents are not the study's).
SYSTEM_FOLDERS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys", "/usr",
)  # fmt: skip
SHARED_FOLDERS = ("/", "/home", "/mnt", "/media", "/opt", "/root", "/run", "/srv", "/tmp", "/var")

# Keys that take a local folder or a hub id; a value that names no existing path is a hub id.
_MODEL_REF_KEYS = (("ift", "cleaning", "tokenizer"), ("ift", "labeller", "model"))
_HUB_ID = re.compile(
    r"\A(?!.*(?:--|\.\.))(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/)?"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?\Z"
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file as data, refused (naming the file) if aliases expand it beyond the limits."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    check_config_size(data, where=str(path))
    return data


def check_config_size(config: Any, where: str = "config") -> None:
    """Refuse a config whose expanded tree (aliases counted at every use) is beyond
    MAX_CONFIG_NODES values or MAX_CONFIG_TEXT characters; stops counting at the limit."""
    nodes, text = 0, 0
    stack = [config]
    while stack:
        item = stack.pop()
        nodes += 1
        if isinstance(item, dict):
            for key, value in item.items():
                text += len(str(key))
                stack.append(value)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str):
            text += len(item)
        if nodes > MAX_CONFIG_NODES or text > MAX_CONFIG_TEXT:
            raise ConfigError(
                f"{where}: expands to more than {MAX_CONFIG_NODES} values or "
                f"{MAX_CONFIG_TEXT} characters (YAML anchors and aliases are expanded; allowed: "
                "a config within those limits)"
            )


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
    if error.validator == "pattern":
        allowed = schema.get("description") or f"must match {schema['pattern']}"
        return f"config key '{where}': {error.instance!r} is not allowed (allowed: {allowed})"
    if error.validator == "type" and error.validator_value == "number":
        return (
            f"config key '{where}': {error.instance!r} is not allowed (allowed: a finite number"
            f"{_span(schema)})"
        )
    if error.validator == "type" and error.validator_value == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        span = f" {low}..{high}" if low is not None and high is not None else ""
        return (
            f"config key '{where}': {error.instance!r} is not allowed (allowed: an integer{span}, "
            "written without a decimal point)"
        )
    return f"config key '{where}': {error.message}"


def _span(schema: dict[str, Any]) -> str:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    return f" {low}..{high}" if low is not None and high is not None else ""


def _strict_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema counts 50.0 as an integer; the study does not (it would become `code50.0`)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _finite_number(checker: Any, instance: Any) -> bool:
    """NaN passes every bound check (each comparison is false) and infinity every minimum: a
    number key takes finite values only (`.nan` and `.inf` are YAML floats)."""
    if isinstance(instance, bool) or not isinstance(instance, int | float):
        return False
    return isinstance(instance, int) or math.isfinite(instance)


def _validator(schema: dict[str, Any]) -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", _strict_integer).redefine(
        "number", _finite_number
    )
    strict = jsonschema.validators.extend(base, type_checker=checker)
    return strict(schema)


@functools.cache
def _schema_validator(schema_path: str) -> Any:
    """The schema's validator, built once per process from libyaml's parse where PyYAML has it
    (the same data; the workflow's dry run pays for the pure-Python parse otherwise)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(schema_path, encoding="utf-8") as handle:
        return _validator(yaml.load(handle, Loader=loader))


def validate_config(
    config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH
) -> dict[str, Path]:
    """Check the config against the schema and the study's own rules; raise ConfigError.
    Returns each path key's resolved path (also logged), as the run will use it."""
    check_config_size(config)
    validator = _schema_validator(str(schema_path))
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.path))
    )
    if errors:
        lines = [_describe_error(error) for error in errors[:5]]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    _check_names_differ_beyond_case(config)
    resolved = _check_results(config)
    _check_tasks(config["tasks"])
    _check_replicates(config)
    _check_controls(config)
    _check_resources(config)
    _check_inference_lengths(config)
    _check_ift_sources(config["ift"]["sources"])
    _check_ift_settings(config["ift"])
    resolved.update(_check_input_paths(config))
    for key, path in resolved.items():
        LOG.info("config key %r resolves to %s", key, path)
    return resolved


def _check_names_differ_beyond_case(config: dict[str, Any]) -> None:
    """Backbone and task names become folder names, which collide on case-insensitive disks."""
    for section in ("backbones", "tasks"):
        seen: dict[str, str] = {}
        for name in config[section]:
            other = seen.setdefault(name.casefold(), name)
            if other != name:
                raise ConfigError(
                    f"config keys '{section}.{other}' and '{section}.{name}' differ only in case "
                    f"(allowed: {section[:-1]} names that differ ignoring case; they name "
                    "result folders)"
                )


def _check_results(config: dict[str, Any]) -> dict[str, Path]:
    """`results` is a folder every output goes under (and every job deletes and writes in): not
    an existing file, not a system folder or a shared one like /tmp or /home itself, not the
    working directory, not reached through `..`, no control characters."""
    value = config.get("results", STUDY_DEFAULTS["results"])
    allowed = (
        "allowed: a folder path without control characters or '..', outside the system's "
        f"folders ({', '.join(SYSTEM_FOLDERS)}), not {', '.join(SHARED_FOLDERS)} or the "
        "working directory itself"
    )
    if CONTROL_CHARACTERS.search(value) or ".." in Path(value).parts:
        raise ConfigError(f"config key 'results': {value!r} is not allowed ({allowed})")
    results = Path(value).expanduser()
    resolved = results.resolve()
    home = Path.home().resolve()
    if (
        str(resolved) in SHARED_FOLDERS
        or resolved in (home, Path.cwd().resolve())
        or any(_inside(resolved, folder) for folder in SYSTEM_FOLDERS)
    ):
        raise ConfigError(
            f"config key 'results': {value!r} resolves to {str(resolved)!r} ({allowed})"
        )
    if results.exists() and not results.is_dir():
        raise ConfigError(
            f"config key 'results': {str(results)!r} is an existing file (allowed: a folder "
            "path, existing or not)"
        )
    return {"results": resolved}


def _inside(path: Path, folder: str) -> bool:
    return path == Path(folder) or Path(folder) in path.parents


def checked_local_path(value: str, key: str, kind: str, must_exist: bool = True) -> Path:
    """A local input as the run will read it (codeift.io.local_input_problem); errors name
    `key`."""
    resolved, problem = local_input_problem(value, kind, must_exist)
    if problem:
        raise ConfigError(f"config key '{key}': {problem}")
    return resolved


def _check_input_paths(config: dict[str, Any]) -> dict[str, Path]:
    """Local inputs named in the config, checked as far as they can be before the run (a file
    may be made later, or exist only on the cluster: its job checks it again when it reads)."""
    found: dict[str, Path] = {}
    for name, spec in config["backbones"].items():
        source = spec["source"]
        if "path" in source:
            key = f"backbones.{name}.source.path"
            found[key] = checked_local_path(source["path"], key, "folder", must_exist=False)
        if "path" in source.get("gguf", {}):
            key = f"backbones.{name}.source.gguf.path"
            found[key] = checked_local_path(source["gguf"]["path"], key, "file", must_exist=False)
    for index, source in enumerate(config["ift"]["sources"]):
        if source.get("path"):
            key = f"ift.sources[{index}].path"
            found[key] = checked_local_path(source["path"], key, "file", must_exist=False)
    for parts in _MODEL_REF_KEYS:
        value = config["ift"].get(parts[1], {}).get(parts[2])
        if value is None:
            continue
        key = ".".join(parts)
        local = value.startswith(("/", ".", "~")) or Path(value).expanduser().exists()
        if local:
            found[key] = checked_local_path(value, key, "folder", must_exist=False)
        elif not _HUB_ID.match(value):
            raise ConfigError(
                f"config key '{key}': {value!r} is neither an existing folder nor a hub id "
                "(allowed: a local folder, or [owner/]name of letters, digits, '_', '.' and "
                "'-', no '--' or '..')"
            )
    return found


def _check_controls(config: dict[str, Any]) -> None:
    """A planted effect is checked on a task's results, so the study must have that task."""
    planted = (config.get("controls") or {}).get("planted") or {}
    for task in planted:
        if task not in config["tasks"]:
            raise ConfigError(
                f"config key 'controls.planted.{task}': not a task of this study (allowed: "
                f"{', '.join(sorted(config['tasks']))})"
            )


def _check_inference_lengths(config: dict[str, Any]) -> None:
    """Each backbone's context (max_model_len) must hold the reply (max_new_tokens) and a
    prompt, after the backbone's own `inference` overrides."""
    for backbone, spec in config["backbones"].items():
        settings = backbone_inference(config, backbone)
        if settings.max_model_len > settings.max_new_tokens:
            continue
        own = spec.get("inference", {})
        where = {
            key: f"backbones.{backbone}.inference.{key}"
            if key in own
            else (f"inference.{key}" if key in config.get("inference", {}) else f"default {key}")
            for key in ("max_model_len", "max_new_tokens")
        }
        raise ConfigError(
            f"config key '{where['max_model_len']}': {settings.max_model_len} leaves no room "
            f"for a prompt with {where['max_new_tokens']} = {settings.max_new_tokens} "
            f"(backbone {backbone}; allowed: max_model_len > max_new_tokens)"
        )


def _check_ift_settings(ift: dict[str, Any]) -> None:
    """Cross-key rules the schema cannot say (a token limit needs a tokenizer, a judge a model):
    the settings check them as they are built, here before any job runs and again in the job."""
    CleaningSettings.from_mapping(ift.get("cleaning"))
    LabellerSettings.from_mapping(ift.get("labeller"))
    MixSettings.from_mapping(ift.get("mix"))


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
    from codeift.models.memory import SftJob, SftMemoryError, check_sft_requests
    from codeift.resources import (
        STAGES,
        ResourceError,
        base_request,
        parse_size,
        train_launch,
        validate_resources,
    )
    from codeift.retries import RetryError, check_limits

    try:
        validate_resources(config)
        jobs = []
        for name, spec in sorted(config["backbones"].items()):
            launch = train_launch(config, name)
            parameters = parse_size(spec["size"], f"backbones.{name}.size")
            train = backbone_train(config, name)
            jobs.append(
                SftJob(name, parameters, spec["family"], train, launch["gpus"], launch["strategy"])
            )
            for stage in STAGES:
                where = f"backbones.{name}.resources.{stage}"
                check_limits(config, base_request(config, name, stage), where)
        check_sft_requests(config, jobs)
    except (ResourceError, SftMemoryError, RetryError) as error:
        raise ConfigError(str(error)) from error


def _check_tasks(tasks: dict[str, Any]) -> None:
    from codeift.tasks import TaskError, resolve_task

    for name, entry in tasks.items():
        try:
            resolved = resolve_task(name, entry)
        except TaskError as error:
            raise ConfigError(f"config key 'tasks.{name}': {error}") from error
        hub_id = (resolved.get("hub") or {}).get("id")
        if hub_id is not None and not (isinstance(hub_id, str) and _HUB_ID.match(hub_id)):
            raise ConfigError(
                f"config key 'tasks.{name}.spec.hub.id': {hub_id!r} is not a hub id (allowed: "
                "[owner/]name of letters, digits, '_', '.' and '-', no '--' or '..')"
            )


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
    for key, value in STUDY_DEFAULTS.items():
        filled.setdefault(key, value)
    for spec in filled["backbones"].values():
        spec.setdefault("chat_template", DEFAULT_CHAT_TEMPLATE)
    filled["ift"].setdefault("seed", filled["seed"])
    filled["ift"].setdefault("cleaning", {})
    # The labeller's method and the mix settings are named in their jobs' params even when
    # unset (as they always were: a config that names them reruns nothing).
    filled["ift"].setdefault("labeller", {"method": LabellerSettings().method})
    filled["ift"]["mix"] = {**MixSettings().recorded(), **filled["ift"].get("mix", {})}
    filled["engines"] = EngineSettings.from_mapping(filled.get("engines")).to_dict()
    filled["scoring"] = ScoringSettings.from_mapping(filled.get("scoring")).to_dict()
    return filled


def backbone_train(config: dict[str, Any], backbone: str) -> TrainSettings:
    """SFT settings of one backbone: defaults < study-wide `train` < the backbone's `train`."""
    spec = config["backbones"][backbone]
    return TrainSettings.from_mapping({**config.get("train", {}), **spec.get("train", {})})


def backbone_inference(config: dict[str, Any], backbone: str) -> InferenceSettings:
    """Generation settings; vLLM's tensor parallelism spans the job's GPUs unless set."""
    from codeift.resources import base_request

    spec = config["backbones"][backbone]
    gpus = base_request(config, backbone, "generate")["gpus"]
    derived = {"tensor_parallel_size": max(1, int(gpus))}
    return InferenceSettings.from_mapping(
        {**derived, **config.get("inference", {}), **spec.get("inference", {})}
    )


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
    evaluate_base = config.get("evaluate_base", STUDY_DEFAULTS["evaluate_base"])
    return (["base"] if evaluate_base else []) + arms(config)


def arm_train(config: dict[str, Any], backbone: str, arm: str) -> TrainSettings:
    """SFT settings of one arm: its backbone's, with the seed moved by the arm's replicate."""
    settings = backbone_train(config, backbone)
    return dataclasses.replace(settings, seed=settings.seed + variant_replicate(arm))
