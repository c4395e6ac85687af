"""How an SFT job starts inside its allocation: one plain process, or one process per GPU.

A job whose backbone asks for more than one GPU relaunches `codeift sft` under a
distributed launcher within the same allocation: `accelerate launch` with the FSDP config
in codeift/train/accelerate/ (sharded: a 7B full fine-tune does not fit one GPU replicated), or
`torchrun` for plain data parallelism (DDP). CPU jobs and single-GPU jobs run in-process.

Inside a SLURM allocation the process count is the allocation's, read from SLURM's environment
(SLURM_GPUS_ON_NODE): the job starts one process per GPU it was given, and refuses to start when
that differs from what the rule asked for, since the GPU count sets the global batch.

On CPU (tests/train/test_launch.py) both launchers start gloo processes; accelerate then runs plain
data parallelism (its FSDP needs an accelerator), so the FSDP config is proven on CPU only up to
the launch itself.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from codeift.errors import LaunchError
from codeift.settings import ResourceSettings

ACCELERATE_DIR = Path(__file__).parent / "accelerate"
STRATEGIES = ("fsdp", "ddp")
# Set by torchrun and accelerate in every worker: a worker never relaunches itself.
WORKER_VARIABLES = ("LOCAL_RANK", "WORLD_SIZE")
# Set by SLURM in a job (and each of its steps) allocated GPUs on this node, device files or not.
SLURM_GPUS_VARIABLE = "SLURM_GPUS_ON_NODE"


def is_worker(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(name in env for name in WORKER_VARIABLES)


def slurm_gpus(environ: dict[str, str] | None = None) -> int | None:
    """The GPUs SLURM allocated to this job on this node, or None outside a GPU allocation."""
    env = os.environ if environ is None else environ
    raw = env.get(SLURM_GPUS_VARIABLE, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise LaunchError(f"{SLURM_GPUS_VARIABLE}={raw!r}: expected a whole number of GPUs")
    return int(raw)


def allocated_launch(
    launch: dict[str, Any], environ: dict[str, str] | None = None
) -> dict[str, Any]:
    """The launch of this allocation: a GPU job inside SLURM starts one process per GPU SLURM
    gave it. A count other than the request is refused (the settings' global batch assumes the
    requested count): it comes from a profile that overrides the rule's GPU resource."""
    requested = int(launch.get("gpus", 0))
    allocated = slurm_gpus(environ)
    if allocated is None or requested == 0:
        return {**launch, "gpus": requested}
    if allocated != requested:
        raise LaunchError(
            f"SLURM allocated {allocated} GPUs ({SLURM_GPUS_VARIABLE}) but the SFT job asked for"
            f" {requested} (its backbone's resources.sft gpus): set the GPU count in the study"
            " config, not in the profile, since it sets the global batch"
        )
    return {**launch, "gpus": allocated, "gpus_from": SLURM_GPUS_VARIABLE}


def free_port() -> int:
    """A free TCP port for the rendezvous: two jobs on one node must not share 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train_command(
    launch: dict[str, Any],
    train_args: list[str],
    port: int,
    python: str = sys.executable,
    accelerate_dir: Path = ACCELERATE_DIR,
) -> list[str]:
    """The command that runs `codeift sft <train_args>` for this allocation."""
    gpus = int(launch.get("gpus", 0))
    strategy = launch.get("strategy", ResourceSettings.default("strategy"))
    if strategy not in STRATEGIES:
        raise LaunchError(f"launch strategy {strategy!r} is not allowed (allowed: {STRATEGIES})")
    module = ["-m", "codeift", "sft", *train_args]
    if gpus <= 1:
        return [python, *module]
    if strategy == "ddp":
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc_per_node",
            str(gpus),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"127.0.0.1:{port}",
            *module,
        ]
    return [
        python,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_dir / "fsdp.yaml"),
        "--num_processes",
        str(gpus),
        "--num_machines",
        "1",
        "--main_process_port",
        str(port),
        *module,
    ]


def needs_relaunch(launch: dict[str, Any], environ: dict[str, str] | None = None) -> bool:
    return int(launch.get("gpus", 0)) > 1 and not is_worker(environ)
