"""One mix per arm (rule build_mix) and its data card.

Each mix takes round(p/100 x total) code examples (or p% of a token budget) in a seeded order:
nested by default, so the 50% mix reuses the 0% and 100% mixes' examples (lower variance between
arms). The card records what the arm was trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from codeift.data.cleaning import WORD_PIECE
from codeift.errors import IFTError
from codeift.settings import MixSettings


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
    settings: MixSettings | None = None,
    replicate: int = 0,
) -> pl.DataFrame:
    """One mix of the pool in a seeded order (replicate r > 0: the replicate arm's own order);
    `settings`: config `ift.mix`, its defaults when None.

    match=examples: exactly `total` examples, round(p% x total) labelled code.
    match=tokens: a fixed token budget (`total_tokens`, else `token_budget`), p% of it from code,
    so arms are compared at equal training tokens (coding answers are longer)."""
    settings = settings or MixSettings()
    nested, match, total_tokens = settings.nested, settings.match, settings.total_tokens
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
    settings: MixSettings | None = None,
    replicate: int = 0,
) -> dict[str, Any]:
    """What the analysis needs to trust a mix: counts by label, token statistics (overall and
    per label), a content hash, the sources and the cleaning counts of the pool, and the mix
    settings it was drawn with (`settings`, its defaults when None)."""
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
        "planted": dict(pool_report.get("planted", {})),
        "planted_views": dict(pool_report.get("planted_views", {})),
        "code_token_share": round(
            sum(t for t, lab in zip(tokens, labels_list, strict=True) if lab == "code")
            / max(sum(tokens), 1),
            4,
        ),
        "mix_settings": (settings or MixSettings()).recorded(),
        "content_hash": digest.hexdigest()[:16],
        "sources": pool_report.get("sources", {}),
        "cleaning": pool_report.get("cleaning", {}).get("counts", {}),
        "pool": pool_report,
    }


def read_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
