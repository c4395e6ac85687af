"""IFT sources normalised to chat messages: ShareGPT, Alpaca-style and chat-message records,
streamed from JSON arrays (ijson), JSON lines, Parquet (in batches), hub datasets and the embedded
generator. A record that cannot be used is skipped with a counted reason and a bounded sample of
its positions."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from codeift.data.small_world import generate_conversations
from codeift.errors import IFTError

MESSAGE_DTYPE = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
ROLE_MAP = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}


SKIP_SAMPLE_LIMIT = 50
BATCH_ROWS = 2048


def _normalise_turns(turns: Any, role_key: str, text_key: str) -> list[dict[str, str]]:
    if not isinstance(turns, list):
        raise ValueError("conversation is not a list")
    messages = []
    for turn in turns:
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ValueError(f"turn without {role_key!r}/{text_key!r}")
        role = ROLE_MAP.get(str(turn[role_key]).lower())
        if role is None:
            raise ValueError(f"unknown role {turn[role_key]!r}")
        if not isinstance(turn[text_key], str):
            raise ValueError(f"turn {text_key!r} is not text")
        messages.append({"role": role, "content": turn[text_key]})
    return messages


def check_conversation(messages: list[dict[str, str]]) -> str | None:
    """The reason a conversation cannot be trained on, or None."""
    body = [m for m in messages if m["role"] != "system"]
    if not body or not any(m["content"].strip() for m in body):
        return "empty"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in body):
        return "no_assistant_turn"
    if not any(m["role"] == "user" and m["content"].strip() for m in body):
        return "no_user_turn"
    if body[0]["role"] != "user":
        return "starts_with_assistant"
    for previous, current in zip(body, body[1:], strict=False):
        if previous["role"] == current["role"]:
            return "broken_alternation"
    return None


def _file_format(path: Path, declared: str | None) -> str:
    """json (one array), jsonl or parquet: declared, else from the suffix or the first byte."""
    if declared and declared != "auto":
        return declared
    if path.suffix == ".parquet":
        return "parquet"
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    return "json" if head.startswith(b"[") else "jsonl"


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Stream the items of one big JSON array (ShareGPT is 673 MB) without loading it whole."""
    import ijson

    with open(path, "rb") as handle:
        index = -1
        try:
            for index, item in enumerate(ijson.items(handle, "item", use_float=True)):
                yield index, item
        except (ijson.JSONError, UnicodeDecodeError) as error:
            # A broken array cannot be resynchronised: report where it stopped.
            yield index + 1, ValueError(f"malformed_json: {str(error)[:80]}")


def _iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """One record per line; a line that is not UTF-8 or not JSON is reported, not fatal."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, ValueError("invalid_utf8")
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                yield number, ValueError("malformed_json")


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a Parquet file in bounded batches (polars lazy scan, one slice at a time)."""
    frame = pl.scan_parquet(path)
    rows = frame.select(pl.len()).collect().item()
    for offset in range(0, rows, BATCH_ROWS):
        batch = frame.slice(offset, BATCH_ROWS).collect()
        yield from enumerate(batch.iter_rows(named=True), start=offset)


def _iter_hub_dataset(source: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    """A hub dataset (no single file named): streamed with `datasets`, one split."""
    from codeift.hub import ArtifactMissing, load_dataset_split

    try:
        dataset = load_dataset_split(
            source["hub"],
            source.get("subset"),
            source.get("split", "train"),
            source.get("revision"),
            role=f"IFT source {source.get('name', source['kind'])}",
            streaming=True,
        )
    except ArtifactMissing:
        raise
    except Exception as error:  # missing split or config, unreadable files
        raise IFTError(f"IFT source {source['hub']!r}: {error}") from error
    yield from enumerate(dataset)


def iter_raw_records(source: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    """(line or index, record or ValueError(reason)) pairs of one file or hub source."""
    if source.get("hub") and not source.get("hub_file") and not source.get("path"):
        yield from _iter_hub_dataset(source)
        return
    path = _resolve_source_file(source)
    kind = _file_format(path, source.get("format"))
    if kind == "parquet":
        yield from _iter_parquet(path)
    elif kind == "json":
        yield from _iter_json_array(path)
    else:
        yield from _iter_json_lines(path)


def _resolve_source_file(source: dict[str, Any]) -> Path:
    if source.get("path"):
        from codeift.io import local_input_problem

        # A regular file that exists now, when it is read (not /dev/zero, a FIFO, a folder).
        path, problem = local_input_problem(source["path"], "file")
        if problem:
            raise IFTError(f"IFT source {source.get('name', source['kind'])!r}: {problem}")
        return path
    from codeift.hub import repo_file

    # Downloaded, or read from the prefetched cache when offline (a missing file fails at once).
    return repo_file(
        source["hub"],
        source["hub_file"],
        source.get("revision"),
        repo_type="dataset",
        role=f"IFT source {source.get('name', source['kind'])}",
    )


def _field(record: dict[str, Any], fields: dict[str, str], name: str) -> Any:
    """A record's field under the source's mapping (`fields: {instruction: question}`); a dotted
    mapping walks into nested records (`output: instances.0.output`)."""
    value: Any = record
    for part in fields.get(name, name).split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _record_messages(
    kind: str, record: dict[str, Any], fields: dict[str, str]
) -> list[dict[str, str]]:
    if kind == "sharegpt":
        return _normalise_turns(_field(record, fields, "conversations"), "from", "value")
    if kind == "alpaca":
        instruction, output = (_field(record, fields, k) for k in ("instruction", "output"))
        extra = _field(record, fields, "input")
        if not isinstance(instruction, str) or not isinstance(output, str):
            raise ValueError("missing 'instruction' or 'output'")
        prompt = instruction + (f"\n\n{extra}" if isinstance(extra, str) and extra else "")
        return [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": output},
        ]
    return _normalise_turns(_field(record, fields, "messages"), "role", "content")


class SkipLog:
    """Counted skip reasons of one source plus a bounded sample of (reason, position)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter = Counter()
        self.sample: list[dict[str, Any]] = []

    def add(self, reason: str, position: Any) -> None:
        self.counts[reason] += 1
        if len(self.sample) < SKIP_SAMPLE_LIMIT:
            self.sample.append({"source": self.name, "reason": reason, "position": position})


def iter_source(source: dict[str, Any], seed: int, skips: SkipLog) -> Iterator[dict[str, Any]]:
    """One source's usable conversations, streamed; every skipped record is logged in `skips`."""
    kind = source["kind"]
    name = source.get("name", kind)
    if kind == "generator":
        for record in generate_conversations(
            source.get("n_general", 0), source.get("n_code", 0), seed
        ):
            yield {**record, "source": name}
        return
    fields = source.get("fields", {})
    kept = 0
    ids: set[str] = set()
    for position, raw in iter_raw_records(source):
        if isinstance(raw, ValueError):
            skips.add(str(raw).split(":")[0], position)
            continue
        if not isinstance(raw, dict):
            skips.add("not_an_object", position)
            continue
        try:
            messages = _record_messages(kind, raw, fields)
        except ValueError:
            skips.add("missing_fields", position)
            continue
        reason = check_conversation(messages)
        if reason:
            skips.add(reason, position)
            continue
        record_id = f"{name}-{_field(raw, fields, 'id') or position}"
        if record_id in ids:  # ids must be unique: the seeded mix order sorts by them
            record_id = f"{record_id}@{position}"
        ids.add(record_id)
        yield {
            "id": record_id,
            "messages": messages,
            "origin": None,
            "skill": None,
            "source": name,
        }
        kept += 1
        if source.get("limit") and kept >= source["limit"]:
            break


def require_records(source: dict[str, Any], kept: int, skips: SkipLog) -> None:
    if kept == 0:
        where = source.get("path") or source.get("hub") or source["kind"]
        raise IFTError(
            f"IFT source {skips.name!r} ({where}): no valid records "
            f"(skipped: {dict(sorted(skips.counts.items()))}; first: {skips.sample[:3]})"
        )
