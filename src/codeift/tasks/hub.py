"""Real test sets from the Hugging Face hub, mapped onto our record fields.

Loading needs the network (or huggingface_hub's cache, filled by the prefetch step); mapping does
not. Every source is pinned: a repository, a revision, the files that make up the standard test
set, and the row count and columns its card gives (catalog.yaml, docs/tasks-sources.md). Keeping
`map_hub_records` pure lets tests run it on rows shaped exactly like the real datasets, so a
cluster run cannot be the first place a schema mismatch shows up.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import string
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeift.hub import PREFETCH_COMMAND, dataset_artifact, snapshot
from codeift.numbers import canonical_number
from codeift.tasks.errors import TaskError, task_error

Record = dict[str, str]


def _gsm8k_final(value: Any) -> str | None:
    """GSM8K solutions end with "#### N"; N may carry thousands commas."""
    text = str(value)
    if "####" not in text:
        return None
    return canonical_number(text.rsplit("####", 1)[1])


def _number(value: Any) -> str | None:
    return canonical_number(value)


def _yesno(value: Any) -> str | None:
    text = str(value).strip().lower()
    return text if text in ("yes", "no") else None


def _truefalse(value: Any) -> str | None:
    text = str(value).strip().lower()
    return {"true": "True", "false": "False"}.get(text)


def _text(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


ANSWER_PARSERS: dict[str, tuple[Callable[[Any], str | None], str]] = {
    "gsm8k_final": (_gsm8k_final, "a solution ending in '#### <number>'"),
    "number": (_number, "a number"),
    "yesno": (_yesno, "'yes' or 'no'"),
    "truefalse": (_truefalse, "'True' or 'False'"),
    "text": (_text, "non-empty text"),
}

_BRACKETED_NAME = re.compile(r"\[([^\[\]]+)\]")


def _clutrr_query(record: Record) -> Record:
    """Split CLUTRR's query "('Dorothy', 'Donald')" into first/second; unbracket story names.

    target_text names how the second person is related to the first (checked against the
    published test rows and their proof_state; catalogue, `clutrr`), so the question reads "How
    is {second} related to {first}?". Stories mark names as "[Dorothy]"; the brackets go.
    """
    try:
        first, second = ast.literal_eval(record["query"])
    except (ValueError, SyntaxError, TypeError) as error:
        raise ValueError(f"query {record['query']!r} is not a pair of names") from error
    story = _BRACKETED_NAME.sub(r"\1", record["story"])
    return {**record, "first": str(first), "second": str(second), "story": story}


@dataclass(frozen=True)
class Transform:
    """A named per-record reshaping and the fields it adds (for checking templates early)."""

    apply: Callable[[Record], Record]
    adds: tuple[str, ...]


TRANSFORMS: dict[str, Transform] = {"clutrr_query": Transform(_clutrr_query, ("first", "second"))}


def template_fields(task: str, template: str, key: str) -> set[str]:
    """Names a str.format template uses; positional or malformed templates are TaskErrors."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise task_error(task, f"malformed template {template!r}: {error}", field=key) from error
    fields = set()
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not root or root.isdigit():
            raise task_error(
                task, f"template {template!r} must use named fields like {{question}}", field=key
            )
        fields.add(root)
    return fields


def _record_label(index: int, row: Mapping[str, Any]) -> str:
    return f"{index} (id {row['id']!r})" if "id" in row else str(index)


def _keep(task: str, hub: Mapping[str, Any], record: Record) -> bool:
    """Apply `where`: each listed field must equal one of its allowed values (params filled)."""
    params = hub.get("params") or {}
    for field, allowed in (hub.get("where") or {}).items():
        options = allowed if isinstance(allowed, list) else [allowed]
        try:
            wanted = {str(option).format(**params) for option in options}
        except KeyError as error:
            raise task_error(task, f"'where' uses unknown param {error}", field=field) from error
        if record[field] not in wanted:
            return False
    return True


def _map_one(task: str, hub: Mapping[str, Any], index: int, row: Mapping[str, Any]) -> Record:
    label = _record_label(index, row)
    record: Record = {}
    for ours, theirs in hub["fields"].items():
        if theirs not in row or row[theirs] is None:
            raise task_error(
                task,
                f"hub row lacks column {theirs!r} (mapped to {ours!r})",
                record=label,
                field=theirs,
            )
        value = row[theirs]
        record[ours] = value.strip() if isinstance(value, str) else str(value)
    return record


def _finish(task: str, hub: Mapping[str, Any], label: str, record: Record) -> Record:
    transform = hub.get("transform")
    if transform:
        try:
            record = TRANSFORMS[transform].apply(record)
        except ValueError as error:
            raise task_error(task, str(error), record=label, field=transform) from error
    parse, expected = ANSWER_PARSERS[hub["answer_parser"]]
    answer = parse(record["answer"])
    if answer is None:
        raise task_error(
            task, f"expected {expected}, got {record['answer']!r}", record=label, field="answer"
        )
    record["answer"] = answer
    question = hub.get("question")
    if question:
        missing = sorted(template_fields(task, question, "hub.question") - set(record))
        if missing:
            raise task_error(
                task,
                "hub question template needs a field the record lacks",
                record=label,
                field=missing[0],
            )
        record["question"] = question.format(**record)
    return record


def map_hub_records(
    name: str, spec: Mapping[str, Any], records: list[Mapping[str, Any]]
) -> list[Record]:
    """Map raw hub rows onto our fields (question, answer and any extra mapped fields).

    `spec` is a resolved task (see `resolve_task`). Rows are renamed by `fields`, filtered by
    `where`, reshaped by the optional `transform`, answers canonicalised by `answer_parser`, and
    `question` built from the optional template. Order is preserved.
    """
    hub = spec.get("hub")
    if not hub:
        raise task_error(name, "has no hub source (generator only)", field="hub")
    mapped = []
    for index, row in enumerate(records):
        record = _map_one(name, hub, index, row)
        if _keep(name, hub, record):
            mapped.append(_finish(name, hub, _record_label(index, row), record))
    return mapped


def download_hub_files(hub: Mapping[str, Any]) -> Path:
    """Fetch a source's files at its pinned revision; return the local snapshot folder.

    The only network call of the task loaders, routed through codeift.hub so that the prefetch
    step (run on a login node) and a job (offline once a prefetch manifest exists) resolve the
    very same files through huggingface_hub's cache; offline, a missing snapshot fails at once
    naming the prefetch command and never waits on the network.
    """
    artifact = dataset_artifact(source_label(hub), hub["id"], hub.get("revision"), hub["files"])
    return snapshot(artifact)


def _matching_files(hub: Mapping[str, Any], root: Path) -> list[Path]:
    """Each `files` pattern in catalogue order (matches sorted within one), as the hub matches.

    A pattern that matches nothing is an error: a missing split must not shrink a test set.
    """
    from huggingface_hub.utils import filter_repo_objects

    present = sorted(
        path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()
    )
    chosen: list[Path] = []
    for pattern in hub["files"]:
        matched = sorted(filter_repo_objects(present, allow_patterns=[pattern]))
        if not matched:
            raise FileNotFoundError(
                f"hub:{hub['id']}@{hub.get('revision') or 'main'}: no file matches {pattern!r} "
                f"under {root} (fetch it with `{PREFETCH_COMMAND}` where the network is reachable)"
            )
        chosen.extend(root / name for name in matched if root / name not in chosen)
    return chosen


def _json_rows(path: Path) -> list[Any]:
    """A JSON file as rows: a list of objects, {"data": [...]}, columns of equal length, or
    JSON lines (the shapes the `datasets` JSON loader accepts)."""
    text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lists = {key: item for key, item in value.items() if isinstance(item, list)}
        if len(lists) == 1 and len(value) == 1:
            return next(iter(lists.values()))
        if lists and len(lists) == len(value) and len({len(v) for v in lists.values()}) == 1:
            keys, columns = list(lists), list(lists.values())
            return [dict(zip(keys, items, strict=True)) for items in zip(*columns, strict=True)]
    raise ValueError(f"{path}: JSON is neither rows, {{key: rows}} nor equal-length columns")


def read_rows(path: Path, columns: Collection[str] | None = None) -> list[dict[str, Any]]:
    """One data file as plain dicts: parquet, JSON / JSON lines, or CSV (by suffix).

    `columns` limits what a parquet file loads to those of them it has (ProofWriter's test split
    is 262 MB, mostly proofs no task reads); absent ones are left for the checks to report.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        keep = None
        if columns is not None:
            keep = [name for name in pq.read_schema(path).names if name in set(columns)]
        rows: list[Any] = pq.read_table(path, columns=keep).to_pylist()
    elif suffix == ".jsonl":
        text = path.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif suffix == ".json":
        rows = _json_rows(path)
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise ValueError(f"{path}: unsupported data file type {suffix!r}")
    bad = next((index for index, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise ValueError(f"{path}: row {bad} is not an object")
    return rows


def load_hub_rows(hub: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All rows of a hub source: its `files` at its `revision`, concatenated in catalogue order.

    Reads the files themselves (parquet, JSON, CSV) rather than calling `datasets.load_dataset`,
    which refuses loading-script datasets (datasets >= 4) and cannot glob the hub offline.
    """
    root = download_hub_files(hub)
    needed = {"id", *hub["fields"].values(), *(hub.get("columns") or [])}
    rows: list[dict[str, Any]] = []
    for path in _matching_files(hub, root):
        rows.extend(read_rows(path, needed))
    return rows


def check_hub_rows(task: str, hub: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> None:
    """The downloaded rows are the source the catalogue describes: its row count and columns.

    A different count means another revision, a re-split or a missing file: results would not
    be comparable with the published ones, so the build stops and names both counts.
    """
    expected = hub.get("rows")
    if expected is not None and len(rows) != expected:
        raise task_error(
            task,
            f"hub:{hub['id']}@{hub.get('revision') or 'main'} ({', '.join(hub['files'])}) has "
            f"{len(rows)} rows, the catalogue expects {expected}",
            field="hub.rows",
        )
    columns = hub.get("columns") or []
    if rows and columns:
        missing = [column for column in columns if column not in rows[0]]
        if missing:
            raise task_error(
                task,
                f"hub:{hub['id']} rows lack column(s) {', '.join(missing)}; they have "
                f"{', '.join(sorted(rows[0]))}",
                field="hub.columns",
            )


def load_task_rows(task: str, hub: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A task's raw hub rows, checked against the catalogue; a missing download names the
    source and the prefetch command instead of a bare hub error."""
    source = f"hub:{hub['id']}@{hub.get('revision') or 'main'} ({', '.join(hub['files'])})"
    try:
        rows = load_hub_rows(hub)
    except OSError as error:
        raise task_error(
            task,
            f"cannot fetch {source}: {error}. Jobs without network need the files fetched "
            f"first, with `{PREFETCH_COMMAND}`",
            field="hub",
        ) from error
    except ValueError as error:
        if isinstance(error, TaskError):
            raise
        raise task_error(task, f"cannot read {source}: {error}", field="hub") from error
    check_hub_rows(task, hub, rows)
    return rows


def source_label(hub: Mapping[str, Any]) -> str:
    config = f"/{hub['config']}" if hub.get("config") else ""
    return f"hub:{hub['id']}{config}:{hub['split']}"
