"""The dry run's cost at sweep scale against Snakemake's own: `python scripts/bench_dryrun.py`.

Builds a sweep config from config/paper.yaml (N copies of a 7B backbone x P proportions x its 12
tasks: about 15,000 jobs by default) and a touch-only Snakefile of the same shape (the same
rules, files, wildcards and dependencies; no params, resources, priorities, groups or config
checks), dry-runs both in the same run, alternating, and prints the seconds of each and their
ratio (the workflow's over the touch-only one), in wall-clock seconds and in CPU seconds (user +
system of the dry run's process): on a machine whose cores other work shares, the CPU ratio is
the one that load does not move. The best (least) of the repeats counts. Nothing is written
outside a temporary folder.

    python scripts/bench_dryrun.py [--backbones 25] [--proportions 24] [--repeats 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# The workflow's shape (rules, files, wildcards, dependencies) around its generate and score
# rules, which hold 15,288 of the default sweep's 15,664 jobs.
_SHAPE_HEAD = """
from codeift.study import ARM_PATTERN, VARIANT_PATTERN

R = config["results"]
BACKBONES = sorted(config["backbones"])
TASKS = sorted(config["tasks"])
ARMS = [f"code{p}" for p in config["proportions"]]
VARIANTS = ["base"] + ARMS


wildcard_constraints:
    backbone="|".join(BACKBONES),
    task="|".join(TASKS),
    variant=VARIANT_PATTERN,
    arm=ARM_PATTERN,


rule all:
    input:
        f"{R}/summary/summary.md",


rule build_pool:
    output:
        pool=f"{R}/ift/pool.parquet",
        report=f"{R}/ift/pool.report.json",
    shell:
        "touch {output}"


rule build_mix:
    input:
        pool=rules.build_pool.output.pool,
        report=rules.build_pool.output.report,
    output:
        mix=f"{R}/ift/mixes/{{arm}}.parquet",
        card=f"{R}/ift/mixes/{{arm}}.card.json",
    shell:
        "touch {output}"


rule build_task:
    output:
        f"{R}/tasks/{{task}}.parquet",
    shell:
        "touch {output}"


rule prepare_backbone:
    output:
        directory(f"{R}/models/{{backbone}}/base"),
    shell:
        "mkdir -p {output}"


rule sft:
    input:
        model=f"{R}/models/{{backbone}}/base",
        mix=f"{R}/ift/mixes/{{arm}}.parquet",
    output:
        directory(f"{R}/models/{{backbone}}/{{arm}}"),
    shell:
        "mkdir -p {output}"

"""
_SHAPE_TAIL = """rule aggregate:
    input:
        scores=expand(
            f"{R}/scores/{{backbone}}/{{variant}}/{{task}}.parquet",
            backbone=BACKBONES,
            variant=VARIANTS,
            task=TASKS,
        ),
        cards=expand(f"{R}/ift/mixes/{{arm}}.card.json", arm=ARMS),
    output:
        f"{R}/summary/summary.md",
    shell:
        "touch {output}"
"""

# Touch only: what Snakemake itself costs for these jobs.
_TOUCH_GENERATE = """rule generate:
    input:
        model=lambda wildcards: f"{R}/models/{wildcards.backbone}/{wildcards.variant}",
        task=f"{R}/tasks/{{task}}.parquet",
    output:
        f"{R}/generations/{{backbone}}/{{variant}}/{{task}}.parquet",
    shell:
        "touch {output}"

"""
_TOUCH_SCORE = """rule score:
    input:
        f"{R}/generations/{{backbone}}/{{variant}}/{{task}}.parquet",
    output:
        f"{R}/scores/{{backbone}}/{{variant}}/{{task}}.parquet",
    shell:
        "touch {output}"

"""
TOUCH_SNAKEFILE = "\n\n".join([_SHAPE_HEAD, _TOUCH_GENERATE, _TOUCH_SCORE, _SHAPE_TAIL])

# The same shape with the same Snakemake declarations as the workflow's generate and score rules
# (log, conda env, group, priority, params, the resource names, a command template with the same
# fields), every value a constant: what Snakemake itself costs for what the workflow declares.
# Against it, the workflow's ratio is the cost of its own per-job functions and config checks.
_DECLARED_GENERATE = """ENGINES = '{"idle_seconds": 60}'
PLANNED = "a,b"


rule generate:
    input:
        model=lambda wildcards: f"{R}/models/{wildcards.backbone}/{wildcards.variant}",
        task=f"{R}/tasks/{{task}}.parquet",
    output:
        f"{R}/generations/{{backbone}}/{{variant}}/{{task}}.parquet",
    log:
        f"{R}/logs/generate/{{backbone}}/{{variant}}/{{task}}.log",
    priority: 1
    group:
        "generate_{backbone}_{variant}"
    conda:
        "env.yaml"
    threads: 2
    resources:
        gpu=1,
        cpus_per_task=8,
        mem_mb=64000,
        runtime=30,
        nodes=1,
        group_slots=1,
        engine_slots=1,
    params:
        backbone='{"name": "x"}',
        settings='{"engine": "vllm"}',
    shell:
        "touch {output} # {input.model:q} {input.task:q} {output:q} {params.backbone:q}"
        " {wildcards.variant:q} {params.settings:q} {ENGINES:q} {PLANNED:q} {log:q}"
"""
_DECLARED_SCORE = """rule score:
    input:
        f"{R}/generations/{{backbone}}/{{variant}}/{{task}}.parquet",
    output:
        f"{R}/scores/{{backbone}}/{{variant}}/{{task}}.parquet",
    log:
        f"{R}/logs/score/{{backbone}}/{{variant}}/{{task}}.log",
    group:
        "score_{backbone}_{variant}"
    conda:
        "env.yaml"
    resources:
        gpu=0,
        cpus_per_task=1,
        mem_mb=2000,
        runtime=15,
        group_slots=1,
    params:
        sandbox="jail",
    shell:
        "touch {output} # {input:q} {output:q} {params.sandbox:q} {log:q}"
"""
DECLARED_SNAKEFILE = "\n\n".join([_SHAPE_HEAD, _DECLARED_GENERATE, _DECLARED_SCORE, _SHAPE_TAIL])
ENV_YAML = "channels: [conda-forge]\ndependencies: [python=3.11]\n"


def sweep_config(backbones: int, proportions: int) -> dict:
    """config/paper.yaml with `backbones` copies of its Llama-2 7B and `proportions` arms."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    spec = paper["backbones"]["llama-2-7b"]
    config = copy.deepcopy(paper)
    config["backbones"] = {f"llama-{i:03d}": copy.deepcopy(spec) for i in range(backbones)}
    step = max(1, 100 // proportions)
    config["proportions"] = list(range(0, 100, step))[:proportions]
    config["evaluate_base"] = True
    config["results"] = "results"
    return config


def dry_run(snakefile: Path, workdir: Path, configfile: Path) -> tuple[float, float, int]:
    """Wall-clock and CPU seconds of `snakemake -n --quiet rules`, and the jobs it planned."""
    command = [
        *(sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1"),
        *("-s", str(snakefile), "-d", str(workdir), "--configfile", str(configfile)),
    ]
    before = os.times()
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if run.returncode != 0:
        raise SystemExit(f"{snakefile} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    total = next(
        int(line.split()[-1])
        for line in (run.stdout + run.stderr).splitlines()
        if line.startswith("total")
    )
    return seconds, cpu, total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", type=int, default=25)
    parser.add_argument("--proportions", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="codeift-bench-dryrun-") as folder:
        root = Path(folder)
        configfile = root / "config.yaml"
        configfile.write_text(yaml.safe_dump(sweep_config(args.backbones, args.proportions)))
        touch = root / "Snakefile.touch"
        touch.write_text(TOUCH_SNAKEFILE)
        declared = root / "Snakefile.declared"
        declared.write_text(DECLARED_SNAKEFILE)
        (root / "env.yaml").write_text(ENV_YAML)
        snakefiles = {"workflow": REPO / "Snakefile", "declared": declared, "touch": touch}
        times: dict[str, list[float]] = {name: [] for name in snakefiles}
        cpus: dict[str, list[float]] = {name: [] for name in snakefiles}
        jobs: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, snakefile in snakefiles.items():
                (root / name).mkdir(exist_ok=True)
                seconds, cpu, jobs[name] = dry_run(snakefile, root / name, configfile)
                times[name].append(seconds)
                cpus[name].append(cpu)
    if len(set(jobs.values())) != 1:
        raise SystemExit(f"not the same shape: {jobs}")
    best = {name: min(values) for name, values in times.items()}
    best_cpu = {name: min(values) for name, values in cpus.items()}
    result = {
        "jobs": jobs["workflow"],
        "workflow_seconds": round(best["workflow"], 2),
        "touch_seconds": round(best["touch"], 2),
        "ratio": round(best["workflow"] / best["touch"], 3),
        "workflow_cpu_seconds": round(best_cpu["workflow"], 2),
        "touch_cpu_seconds": round(best_cpu["touch"], 2),
        "cpu_ratio": round(best_cpu["workflow"] / best_cpu["touch"], 3),
        "declared_seconds": round(best["declared"], 2),
        "declared_cpu_seconds": round(best_cpu["declared"], 2),
        # What Snakemake costs for the declarations alone, and what the workflow's own functions
        # add on top of that.
        "declared_over_touch_cpu": round(best_cpu["declared"] / best_cpu["touch"], 3),
        "workflow_over_declared_cpu": round(best_cpu["workflow"] / best_cpu["declared"], 3),
        "runs": {name: [round(v, 2) for v in values] for name, values in times.items()},
        "cpu_runs": {name: [round(v, 2) for v in values] for name, values in cpus.items()},
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
