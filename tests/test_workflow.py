"""End to end: Snakemake for real on reduced embedded configs (real TRL, real vLLM).

The incremental tests assert the exact job list a dry run plans after adding a backbone, a task
or a proportion, that running it touches nothing that existed, and that a finished run reruns
nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from codeift import study
from tests.conftest import REPO, short_engine_dir

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


# The reduced study, also the README's runnable example (one tiny backbone, two tasks, 3 steps).
TEST_CONFIG = REPO / ".test" / "config.yaml"


def reduced_config(results: Path, engine: str) -> dict:
    """.test/config.yaml with its results folder and engine set by the test."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["results"] = str(results)
    config["inference"]["engine"] = engine
    return config


def snakemake(
    workdir: Path, config: dict, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CODEIFT_ENGINE_DIR": short_engine_dir(workdir),
    }
    command = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(config_path),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


# Jobs of a group (generation with its scoring, task builds, mixes) are listed indented.
JOB = re.compile(r"^\s*rule (\w+):\n(?:\s+.*\n)*?\s+output: (.+)$", re.MULTILINE)


def planned_jobs(workdir: Path, config: dict) -> set[tuple[str, str]]:
    """(rule, alphabetically first output relative to results) of every job a dry run plans
    (Snakemake's own order of a job's outputs is not part of the plan)."""
    result = snakemake(workdir, config, "-n")
    text = result.stdout + result.stderr
    root = config["results"].rstrip("/") + "/"
    return {
        (rule, min(part.strip().replace(root, "") for part in outputs.split(",")))
        for rule, outputs in JOB.findall(text)
    }


def output_mtimes(results: Path) -> dict[str, int]:
    return {
        str(p.relative_to(results)): p.stat().st_mtime_ns
        for p in results.rglob("*")
        if p.is_file() and "logs" not in p.parts
    }


def nothing_to_do(workdir: Path, config: dict) -> bool:
    result = snakemake(workdir, config, "-n")
    return "Nothing to be done" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vllm")
    config = reduced_config(workdir / "results", engine="vllm")
    snakemake(workdir, config)
    return workdir, config


def test_full_run_writes_tables_figures_and_provenance(vllm_run):
    workdir, config = vllm_run
    results = Path(config["results"])
    task = pl.read_csv(results / "summary" / "task.csv")
    assert task.height == 1 * 3 * 2  # backbone x variant (base, code0, code100) x task
    assert set(task["variant"]) == {"base", "code0", "code100"}
    for view in ("overall", "domain", "task"):
        assert (results / "figures" / f"{view}.png").stat().st_size > 5000
        assert (results / "summary" / f"{view}.md").exists()
    generations = pl.read_parquet(
        results / "generations" / "tiny-llama" / "code100" / "gsm8k.parquet"
    )
    assert generations.height == 6
    assert set(generations["engine"]) == {"vllm"}
    assert generations["model_path"][0].endswith("models/tiny-llama/code100")
    training = (results / "models" / "tiny-llama" / "code100" / "codeift_training.json").read_text()
    assert '"global_step": 3' in training
    assert not (results / "checkpoints" / "tiny-llama" / "code100").exists()


def test_second_run_does_nothing(vllm_run):
    workdir, config = vllm_run
    assert nothing_to_do(workdir, config)
    before = output_mtimes(Path(config["results"]))
    snakemake(workdir, config)
    assert output_mtimes(Path(config["results"])) == before


def test_changing_the_engine_knobs_reruns_nothing(vllm_run):
    """`engines` changes speed, never an output: the generate jobs take it as an argument, not
    a param, so a changed value leaves every job up to date (a param change would rerun)."""
    workdir, config = vllm_run
    changed = {**config, "engines": {"idle_seconds": 7, "max_alive": 1}}
    assert config.get("engines") != changed["engines"]
    assert nothing_to_do(workdir, changed)


def test_generations_are_reproducible_in_process(vllm_run, tmp_path):
    """The shared engine gives the same greedy answers as an engine loaded by the job itself."""
    workdir, config = vllm_run
    results = Path(config["results"])
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    from codeift.config import backbone_inference

    settings = backbone_inference(config, "tiny-llama")
    import json

    out = tmp_path / "again.parquet"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "codeift",
            "generate",
            "--model",
            str(results / "models/tiny-llama/code0"),
            "--task-file",
            str(results / "tasks/list_reversal.parquet"),
            "--out",
            str(out),
            "--backbone",
            json.dumps({"name": "tiny-llama", "family": "llama", "size": "0.6M"}),
            "--variant",
            "code0",
            "--settings",
            settings.to_json(),
            "--engines",
            json.dumps({"idle_seconds": 0}),  # the job loads its own engine
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=900,
    )
    shared = pl.read_parquet(results / "generations/tiny-llama/code0/list_reversal.parquet")
    assert pl.read_parquet(out)["response"].to_list() == shared["response"].to_list()


@pytest.fixture(scope="module")
def incremental(tmp_path_factory):
    """A finished run with the transformers engine (the DAG logic does not depend on it)."""
    workdir = tmp_path_factory.mktemp("incremental")
    config = reduced_config(workdir / "results", engine="hf")
    snakemake(workdir, config)
    return workdir, config


def _run_and_check_untouched(workdir: Path, config: dict, expected: set[tuple[str, str]]) -> None:
    assert planned_jobs(workdir, config) == expected
    results = Path(config["results"])
    before = output_mtimes(results)
    snakemake(workdir, config)
    after = output_mtimes(results)
    changed = {path for path, stamp in before.items() if after.get(path) != stamp}
    assert changed <= {p for p in before if p.startswith(("summary/", "figures/"))}, changed
    assert nothing_to_do(workdir, config)


AGGREGATE = ("aggregate", min(f for o in study.OUTPUTS for f in o.files("summary", "figures")))


def test_adding_a_backbone_runs_only_its_jobs(incremental):
    workdir, config = incremental
    config["backbones"]["tiny-qwen2"] = {
        "source": {"tiny": {"architecture": "qwen2", "seed": 1, "corpus_examples": 400}},
        "family": "qwen2",
        "size": "0.6M",
    }
    expected = {("prepare_backbone", "models/tiny-qwen2/base"), AGGREGATE}
    expected |= {("sft", f"models/tiny-qwen2/code{p}") for p in (0, 100)}
    for variant in ("base", "code0", "code100"):
        for task in ("gsm8k", "list_reversal"):
            expected.add(("generate", f"generations/tiny-qwen2/{variant}/{task}.parquet"))
            expected.add(("score", f"scores/tiny-qwen2/{variant}/{task}.parquet"))
    _run_and_check_untouched(workdir, config, expected)


def test_adding_a_task_runs_only_its_jobs(incremental):
    workdir, config = incremental
    config["tasks"]["coin_flip"] = {"domain": "symbolic", "size": 6}
    expected = {("build_task", "tasks/coin_flip.parquet"), AGGREGATE}
    for backbone in config["backbones"]:
        for variant in ("base", "code0", "code100"):
            expected.add(("generate", f"generations/{backbone}/{variant}/coin_flip.parquet"))
            expected.add(("score", f"scores/{backbone}/{variant}/coin_flip.parquet"))
    _run_and_check_untouched(workdir, config, expected)


def new_arm_jobs(config: dict, arm: str) -> set[tuple[str, str]]:
    """The jobs a new arm needs: its mix, one SFT per backbone, its evaluations, the aggregate."""
    expected = {("build_mix", f"ift/mixes/{arm}.card.json"), AGGREGATE}
    for backbone in config["backbones"]:
        expected.add(("sft", f"models/{backbone}/{arm}"))
        for task in config["tasks"]:
            expected.add(("generate", f"generations/{backbone}/{arm}/{task}.parquet"))
            expected.add(("score", f"scores/{backbone}/{arm}/{task}.parquet"))
    return expected


def test_adding_a_proportion_runs_only_its_jobs(incremental):
    workdir, config = incremental
    config["proportions"] = [0, 50, 100]
    _run_and_check_untouched(workdir, config, new_arm_jobs(config, "code50"))
    task = pl.read_csv(Path(config["results"]) / "summary" / "task.csv")
    assert task.height == len(config["backbones"]) * 4 * len(config["tasks"])


def test_adding_a_replicate_arm_runs_only_its_jobs(incremental):
    """A second seed of an arm (the null control) adds its own mix, SFT and evaluations."""
    workdir, config = incremental
    config["replicates"] = {"proportions": [100]}
    _run_and_check_untouched(workdir, config, new_arm_jobs(config, "code100r1"))
    results = Path(config["results"])
    training = json.loads(
        (results / "models/tiny-llama/code100r1/codeift_training.json").read_text()
    )
    first = json.loads((results / "models/tiny-llama/code100/codeift_training.json").read_text())
    assert training["settings"]["seed"] == first["settings"]["seed"] + 1
    mix = pl.read_parquet(results / "ift/mixes/code100r1.parquet")
    assert set(mix["id"]) != set(pl.read_parquet(results / "ift/mixes/code100.parquet")["id"])
    null = pl.read_csv(results / "summary" / "controls.csv").filter(pl.col("control") == "null")
    assert set(null["variant"]) == {"code100r1"}
    assert null.height == len(config["backbones"]) * len(config["tasks"])
    assert "null control" in (results / "summary" / "summary.md").read_text()
    config.pop("replicates")


def test_each_model_loads_its_engine_once_whatever_the_order(tmp_path, monkeypatch):
    """Engines that idle out after 0.1 s and one alive at a time, SFT jobs slowed on purpose
    (the test-only step delay) so that base-model generation runs beside training: each
    model's engine starts once, and its first job generated its other task ahead, so the later
    job never needed the engine (test_engine_server removes the engine between jobs)."""
    from tests.hooks.codeift_test_hooks import use_hooks

    config = reduced_config(tmp_path / "results", engine="hf")
    config["engines"] = {"idle_seconds": 0.1, "max_alive": 1}
    use_hooks(monkeypatch, step_seconds=2)
    # One generation job at a time (as `make run-real`): a model's jobs come one after another,
    # each seconds after the last, so an engine that idles out would load again for each.
    snakemake(tmp_path, config, "--resources", "engine_slots=1")
    logs = sorted((tmp_path / "results" / "logs" / "generate").rglob("*.log"))
    assert len(logs) == 3 * len(config["tasks"])  # base, code0, code100
    starts = {
        str(log.relative_to(tmp_path)): log.read_text().count("started engine pid") for log in logs
    }
    assert sum(starts.values()) == 3, starts
    ahead = sum(log.read_text().count("replies generated ahead") for log in logs)
    assert ahead == 3 * (len(config["tasks"]) - 1), starts


BAD_CONFIGS = {
    "unknown key": (lambda c: c.update(learning_rate=1), "unknown key(s) ['learning_rate']"),
    "proportion out of range": (
        lambda c: c.update(proportions=[0, 120]),
        "config key 'proportions[1]'",
    ),
    "unknown domain": (
        lambda c: c["tasks"]["gsm8k"].update(domain="algebra"),
        "config key 'tasks.gsm8k.domain'",
    ),
    "backbone without source": (
        lambda c: c["backbones"]["tiny-llama"].pop("source"),
        "'source' is a required property",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_stops_before_any_job(tmp_path, name):
    mutate, message = BAD_CONFIGS[name]
    config = reduced_config(tmp_path / "results", engine="hf")
    mutate(config)
    result = snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_empty_ift_pool_fails_in_its_job_with_the_source_named(tmp_path):
    config = reduced_config(tmp_path / "results", engine="hf")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    config["ift"]["sources"] = [{"kind": "alpaca", "name": "mine", "path": str(empty)}]
    result = snakemake(tmp_path, config, str(tmp_path / "results/ift/pool.parquet"), check=False)
    assert result.returncode != 0
    log = (tmp_path / "results/logs/build_pool.log").read_text()
    assert "IFT source 'mine'" in log and "no valid records" in log
    assert not (tmp_path / "results/ift/pool.parquet").exists()


def test_the_example_config_dry_runs_as_the_readme_says(tmp_path):
    """docs/workflow.md, "Driving the workflow": .test/config.yaml from the repository root, results
    moved with --config; the plan is the reduced study's whole graph and writes nothing."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--quiet", "rules", "--cores", "2"]
        + ["--configfile", ".test/config.yaml", "--config", f"results={tmp_path / 'x'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE))
    # 1 backbone x (base + 2 arms) x 2 tasks evaluations; 2 arms trained
    assert counts == {
        "build_pool": "1", "build_task": "2", "prepare_backbone": "1", "build_mix": "2",
        "generate": "6", "score": "6", "sft": "2", "aggregate": "1", "all": "1", "total": "22",
    }  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_paper_config_dry_run_builds_the_whole_graph_offline(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-n",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "paper.yaml"),
            "--cores",
            "8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.MULTILINE))
    assert counts["prepare_backbone"] == "6" and counts["sft"] == "18"
    assert counts["generate"] == str(6 * 4 * 12) and counts["score"] == str(6 * 4 * 12)
    assert (
        counts["build_task"] == "12" and counts["build_mix"] == "3" and counts["aggregate"] == "1"
    )


# A placeholder in a rule's shell command: `{name}` (not `{{`, which is a literal brace).
PLACEHOLDER = re.compile(r"(?<!\{)\{(?!\{)([^{}]+)\}")


def shell_commands() -> dict[str, str]:
    """Each rule's shell command text, by `file:rule`."""
    commands = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE):
            shell = re.search(r"^    shell:\n((?:        .*\n)+)", body, re.MULTILINE)
            if shell:
                commands[f"{path.name}:{rule}"] = shell.group(1)
    return commands


def test_every_value_in_a_shell_command_is_quoted():
    commands = shell_commands()
    assert {"infer.smk:generate", "score.smk:score", "train.smk:sft"} <= set(commands)
    unquoted = {
        name: [field for field in PLACEHOLDER.findall(command) if not field.endswith(":q")]
        for name, command in commands.items()
    }
    assert not {name: fields for name, fields in unquoted.items() if fields}


def test_a_results_folder_with_a_space_and_a_command_in_its_name_runs_nothing(tmp_path):
    """`results` reaches every shell command: quoted, a name that holds a space and `$(...)`
    is one path, and the command in it never runs (a real build_task job)."""
    results = tmp_path / "my results $(touch pwned)"
    config = reduced_config(results, "vllm")
    target = results / "tasks" / "list_reversal.parquet"
    run = snakemake(tmp_path, config, str(target), check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert pl.read_parquet(target).height == config["tasks"]["list_reversal"]["size"]
    assert (results / "logs" / "build_task" / "list_reversal.log").exists()
    assert not list(tmp_path.rglob("pwned")) and not (REPO / "pwned").exists()
