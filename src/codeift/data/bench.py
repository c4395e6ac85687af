"""Pool-building benchmark: ShareGPT-shaped conversations, streamed, cleaned and labelled.

The paper-scale pool is ShareGPT (~90K conversations, one 673 MB JSON array), so the benchmark
writes a file of that shape (multi-turn, system turns, HTML remnants, duplicates, broken records)
and times the same code path the `build_pool` job runs. The file is written by a child process
so the peak RSS measured is the pool build's alone.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import resource
import time
from pathlib import Path
from typing import Any

from codeift.data.labels import label_pool
from codeift.data.pool import build_pool
from codeift.data.small_world import generate_conversations

HTML_WRAP = '<div class="markdown prose w-full break-words"><p>{}</p></div>'


def _sharegpt_record(index: int, pairs: list[list[dict[str, str]]], rng: random.Random) -> Any:
    """One ShareGPT item: 1-3 exchanges, sometimes a system turn, HTML or a defect."""
    turns = []
    if rng.random() < 0.1:
        turns.append({"from": "system", "value": "You are a helpful assistant."})
    for messages in pairs:
        answer = messages[1]["content"]
        if rng.random() < 0.2 and "```" not in answer:
            answer = HTML_WRAP.format(answer)
        turns += [
            {"from": "human", "value": messages[0]["content"]},
            {"from": "gpt", "value": answer},
        ]
    defect = rng.random()
    if defect < 0.01:
        turns = turns[:1]  # no assistant turn
    elif defect < 0.015:
        return {"id": f"bench-{index}"}  # missing conversations
    return {"id": f"bench-{index}", "conversations": turns}


def write_sharegpt(path: str | Path, n: int, seed: int) -> None:
    """A ShareGPT-shaped JSON array of `n` conversations, written item by item."""
    rng = random.Random(seed)
    half = n // 2 + 1
    pool = [r["messages"] for r in generate_conversations(half, half, seed)]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        for index in range(n):
            pairs = [pool[rng.randrange(len(pool))] for _ in range(rng.randint(1, 3))]
            record = _sharegpt_record(index, pairs, rng)
            handle.write(("" if index == 0 else ",\n") + json.dumps(record))
        handle.write("\n]\n")


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_benchmark(n: int, seed: int, workdir: str | Path) -> dict[str, Any]:
    """Generate (child process), then build and label the pool here; times and peak RSS."""
    path = Path(workdir) / "sharegpt_bench.json"
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(
        target=write_sharegpt, args=(path, n, seed)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"benchmark generator failed (exit {child.exitcode})")
    generate_s = time.perf_counter() - started
    rss_before = _peak_rss_mib()
    started = time.perf_counter()
    pool, report = build_pool([{"kind": "sharegpt", "path": str(path), "name": "bench"}], seed)
    pool_s = time.perf_counter() - started
    rss_pool = _peak_rss_mib()
    started = time.perf_counter()
    labelled = label_pool(pool)
    label_s = time.perf_counter() - started
    return {
        "conversations": n,
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "generate_s": round(generate_s, 2),
        "pool_s": round(pool_s, 2),
        "label_s": round(label_s, 2),
        "pool_conversations_per_s": round(n / pool_s),
        "label_conversations_per_s": round(pool.height / label_s),
        "end_to_end_conversations_per_s": round(n / (pool_s + label_s)),
        "peak_rss_mib_before": rss_before,
        "peak_rss_mib_pool": rss_pool,
        "peak_rss_mib": _peak_rss_mib(),
        "pool_size": report["size"],
        "cleaning": report["cleaning"]["counts"],
        "labels": dict(sorted(labelled.group_by("label").len().iter_rows())),
    }


def markdown(result: dict[str, Any]) -> str:
    """The benchmark as a small Markdown table (pasted into docs/ift-data.md)."""
    rows = [
        ("conversations", f"{result['conversations']:,} ({result['file_mib']} MiB JSON)"),
        ("pool build (stream, clean, dedup)", f"{result['pool_s']} s"),
        ("labelling (heuristic)", f"{result['label_s']} s"),
        ("throughput, end to end", f"{result['end_to_end_conversations_per_s']:,} conv/s"),
        ("peak RSS", f"{result['peak_rss_mib']} MiB"),
        ("pool size after cleaning", f"{result['pool_size']:,}"),
    ]
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
