"""float32 against bfloat16 autocast for one full SFT step on this CPU, paired: the two precisions
alternate round by round in one process, so a machine whose load drifts (shared cores) slows
both alike and their ratio stays readable. A step is what a CPU SFT job does per optimizer step:
forward, backward and AdamW on one row of `--tokens` tokens, float32 weights in both (bf16 is
autocast, as `train.dtype` gives on a CPU: codeift.train.precision).

  python scripts/measure_cpu_dtype.py --model results-real/models/smollm2-135m-instruct/base \\
      --tokens 512 --rounds 4 --threads 1 --out docs/bench/cpu-dtype-paired

Prints and writes (JSON and Markdown) the step seconds per round, tokens/s per precision and
their ratio, the CPU's model name and flags that matter, and the float32 matmul roof.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

from codeift.bench import matmul_gflops
from codeift.io import write_report
from codeift.models.flops import parameter_split, training_flops
from codeift.train.precision import cpu_flags, native_bf16


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        dtype: AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        for dtype in ("float32", "bfloat16")
    }
    optimizers = {d: torch.optim.AdamW(m.parameters(), lr=1e-5) for d, m in models.items()}
    vocab = models["float32"].config.vocab_size
    row = torch.randint(0, vocab, (1, args.tokens))
    seconds: dict[str, list[float]] = {d: [] for d in models}
    losses: dict[str, list[float]] = {d: [] for d in models}
    for _ in range(args.rounds + 1):  # round 0 warms up both and is not counted
        for dtype, model in models.items():
            autocast = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if dtype == "bfloat16"
                else contextlib.nullcontext()
            )
            started = time.perf_counter()
            with autocast:
                loss = model(input_ids=row, labels=row).loss
            loss.backward()
            optimizers[dtype].step()
            optimizers[dtype].zero_grad()
            seconds[dtype].append(time.perf_counter() - started)
            losses[dtype].append(loss.detach().item())
    split = parameter_split(Path(args.model))
    roof = matmul_gflops(args.threads)
    flags = cpu_flags()
    rows = []
    for dtype in models:
        step = statistics.median(seconds[dtype][1:])
        rows.append(
            {
                "dtype": dtype if dtype == "float32" else "bfloat16 autocast",
                "threads": args.threads,
                "tokens_per_step": args.tokens,
                "step_s_median": round(step, 2),
                "step_s_rounds": [round(s, 2) for s in seconds[dtype][1:]],
                "tokens_per_s": round(args.tokens / step, 1),
                "gflops": round(training_flops(split, args.tokens) / step / 1e9, 1),
                "of_fp32_roof": round(training_flops(split, args.tokens) / step / 1e9 / roof, 3),
                "first_loss": round(losses[dtype][0], 4),
            }
        )
    ratios = [b / f for f, b in zip(seconds["float32"][1:], seconds["bfloat16"][1:], strict=True)]
    summary = {
        "cpu": cpu_model(),
        "native_bf16_flags": list(native_bf16(flags)),
        "avx512f": "avx512f" in flags,
        "fp32_matmul_roof_gflops": round(roof, 1),
        "bf16_over_fp32_step_time_per_round": [round(r, 2) for r in ratios],
        "rows": rows,
    }
    header = [k for k in rows[0] if k != "step_s_rounds"]
    ratios_text = summary["bf16_over_fp32_step_time_per_round"]
    lines = [
        f"CPU: {summary['cpu']}; native bf16 flags: {summary['native_bf16_flags'] or 'none'}; "
        f"float32 matmul roof {summary['fp32_matmul_roof_gflops']} GFLOP/s at {args.threads} "
        f"thread(s); bf16/fp32 step time per round: {ratios_text}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if args.out:
        write_report(summary, text, args.out)


if __name__ == "__main__":
    main()
