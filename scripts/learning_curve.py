"""A learning curve for the planted effects: accuracy against SFT steps, in both views, for the
arms of a finished study (issue 24: "if a planted effect is still missed, report a learning
curve for code0 and code100 that shows where it appears").

One SFT run per arm with the study's settings but `--steps` steps and a checkpoint every
`--every`, then every checkpoint generates and is scored on `--tasks` through the workflow's own
stage commands (`python -m codeift sft | generate | score`), reading the study's base model,
mixes and task files from its results folder. The schedule spans `--steps` (cosine over the
longer run), so a checkpoint at the study's step count is not the study's model: the curve shows
how an effect grows with training, not the study's point.

  python scripts/learning_curve.py --configfile config/config.yaml --results results \
      --arms code0 code100 --steps 64 --every 8 --tasks babi_deduction babi_induction \
      --out docs/default-study/learning-curve
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from codeift.config import arm_train, backbone_inference, load_yaml, with_defaults
from codeift.io import write_report
from codeift.resources import train_launch
from codeift.train.precision import resolved_settings


def run(command: list[str], log: Path) -> None:
    """One stage command, its output in `log`; a failure stops the curve naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(command[:4])} failed ({done.returncode}); see {log}")


# What a checkpoint needs to be loaded as a model (not its optimizer state).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def keep_checkpoints(checkpoints: Path, kept: Path, stop: threading.Event) -> None:
    """Copy each checkpoint's model as it appears: the SFT stage keeps only its last two (it
    resumes from them), and the curve needs every one."""
    while True:
        finished = stop.is_set()
        for folder in sorted(checkpoints.glob("checkpoint-*")):
            target = kept / folder.name
            if target.exists() or not (folder / "trainer_state.json").exists():
                continue
            partial = kept / f".{folder.name}"
            partial.mkdir(parents=True, exist_ok=True)
            for name in MODEL_FILES:
                if (folder / name).exists():
                    shutil.copy2(folder / name, partial / name)
            partial.rename(target)
        if finished:
            return
        time.sleep(2)


def train(config: dict, results: Path, work: Path, backbone: str, arm: str, args) -> Path:
    """The arm's SFT to `args.steps` steps, saving every `args.every`: the folder that keeps a
    copy of every checkpoint's model."""
    settings = dataclasses.replace(
        resolved_settings(arm_train(config, backbone, arm), on_gpu=False),
        max_steps=args.steps,
        save_steps=args.every,
    )
    checkpoints, kept = work / arm / "checkpoints", work / arm / "kept"
    if (work / arm / "final" / "config.json").exists():
        return kept  # trained by an earlier call: the curve resumes at evaluation
    stop = threading.Event()
    watcher = threading.Thread(target=keep_checkpoints, args=(checkpoints, kept, stop))
    watcher.start()
    try:
        _sft(config, results, work, backbone, arm, settings, checkpoints)
    finally:
        stop.set()
        watcher.join()
    return kept


def _sft(config, results, work, backbone, arm, settings, checkpoints) -> None:
    run(
        [
            sys.executable, "-m", "codeift", "sft",
            "--model", str(results / "models" / backbone / "base"),
            "--mix", str(results / "ift" / "mixes" / f"{arm}.parquet"),
            "--out", str(work / arm / "final"),
            "--checkpoints", str(checkpoints),
            "--settings", settings.to_json(),
            "--launch", json.dumps(train_launch(config, backbone)),
        ],
        work / "logs" / f"sft-{arm}.log",
    )  # fmt: skip


def evaluate(config: dict, results: Path, work: Path, backbone: str, arm: str, step: int,
             model: Path, tasks: list[str]) -> list[dict]:  # fmt: skip
    """Generate and score one checkpoint on every task: accuracy in both views."""
    spec = config["backbones"][backbone]
    identity = {"name": backbone, "family": spec["family"], "size": spec["size"]}
    rows = []
    for task in tasks:
        stem = work / arm / f"step{step:04d}" / task
        generations, scores = stem.with_suffix(".gen.parquet"), stem.with_suffix(".parquet")
        if scores.exists():  # evaluated by an earlier call
            rows.append(accuracy(pl.read_parquet(scores), arm, step, task))
            continue
        run(
            [
                sys.executable, "-m", "codeift", "generate",
                "--model", str(model),
                "--task-file", str(results / "tasks" / f"{task}.parquet"),
                "--out", str(generations),
                "--backbone", json.dumps(identity),
                "--variant", arm,
                "--settings", backbone_inference(config, backbone).to_json(),
            ],
            work / "logs" / f"generate-{arm}-{step}-{task}.log",
        )  # fmt: skip
        run(
            [
                sys.executable, "-m", "codeift", "score",
                "--generations", str(generations), "--out", str(scores),
                "--sandbox", config["scoring"]["sandbox"],
            ],
            work / "logs" / f"score-{arm}-{step}-{task}.log",
        )  # fmt: skip
        rows.append(accuracy(pl.read_parquet(scores), arm, step, task))
    return rows


def accuracy(frame: pl.DataFrame, arm: str, step: int, task: str) -> dict:
    """One checkpoint on one task: accuracy in the text view and the text-or-program view."""
    return {
        "arm": arm,
        "step": step,
        "task": task,
        "items": frame.height,
        "text (%)": round(100 * frame["correct"].fill_null(False).mean(), 1),
        "text or program (%)": round(100 * frame["correct_any"].fill_null(False).mean(), 1),
        "programs": int(frame["program_status"].is_not_null().sum()),
    }


def base_rows(results: Path, backbone: str, tasks: list[str]) -> list[dict]:
    """Step 0: the untuned base, read from the study's own scores."""
    return [accuracy(pl.read_parquet(results / "scores" / backbone / "base" / f"{task}.parquet"),
                     "base", 0, task) for task in tasks]  # fmt: skip


def markdown(rows: list[dict], header_note: str) -> str:
    keys = list(rows[0])
    lines = [header_note, "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--results", required=True, help="a finished study's results folder")
    parser.add_argument("--backbone", default=None, help="default: the config's first")
    parser.add_argument("--arms", nargs="+", default=["code0", "code100"])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--tasks", nargs="+", default=["babi_deduction", "babi_induction"])
    parser.add_argument("--work", default=None, help="scratch folder (default: RESULTS/curve)")
    parser.add_argument("--out", default=None, help="path stem for .json and .md")
    args = parser.parse_args()

    config = with_defaults(load_yaml(args.configfile))
    results = Path(args.results)
    backbone = args.backbone or sorted(config["backbones"])[0]
    work = Path(args.work) if args.work else results / "curve"
    started = time.time()
    # The arms train side by side, one thread each (the study's `train.threads`).
    with ThreadPoolExecutor(len(args.arms)) as pool:
        folders = dict(
            zip(
                args.arms,
                pool.map(lambda arm: train(config, results, work, backbone, arm, args), args.arms),
                strict=True,
            )
        )
    trained = time.time() - started
    rows = []
    for arm in args.arms:
        rows += [dict(row, arm=arm) for row in base_rows(results, backbone, args.tasks)]
        for step in range(args.every, args.steps + 1, args.every):
            # The stage removes its checkpoints once it has saved the final model.
            model = folders[arm] / f"checkpoint-{step}"
            model = model if model.exists() or step != args.steps else work / arm / "final"
            rows += evaluate(config, results, work, backbone, arm, step, model, args.tasks)
    rows.sort(key=lambda r: (r["task"], r["arm"], r["step"]))
    note = (
        f"Learning curve of {backbone}: `python {' '.join(sys.argv)}` "
        f"(SFT {trained:.0f} s for {len(args.arms)} arms side by side; "
        f"{time.time() - started:.0f} s in all; step 0 is the untuned base)."
    )
    print(markdown(rows, note))
    if args.out:
        write_report(rows, markdown(rows, note), args.out)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        main()
    finally:  # the checkpoints' engines are not reused by anything after the curve
        subprocess.run([sys.executable, "-m", "codeift", "engines", "stop"], check=False)
