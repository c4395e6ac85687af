"""Counted cleaning of the pool: HTML remnants, over-long examples, exact and near duplicates."""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from typing import Any

from codeift.data.sources import check_conversation
from codeift.errors import IFTError
from codeift.settings import CleaningSettings

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

    def __init__(self, tokenizer: str | None, revision: str | None = None) -> None:
        self.tokenizer = None
        self.method = "word_pieces"
        if tokenizer:
            from transformers import AutoTokenizer

            from codeift.hub import tokenizer_path

            # A hub id resolves through the prefetched cache (offline: missing fails at once).
            folder = tokenizer_path(tokenizer, revision, role="cleaning tokenizer")
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(folder)
            except Exception as error:  # not a tokenizer folder
                raise IFTError(f"ift.cleaning.tokenizer {tokenizer!r}: {error}") from error
            self.method = f"tokenizer:{tokenizer}"

    def tokens(self, messages: list[dict[str, str]]) -> int:
        texts = [m["content"] for m in messages]
        if self.tokenizer is None:
            return sum(len(WORD_PIECE.findall(text)) for text in texts)
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return sum(len(ids) for ids in encoded)


# What an unset key means; the pool report records these with the config's own values.
def clean_record(
    record: dict[str, Any], cleaning: CleaningSettings, measure: Measure
) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(record with its token count, or None; the skip reason; whether HTML was stripped)."""
    messages = record["messages"]
    stripped = False
    if cleaning.html != "keep" and _has_html(messages):
        if cleaning.html == "drop":
            return None, "html", False
        messages = [{**m, "content": strip_html(m["content"])} for m in messages]
        stripped = True
        reason = check_conversation(messages)
        if reason:
            return None, reason, stripped
    chars = sum(len(m["content"]) for m in messages)
    if cleaning.max_chars and chars > cleaning.max_chars:
        return None, "too_long_chars", stripped
    tokens = measure.tokens(messages)
    if cleaning.max_tokens and tokens > cleaning.max_tokens:
        return None, "too_long_tokens", stripped
    return {**record, "messages": messages, "tokens": tokens}, None, stripped
