"""Model FLOPs of a saved model, for the benchmarks: its parameters split into the body and the
output head, and the FLOPs of generating and of training on a number of tokens."""

from __future__ import annotations

import math
from pathlib import Path

from codeift.errors import BackboneError


def parameter_split(model_dir: Path) -> tuple[int, int]:
    """(body, head) parameters of a saved model, from its safetensors headers (no weights
    loaded). The head is the output projection (the tied embedding where there is no
    `lm_head`): per token it costs a matrix product only where logits are computed, and an
    untied input embedding is a lookup, not a product."""
    from safetensors import safe_open

    shapes: dict[str, int] = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = math.prod(handle.get_slice(name).get_shape())
    if not shapes:
        raise BackboneError(f"{model_dir}: no safetensors weights to count")
    embedding = sum(n for name, n in shapes.items() if name.endswith("embed_tokens.weight"))
    output = sum(n for name, n in shapes.items() if name.endswith("lm_head.weight"))
    body = sum(shapes.values()) - embedding - output
    return body, output or embedding


def generation_flops(split: tuple[int, int], prompt_tokens: int, generated_tokens: int) -> float:
    """Forward model FLOPs of generation: 2 per body parameter for each token through the
    model, 2 per head parameter only for each generated token (logits of the last position).
    Attention scores are left out (4 L d per layer and token, ~7% more at 200 tokens of
    context for both packaged models): a lower bound."""
    body, head = split
    return 2 * body * (prompt_tokens + generated_tokens) + 2 * head * generated_tokens


def training_flops(split: tuple[int, int], tokens: int) -> float:
    """6 N T: forward and backward, logits at every position (TRL computes them all)."""
    return 6 * sum(split) * tokens
