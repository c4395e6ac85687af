"""Code/general labels for the pool: the offline classifier (measured in docs/ift-data.md,
"Classifier accuracy") or the paper's LLM judge (codeift.data.judge)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import polars as pl

from codeift.data.pool import FRAME_ROWS
from codeift.errors import IFTError
from codeift.settings import LabellerSettings

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
    Measured in docs/ift-data.md, "Classifier accuracy"."""
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


def label_pool(pool: pl.DataFrame, labeller: LabellerSettings | None = None) -> pl.DataFrame:
    """Add label, label_score, label_method and label_raw (the judge's answer) to the pool
    (`labeller`: config `ift.labeller`, its defaults when None)."""
    labeller = labeller or LabellerSettings()
    method = labeller.method
    if method == "llm_judge":
        from codeift.data.judge import judge_labels

        labels, raw = judge_labels(pool["messages"].to_list(), labeller)
        scores = [None] * len(labels)
        name = f"llm_judge:{labeller.model}"
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


def label_report(
    labelled: pl.DataFrame, given: dict[str, Any], labeller: LabellerSettings
) -> dict[str, Any]:
    """What the pool report records of the labelling: how many examples got each label (the
    mixes draw from these counts) and the labeller keys the config set (`given`, its long
    prompt left out), or the method of the settings when it set none."""
    return {
        "labels": dict(sorted(labelled.group_by("label").len().iter_rows())),
        "labeller": {k: v for k, v in given.items() if k != "prompt"}
        or {"method": labeller.method},
    }
