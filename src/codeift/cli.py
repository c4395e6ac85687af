"""`python -m codeift <stage>`: one entry point per kind of Snakemake job.

Every stage takes its slice of the config as a JSON string (the rule's params), so a rule body is
one line and the package is usable without Snakemake.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from codeift.errors import CodeiftError
from codeift.io import write_json, write_parquet
from codeift.score import jail
from codeift.settings import (
    AnalysisSettings,
    CleaningSettings,
    EngineSettings,
    InferenceSettings,
    LabellerSettings,
    MixSettings,
    TrainSettings,
)


def _json(text: str) -> Any:
    return json.loads(text)


def cmd_prepare_backbone(args: argparse.Namespace) -> None:
    from codeift.models.backbones import prepare_backbone

    print(json.dumps(prepare_backbone(args.name, _json(args.spec), args.out)))


def cmd_build_pool(args: argparse.Namespace) -> None:
    from codeift.data.labels import label_pool, label_report
    from codeift.data.pool import build_pool

    cleaning = CleaningSettings.from_json(args.cleaning)
    pool, report = build_pool(_json(args.sources), args.seed, cleaning)
    given = _json(args.labeller)
    labeller = LabellerSettings.from_mapping(given)
    labelled = label_pool(pool, labeller)
    report.update(label_report(labelled, given, labeller))
    write_parquet(labelled, args.out)
    write_json(report, args.report)
    print(json.dumps(report))


def cmd_build_mix(args: argparse.Namespace) -> None:
    from codeift.data.mix import build_mix, mix_card, read_report

    pool = pl.read_parquet(args.pool)
    settings = MixSettings.from_json(args.mix)
    mix = build_mix(pool, args.proportion, args.total, args.seed, settings, args.replicate)
    write_parquet(mix, args.out)
    card = mix_card(
        mix, args.proportion, read_report(args.pool_report), settings, replicate=args.replicate
    )
    write_json(card, args.card)
    print(json.dumps({k: card[k] for k in ("proportion", "examples", "labels", "content_hash")}))


def cmd_sft(args: argparse.Namespace) -> None:
    from codeift.retries import allocation_launch, launch_settings, oom_halvings, record_gpu_oom
    from codeift.train.launch import allocated_launch, free_port, needs_relaunch, train_command

    # A retry given more GPUs after running out of GPU memory trains on all of them (the planned
    # global batch kept); otherwise SLURM's GPU count must be the one the job asked for.
    launch = allocated_launch(allocation_launch(_json(args.launch), dict(os.environ)))
    args.launch = json.dumps(launch)
    if needs_relaunch(launch):
        options = ("model", "mix", "out", "checkpoints", "settings", "launch")
        train_args = [part for name in options for part in (f"--{name}", getattr(args, name))]
        command = train_command(launch, train_args, free_port())
        source = f" ({launch['gpus_from']})" if "gpus_from" in launch else ""
        print(f"[codeift] {launch['gpus']} GPUs{source}: {' '.join(command)}", flush=True)
        code = subprocess.run(command, check=False).returncode
        if code:
            raise SystemExit(f"distributed training exited with code {code}")
        return
    from codeift.train.sft import GpuOutOfMemory, describe, train

    # A retry at the GPU cap after running out of GPU memory halves the micro-batch and doubles
    # the accumulation (the global batch kept): noted in the checkpoint folder, not a param.
    planned = TrainSettings.from_json(args.settings)
    gpus = int(launch.get("gpus", 0))
    halvings = oom_halvings(args.checkpoints, gpus, planned)
    settings = launch_settings(planned, launch, halvings)
    if halvings and os.environ.get("RANK", "0") == "0":
        print(
            f"[codeift] out of GPU memory before on {max(gpus, 1)} GPU(s): micro-batch "
            f"{settings.per_device_train_batch_size} x accumulation "
            f"{settings.gradient_accumulation_steps} (planned {planned.per_device_train_batch_size}"
            f" x {planned.gradient_accumulation_steps}; the same global batch)",
            flush=True,
        )
    try:
        record = train(args.model, args.mix, args.out, args.checkpoints, settings)
    except GpuOutOfMemory:
        record_gpu_oom(args.checkpoints, gpus, halvings)
        raise
    if record["world_size"] == 1 or os.environ.get("RANK", "0") == "0":
        print(describe(record))


def cmd_pretrain(args: argparse.Namespace) -> None:
    import dataclasses

    from codeift.models.pretrain import RECIPES, describe, pretrain

    recipe = RECIPES[args.architecture]
    if args.steps:
        recipe = dataclasses.replace(recipe, steps=args.steps)
    print(describe(pretrain(recipe, args.out, start_from=args.start_from)))


def cmd_build_task(args: argparse.Namespace) -> None:
    from codeift.tasks import build_task_frame

    frame = build_task_frame(args.name, _json(args.entry), args.seed)
    write_parquet(frame, args.out)
    print(f"{args.name}: {frame.height} examples")


def cmd_generate(args: argparse.Namespace) -> None:
    """One generation job. `--engines` and `--planned-tasks` change speed, never the output:
    the rule passes them outside its params (workflow/rules/infer.smk), so that changing them,
    or adding a task to the study, reruns no generation job."""
    from codeift.infer.generate import generate_task

    summary = generate_task(
        args.model,
        args.task_file,
        args.out,
        _json(args.backbone),
        args.variant,
        InferenceSettings.from_json(args.settings),
        EngineSettings.from_json(args.engines),
        [name for name in args.planned_tasks.split(",") if name],
    )
    print(json.dumps(summary))


def cmd_score(args: argparse.Namespace) -> None:
    import logging

    from codeift.score.answers import score_frame, score_summary
    from codeift.score.sandbox import require

    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
    # Before any reply is read: a node without the jail fails the job whatever its replies hold.
    require(args.sandbox)
    scored = score_frame(pl.read_parquet(args.generations), sandbox_mode=args.sandbox)
    write_parquet(scored, args.out)
    print(json.dumps(score_summary(scored, args.sandbox)))


def cmd_aggregate(args: argparse.Namespace) -> None:
    from codeift.analysis.aggregate import run_analysis
    from codeift.analysis.controls import planted_from_cards, planted_views_from_cards

    settings = AnalysisSettings.from_json(args.analysis)
    # The config's controls.planted, where given, overrides what the mix cards record.
    stated = json.loads(args.controls)
    planted = stated.get("planted") or planted_from_cards(args.cards)
    views = stated.get("views") or planted_views_from_cards(args.cards)
    outdir, figdir = Path(args.outdir), Path(args.figdir)
    run_analysis(args.scores, outdir, figdir, settings, args.cards, planted, views)


def cmd_power(args: argparse.Namespace) -> None:
    """Power up front: each task's smallest detectable difference, from the config alone."""
    from codeift.analysis.markdown import evidence_markdown
    from codeift.analysis.power import design_table
    from codeift.config import load_yaml, validate_config

    config = load_yaml(args.configfile)
    validate_config(config)
    print(evidence_markdown("power", design_table(config)))


def cmd_engines(args: argparse.Namespace) -> None:
    from codeift.infer.server import live_engines, stop_engines

    if args.action == "list":
        for info in live_engines():
            print(json.dumps(info))
    else:
        print(f"stopped {stop_engines(keep=0)} engine(s)")


def prefetch_artifacts(config: dict[str, Any]) -> list[Any]:
    """The hub artifacts of a config: codeift.hub's listing, each hub task's source read through
    the task catalogue."""
    from codeift import hub
    from codeift.tasks.catalog import resolve_task

    tasks = config.get("tasks") or {}
    task_hubs = {
        name: resolve_task(name, entry)["hub"]
        for name, entry in tasks.items()
        if (entry or {}).get("source") == "hub"
    }
    return hub.config_artifacts(config, task_hubs)


def cmd_prefetch(args: argparse.Namespace) -> None:
    """Fetch every hub artifact a config needs into HF_HOME (on the login node), or list them."""
    from codeift import hub
    from codeift.config import load_yaml, validate_config

    config = load_yaml(args.configfile)
    validate_config(config)
    artifacts = prefetch_artifacts(config)
    generated = sorted(
        name for name, entry in (config.get("tasks") or {}).items() if entry.get("source") != "hub"
    )
    if args.dry_run:
        for artifact in artifacts:
            state = "cached" if hub.cached(artifact) else "to fetch"
            print(f"{state:9} {artifact.describe()}")
        if generated:
            print(f"generated (nothing to fetch): tasks {', '.join(generated)}")
        print(
            f"{len(artifacts)} artifact(s); HF_HOME {hub.hf_home()}; manifest {hub.manifest_path()}"
        )
        return
    manifest = Path(args.manifest) if args.manifest else None
    record = hub.prefetch(artifacts, manifest, log=lambda line: print(line, flush=True))
    total = sum(entry["bytes"] for entry in record["artifacts"].values())
    print(
        f"{len(artifacts)} artifact(s) fetched; manifest {manifest or hub.manifest_path()} "
        f"({len(record['artifacts'])} entries, {total / 1e9:.2f} GB)"
    )


def cmd_plan(args: argparse.Namespace) -> None:
    from codeift.config import load_yaml, validate_config
    from codeift.plan import Assumptions, plan, render

    config = load_yaml(args.configfile)
    validate_config(config)
    assumed = Assumptions.from_pairs(args.set)
    print(f"GPU-hour plan of {args.configfile} (python -m codeift plan; codeift.plan)\n")
    print(render(plan(config, assumed), assumed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeift", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], None],
        *options: str,
        ints: tuple[str, ...] = (),
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name)
        for option in options:
            sub.add_argument(f"--{option}", required=True)
        for option in ints:
            sub.add_argument(f"--{option}", required=True, type=int)
        sub.set_defaults(handler=handler)
        return sub

    add("prepare-backbone", cmd_prepare_backbone, "name", "spec", "out")
    pool = add("build-pool", cmd_build_pool, "sources", "out", "report", ints=("seed",))
    pool.add_argument("--cleaning", default="{}", help="ift.cleaning as JSON")
    pool.add_argument("--labeller", default="{}", help="ift.labeller as JSON")
    mix = add(
        "build-mix",
        cmd_build_mix,
        "pool",
        "pool-report",
        "out",
        "card",
        ints=("proportion", "total", "seed"),
    )
    mix.add_argument("--mix", default="{}", help="ift.mix as JSON (nested, match, total_tokens)")
    mix.add_argument(
        "--replicate", type=int, default=0, help="r > 0: replicate arm code{p}r{r}, own order"
    )
    train = add("sft", cmd_sft, "model", "mix", "out", "checkpoints", "settings")
    train.add_argument(
        "--launch", default="{}", help="JSON: gpus, strategy (fsdp|ddp); > 1 GPU relaunches"
    )
    pretrain = commands.add_parser("pretrain", help="pretrain one tiny base from its recipe")
    pretrain.add_argument("--architecture", required=True, choices=["llama", "qwen2"])
    pretrain.add_argument("--out", required=True)
    pretrain.add_argument("--steps", type=int, help="override the recipe's steps (tests)")
    pretrain.add_argument(
        "--start-from",
        help="a checkpoint made by phase one of the same recipe: run phase two only",
    )
    pretrain.set_defaults(handler=cmd_pretrain)
    add("build-task", cmd_build_task, "name", "entry", "out", ints=("seed",))
    generate = add(
        "generate", cmd_generate, "model", "task-file", "out", "backbone", "variant", "settings"
    )
    generate.add_argument(
        "--engines", default="{}", help="config `engines` as JSON (idle_seconds, max_alive)"
    )
    generate.add_argument(
        "--planned-tasks",
        default="",
        help="the study's tasks, comma-separated: a model's first job generates them ahead",
    )
    score = add("score", cmd_score, "generations", "out")
    score.add_argument(
        "--sandbox",
        default=jail.DEFAULT_MODE,
        choices=jail.MODES,
        help="config scoring.sandbox: jail (OS boundary; default), jail_if_available, python_guard",
    )
    aggregate = commands.add_parser("aggregate")
    aggregate.add_argument("--scores", nargs="*", default=[])
    aggregate.add_argument("--cards", nargs="*", default=[], help="mix data cards (JSON)")
    aggregate.add_argument("--outdir", required=True)
    aggregate.add_argument("--figdir", required=True)
    aggregate.add_argument(
        "--analysis", default="{}", help="JSON: bootstrap_samples, alpha, seed (config `analysis`)"
    )
    aggregate.add_argument(
        "--controls",
        default="{}",
        help="JSON: planted (task -> gain|lose|none) and views "
        "(task -> text|text_or_program; config `controls`)",
    )
    aggregate.set_defaults(handler=cmd_aggregate)
    prefetch = commands.add_parser(
        "prefetch",
        help="download every hub artifact a study config needs into HF_HOME (login node)",
    )
    prefetch.add_argument(
        "--configfile", required=True, help="the study config, e.g. config/paper.yaml"
    )
    prefetch.add_argument(
        "--dry-run", action="store_true", help="list the artifacts and whether they are cached"
    )
    prefetch.add_argument(
        "--manifest", help="where to write the manifest (default: $HF_HOME/codeift-prefetch.json)"
    )
    prefetch.set_defaults(handler=cmd_prefetch)
    power = commands.add_parser(
        "power", help="each task's smallest detectable difference, before the study runs"
    )
    power.add_argument("--configfile", default="config/config.yaml")
    power.set_defaults(handler=cmd_power)
    planner = commands.add_parser("plan", help="GPU-hours, GPUs and memory per rule of a study")
    planner.add_argument("--configfile", required=True, help="the study's config (YAML)")
    planner.add_argument(
        "--set", action="append", default=[], help="an assumption, key=value (codeift.plan)"
    )
    planner.set_defaults(handler=cmd_plan)
    engines = commands.add_parser("engines", help="list or stop this machine's shared engines")
    engines.add_argument("action", choices=["list", "stop"])
    engines.set_defaults(handler=cmd_engines)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one stage. A stage's own error (bad input, named in its message) ends the run with one
    line `codeift <stage>: <message>` after its traceback, both on stderr (the job log)."""
    args = build_parser().parse_args(argv)
    if args.command != "prefetch":
        from codeift.hub import offline_by_default

        offline_by_default()  # a prefetch has run: jobs read the hub cache only
    started = time.time()
    try:
        args.handler(args)
    except CodeiftError as error:
        traceback.print_exc(file=sys.stderr)
        message = " ".join(str(error).split())
        print(f"codeift {args.command}: {type(error).__name__}: {message}", file=sys.stderr)
        return 2
    print(f"[codeift] {args.command} done in {time.time() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
