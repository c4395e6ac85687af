"""SFT throughput of the real models: token lengths of a mix under each backbone's chat template,
then seconds per full SFT step (TRL, CPU), trained tokens/s, the padding share and model
FLOP/s (6 N T) against the matmul roof, per thread count, padding mode and training dtype
(float32, or bfloat16: autocast over float32 weights, what `train.dtype` gives on a CPU).

  python scripts/measure_real_sft.py --results results-real --threads 1 2 \
      --padding padded free --dtype float32 bfloat16 --out results-real/bench/sft_probe

Reads the prepared backbones and a mix of a run of config/real.yaml (prepare and build_mix jobs).
Writes JSON and Markdown; prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import polars as pl

from codeift.bench import matmul_gflops
from codeift.io import write_report
from codeift.models.flops import parameter_split, training_flops


def token_lengths(model_dir: Path, mix: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = pl.read_parquet(mix, columns=["messages"])["messages"].to_list()
    return [len(tokenizer.apply_chat_template(m, tokenize=True)["input_ids"]) for m in messages]


def probe(
    model_dir: Path,
    mix: Path,
    max_length: int,
    batch: int,
    threads: int,
    steps: int,
    padding: str,
    dtype: str = "float32",
) -> dict:
    """Seconds, trained tokens and computed positions (padding included) of each step."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codeift.bench import step_clock
    from codeift.settings import TrainSettings
    from codeift.train.precision import training_precision
    from codeift.train.sft import load_mix_dataset, sft_trainer

    torch.set_num_threads(threads)
    times: list[float] = []

    settings = TrainSettings(
        max_steps=steps,
        per_device_train_batch_size=batch,
        max_length=max_length,
        dtype=dtype,
        save_steps=10_000,
        logging_steps=1,
        threads=threads,
        padding_free=padding == "free",
        train_sampling_strategy="group_by_length" if padding == "grouped" else "random",
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer = sft_trainer(
            AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=getattr(torch, training_precision(dtype, True).weights)
            ),
            AutoTokenizer.from_pretrained(model_dir),
            load_mix_dataset(mix),
            settings,
            Path(scratch),
            use_cpu=True,
            callbacks=[step_clock(times)],
        )
        trainer.train()
    logs = [e for e in trainer.state.log_history if "num_tokens" in e]
    trained = [int(e["num_tokens"]) for e in logs]
    computed = [int(e["num_input_tokens_seen"]) for e in logs]
    return {"seconds": times, "tokens": _increments(trained), "positions": _increments(computed)}


def _increments(totals: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *totals[:-1]], totals, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results-real")
    parser.add_argument("--mix", default="code50")
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--padding", nargs="+", default=["padded"], choices=["padded", "free", "grouped"]
    )
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--backbones", nargs="*", help="default: every prepared backbone")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = Path(args.results)
    mix = results / "ift" / "mixes" / f"{args.mix}.parquet"
    roof = {t: round(matmul_gflops(t), 1) for t in sorted(set(args.threads))}
    print(f"roof GFLOP/s by threads: {roof}", flush=True)
    rows = []
    for model_dir in sorted((results / "models").glob("*/base")):
        if args.backbones and model_dir.parent.name not in args.backbones:
            continue
        lengths = token_lengths(model_dir, mix)
        split = parameter_split(model_dir)
        for threads in args.threads:
            for padding, dtype in itertools.product(args.padding, args.dtype):
                steps = probe(
                    model_dir, mix, args.max_length, args.batch, threads, args.steps,
                    padding, dtype,
                )  # fmt: skip
                # The first step pays one-off costs (allocation, dataset iteration start).
                seconds = sum(steps["seconds"][1:])
                tokens = sum(steps["tokens"][1:])
                gflops = training_flops(split, tokens) / seconds / 1e9
                rows.append(
                    {
                        "backbone": model_dir.parent.name,
                        "tokens_p50": statistics.median(lengths),
                        "tokens_max": max(lengths),
                        "batch": args.batch,
                        "threads": threads,
                        "padding": padding,
                        "dtype": dtype,
                        "first_step_s": round(steps["seconds"][0], 2),
                        "step_s_mean": round(seconds / (len(steps["seconds"]) - 1), 2),
                        "padding_share": round(
                            1 - sum(steps["tokens"]) / sum(steps["positions"]), 3
                        ),
                        "tokens_per_s": round(tokens / seconds, 1),
                        "gflops": round(gflops, 1),
                        "roofline": round(gflops / roof[threads], 3),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        header = list(rows[0])
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
        write_report(rows, "\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
