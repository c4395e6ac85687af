"""Real test sets from the Hugging Face hub, mapped onto our record fields.

Loading needs the network and `datasets`; mapping does not. Keeping `map_hub_records` pure lets
tests run it on rows shaped exactly like the real datasets, so a cluster run cannot be the first
place a schema mismatch shows up.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from codeift.score.answers import canonical_number
from codeift.tasks.errors import task_error

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


def load_hub_rows(hub: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One split as plain dicts, read with `datasets` from the repository's snapshot: downloaded,
    or the prefetched one when offline (codeift.hub; a missing one fails at once)."""
    from codeift.hub import load_dataset_split  # lazy: `datasets` is heavy

    dataset = load_dataset_split(
        hub["id"], hub.get("config"), hub["split"], hub.get("revision"), role=source_label(hub)
    )
    return [dict(row) for row in dataset]


def source_label(hub: Mapping[str, Any]) -> str:
    config = f"/{hub['config']}" if hub.get("config") else ""
    return f"hub:{hub['id']}{config}:{hub['split']}"
