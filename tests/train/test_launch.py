"""Multi-GPU SFT proven without a GPU: the launch path of a multi-GPU job, run with 2 CPU processes.

`codeift sft --launch {"gpus": 2, ...}` relaunches itself exactly as on a GPU node (accelerate
with train/accelerate/fsdp.yaml, or torchrun for DDP); on CPU the processes talk over gloo.
accelerate runs plain data parallelism on CPU whatever its config says (its FSDP needs an
accelerator), so the FSDP strategy is proven here up to its launch; the sharding itself, FSDP2's
`fully_shard` on the same model, is proven through torchrun in
test_fsdp2_shards_the_model_and_gathers_the_full_weights.

The SLURM test gives the loopback cluster's node GPUs as a generic resource (their device files
are /dev/null), submits only an SFT job asking for 2 through the shipped profile, and checks that
the job step read its GPU count from SLURM and started that many processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeift.settings import TrainSettings
from codeift.train.launch import (
    SLURM_GPUS_VARIABLE,
    LaunchError,
    allocated_launch,
    free_port,
    needs_relaunch,
    slurm_gpus,
)
from tests.hooks.codeift_test_hooks import hooked_env

HERE = Path(__file__).parent
STEPS, EVERY = 4, 2
# The same global batch of 4 conversations: 2 processes x 2, or 1 process x 4.
SETTINGS = {
    **TrainSettings.defaults(),
    "max_steps": STEPS,
    "save_steps": EVERY,
    "logging_steps": 1,
    "max_length": 128,
    "dtype": "float32",
    "learning_rate": 1e-3,
    "threads": 1,
}


# -- the allocation's GPU count ------------------------------------------------------------------


def test_slurm_gpus_reads_the_allocation():
    assert slurm_gpus({}) is None
    assert slurm_gpus({SLURM_GPUS_VARIABLE: ""}) is None
    assert slurm_gpus({SLURM_GPUS_VARIABLE: "2"}) == 2
    with pytest.raises(LaunchError, match=SLURM_GPUS_VARIABLE):
        slurm_gpus({SLURM_GPUS_VARIABLE: "gpu:2"})


def test_a_gpu_job_inside_slurm_starts_one_process_per_allocated_gpu():
    launch = allocated_launch({"gpus": 2, "strategy": "fsdp"}, {SLURM_GPUS_VARIABLE: "2"})
    assert launch == {"gpus": 2, "strategy": "fsdp", "gpus_from": SLURM_GPUS_VARIABLE}
    assert needs_relaunch(launch, environ={})
    # Outside SLURM the request stands; a CPU job ignores GPUs a site hands out anyway.
    assert allocated_launch({"gpus": 2}, {}) == {"gpus": 2}
    assert allocated_launch({"gpus": 0}, {SLURM_GPUS_VARIABLE: "4"}) == {"gpus": 0}


def test_an_allocation_other_than_the_request_is_refused():
    with pytest.raises(LaunchError, match=r"allocated 2 GPUs.*asked for 4"):
        allocated_launch({"gpus": 4, "strategy": "ddp"}, {SLURM_GPUS_VARIABLE: "2"})


# -- two gloo processes against one --------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from codeift.data.labels import label_pool
    from codeift.data.mix import build_mix
    from codeift.data.pool import build_pool
    from codeift.io import write_parquet
    from codeift.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("launch")
    build_tiny({"architecture": "llama", "corpus_examples": 200}, root / "base")
    pool, _ = build_pool([{"kind": "generator", "n_general": 80, "n_code": 80}], seed=0)
    write_parquet(build_mix(label_pool(pool), 50, total=40, seed=0), root / "mix.parquet")
    return root


def sft_command(root: Path, run: Path, settings: dict, launch: dict | None = None) -> list[str]:
    command = [
        *(sys.executable, "-m", "codeift", "sft"),
        *("--model", str(root / "base"), "--mix", str(root / "mix.parquet")),
        *("--out", str(run / "tuned"), "--checkpoints", str(run / "ckpt")),
        *("--settings", json.dumps(settings)),
    ]
    return [*command, "--launch", json.dumps(launch)] if launch else command


def record_of(run: Path) -> dict:
    return json.loads((run / "tuned" / "codeift_training.json").read_text())


@pytest.fixture(scope="module")
def single_process(inputs):
    """The reference: one process, a micro-batch of 4, the same data and steps."""
    run = inputs / "single"
    settings = {**SETTINGS, "per_device_train_batch_size": 4}
    done = subprocess.run(sft_command(inputs, run, settings), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return record_of(run)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a launcher and all its workers, as SLURM does to a cancelled job's processes.
    Not by process group: torchrun starts each worker in a session of its own."""
    import psutil

    try:
        tree = [*psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    os.kill(process.pid, signal.SIGKILL)
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()
    psutil.wait_procs(tree, timeout=30)


def tensors(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every tensor in a safetensors file, read from its header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {
            name: (
                str(handle.get_slice(name).get_dtype()),
                tuple(handle.get_slice(name).get_shape()),
            )
            for name in handle.keys()
        }


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, launcher", [("fsdp", "accelerate.commands.launch"), ("ddp", "torch.distributed.run")]
)
def test_two_processes_match_one_and_a_killed_job_resumes(
    inputs, single_process, tmp_path, strategy, launcher
):
    """World size 2 over gloo: killed mid-run, rerun, the job resumes from its mid-run
    checkpoint and its loss at every step equals the single process's on the same global batch;
    rank 0 alone publishes one complete model in float32 (CPU) of the base's shapes."""
    settings = {**SETTINGS, "per_device_train_batch_size": 2}
    command = sft_command(inputs, tmp_path, settings, {"gpus": 2, "strategy": strategy})
    # The test-only step delay keeps the first run training while its first checkpoint appears.
    first = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=hooked_env(step_seconds=3),
    )
    deadline = time.time() + 300
    try:
        while not list((tmp_path / "ckpt").glob(f"checkpoint-{EVERY}/trainer_state.json")):
            assert first.poll() is None and time.time() < deadline, "training ended early"
            time.sleep(0.2)
        time.sleep(0.5)  # the other rank's RNG state is written beside it
    finally:
        kill_tree(first)
    assert not (tmp_path / "tuned").exists()  # nothing downstream sees a partial model

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"[codeift] 2 GPUs: {sys.executable} -m {launcher}" in second.stdout
    record = record_of(tmp_path)
    assert record["world_size"] == 2
    assert record["global_batch_size"] == 4 == single_process["global_batch_size"]
    resumed_at = int(record["resumed_from"].rsplit("-", 1)[1])
    assert 0 < resumed_at < STEPS and resumed_at % EVERY == 0
    assert record["global_step"] == STEPS
    assert len(record["loss_history"]) == STEPS
    assert record["loss_history"] == pytest.approx(single_process["loss_history"], rel=1e-4)
    # (train_tokens is TRL's count since the resume; num_input_tokens_seen is restored with the
    # trainer state, so it counts the whole run, padding to each rank's longest included.)
    # Rank 0 published once: one summary line, no staging folder, checkpoints gone.
    assert second.stdout.count('"global_step"') == 1
    assert not list(tmp_path.glob(".tuned.partial*"))
    assert not (tmp_path / "ckpt").exists()
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {
        path.name for path in (tmp_path / "tuned").iterdir()
    }
    # The weights: every tensor of the base, same shapes, in the training dtype (float32 on CPU).
    saved = tensors(tmp_path / "tuned" / "model.safetensors")
    base = tensors(inputs / "base" / "model.safetensors")
    assert {name: shape for name, (_, shape) in saved.items()} == {
        name: shape for name, (_, shape) in base.items()
    }
    assert {dtype for dtype, _ in saved.values()} == {"F32"}
    size = (tmp_path / "tuned" / "model.safetensors").stat().st_size
    assert size == (inputs / "base" / "model.safetensors").stat().st_size


@pytest.mark.slow
def test_fsdp2_shards_the_model_and_gathers_the_full_weights(inputs, tmp_path):
    """What accelerate's FSDP does on GPUs, here through torchrun on CPU: FSDP2 `fully_shard`
    on the tiny base (per decoder layer, then the root), two gloo ranks each holding half the
    parameters, trains to the same losses as one unsharded process on the same batches, and
    gathers full weights of the base's dtype and shapes on rank 0."""
    out = tmp_path / "fsdp2"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2"),
        *("--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}"),
        str(HERE / "fsdp2_worker.py"),
        *(str(inputs / "base"), str(out)),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    assert report["sharded"] == [True, True]  # each rank held a shard (a DTensor), not a replica
    assert 0 < report["local_numel"][0] < report["full_numel"]
    assert report["sharded_losses"] == pytest.approx(report["single_losses"], rel=1e-4)
    saved = tensors(out / "model.safetensors")
    base = tensors(inputs / "base" / "model.safetensors")
    assert {name: shape for name, (_, shape) in saved.items()} == {
        name: shape for name, (_, shape) in base.items()
    }
    assert {dtype for dtype, _ in saved.values()} == {"F32"}


# -- on the loopback SLURM cluster ---------------------------------------------------------------


def test_as_root_a_cluster_that_cannot_start_fails_the_slurm_tests():
    """Root can install and start the loopback cluster, so by default a failure to start is a
    test failure there, not a skip; the variable decides either way when set."""
    from tests.slurm_loopback import REQUIRE_ENV, slurm_required

    assert slurm_required({}, euid=0)
    assert not slurm_required({}, euid=1000)
    assert not slurm_required({REQUIRE_ENV: "0"}, euid=0)
    assert slurm_required({REQUIRE_ENV: "1"}, euid=1000)
    with pytest.raises(ValueError, match=REQUIRE_ENV):
        slurm_required({REQUIRE_ENV: "yes"}, euid=0)


@pytest.fixture(scope="module")
def cluster():
    from tests.slurm_loopback import running_cluster

    yield from running_cluster()


@pytest.mark.slow
def test_a_slurm_job_given_two_gpus_starts_two_processes(cluster, tmp_path):
    """Only the SFT job goes to SLURM (its inputs are built locally), asking for 2 GPUs of the
    node's generic resource; sacct shows them allocated, and the job step took its count from
    SLURM's environment and trained with world size 2 (gloo processes on CPU)."""
    from tests.test_slurm import (
        SFT_INPUTS,
        SFT_TARGET,
        SUBMITTED,
        accounted,
        build_sft_inputs,
        one_arm_config,
        snakemake_at_root,
    )

    config = one_arm_config(steps=2, every=2)
    two_gpus = {"max_size": "100M", "gpus": 2, "cpus": 1, "mem_mb": 3000, "runtime": 10}
    config["resources"] = {"sft": [two_gpus], "strategy": "ddp"}
    workdir = tmp_path / "gres"
    build_sft_inputs(workdir, config)
    assert all((workdir / path).exists() for path in SFT_INPUTS)
    run = snakemake_at_root(workdir, config, SFT_TARGET)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    job_ids = SUBMITTED.findall(run.stdout + run.stderr)
    assert len(job_ids) == 1, job_ids
    assert accounted(job_ids)[job_ids[0]][0] == "COMPLETED"
    tres = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "AllocTRES", "-j", job_ids[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "gres/gpu=2" in tres, tres
    results = workdir / "results"
    log = (results / "logs" / "sft" / "tiny-llama" / "code0.log").read_text()
    assert f"[codeift] 2 GPUs ({SLURM_GPUS_VARIABLE}): " in log, log[-3000:]
    assert "torch.distributed.run --nnodes 1 --nproc_per_node 2" in log
    record = json.loads(
        (results / "models" / "tiny-llama" / "code0" / "codeift_training.json").read_text()
    )
    assert record["world_size"] == 2
    assert record["device"] == "cpu"
