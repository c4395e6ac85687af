"""The study benchmark reads a Snakemake log as Snakemake 9 writes it (format copied from a run)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from codeift.bench import (
    BenchError,
    critical_path,
    engine_use,
    matmul_gflops,
    parse_snakemake_log,
)
from codeift.models.flops import generation_flops, parameter_split, training_flops

LOG = """Building DAG of jobs...
Select jobs to execute...
Execute 2 jobs...
[Wed Dec  2 17:30:27 2026]
localrule build_pool:
    output: r/ift/pool.parquet, r/ift/pool.report.json
    log: r/logs/build_pool.log
    jobid: 13
    reason: Missing output files: r/ift/pool.parquet
    priority: 10001
    resources: tmpdir=/tmp
[Wed Dec  2 17:30:27 2026]
localrule build_task:
    output: r/tasks/a.parquet
    jobid: 7
    wildcards: task=a
    resources: tmpdir=/tmp
[Wed Dec  2 17:30:32 2026]
Finished jobid: 7 (Rule: build_task)
[Wed Dec  2 17:30:37 2026]
Finished jobid: 13 (Rule: build_pool)
[Wed Dec  2 17:30:37 2026]
localrule sft:
    input: r/ift/pool.parquet
    output: r/models/m/code0
    jobid: 3
    threads: 2
    resources: tmpdir=/tmp
[Wed Dec  2 17:30:38 2026]
localrule generate:
    input: r/models/m/code0, r/tasks/a.parquet
    output: r/generations/m/code0/a.parquet
    jobid: 2
    resources: tmpdir=/tmp
[Wed Dec  2 17:31:07 2026]
Finished jobid: 3 (Rule: sft)
[Wed Dec  2 17:31:07 2026]
localrule generate:
    input: r/models/m/code0, r/tasks/a.parquet
    output: r/generations/m/code0/b.parquet
    jobid: 1
    resources: tmpdir=/tmp
[Wed Dec  2 17:31:10 2026]
Finished jobid: 1 (Rule: generate)
"""


def test_jobs_their_times_threads_and_graph_come_from_the_log(tmp_path):
    log = tmp_path / "run.snakemake.log"
    log.write_text(LOG)
    jobs = {job.jobid: job for job in parse_snakemake_log(log)}
    assert sorted(jobs) == [1, 3, 7, 13]  # job 2 never finished: left out
    assert [jobs[j].seconds for j in (13, 7, 3, 1)] == [10, 5, 30, 3]
    assert jobs[3].threads == 2 and jobs[13].threads == 1
    assert jobs[1].inputs == ["r/models/m/code0", "r/tasks/a.parquet"]
    seconds, chain = critical_path(list(jobs.values()))
    assert seconds == 43 and [job.jobid for job in chain] == [13, 3, 1]


def test_a_log_without_finished_jobs_is_named(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("Building DAG of jobs...\nNothing to be done.\n")
    with pytest.raises(BenchError, match="empty.log"):
        parse_snakemake_log(log)


def test_engine_loads_are_counted_against_the_models(tmp_path):
    logs = tmp_path / "logs" / "generate"
    for model, task, text in [
        ("m/base", "a", "[codeift] started engine pid 1\nusing engine pid 1 (x, loaded in 4.5s)"),
        ("m/base", "b", "[codeift] replies generated ahead by an earlier job of this model"),
        ("m/code0", "a", "[codeift] started engine pid 2\nusing engine pid 2 (x, loaded in 6.0s)"),
    ]:
        path: Path = logs / model / f"{task}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert engine_use(tmp_path) == {"models": 2, "engine_loads": 2, "load_seconds_max": 6.0}


def test_the_matmul_probe_measures_a_positive_rate():
    assert matmul_gflops(1, size=128, seconds=0.05) > 0


def test_the_roof_is_the_fastest_matmul_library_and_names_each():
    from codeift.bench import matmul_rates

    rates = matmul_rates(1, size=256, seconds=0.2)
    assert set(rates) == {"mkl", "onednn"} and min(rates.values()) > 0


@pytest.mark.parametrize("tied", [True, False])
def test_the_head_is_counted_apart_from_the_body_tied_or_not(tmp_path, tied):
    """The output projection costs a product only where logits are computed; an untied input
    embedding is a lookup and costs none."""
    import torch
    from safetensors.torch import save_file

    weights = {
        "model.embed_tokens.weight": torch.zeros(10, 4),
        "model.layers.0.mlp.up_proj.weight": torch.zeros(6, 4),
        "model.norm.weight": torch.zeros(4),
    }
    if not tied:
        weights["lm_head.weight"] = torch.zeros(10, 4)
    save_file(weights, tmp_path / "model.safetensors")
    split = parameter_split(tmp_path)
    assert split == (28, 40)
    # 3 prompt tokens and 2 generated: 5 tokens through the body, logits for the 2 generated.
    assert generation_flops(split, 3, 2) == 2 * 28 * 5 + 2 * 40 * 2
    assert training_flops(split, 5) == 6 * 68 * 5


def test_a_throughput_batch_of_any_size_mixes_the_tasks():
    from codeift.infer.throughput import interleaved

    prompts = interleaved({"b": ["b0", "b1", "b2"], "a": ["a0", "a1"]})
    assert [c[0]["content"] for c in prompts] == ["a0", "b0", "a1", "b1", "b2"]


def test_replies_are_compared_across_batch_sizes_and_thread_counts():
    from codeift.infer.throughput import reply_agreement

    one = {"model": "m", "engine": "vllm", "threads": 1, "replies": {"2": ["a", "b"]}}
    one["replies"]["4"] = ["a", "x", "c", "d"]
    two = {"model": "m", "engine": "vllm", "threads": 2, "replies": {"4": ["a", "b", "c", "e"]}}
    rows = reply_agreement([one, two])
    assert [(r["compared"], r["prompts"], r["differing"]) for r in rows] == [
        ("batch 2 vs 4 (1 threads)", 2, 1),
        ("1 vs 2 threads (batch 4)", 4, 2),
    ]


def test_generation_alone_is_read_from_the_request_lines_generate_logs(tmp_path, capsys):
    """The line codeift.infer.generate writes is the one the benchmark reads, time and tokens
    (prefix-cache hits apart); a model with a job log that shows neither a request nor cached
    replies is not summed in part."""
    from codeift.bench import request_totals
    from codeift.infer.engines import Generation
    from codeift.infer.generate import timed_request

    class Slow:
        def generate(self, batches):
            time.sleep(0.05)
            replies = [
                [Generation("x", 30, 4, "stop", n_cached_tokens=16) for _ in b] for b in batches
            ]
            return replies, "fake", "0"

    timed_request(Slow(), [["p"] * 3, ["q"] * 2])
    line = capsys.readouterr().out
    logs = tmp_path / "m" / "base"
    logs.mkdir(parents=True)
    (logs / "a.log").write_text(f"[codeift] started engine pid 1\n{line}")
    (logs / "b.log").write_text("[codeift] replies generated ahead by an earlier job of this model")
    totals = request_totals(logs)
    assert totals is not None and 0.05 <= totals.pop("seconds") < 1.0
    assert totals == {"prompt_tokens": 150, "cached_tokens": 80, "generated_tokens": 20}
    (logs / "c.log").write_text("[codeift] started engine pid 2\n")
    assert request_totals(logs) is None


def test_prompt_tokens_from_the_prefix_cache_cost_no_flops_in_the_sweep():
    from codeift.infer.throughput import rates

    row = {
        "batch": 2,
        "seconds": 2.0,
        "prefill_seconds": 1.0,
        "prompt_tokens": 100,
        "cached_tokens": 40,
        "prefill_cached_tokens": 40,
        "generated_tokens": 10,
    }
    (out,) = rates({"rows": [row]}, (10**8, 5 * 10**7), roof_gflops=10.0)
    # body 1e8 parameters over 60 computed prompt tokens and 10 generated, head 5e7 over 10:
    # 1.5e10 FLOPs in 2 s (every prompt token counted would be 2.3e10)
    assert out["gflops"] == 7.5 and out["roofline"] == 0.75
    # the prefill call: 60 computed prompt tokens and one new token per prompt, 1.26e10 FLOPs;
    # decoding the rest, 2.4e9 in the remaining 1 s
    assert out["decode_roofline"] == 0.24


def test_the_roof_is_the_fastest_library_of_the_best_probe():
    from codeift.bench import best_roof

    before = {1: {"mkl": 100.0, "onednn": 230.0}, 2: {"mkl": 200.0, "onednn": 450.0}}
    after = {1: {"mkl": 60.0, "onednn": 240.0}, 2: {"mkl": 90.0, "onednn": 130.0}}
    assert best_roof(None, after) == {1: 240.0, 2: 130.0}
    assert best_roof(before, after) == {1: 240.0, 2: 450.0}
