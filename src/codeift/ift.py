"""Instruction-tuning data: pool building, cleaning, code/general labelling, mixes and cards.

The study's independent variable is the coding share of each mix, so every step is counted and
deterministic. Sources (ShareGPT, Alpaca-style, chat-message records; JSON arrays streamed with
ijson, JSON lines, Parquet in batches, hub datasets) are normalised to chat messages; records that
cannot be used are skipped with a counted reason and a bounded sample of their positions. The
pool is cleaned (HTML remnants, over-long examples, exact and near duplicates), labelled by the
offline classifier or an LLM judge (codeift.judge), and each mix takes round(p/100 x total) code
examples (or p% of a token budget) in a seeded order: nested by default, so the 50% mix reuses
the 0% and 100% mixes' examples (lower variance between arms).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from codeift.small_world import generate_conversations

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


# --------------------------------------------------------------------------- sources

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


def _check_conversation(messages: list[dict[str, str]]) -> str | None:
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
    from datasets import load_dataset

    try:
        dataset = load_dataset(
            source["hub"], source.get("subset"), split=source.get("split", "train"), streaming=True
        )
    except Exception as error:  # network, missing dataset or split
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
        reason = _check_conversation(messages)
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


def _require_records(source: dict[str, Any], kept: int, skips: SkipLog) -> None:
    if kept == 0:
        where = source.get("path") or source.get("hub") or source["kind"]
        raise IFTError(
            f"IFT source {skips.name!r} ({where}): no valid records "
            f"(skipped: {dict(sorted(skips.counts.items()))}; first: {skips.sample[:3]})"
        )


# --------------------------------------------------------------------------- cleaning

HTML_TAG = re.compile(
    r"</?(div|p|span|br|hr|ol|ul|li|pre|code|table|thead|tbody|tr|td|th|a|b|i|em|strong|h[1-6]|"
    r"button|svg|path|img|blockquote|sup|sub)\b[^<>]*/?>",
    re.IGNORECASE,
)
FENCE_SPLIT = re.compile(r"(```.*?(?:```|$)|`[^`\n]+`)", re.DOTALL)
NORMALISE_DROP = re.compile(r"[\W_]+", re.UNICODE)
WORD_PIECE = re.compile(r"\w+|[^\w\s]")


def strip_html(text: str) -> str:
    """Remove ShareGPT's rendering remnants (tags outside code spans), unescape entities."""
    parts = FENCE_SPLIT.split(text)
    cleaned = [
        part if part.startswith("`") else html.unescape(HTML_TAG.sub("", part)) for part in parts
    ]
    return "".join(cleaned)


def _has_html(messages: list[dict[str, str]]) -> bool:
    return any(HTML_TAG.search(part) for m in messages for part in FENCE_SPLIT.split(m["content"]))


def exact_key(messages: list[dict[str, str]]) -> bytes:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()[:16]


def near_key(messages: list[dict[str, str]], method: str) -> bytes:
    """Hash of the normalised text: case, Unicode form, punctuation and spacing ignored.

    `conversation` hashes every turn (catches re-exports that differ in markup or spacing);
    `first_turn` hashes only the opening user turn (ShareGPT holds many answers to one prompt).
    """
    turns = (
        messages if method == "conversation" else [m for m in messages if m["role"] == "user"][:1]
    )
    text = " ".join(f"{m['role']}:{m['content']}" for m in turns)
    normal = NORMALISE_DROP.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.sha256(normal.encode()).digest()[:16]


class Measure:
    """Conversation length: tokenizer tokens when one is configured, else a word-piece proxy."""

    def __init__(self, tokenizer: str | None) -> None:
        self.tokenizer = None
        self.method = "word_pieces"
        if tokenizer:
            from transformers import AutoTokenizer

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
            except Exception as error:  # missing path, no network for a hub id
                raise IFTError(f"ift.cleaning.tokenizer {tokenizer!r}: {error}") from error
            self.method = f"tokenizer:{tokenizer}"

    def tokens(self, messages: list[dict[str, str]]) -> int:
        texts = [m["content"] for m in messages]
        if self.tokenizer is None:
            return sum(len(WORD_PIECE.findall(text)) for text in texts)
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return sum(len(ids) for ids in encoded)


DEFAULT_CLEANING: dict[str, Any] = {
    "html": "strip",
    "max_chars": 100_000,
    "near_duplicates": {"enabled": True, "method": "conversation"},
}


def clean_record(
    record: dict[str, Any], cleaning: dict[str, Any], measure: Measure
) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(record with its token count, or None; the skip reason; whether HTML was stripped)."""
    messages = record["messages"]
    stripped = False
    if cleaning.get("html", "strip") != "keep" and _has_html(messages):
        if cleaning.get("html") == "drop":
            return None, "html", False
        messages = [{**m, "content": strip_html(m["content"])} for m in messages]
        stripped = True
        reason = _check_conversation(messages)
        if reason:
            return None, reason, stripped
    chars = sum(len(m["content"]) for m in messages)
    if cleaning.get("max_chars") and chars > cleaning["max_chars"]:
        return None, "too_long_chars", stripped
    tokens = measure.tokens(messages)
    if cleaning.get("max_tokens") and tokens > cleaning["max_tokens"]:
        return None, "too_long_tokens", stripped
    return {**record, "messages": messages, "tokens": tokens}, None, stripped


POOL_SCHEMA = {
    "id": pl.Utf8,
    "messages": MESSAGE_DTYPE,
    "origin": pl.Utf8,
    "skill": pl.Utf8,  # what an embedded example teaches (codeift.small_world); null otherwise
    "source": pl.Utf8,
    "tokens": pl.Int64,
}
FRAME_ROWS = 5000


def _pool_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Kept records move into Arrow every FRAME_ROWS: Python dicts cost several times more."""
    return pl.DataFrame(rows, schema=POOL_SCHEMA)


def build_pool(
    sources: list[dict[str, Any]], seed: int, cleaning: dict[str, Any] | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """All sources, streamed, normalised to chat messages, cleaned and deduplicated."""
    cleaning = {**DEFAULT_CLEANING, **(cleaning or {})}
    near = {**DEFAULT_CLEANING["near_duplicates"], **cleaning.get("near_duplicates", {})}
    if cleaning.get("max_tokens") and not cleaning.get("tokenizer"):
        raise IFTError("ift.cleaning.max_tokens needs ift.cleaning.tokenizer (a path or hub id)")
    measure = Measure(cleaning.get("tokenizer"))
    rows: list[dict[str, Any]] = []
    frames: list[pl.DataFrame] = []
    report: dict[str, Any] = {"sources": {}, "skipped_sample": []}
    exact_seen: set[bytes] = set()
    near_seen: set[bytes] = set()
    totals: Counter = Counter()
    for source in sources:
        skips = SkipLog(source.get("name", source["kind"]))
        read = kept = 0
        for record in iter_source(source, seed, skips):
            read += 1
            cleaned, reason, stripped = clean_record(record, cleaning, measure)
            totals["html_stripped"] += stripped
            if cleaned is None:
                skips.add(reason, record["id"])
                continue
            key = exact_key(cleaned["messages"])
            if key in exact_seen:
                skips.add("exact_duplicate", record["id"])
                continue
            exact_seen.add(key)
            if near["enabled"]:
                key = near_key(cleaned["messages"], near["method"])
                if key in near_seen:
                    skips.add("near_duplicate", record["id"])
                    continue
                near_seen.add(key)
            rows.append(cleaned)
            kept += 1
            if len(rows) == FRAME_ROWS:
                frames.append(_pool_frame(rows))
                rows = []
        if read == 0:
            _require_records(source, 0, skips)
        totals.update(skips.counts)
        report["sources"][skips.name] = {
            "read": read,
            "kept": kept,
            "skipped": dict(sorted(skips.counts.items())),
        }
        report["skipped_sample"].extend(skips.sample)
    if not rows and not frames:
        raise IFTError("IFT pool is empty: every record was cleaned away (see the report counts)")
    report["cleaning"] = {
        "settings": {**cleaning, "near_duplicates": near},
        "length_measure": measure.method
        + ("" if cleaning.get("tokenizer") else " (no tokenizer configured: max_chars applies)"),
        "counts": dict(sorted(totals.items())),
    }
    report["duplicates_removed"] = totals["exact_duplicate"] + totals["near_duplicate"]
    frame = pl.concat([*frames, _pool_frame(rows)])
    report["size"] = frame.height
    return frame, report


# --------------------------------------------------------------------------- labelling

FENCE = "```"
CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import |return\b|for\b.*[:{(]|while\b.*[:{(]|"
    r"if\b.*[:{)]\s*$|elif |else\s*[:{]|try:|except\b|print\(|console\.log|System\.out|printf?\(|"
    r"puts |echo |#!|#include|@\w+|public |private |protected |static |function\b|const |let |"
    r"var |int |float |double |char |bool |void |string |String |struct |fn |func |package |"
    r"using |namespace |SELECT\b|INSERT\b|UPDATE\b|DELETE\b|CREATE\b|ALTER\b|DROP\b|FROM\b|"
    r"WHERE\b|JOIN\b|GROUP BY|ORDER BY|\}|\{|\)|\]|</?[A-Za-z][\w-]*[^>]*>|//|/\*|\*/|"
    r"\w+(\[[^\]]*\]|\.\w+)*\s*[-+*/]?=[^=].*|[\w.]+\(.*\)\s*;?\s*$|.*;\s*$|end\s*$)"
)
STRONG_HINTS = re.compile(
    r"\b(python|javascript|java|typescript|c\+\+|c#|ruby|php|perl|swift|kotlin|rust|golang|scala|"
    r"bash|shell|sql|mysql|postgresql|sqlite|mongodb|html|css|jquery|react|angular|node\.?js|"
    r"django|flask|numpy|pandas|tensorflow|pytorch|regex|regular expression|json|xml|api|code|"
    r"coding|script|program|programming|function|variable|array|algorithm|data structure|"
    r"linked list|binary (search )?tree|hash ?(table|map)|compile[rd]?|syntax|debug|"
    r"objective-c|assembly|lambda|snippet|pseudocode|endpoint|git|linux|unix|"
    r"machine learning|deep learning|neural network|software|computer science|recursion|"
    r"recursive|database|camel ?case|pascal ?case|snake ?case|in C|bubble sort|"
    r"quick ?sort|merge ?sort|object[- ]oriented|oop|runtime|big o|string|integer|boolean)\b",
    re.IGNORECASE,
)
WEAK_HINTS = re.compile(
    r"\b(method|class|query|loop|list|dictionary|tuple|stack|queue|random|password|parameter|"
    r"number of|characters?|sort(ed|ing)?|library|module|command|terminal|web|url|http|dataset|"
    r"matrix|binary|hexadecimal|bit|byte|server|app(lication)?|median|prime)\b",
    re.IGNORECASE,
)
CODE_SYMBOLS = re.compile(r"[{}();=<>\[\]_]|->|=>|::|\+\+|&&|\|\|")
CODE_THRESHOLD = 0.5


def _distinct(pattern: re.Pattern, text: str) -> int:
    return len({match.group(0).lower() for match in pattern.finditer(text)})


def classify_code(messages: list[dict[str, str]]) -> tuple[str, float]:
    """Offline code/general label from three signals, because answers without fences are common:
    the share of code-like answer lines, the density of code symbols, and programming terms in
    the user turns. Strong terms ('python', 'SQL') count more than weak ones ('list', 'sort'),
    and fully only in the request (the first paragraph of the user's text): a term inside the
    material to work on (a text mentioning Taylor Swift) says little. A fence is code outright.
    Measured in README ("IFT data")."""
    assistant = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
    user = "\n".join(m["content"] for m in messages if m["role"] == "user")
    if FENCE in assistant or FENCE in user:
        return "code", 1.0
    lines = [line for line in assistant.splitlines() if line.strip()]
    density = sum(bool(CODE_LINE.match(line)) for line in lines) / max(len(lines), 1)
    symbols = len(CODE_SYMBOLS.findall(assistant)) / max(len(assistant), 1)
    request = _distinct(STRONG_HINTS, user.split("\n\n")[0])
    elsewhere = _distinct(STRONG_HINTS, user) - request
    hints = 0.5 * request + 0.2 * elsewhere + 0.15 * _distinct(WEAK_HINTS, user)
    score = 0.6 * density + min(symbols * 10, 0.3) + min(hints, 0.6)
    return ("code" if score >= CODE_THRESHOLD else "general"), round(min(score, 1.0), 4)


def _iter_messages(pool: pl.DataFrame) -> Iterator[list[dict[str, str]]]:
    """The pool's conversations as Python objects, FRAME_ROWS at a time (bounded memory)."""
    for offset in range(0, pool.height, FRAME_ROWS):
        yield from pool["messages"].slice(offset, FRAME_ROWS).to_list()


def label_pool(pool: pl.DataFrame, labeller: dict[str, Any] | None = None) -> pl.DataFrame:
    """Add label, label_score, label_method and label_raw (the judge's answer) to the pool."""
    method = (labeller or {}).get("method", "heuristic")
    if method == "llm_judge":
        from codeift.judge import judge_labels

        labels, raw = judge_labels(pool["messages"].to_list(), labeller or {})
        scores = [None] * len(labels)
        name = f"llm_judge:{labeller['model']}"
    elif method == "heuristic":
        pairs = [classify_code(messages) for messages in _iter_messages(pool)]
        labels, scores = [label for label, _ in pairs], [score for _, score in pairs]
        raw, name = [None] * len(labels), "heuristic"
    else:
        raise IFTError(f"ift.labeller.method {method!r}: use heuristic or llm_judge")
    return pool.with_columns(
        pl.Series("label", labels, dtype=pl.Utf8),
        pl.Series("label_score", scores, dtype=pl.Float64),
        pl.lit(name).alias("label_method"),
        pl.Series("label_raw", raw, dtype=pl.Utf8),
    )


# --------------------------------------------------------------------------- mixes


def code_count(proportion: int, total: int) -> int:
    """round(p/100 * total) with halves rounded up (Python's round() would round to even)."""
    return math.floor(proportion * total / 100 + 0.5)


def _seeded_order(ids: list[str], seed: int | str) -> list[int]:
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids]
    return sorted(range(len(ids)), key=lambda index: keys[index])


def _order_seed(seed: int, proportion: int, nested: bool, replicate: int = 0) -> int | str:
    """Nested mixes share one order per label (each mix is a prefix); others draw per proportion.
    A replicate arm draws its own order, so it differs from its arm by the sampling alone."""
    base = seed if nested else f"{seed}:p{proportion}"
    return f"{base}:r{replicate}" if replicate else base


def _tokens(frame: pl.DataFrame) -> list[int]:
    """Per-example lengths; pools built before the `tokens` column fall back to word pieces."""
    if "tokens" in frame.columns:
        return frame["tokens"].to_list()
    return [
        sum(len(WORD_PIECE.findall(m["content"])) for m in messages)
        for messages in frame["messages"].to_list()
    ]


def token_budget(pool: pl.DataFrame, total: int) -> int:
    """Default token budget of a token-matched mix: `total` examples of the label with the
    shorter mean, so every arm, from 0% to 100%, can be filled from the pool."""
    means = []
    for label in ("code", "general"):
        part = pool.filter(pl.col("label") == label)
        if part.height:
            means.append(sum(_tokens(part)) / part.height)
    return math.floor(total * min(means)) if means else 0


def _take_tokens(lengths: list[int], order: list[int], budget: int) -> list[int]:
    """The shortest prefix of `order` whose tokens reach `budget` (stops before overshooting
    when stopping is closer)."""
    taken, used = [], 0
    for index in order:
        if used >= budget:
            break
        if used + lengths[index] - budget > budget - used and taken:
            break
        taken.append(index)
        used += lengths[index]
    return taken


def build_mix(
    pool: pl.DataFrame,
    proportion: int,
    total: int,
    seed: int,
    nested: bool = True,
    match: str = "examples",
    total_tokens: int | None = None,
    replicate: int = 0,
) -> pl.DataFrame:
    """One mix of the pool in a seeded order (replicate r > 0: the replicate arm's own order).

    match=examples: exactly `total` examples, round(p% x total) labelled code.
    match=tokens: a fixed token budget (`total_tokens`, else `token_budget`), p% of it from code,
    so arms are compared at equal training tokens (coding answers are longer)."""
    if match not in ("examples", "tokens"):
        raise IFTError(f"ift.mix.match {match!r}: use examples or tokens")
    order_seed = _order_seed(seed, proportion, nested, replicate)
    budget = total_tokens or token_budget(pool, total)
    n_code = code_count(proportion, total)
    wanted = {"code": n_code, "general": total - n_code}
    token_share = {"code": code_count(proportion, budget), "general": 0}
    token_share["general"] = budget - token_share["code"]
    parts = []
    for label in ("code", "general"):
        candidates = pool.filter(pl.col("label") == label)
        order = _seeded_order(candidates["id"].to_list(), order_seed)
        if match == "tokens":
            lengths = _tokens(candidates)
            chosen = _take_tokens(lengths, order, token_share[label])
            if len(chosen) == len(order) and sum(lengths) < token_share[label]:
                raise IFTError(
                    f"mix code{proportion}: needs {token_share[label]} tokens of {label} "
                    f"examples, the labelled pool has {sum(lengths)}; raise the pool or lower "
                    "ift.mix.total_tokens"
                )
        else:
            if wanted[label] > candidates.height:
                raise IFTError(
                    f"mix code{proportion}: needs {wanted[label]} {label} examples (of {total}), "
                    f"the labelled pool has {candidates.height}; raise the pool (ift.sources) or "
                    "lower ift.total"
                )
            chosen = order[: wanted[label]]
        parts.append(candidates[chosen])
    mix = pl.concat(parts)
    shuffle = _seeded_order(mix["id"].to_list(), seed + 1 + replicate)
    return mix[shuffle].with_columns(pl.lit(proportion, dtype=pl.Int64).alias("proportion"))


def _stats(values: list[int]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"total": 0, "mean": 0.0, "median": 0, "p95": 0, "max": 0}
    return {
        "total": sum(ordered),
        "mean": round(sum(ordered) / len(ordered), 2),
        "median": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
    }


def _skill_counts(mix: pl.DataFrame) -> dict[str, int]:
    """Examples per taught skill (embedded data only: other sources carry no skill)."""
    if "skill" not in mix.columns:
        return {}
    return dict(sorted(Counter(s for s in mix["skill"].to_list() if s is not None).items()))


def mix_card(
    mix: pl.DataFrame,
    proportion: int,
    pool_report: dict[str, Any],
    settings: dict[str, Any] | None = None,
    replicate: int = 0,
) -> dict[str, Any]:
    """What the analysis needs to trust a mix: counts by label, token statistics (overall and
    per label), a content hash, the sources and the cleaning counts of the pool."""
    lengths = [sum(len(m["content"]) for m in messages) for messages in mix["messages"].to_list()]
    tokens = _tokens(mix)
    labels_list = mix["label"].to_list()
    digest = hashlib.sha256(
        json.dumps(mix.select("id", "messages", "label").to_dicts(), sort_keys=True).encode()
    )
    methods = Counter(mix["label_method"].to_list()) if "label_method" in mix.columns else {}
    return {
        "proportion": proportion,
        "replicate": replicate,
        "examples": mix.height,
        "labels": dict(sorted(Counter(labels_list).items())),
        "label_methods": dict(sorted(methods.items())),
        "skills": _skill_counts(mix),
        "characters": {
            "total": sum(lengths),
            "mean": round(sum(lengths) / max(len(lengths), 1), 2),
        },
        "tokens": {
            "measure": pool_report.get("cleaning", {}).get("length_measure", "word_pieces"),
            **_stats(tokens),
            "by_label": {
                label: _stats(
                    [t for t, lab in zip(tokens, labels_list, strict=True) if lab == label]
                )
                for label in sorted(set(labels_list))
            },
        },
        "code_token_share": round(
            sum(t for t, lab in zip(tokens, labels_list, strict=True) if lab == "code")
            / max(sum(tokens), 1),
            4,
        ),
        "mix_settings": settings or {"nested": True, "match": "examples"},
        "content_hash": digest.hexdigest()[:16],
        "sources": pool_report.get("sources", {}),
        "cleaning": pool_report.get("cleaning", {}).get("counts", {}),
        "pool": pool_report,
    }


def read_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
