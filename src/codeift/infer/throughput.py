"""Generation throughput of one model on this machine: generated tokens/s and model FLOP/s
against batch size, engine and threads, each rate against the matmul roof measured beside it.

Why a sweep and not one figure: on a CPU a decode step of a small model is a few small matrix
products plus fixed per-step work, so tokens/s depends on how many sequences share a step. A
study's batch is one task's prompts (10-24 here); a model's prompts over all its tasks are
12x that. Each (model, engine, threads) runs in its own process (`python -m
codeift.infer.throughput`): vLLM fixes its thread count when it is imported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from codeift.infer.engines import Conversation, load_engine
from codeift.models.flops import generation_flops
from codeift.settings import InferenceSettings

# Enough KV cache for ~300 sequences of ~250 tokens of either packaged model (46 KB/token for
# SmolLM2, 37 for Gemma 3 270M, float32).
SWEEP_KVCACHE_GIB = 4


def interleaved(prompts_by_task: dict[str, list[str]]) -> list[Conversation]:
    """One prompt of each task in turn, so a batch of any size mixes tasks as a model's
    cross-task batch would (and its first batches are not one task's short prompts)."""
    columns = [prompts_by_task[name] for name in sorted(prompts_by_task)]
    longest = max((len(column) for column in columns), default=0)
    return [
        [{"role": "user", "content": column[index]}]
        for index in range(longest)
        for column in columns
        if index < len(column)
    ]


def sweep_settings(
    engine: str, threads: int, largest_batch: int, max_new_tokens: int, stop: list[str]
) -> InferenceSettings:
    return InferenceSettings(
        engine=engine,
        dtype="float32",
        max_new_tokens=max_new_tokens,
        max_num_seqs=largest_batch,
        max_model_len=1024,
        batch_size=largest_batch,
        enforce_eager=True,
        cpu_kvcache_gib=SWEEP_KVCACHE_GIB,
        threads=threads,
        stop=tuple(stop),
    )


def sweep(
    model_dir: str,
    conversations: list[Conversation],
    engine: str,
    threads: int,
    batches: list[int],
    max_new_tokens: int,
    stop: list[str],
) -> dict[str, Any]:
    """Load the engine once, warm it, then time one call per batch size on the first `batch`
    conversations, after a call of one new token each (the prefill, nearly). hf's `batch_size`
    follows the batch, so each call is one `generate`."""
    settings = sweep_settings(engine, threads, max(batches), max_new_tokens, stop)
    started = time.perf_counter()
    loaded = load_engine(model_dir, settings)
    load_seconds = time.perf_counter() - started
    loaded.chat(conversations[:2], 4)
    rows, first_replies, replies_by_batch = [], None, {}
    for batch in batches:
        chosen = conversations[:batch]
        if hasattr(loaded, "batch_size"):
            loaded.batch_size = batch
        cold_prefixes(loaded)
        started = time.perf_counter()
        prefilled = loaded.chat(chosen, 1)
        prefill_seconds = time.perf_counter() - started
        cold_prefixes(loaded)
        started = time.perf_counter()
        replies = loaded.chat(chosen, max_new_tokens)
        seconds = time.perf_counter() - started
        texts = [reply.response for reply in replies]
        replies_by_batch[str(len(chosen))] = texts
        if first_replies is None:
            first_replies = texts
        shared = min(len(first_replies), len(texts))
        rows.append(
            {
                "batch": len(chosen),
                "seconds": round(seconds, 3),
                "prefill_seconds": round(prefill_seconds, 3),
                "prompt_tokens": sum(r.n_prompt_tokens for r in replies),
                # Prompt tokens served from vLLM's prefix cache (shared by prompts of the same
                # call: the cache is emptied before each call), so not computed.
                "cached_tokens": sum(r.n_cached_tokens for r in replies),
                "prefill_cached_tokens": sum(r.n_cached_tokens for r in prefilled),
                "generated_tokens": sum(r.n_response_tokens for r in replies),
                "at_limit": sum(r.finish_reason == "length" for r in replies),
                # Greedy replies of the smallest batch's prompts, generated inside this batch:
                # how many differ from those of the smallest batch (batch composition).
                "replies_differing_from_smallest_batch": sum(
                    a != b for a, b in zip(first_replies[:shared], texts[:shared], strict=True)
                ),
            }
        )
    return {
        "model": model_dir,
        "engine": engine,
        "engine_version": loaded.version,
        "threads": threads,
        "load_seconds": round(load_seconds, 2),
        "rows": rows,
        "replies": replies_by_batch,
    }


def cold_prefixes(engine: Any) -> None:
    """Empty vLLM's prefix cache, so that a timed call does not reuse the prompts of the call
    before it (the same prompts: that would make its prefill nearly free)."""
    llm = getattr(engine, "llm", None)
    if llm is not None and hasattr(llm, "reset_prefix_cache"):
        llm.reset_prefix_cache()


def rates(
    result: dict[str, Any], split: tuple[int, int], roof_gflops: float
) -> list[dict[str, Any]]:
    """Per batch: generated tokens/s, model GFLOP/s (`generation_flops`, prompt tokens computed:
    prefix-cache hits cost none) and its share of the roof at the same thread count; the same
    for decoding alone (the call less its prefill)."""
    out = []
    for row in result["rows"]:
        computed = row["prompt_tokens"] - row.get("cached_tokens", 0)
        flops = generation_flops(split, computed, row["generated_tokens"])
        prefill = generation_flops(
            split, row["prompt_tokens"] - row.get("prefill_cached_tokens", 0), row["batch"]
        )
        decode_seconds = max(row["seconds"] - row["prefill_seconds"], 1e-9)
        decoded = row["generated_tokens"] - row["batch"]
        out.append(
            {
                **row,
                "tokens_per_s": round(row["generated_tokens"] / row["seconds"], 1),
                "gflops": round(flops / row["seconds"] / 1e9, 2),
                "roofline": round(flops / row["seconds"] / 1e9 / roof_gflops, 3),
                "decode_tokens_per_s": round(decoded / decode_seconds, 1),
                "decode_roofline": round((flops - prefill) / decode_seconds / 1e9 / roof_gflops, 3),
            }
        )
    return out


def reply_agreement(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How many greedy replies change with the batch: per run, each batch size against the next
    smaller one on the prompts they share; per engine, each thread count against the first at
    the same batch size. Replies that never change are what `batching: model` relies on."""
    rows = []
    for result in results:
        replies = result["replies"]
        sizes = sorted(replies, key=int)
        for small, large in zip(sizes, sizes[1:], strict=False):
            shared = list(zip(replies[small], replies[large], strict=False))
            rows.append(
                {
                    "model": result["model"],
                    "engine": result["engine"],
                    "compared": f"batch {small} vs {large} ({result['threads']} threads)",
                    "prompts": len(shared),
                    "differing": sum(a != b for a, b in shared),
                }
            )
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        reference = first.setdefault((result["model"], result["engine"]), result)
        if reference is result:
            continue
        for size, texts in result["replies"].items():
            if size in reference["replies"]:
                shared = list(zip(reference["replies"][size], texts, strict=True))
                rows.append(
                    {
                        "model": result["model"],
                        "engine": result["engine"],
                        "compared": f"{reference['threads']} vs {result['threads']} threads"
                        f" (batch {size})",
                        "prompts": len(shared),
                        "differing": sum(a != b for a, b in shared),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batches", type=int, nargs="+", required=True)
    parser.add_argument("--max-new-tokens", type=int, required=True)
    parser.add_argument("--stop", nargs="*", default=[])
    parser.add_argument("--prompts", required=True, help="JSON file: task name -> prompts")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    prompts = json.loads(Path(args.prompts).read_text(encoding="utf-8"))
    result = sweep(
        args.model,
        interleaved(prompts),
        args.engine,
        args.threads,
        args.batches,
        args.max_new_tokens,
        args.stop,
    )
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
