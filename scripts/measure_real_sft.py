"""Size the real-model study: token lengths of a mix under each backbone's chat template and the
seconds per full SFT step (TRL, float32, CPU) at a given length, batch and thread count.

  python scripts/measure_real_sft.py --results results-real --out results-real/bench/sft_probe

Reads the prepared backbones and a mix of a run of config/real.yaml (prepare and build_mix jobs).
Writes JSON and Markdown; prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import polars as pl


def token_lengths(model_dir: Path, mix: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = pl.read_parquet(mix, columns=["messages"])["messages"].to_list()
    return [len(tokenizer.apply_chat_template(m, tokenize=True)["input_ids"]) for m in messages]


def step_seconds(
    model_dir: Path, mix: Path, max_length: int, batch: int, threads: int, steps: int
) -> list[float]:
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTTrainer

    from codeift.settings import TrainSettings
    from codeift.train.sft import load_mix_dataset, sft_config

    torch.set_num_threads(threads)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            times.append(time.perf_counter() - self.start)

    settings = TrainSettings(
        max_steps=steps,
        per_device_train_batch_size=batch,
        max_length=max_length,
        dtype="float32",
        save_steps=10_000,
        logging_steps=steps,
        threads=threads,
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            args=sft_config(settings, Path(scratch), use_cpu=True),
            train_dataset=load_mix_dataset(mix),
            processing_class=AutoTokenizer.from_pretrained(model_dir),
            callbacks=[Clock()],
        )
        trainer.train()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results-real")
    parser.add_argument("--mix", default="code50")
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = Path(args.results)
    mix = results / "ift" / "mixes" / f"{args.mix}.parquet"
    rows = []
    for model_dir in sorted((results / "models").glob("*/base")):
        lengths = token_lengths(model_dir, mix)
        times = step_seconds(model_dir, mix, args.max_length, args.batch, args.threads, args.steps)
        steady = times[1:] or times
        rows.append(
            {
                "backbone": model_dir.parent.name,
                "tokens_p50": statistics.median(lengths),
                "tokens_p95": sorted(lengths)[int(0.95 * (len(lengths) - 1))],
                "tokens_max": max(lengths),
                "cut_share": sum(n > args.max_length for n in lengths) / len(lengths),
                "max_length": args.max_length,
                "batch": args.batch,
                "threads": args.threads,
                "first_step_s": round(times[0], 2),
                "step_s_mean": round(statistics.mean(steady), 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
        header = list(rows[0])
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
