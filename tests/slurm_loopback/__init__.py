"""The loopback SLURM cluster the SLURM tests run on (scripts/slurm/start-local-slurm.sh).

One policy for every test that needs it: where the cluster cannot start, the test fails when
a cluster is required and skips otherwise. It is required when CODEIFT_REQUIRE_SLURM=1, and by
default as root (root can install and start it: a cluster that does not start there is a
broken install, and a skipped test would let `make test` report success). Set
CODEIFT_REQUIRE_SLURM=0 to let a root run skip.

This folder is also the profile layered over profiles/slurm by the tests (its config.yaml).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START = REPO / "scripts" / "slurm" / "start-local-slurm.sh"
STOP = REPO / "scripts" / "slurm" / "stop-local-slurm.sh"
REQUIRE_ENV = "CODEIFT_REQUIRE_SLURM"


def slurm_required(environ: dict[str, str] | None = None, euid: int | None = None) -> bool:
    """Whether a cluster that cannot start fails the test (True) or skips it (False)."""
    env = os.environ if environ is None else environ
    value = env.get(REQUIRE_ENV, "").strip()
    if value in ("0", "1"):
        return value == "1"
    if value:
        raise ValueError(f"{REQUIRE_ENV}={value!r}: expected 1 (required) or 0 (may skip)")
    return (os.geteuid() if euid is None else euid) == 0


def unavailable(reason: str) -> None:
    """Fail (cluster required) or skip, saying why."""
    if slurm_required():
        pytest.fail(f"the loopback SLURM cluster is required ({REQUIRE_ENV}, root) but {reason}")
    pytest.skip(reason)


def cluster_answers() -> bool:
    if not shutil.which("scontrol"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return "UP" in ping.stdout


def running_cluster() -> Iterator[None]:
    """Start the cluster (idempotent) for the tests of a module; stop it afterwards only if it
    was not running before. Use as the body of a module-scoped fixture."""
    if os.geteuid() != 0:
        unavailable("the loopback SLURM cluster needs root (it installs Debian packages)")
    if not shutil.which("apt-get") and not shutil.which("sbatch"):
        unavailable("neither SLURM nor apt-get is on this machine")
    was_up = cluster_answers()
    started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=1200)
    if started.returncode != 0:
        unavailable(f"{START.name} failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")
    yield
    if not was_up:
        subprocess.run(["bash", str(STOP)], capture_output=True, timeout=300)
