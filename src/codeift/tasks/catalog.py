"""The task catalogue and how a config entry is merged onto it.

Tasks are data (catalog.yaml) so that adding or re-wording a task is a config change; the
checks here make every mistake in that data fail before any model is loaded, with a message
that says which task and which key.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from codeift.study import ANSWER_TYPES
from codeift.tasks.errors import reject_unknown, task_error
from codeift.tasks.generators import check_params, get_generator
from codeift.tasks.hub import ANSWER_PARSERS, TRANSFORMS, template_fields

CATALOG_PATH = Path(__file__).parent / "catalog.yaml"

ENTRY_KEYS = ("domain", "source", "size", "seed", "difficulty", "step_by_step", "spec")
SPEC_KEYS = ("answer_type", "prompt", "step_by_step_trigger", "generator", "hub")
SOURCES = ("generator", "hub")
DEFAULT_TRIGGER = "Let's think step by step."
_HUB_REQUIRED = ("id", "revision", "split", "files", "fields", "answer_parser")
_HUB_OPTIONAL = ("config", "question", "transform", "where", "params", "rows", "columns",
                 "source_notes")  # fmt: skip


def load_catalog() -> dict[str, dict]:
    """All catalogue entries by task name (a fresh copy, so callers may mutate it)."""
    return copy.deepcopy(_parsed_catalog())


@functools.cache
def _parsed_catalog() -> dict[str, dict]:
    """The catalogue file parsed once per process: the config check resolves every task of a
    study against it, and the workflow's dry run pays for each parse (scripts/bench_dryrun.py).
    libyaml's loader where PyYAML has it (the same data, a tenth of the time)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with CATALOG_PATH.open(encoding="utf-8") as handle:
        catalog = yaml.load(handle, Loader=loader)
    if not isinstance(catalog, dict) or not all(isinstance(v, dict) for v in catalog.values()):
        raise task_error("*", f"{CATALOG_PATH} must map task names to entries", field="catalog")
    return catalog


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Override wins; nested mappings merge so a spec can change one knob or one field."""
    merged = dict(copy.deepcopy(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_keys(task: str, given: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
    reject_unknown(task, given, allowed, what="key", field=key)


def _mapping(task: str, value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise task_error(task, f"expected a mapping, got {type(value).__name__}", field=key)
    return dict(value)


def _check_entry(task: str, entry: Any) -> dict[str, Any]:
    """Type-check the config entry's own keys (catalogue-independent)."""
    entry = _mapping(task, entry, "entry")
    _check_keys(task, entry, ENTRY_KEYS, "entry")
    if not isinstance(entry.get("domain"), str) or not entry["domain"]:
        raise task_error(task, "config entry needs a non-empty 'domain'", field="domain")
    if entry.get("source", "generator") not in SOURCES:
        raise task_error(
            task,
            f"source must be one of {', '.join(SOURCES)}, got {entry['source']!r}",
            field="source",
        )
    size = entry.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise task_error(task, f"size must be an integer >= 1, got {size!r}", field="size")
    seed = entry.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise task_error(task, f"seed must be an integer, got {seed!r}", field="seed")
    if not isinstance(entry.get("step_by_step", False), bool):
        raise task_error(task, "step_by_step must be true or false", field="step_by_step")
    return entry


def _base_spec(task: str, entry: Mapping[str, Any], catalog: Mapping[str, dict]) -> dict:
    """The catalogue entry with the config's `spec` merged on; checks the domain and spec keys."""
    spec = _mapping(task, entry.get("spec"), "spec")
    _check_keys(task, spec, SPEC_KEYS, "spec")
    if task in catalog:
        known = catalog[task]
        if entry["domain"] != known["domain"]:
            raise task_error(
                task,
                f"config says domain {entry['domain']!r} but the catalogue says "
                f"{known['domain']!r}",
                field="domain",
            )
        return _deep_merge(known, spec)
    source = entry.get("source", "generator")
    for key in ("answer_type", "prompt", source):
        if not spec.get(key):
            raise task_error(
                task, f"not in the catalogue, so its spec must give {key!r}", field=f"spec.{key}"
            )
    return _deep_merge({"domain": entry["domain"], "hub": None, "generator": None}, spec)


def _check_prompt(task: str, resolved: Mapping[str, Any]) -> None:
    if resolved["answer_type"] not in ANSWER_TYPES:
        raise task_error(
            task,
            f"unknown answer type {resolved['answer_type']!r}; expected one of "
            f"{', '.join(ANSWER_TYPES)}",
            field="answer_type",
        )
    for key in ("prompt", "step_by_step_trigger"):
        if not isinstance(resolved.get(key), str) or not resolved[key].strip():
            raise task_error(task, "must be a non-empty string", field=key)
    template_fields(task, resolved["prompt"], "prompt")


def _with_difficulty(
    task: str, params: Mapping[str, Any], difficulty: Mapping[str, Any], where: str
) -> dict:
    """A source's default knobs overridden by the config's `difficulty`; unknown knobs fail."""
    reject_unknown(
        task, difficulty, sorted(params), what="difficulty knob", field="difficulty", where=where
    )
    return {**params, **difficulty}


def _resolve_generator(task: str, generator: Any, difficulty: Mapping[str, Any]) -> dict:
    generator = _mapping(task, generator, "generator")
    _check_keys(task, generator, ("name", "size", "params"), "generator")
    if "name" not in generator:
        raise task_error(task, "generator needs a 'name'", field="generator.name")
    get_generator(task, generator["name"])
    params = _mapping(task, generator.get("params"), "generator.params")
    params = check_params(task, generator["name"], _with_difficulty(task, params, difficulty, ""))
    size = generator.get("size", 200)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise task_error(
            task, f"generator size must be an integer >= 1, got {size!r}", field="size"
        )
    return {"name": generator["name"], "size": size, "params": params}


def _hub_fields(task: str, hub: Mapping[str, Any]) -> set[str]:
    """Fields a hub record will have: the mapped ones plus those its transform adds."""
    fields = set(_mapping(task, hub["fields"], "hub.fields"))
    transform = hub.get("transform")
    if transform and transform not in TRANSFORMS:
        raise task_error(
            task,
            f"unknown transform {transform!r}; known: {', '.join(TRANSFORMS)}",
            field="hub.transform",
        )
    return fields | set(TRANSFORMS[transform].adds if transform else ())


def _check_hub_mapping(task: str, hub: Mapping[str, Any]) -> None:
    """Fail at resolve time, not after a download, if the mapping cannot produce a record."""
    mapped = set(hub["fields"])
    if "answer" not in mapped:
        raise task_error(task, "hub fields must map 'answer'", field="hub.fields.answer")
    if "question" not in mapped and not hub.get("question"):
        raise task_error(task, "hub needs a 'question' field or template", field="hub.question")
    if hub.get("question"):
        unknown = template_fields(task, hub["question"], "hub.question") - _hub_fields(task, hub)
        if unknown:
            raise task_error(
                task, "hub question template uses an unmapped field", field=sorted(unknown)[0]
            )
    if hub["answer_parser"] not in ANSWER_PARSERS:
        raise task_error(
            task,
            f"unknown answer parser {hub['answer_parser']!r}; known: {', '.join(ANSWER_PARSERS)}",
            field="hub.answer_parser",
        )
    unfiltered = sorted(set(_mapping(task, hub.get("where"), "hub.where")) - mapped)
    if unfiltered:
        raise task_error(task, "hub 'where' filters on an unmapped field", field=unfiltered[0])


def _strings(task: str, value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise task_error(task, f"expected a list of non-empty strings, got {value!r}", field=key)
    return value


def _check_hub_files(task: str, hub: dict[str, Any]) -> None:
    """What pins a source: files (patterns in the repository), the revision, rows, columns.

    `rows: null` turns the count check off (for a source whose size is not known in advance).
    """
    hub["files"] = _strings(task, hub["files"], "hub.files")
    if not isinstance(hub["revision"], str):
        raise task_error(
            task, "revision must be a commit sha or a branch name", field="hub.revision"
        )
    rows = hub.get("rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise task_error(
            task, f"rows must be an integer >= 1 or null, got {rows!r}", field="hub.rows"
        )
    if hub.get("columns") is not None:
        hub["columns"] = _strings(task, hub["columns"], "hub.columns")


def _resolve_hub(task: str, hub: Any, difficulty: Mapping[str, Any]) -> dict:
    if not hub:
        raise task_error(
            task, "has no hub source (generator only); use source: generator", field="hub"
        )
    hub = _mapping(task, hub, "hub")
    _check_keys(task, hub, _HUB_REQUIRED + _HUB_OPTIONAL, "hub")
    for key in _HUB_REQUIRED:
        if not hub.get(key):
            raise task_error(task, f"hub source needs {key!r}", field=f"hub.{key}")
    hub["fields"] = _mapping(task, hub["fields"], "hub.fields")
    _check_hub_files(task, hub)
    _check_hub_mapping(task, hub)
    params = _mapping(task, hub.get("params"), "hub.params")
    return {**hub, "params": _with_difficulty(task, params, difficulty, " for the hub source")}


def resolve_task(name: str, entry: dict) -> dict:
    """Merge a config entry onto the catalogue into a fully checked task spec.

    The result has name, domain, answer_type, prompt, step_by_step_trigger, step_by_step
    (bool), source, size (None = generator default / all hub rows), seed (None = the caller's),
    and generator / hub: the active source has `difficulty` merged into its params, the
    inactive one is kept as given (or None).
    """
    entry = _check_entry(name, entry)
    base = _base_spec(name, entry, load_catalog())
    resolved = {
        "name": name,
        "domain": entry["domain"],
        "answer_type": base.get("answer_type"),
        "prompt": base.get("prompt"),
        "step_by_step_trigger": base.get("step_by_step_trigger") or DEFAULT_TRIGGER,
        "step_by_step": entry.get("step_by_step", False),
        "source": entry.get("source", "generator"),
        "size": entry.get("size"),
        "seed": entry.get("seed"),
        "generator": base.get("generator"),
        "hub": base.get("hub"),
    }
    _check_prompt(name, resolved)
    difficulty = _mapping(name, entry.get("difficulty"), "difficulty")
    if resolved["source"] == "generator":
        resolved["generator"] = _resolve_generator(name, base.get("generator"), difficulty)
    else:
        resolved["hub"] = _resolve_hub(name, base.get("hub"), difficulty)
    return resolved
