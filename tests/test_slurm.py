"""On a real SLURM: `snakemake --profile slurm` from the repository root, on a loopback cluster.

The cluster is the project's own (scripts/slurm/start-local-slurm.sh: slurmctld, slurmd,
slurmdbd with MariaDB, so `sacct` answers as on a site). The shipped profile is layered with
tests/slurm_loopback/, which changes only status-check timings. Needs root; as root (and
wherever CODEIFT_REQUIRE_SLURM=1) a cluster that cannot start fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from codeift.infer.generate import LOCAL_LOAD_MARK
from tests.conftest import REPO, short_engine_dir
from tests.hooks.codeift_test_hooks import STEP_DELAY_ENV, hooked_env
from tests.slurm_loopback import running_cluster
from tests.test_workflow import reduced_config

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


@pytest.fixture(scope="module")
def cluster():
    """A running loopback cluster; stopped afterwards only if this fixture started it."""
    yield from running_cluster()


def loopback_config(results: str, **train: int) -> dict:
    """The reduced study cut to what a scheduler test needs: two small tasks (a model's
    generation must travel as one submission), no base evaluation (two arms still give the
    aggregate its comparison); each SLURM job costs its own start-up."""
    config = reduced_config(Path(results), "vllm")
    config["train"].update(train)
    config["evaluate_base"] = False
    config["tasks"] = {
        "list_reversal": {"domain": "symbolic", "size": 4},
        "gsm8k": {"domain": "arithmetic", "size": 4},
    }
    config["controls"] = {"planted": {"list_reversal": "gain"}}
    return config


def one_arm_config(steps: int, every: int) -> dict:
    """One SFT arm that checkpoints every `every` of its `steps` steps (the resume tests)."""
    config = loopback_config("results", max_steps=steps, save_steps=every, logging_steps=every)
    config["proportions"] = [0]
    return config


# The resume tests send only the SFT job to SLURM: its inputs are built locally first.
SFT_INPUTS = ("results/models/tiny-llama/base", "results/ift/mixes/code0.parquet")
SFT_TARGET = "results/models/tiny-llama/code0"


def build_sft_inputs(workdir: Path, config: dict) -> None:
    built = snakemake_at_root(workdir, config, "--cores", "2", *SFT_INPUTS, profile=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]


def snakemake_at_root(
    workdir: Path, config: dict, *args: str, profile: bool = True, step_delay: float = 0
) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm` typed in the repository root, state kept in `workdir`.
    `step_delay` sets the test-only SFT step delay (tests/hooks) in the environment,
    which sbatch passes to every job (the executor submits with --export=ALL)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    profiles = ["--profile", "slurm", "--profile", "tests/slurm_loopback"] if profile else []
    command = [
        str(BIN / "snakemake"),
        *profiles,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        f"--configfile={config_path}",  # one value: targets may follow
        *args,
    ]
    env = hooked_env(
        {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "CODEIFT_ENGINE_DIR": short_engine_dir(workdir),
        },
        step_seconds=step_delay or None,
    )
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=2400)


def accounting(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """sacct's view of our jobs: id -> (state, comment)."""
    listed = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Comment", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("|", 2) for line in listed.stdout.splitlines() if line.strip()]
    return {row[0]: (row[1], row[2]) for row in rows}


def accounted(job_ids: list[str], timeout: float = 120) -> dict[str, tuple[str, str]]:
    """Accounting lags the controller by a few seconds: wait until every job is in it."""
    deadline = time.time() + timeout
    while True:
        seen = accounting(job_ids)
        if set(seen) >= set(job_ids) or time.time() > deadline:
            return seen
        time.sleep(2)


def result_frames(results: Path) -> dict[str, pl.DataFrame]:
    frames = {
        str(path.relative_to(results)): pl.read_parquet(path)
        for path in sorted(results.glob("scores/**/*.parquet"))
    }
    frames["summary/task.csv"] = pl.read_csv(results / "summary" / "task.csv")
    return frames


def test_profile_resolves_from_the_repository_root():
    from snakemake.cli import get_profile_dir

    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        folder, config_file = get_profile_dir("slurm")
    finally:
        os.chdir(cwd)
    assert Path(config_file).resolve() == REPO / "profiles" / "slurm" / "config.yaml"
    profile = yaml.safe_load(Path(config_file).read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1


def test_study_runs_on_slurm_as_it_runs_locally(cluster, tmp_path):
    config = loopback_config("results")
    local = snakemake_at_root(tmp_path / "local", config, "--cores", "2", profile=False)
    assert local.returncode == 0, local.stderr[-4000:]

    started = time.time()
    run = snakemake_at_root(tmp_path / "slurm", config)
    seconds = time.time() - started
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    log = run.stdout + run.stderr
    job_ids = SUBMITTED.findall(log)
    print(f"slurm run: {len(job_ids)} SLURM jobs in {seconds:.0f}s")

    # Every job but the target rule went through sbatch, and sacct saw each one complete.
    assert not [line for line in log.splitlines() if re.match(r"^localrule (?!all:)", line)]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", log.split("Job stats:")[1], re.MULTILINE))
    assert int(stats["total"]) - 1 > len(job_ids) > 0  # small jobs travelled in groups
    states = accounted(job_ids)
    assert set(states) == set(job_ids)
    assert {state for state, _ in states.values()} == {"COMPLETED"}, states
    comments = " ".join(comment for _, comment in states.values())
    for rule in ("build_pool", "build_mix", "build_task", "prepare_backbone", "sft", "generate"):
        assert rule in comments, f"no SLURM job ran {rule}: {comments}"
    assert "group_tasks" in log or "rule_tasks_build_task" in comments

    # A model's generation is one submission with one engine load for all its tasks; its
    # scoring is another submission, which asks for no GPU.
    models = [("tiny-llama", f"code{p}") for p in config["proportions"]]
    by_kind = {
        kind: [job for job, (_, comment) in states.items() if comment.startswith(f"rule_{kind}_")]
        for kind in ("generate", "score")
    }
    assert len(by_kind["generate"]) == len(by_kind["score"]) == len(models), states
    results = tmp_path / "slurm" / "results"
    for backbone, variant in models:
        logs = [
            (results / "logs" / "generate" / backbone / variant / f"{task}.log").read_text()
            for task in config["tasks"]
        ]
        assert sum(log.count(LOCAL_LOAD_MARK) for log in logs) == 1, logs
        assert not any("started engine pid" in log for log in logs), logs
        assert sum("replies generated ahead by an earlier job" in log for log in logs) == 1
    requested = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,ReqTRES", "-j", ",".join(by_kind["score"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert requested.count("cpu=") == len(models) and "gpu" not in requested, requested

    # The same results as the local run, byte for byte in every scored table.
    local_frames = result_frames(tmp_path / "local" / "results")
    slurm_frames = result_frames(tmp_path / "slurm" / "results")
    assert local_frames.keys() == slurm_frames.keys()
    for name, frame in local_frames.items():
        assert frame.equals(slurm_frames[name]), name

    # A second invocation finds nothing to do and submits nothing.
    again = snakemake_at_root(tmp_path / "slurm", config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not SUBMITTED.findall(again.stdout + again.stderr)
    assert "Nothing to be done" in again.stdout + again.stderr


def _sft_job(arm: str) -> str | None:
    """The SLURM id of the running SFT job of one arm (its comment names the rule and wildcards)."""
    queue = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True
    )
    for line in queue.stdout.splitlines():
        job_id, _, comment = line.partition("|")
        if comment.startswith("rule_sft_") and comment.endswith(f"_{arm}"):
            return job_id
    return None


def test_cancelled_training_resumes_from_its_checkpoint(cluster, tmp_path):
    # The first run sleeps after each step (the test-only delay), so it is still training when
    # its first checkpoint appears whatever the machine's speed; the rerun resumes at full speed.
    steps, every, delay = 40, 2, 4
    config = one_arm_config(steps, every)
    workdir = tmp_path / "kill"
    build_sft_inputs(workdir, config)
    env = hooked_env(
        {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}, step_seconds=delay
    )
    # The shipped profile would resubmit the cancelled job itself (retries: 2), resuming the
    # same way; without retries the test can look at the state between the two runs.
    command = [
        str(BIN / "snakemake"),
        *("--profile", "slurm", "--profile", "tests/slurm_loopback", "--retries", "0"),
        *("-s", str(REPO / "Snakefile"), "-d", str(workdir)),
        f"--configfile={workdir / 'config.yaml'}",
        SFT_TARGET,
    ]
    first = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    checkpoints = workdir / "results" / "checkpoints" / "tiny-llama" / "code0"
    cancelled = None
    deadline = time.time() + 900
    while time.time() < deadline and first.poll() is None:
        saved = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        job_id = _sft_job("code0")
        if saved and job_id:
            subprocess.run(["scancel", job_id], check=True)
            cancelled = job_id
            break
        time.sleep(0.5)
    output, _ = first.communicate(timeout=900)
    assert cancelled, f"no checkpoint appeared while the SFT job ran:\n{output[-4000:]}"
    assert first.returncode != 0, "the run should fail: its SFT job was cancelled"
    assert accounted([cancelled])[cancelled][0].startswith("CANCELLED")

    # Nothing that looks finished; the checkpoints stay for the rerun.
    results = workdir / "results"
    assert not (results / "models" / "tiny-llama" / "code0").exists()
    left = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert left and 0 < left[-1] < steps

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    record = json.loads(
        (results / "models" / "tiny-llama" / "code0" / "codeift_training.json").read_text()
    )
    assert record["resumed_from"] is not None
    resumed_at = int(record["resumed_from"].rsplit("-", 1)[1])
    assert resumed_at in left
    assert record["global_step"] == steps
    log = (results / "logs" / "sft" / "tiny-llama" / "code0.log").read_text()
    assert f"resuming from {record['resumed_from']}" in log
    assert f"{STEP_DELAY_ENV}={delay}: not applied (resuming)" in log
    assert not list(checkpoints.glob("checkpoint-*")), "a finished model keeps no checkpoints"


def test_paper_study_submits_76_slurm_jobs(tmp_path):
    """Grouping keeps the queue short: 617 jobs of the paper study travel as 76 submissions
    (316 when each generation travelled with its scoring): one GPU generation submission per
    model (24, not 288) and its scoring as one CPU submission."""
    from codeift.cluster import GENERATE_GROUP, SCORE_GROUP, count_submissions

    dry_run = subprocess.run(
        [
            *(str(BIN / "snakemake"), "-n", "--profile", "slurm", "--forceall"),
            *("-s", str(REPO / "Snakefile"), "-d", str(tmp_path)),
            *("--configfile", str(REPO / "config" / "paper.yaml")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert dry_run.returncode == 0, dry_run.stderr[-3000:]
    counts = count_submissions(dry_run.stdout + dry_run.stderr)
    assert counts["total_jobs"] == 617
    assert counts["submissions"] == {
        "aggregate": 1,
        "build_pool": 1,
        f"group {GENERATE_GROUP}": 24,
        "group mixes": 1,
        f"group {SCORE_GROUP}": 24,
        "group tasks": 1,
        "prepare_backbone": 6,
        "sft": 18,
    }
    assert counts["total_submissions"] == 76


def slurm_log(workdir: Path, job_id: str) -> str:
    """What a SLURM job printed (the executor keeps the logs of jobs that did not complete)."""
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob(f"{job_id}.log"))
    assert len(logs) == 1, f"SLURM log of job {job_id}: found {logs}"
    return logs[0].read_text()


def test_a_job_past_its_time_limit_is_retried_with_more_time_up_to_the_cap(cluster, tmp_path):
    """The shipped retries on a real scheduler: an SFT job given one minute hits TIMEOUT, the
    profile resubmits it with more time (x retry_scale, capped at the partition's limit in
    resources.limits) and the same memory (a time-out is not a memory failure: codeift.retries
    reads it from the job's log), and it resumes from its checkpoint.

    Independent of the machine's speed: the first attempt sleeps 4 s after each step (the
    test-only delay), so its 40 steps need over 160 s, far past the minute (SLURM kills a job
    within about 30 s + KillWait of its limit), while its first checkpoint comes 8 s into
    training (job start-up here is about 20 s); the retry resumes, which disables the delay, and
    trains the rest at the machine's own speed, seconds of its twenty minutes.
    """
    steps, every, delay = 40, 2, 4
    config = one_arm_config(steps, every)
    tiny = {"max_size": "100M", "gpus": 0, "cpus": 2, "mem_mb": 1000, "runtime": 1}
    # x 30 would ask 30 minutes: the partition's 20 (the generation tier's own request) caps it.
    config["resources"] = {"sft": [tiny], "retry_scale": 30, "limits": {"runtime": 20}}
    workdir = tmp_path / "retry"
    build_sft_inputs(workdir, config)
    run = snakemake_at_root(workdir, config, SFT_TARGET, step_delay=delay)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    sft_jobs = [
        job_id
        for job_id, (_, comment) in accounted(SUBMITTED.findall(run.stdout + run.stderr)).items()
        if comment.startswith("rule_sft_")
    ]
    limits = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Timelimit,ReqMem", "-j", ",".join(sft_jobs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rows = sorted((line.split("|") for line in limits), key=lambda row: int(row[0]))
    assert [row[1] for row in rows] == ["TIMEOUT", "COMPLETED"], rows
    assert [row[2] for row in rows] == ["00:01:00", "00:20:00"], rows  # 30 min capped at 20
    assert [row[3] for row in rows] == ["1000M", "1000M"], rows

    # The delay reached the first job through sbatch, and it had saved a checkpoint.
    first = slurm_log(workdir, rows[0][0])
    assert f"{STEP_DELAY_ENV}={delay}: sleeping after each step" in first, first[-3000:]
    results = workdir / "results"
    record = json.loads(
        (results / "models" / "tiny-llama" / "code0" / "codeift_training.json").read_text()
    )
    assert record["resumed_from"] is not None, record
    resumed_at = int(record["resumed_from"].rsplit("-", 1)[1])
    assert 0 < resumed_at < steps and resumed_at % every == 0, record["resumed_from"]
    assert record["global_step"] == steps
    second = (results / "logs" / "sft" / "tiny-llama" / "code0.log").read_text()
    assert f"resuming from {record['resumed_from']}" in second
    assert f"{STEP_DELAY_ENV}={delay}: not applied (resuming)" in second
