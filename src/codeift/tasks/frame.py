"""Build one task's test set as a frame with a fixed schema.

Everything random is drawn from a `random.Random` seeded by a stable hash of (task, seed), so a
test set depends only on its config: re-running a workflow, or running tasks in another order,
gives byte-identical prompts and golds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import polars as pl

from codeift.io import stable_hash
from codeift.tasks import hub as hub_source
from codeift.tasks.catalog import resolve_task
from codeift.tasks.errors import task_error
from codeift.tasks.generators import generate_records
from codeift.tasks.hub import template_fields

TASK_COLUMNS: tuple[str, ...] = (
    "id",
    "task",
    "domain",
    "answer_type",
    "question",
    "answer",
    "prompt",
    "source",
)


def task_seed(name: str, seed: int, purpose: str) -> int:
    """A per-task, per-purpose seed that does not depend on Python's salted hash()."""
    return int(stable_hash({"task": name, "seed": seed, "purpose": purpose}), 16)


def _generated(spec: Mapping[str, Any], seed: int) -> tuple[list[dict[str, str]], str]:
    generator = spec["generator"]
    size = spec["size"] or generator["size"]
    rng = random.Random(task_seed(spec["name"], seed, "generate"))
    records = generate_records(spec["name"], generator["name"], generator["params"], size, rng)
    return records, f"generator:{generator['name']}"


def _from_hub(spec: Mapping[str, Any], seed: int) -> tuple[list[dict[str, str]], str]:
    """All mapped rows (count checked against the catalogue), shuffled deterministically, then
    the first `size`."""
    rows = hub_source.load_task_rows(spec["name"], spec["hub"])
    records = hub_source.map_hub_records(spec["name"], spec, rows)
    random.Random(task_seed(spec["name"], seed, "shuffle")).shuffle(records)
    if spec["size"] is not None:
        records = records[: spec["size"]]
    return records, hub_source.source_label(spec["hub"])


def render_prompt(spec: Mapping[str, Any], record: Mapping[str, str], record_id: str) -> str:
    """The zero-shot user message: the template, plus the step-by-step trigger if asked for."""
    for field in sorted(template_fields(spec["name"], spec["prompt"], "prompt")):
        if field not in record:
            raise task_error(
                spec["name"],
                f"prompt template uses a field the records lack (they have: "
                f"{', '.join(sorted(record))})",
                record=record_id,
                field=field,
            )
    prompt = spec["prompt"].format(**record).strip()
    if spec["step_by_step"]:
        prompt = f"{prompt}\n{spec['step_by_step_trigger'].strip()}"
    return prompt


def build_task_frame(name: str, entry: dict, seed: int) -> pl.DataFrame:
    """The test set of one task: TASK_COLUMNS, all strings, one row per item.

    A `seed` in the entry overrides the run-wide `seed`, so one task can be re-drawn alone.
    """
    spec = resolve_task(name, entry)
    used_seed = seed if spec["seed"] is None else spec["seed"]
    if spec["source"] == "generator":
        records, source = _generated(spec, used_seed)
    else:
        records, source = _from_hub(spec, used_seed)
    if not records:
        raise task_error(name, f"no records from {source}", field="size")
    width = max(4, len(str(len(records) - 1)))
    ids = [f"{name}-{index:0{width}d}" for index in range(len(records))]
    columns: dict[str, list[str]] = {column: [] for column in TASK_COLUMNS}
    for record_id, record in zip(ids, records, strict=True):
        row = {
            "id": record_id,
            "task": name,
            "domain": spec["domain"],
            "answer_type": spec["answer_type"],
            "question": record["question"],
            "answer": record["answer"],
            "prompt": render_prompt(spec, record, record_id),
            "source": source,
        }
        for column in TASK_COLUMNS:
            columns[column].append(row[column])
    return pl.DataFrame(columns, schema={column: pl.Utf8 for column in TASK_COLUMNS})
