"""Instruction-tuning data: pool building, code/general labelling and controlled mixes.

The study's independent variable is the coding share of each mix, so a mix of proportion p holds
exactly `total` examples of which round(p/100 * total) are labelled code, chosen deterministically.
Code and general examples are each taken in one fixed seeded order, so every mix is a prefix of
that order: the 50% mix's code examples are a subset of the 100% mix's (nested mixes, lower
variance between arms).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

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


class IFTError(ValueError):
    """Bad IFT input that stops the job; the message names the source or mix."""


# --------------------------------------------------------------------------- offline generator

SUBJECTS = [
    "the ocean",
    "a library",
    "autumn",
    "a mountain village",
    "the night sky",
    "a market",
    "friendship",
    "a rainy day",
    "the desert",
    "an old bridge",
    "a garden",
    "the city",
]
ADJECTIVES = ["quiet", "bright", "ancient", "busy", "gentle", "vast", "small", "warm", "cold"]
COUNTRIES = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Canada": "Ottawa",
    "Egypt": "Cairo",
    "Norway": "Oslo",
    "India": "New Delhi",
}
SYNONYMS = {
    "happy": "glad",
    "big": "large",
    "fast": "quick",
    "smart": "clever",
    "begin": "start",
    "end": "finish",
    "tired": "weary",
    "angry": "upset",
}
TIPS = [
    "sleep enough",
    "drink water",
    "take short breaks",
    "plan the day",
    "walk outside",
    "read a little every day",
    "write things down",
    "ask for help early",
]
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "lemon",
    "paper",
    "glass",
    "music",
    "horse",
    "candle",
    "forest",
    "window",
    "silver",
    "garden",
    "pencil",
    "rocket",
    "ocean",
]


def _general_conversation(rng: random.Random) -> list[dict[str, str]]:
    kind = rng.randrange(6)
    if kind == 0:
        subject, adjective = rng.choice(SUBJECTS), rng.choice(ADJECTIVES)
        count = rng.choice(["two", "three"])
        user = (
            f"Write {count} sentences describing {subject} on a {rng.choice(ADJECTIVES)} morning."
        )
        reply = (
            f"{subject.capitalize()} feels {adjective} and full of small details. "
            f"Anyone who spends time there notices how {adjective} it can be."
        )
    elif kind == 1:
        country = rng.choice(sorted(COUNTRIES))
        user = rng.choice(
            [
                "What is the capital of {}?",
                "Which city is the capital of {}?",
                "Tell me the capital city of {}.",
            ]
        ).format(country)
        reply = f"The capital of {country} is {COUNTRIES[country]}."
    elif kind == 2:
        word = rng.choice(sorted(SYNONYMS))
        user = f"Give me a synonym for the word '{word}' and use it in a sentence."
        other = rng.choice(WORDS)
        synonym = SYNONYMS[word]
        reply = f"A common synonym for '{word}' is '{synonym}'. The {other} made me feel {synonym}."
    elif kind == 3:
        tips = rng.sample(TIPS, 3)
        user = f"Give me three tips for a productive {rng.choice(['day', 'week', 'morning'])}."
        reply = "Here are three tips: " + "; ".join(tips) + "."
    elif kind == 4:
        picked = rng.sample(WORDS, 4)
        user = "Write a short sentence that uses these words: " + ", ".join(picked) + "."
        reply = (
            f"The {picked[0]} rested near the {picked[1]} while a {picked[2]} "
            f"and a {picked[3]} completed the scene."
        )
    else:
        picked = rng.sample(WORDS, 3)
        adjective = rng.choice(ADJECTIVES)
        scene = f"the {adjective} {picked[0]} and the {picked[1]} met by the {picked[2]}"
        user = f"Summarise this in a few words: {scene}."
        reply = f"A {adjective} meeting of a {picked[0]} and a {picked[1]}."
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def _code_program(rng: random.Random) -> tuple[str, str]:
    """A small task and a real Python program that solves it (it is run to get its output)."""
    kind = rng.randrange(6)
    numbers = [rng.randint(1, 50) for _ in range(rng.randint(3, 6))]
    words = rng.sample(WORDS, rng.randint(3, 5))
    if kind == 0:
        return (
            f"Write a Python program that reverses the list {numbers}.",
            f"items = {numbers}\nreversed_items = items[::-1]\nprint(reversed_items)",
        )
    if kind == 1:
        return (
            f"Write a Python function that returns the sum of the numbers {numbers}.",
            f"def total(values):\n    return sum(values)\n\nprint(total({numbers}))",
        )
    if kind == 2:
        return (
            f"Write Python code that joins the first letters of the words {words}.",
            f"words = {words}\nprint(''.join(word[0] for word in words))",
        )
    if kind == 3:
        limit = rng.randint(5, 15)
        return (
            f"Write a Python loop that prints the even numbers below {limit}.",
            f"for n in range({limit}):\n    if n % 2 == 0:\n        print(n)",
        )
    if kind == 4:
        return (
            f"Write a Python function that counts the vowels in the word '{words[0]}'.",
            "def count_vowels(text):\n    return sum(ch in 'aeiou' for ch in text)\n\n"
            f"print(count_vowels('{words[0]}'))",
        )
    return (
        f"Write a Python function that returns the largest number in {numbers}.",
        "def largest(values):\n    best = values[0]\n    for v in values[1:]:\n"
        f"        if v > best:\n            best = v\n    return best\n\nprint(largest({numbers}))",
    )


def run_program(code: str) -> str:
    """Run one of our own generated programs and capture what it prints."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "<generated>", "exec"), {"__name__": "__generated__"})  # noqa: S102
    return buffer.getvalue().strip()


def _code_conversation(rng: random.Random) -> list[dict[str, str]]:
    task, code = _code_program(rng)
    output = run_program(code)
    reply = f"```python\n{code}\n```\nRunning it prints:\n{output}"
    return [{"role": "user", "content": task}, {"role": "assistant", "content": reply}]


def generate_conversations(n_general: int, n_code: int, seed: int) -> list[dict[str, Any]]:
    """The embedded IFT source: general prose conversations and runnable coding conversations."""
    rng = random.Random(seed)
    records = []
    for index in range(n_general):
        records.append(
            {
                "id": f"gen-general-{index:06d}",
                "messages": _general_conversation(rng),
                "origin": "general",
            }
        )
    for index in range(n_code):
        records.append(
            {"id": f"gen-code-{index:06d}", "messages": _code_conversation(rng), "origin": "code"}
        )
    return records


# --------------------------------------------------------------------------- sources


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
        messages.append({"role": role, "content": str(turn[text_key])})
    return messages


def _check_conversation(messages: list[dict[str, str]]) -> str | None:
    """The reason a conversation cannot be trained on, or None."""
    body = [m for m in messages if m["role"] != "system"]
    if not body or not any(m["content"].strip() for m in body):
        return "empty"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in body):
        return "no_assistant_turn"
    if body[0]["role"] != "user":
        return "starts_with_assistant"
    for previous, current in zip(body, body[1:], strict=False):
        if previous["role"] == current["role"]:
            return "broken_alternation"
    return None


def _iter_json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or index, record) pairs from a JSON array file or a JSON-lines file."""
    with open(path, encoding="utf-8", errors="strict") as handle:
        head = handle.read(1)
        while head and head.isspace():
            head = handle.read(1)
        handle.seek(0)
        if head == "[":
            yield from enumerate(json.load(handle))
            return
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    yield number, error


def _resolve_source_file(source: dict[str, Any]) -> Path:
    if source.get("path"):
        path = Path(source["path"]).expanduser()
        if not path.exists():
            raise IFTError(
                f"IFT source {source.get('name', source['kind'])!r}: no file {str(path)!r}"
            )
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source["hub"], source["hub_file"], repo_type="dataset"))
    except Exception as error:  # network or missing file
        raise IFTError(f"IFT source {source['hub']!r}/{source.get('hub_file')}: {error}") from error


def _record_messages(kind: str, record: dict[str, Any]) -> list[dict[str, str]]:
    if kind == "sharegpt":
        return _normalise_turns(record.get("conversations"), "from", "value")
    if kind == "alpaca":
        if "instruction" not in record or "output" not in record:
            raise ValueError("missing 'instruction' or 'output'")
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        return [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": record["output"]},
        ]
    return _normalise_turns(record.get("messages"), "role", "content")


def read_source(source: dict[str, Any], seed: int) -> tuple[list[dict[str, Any]], Counter]:
    """One source's usable conversations and the counted reasons for every skipped record."""
    kind = source["kind"]
    name = source.get("name", kind)
    skipped: Counter = Counter()
    if kind == "generator":
        records = generate_conversations(source.get("n_general", 0), source.get("n_code", 0), seed)
        return [{**r, "source": name} for r in records], skipped
    path = _resolve_source_file(source)
    records = []
    try:
        for position, raw in _iter_json_records(path):
            if isinstance(raw, Exception) or not isinstance(raw, dict):
                skipped["malformed_json"] += 1
                continue
            try:
                messages = _record_messages(kind, raw)
            except ValueError:
                skipped["missing_fields"] += 1
                continue
            reason = _check_conversation(messages)
            if reason:
                skipped[reason] += 1
                continue
            record_id = str(raw.get("id", position))
            records.append(
                {"id": f"{name}-{record_id}", "messages": messages, "origin": None, "source": name}
            )
            if source.get("limit") and len(records) >= source["limit"]:
                break
    except UnicodeDecodeError as error:
        raise IFTError(
            f"IFT source {name!r} ({path}): invalid UTF-8 at byte {error.start}"
        ) from error
    if not records:
        raise IFTError(f"IFT source {name!r} ({path}): no valid records (skipped: {dict(skipped)})")
    return records, skipped


def build_pool(sources: list[dict[str, Any]], seed: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """All sources, normalised to chat messages, with exact duplicates removed."""
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"sources": {}}
    seen: set[str] = set()
    duplicates = 0
    for source in sources:
        records, skipped = read_source(source, seed)
        report["sources"][source.get("name", source["kind"])] = {
            "kept": 0,
            "skipped": dict(sorted(skipped.items())),
        }
        for record in records:
            text_key = hashlib.sha256(
                json.dumps(record["messages"], sort_keys=True).encode()
            ).hexdigest()
            if text_key in seen:
                duplicates += 1
                continue
            seen.add(text_key)
            rows.append(record)
            report["sources"][record["source"]]["kept"] += 1
    if not rows:
        raise IFTError("IFT pool is empty: every source gave zero records (see ift.sources)")
    report["duplicates_removed"] = duplicates
    report["size"] = len(rows)
    frame = pl.DataFrame(
        rows,
        schema={"id": pl.Utf8, "messages": MESSAGE_DTYPE, "origin": pl.Utf8, "source": pl.Utf8},
    )
    return frame, report


# --------------------------------------------------------------------------- labelling

CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import |return\b|for .+ in .+:|while .+:|if .+:|print\(|"
    r"#include|public |private |function |const |let |var |SELECT |CREATE TABLE|\}|\{|</?\w+>)"
)
CODE_HINTS = re.compile(
    r"\b(python|javascript|java|c\+\+|sql|function|code|script|program|"
    r"regex|compile|bug|api|html|css)\b",
    re.IGNORECASE,
)


def classify_code(messages: list[dict[str, str]]) -> tuple[str, float]:
    """Offline code/general label: fenced code, or a high density of code-like lines."""
    assistant = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
    user = "\n".join(m["content"] for m in messages if m["role"] == "user")
    if "```" in assistant:
        return "code", 1.0
    lines = [line for line in assistant.splitlines() if line.strip()]
    density = sum(bool(CODE_LINE.match(line)) for line in lines) / max(len(lines), 1)
    score = density + (0.2 if CODE_HINTS.search(user) else 0.0)
    return ("code" if score >= 0.5 else "general"), round(min(score, 1.0), 4)


def label_pool(pool: pl.DataFrame) -> pl.DataFrame:
    labels = [classify_code(messages) for messages in pool["messages"].to_list()]
    return pool.with_columns(
        pl.Series("label", [label for label, _ in labels], dtype=pl.Utf8),
        pl.Series("label_score", [score for _, score in labels], dtype=pl.Float64),
        pl.lit("heuristic").alias("label_method"),
    )


# --------------------------------------------------------------------------- mixes


def code_count(proportion: int, total: int) -> int:
    """round(p/100 * total) with halves rounded up (Python's round() would round to even)."""
    return math.floor(proportion * total / 100 + 0.5)


def _seeded_order(ids: list[str], seed: int) -> list[int]:
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids]
    return sorted(range(len(ids)), key=lambda index: keys[index])


def build_mix(pool: pl.DataFrame, proportion: int, total: int, seed: int) -> pl.DataFrame:
    """Exactly `total` examples, round(p% x total) labelled code, in a seeded order."""
    n_code = code_count(proportion, total)
    n_general = total - n_code
    parts = []
    for label, wanted in (("code", n_code), ("general", n_general)):
        candidates = pool.filter(pl.col("label") == label)
        if wanted > candidates.height:
            raise IFTError(
                f"mix code{proportion}: needs {wanted} {label} examples (of {total}), the labelled "
                f"pool has {candidates.height}; raise the pool (ift.sources) or lower ift.total"
            )
        order = _seeded_order(candidates["id"].to_list(), seed)[:wanted]
        parts.append(candidates[order])
    mix = pl.concat(parts)
    shuffle = _seeded_order(mix["id"].to_list(), seed + 1)
    return mix[shuffle].with_columns(pl.lit(proportion, dtype=pl.Int64).alias("proportion"))


def mix_card(mix: pl.DataFrame, proportion: int, pool_report: dict[str, Any]) -> dict[str, Any]:
    """What the analysis needs to trust a mix: counts, lengths and a content hash."""
    lengths = [sum(len(m["content"]) for m in messages) for messages in mix["messages"].to_list()]
    digest = hashlib.sha256(
        json.dumps(mix.select("id", "messages").to_dicts(), sort_keys=True).encode()
    )
    labels = Counter(mix["label"].to_list())
    return {
        "proportion": proportion,
        "examples": mix.height,
        "labels": dict(sorted(labels.items())),
        "characters": {
            "total": sum(lengths),
            "mean": round(sum(lengths) / max(len(lengths), 1), 2),
        },
        "content_hash": digest.hexdigest()[:16],
        "pool": pool_report,
    }


def read_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
