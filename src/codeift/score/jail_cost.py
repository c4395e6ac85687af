"""What the program jail costs per program, measured for two source trees in one alternating run.

Each scoring job runs many short programs, so the jail's start-up cost per program (bwrap, the
seccomp filter, the per-run cgroup, the interpreter) is what matters. `measure` runs batches of
a trivial program through `codeift.score.sandbox.run_program` in a fresh interpreter per batch,
with one tree's sources first on its path, alternating between the trees ("before" and "after" a
change) so a machine shared with other work loads both alike; `uptime` is recorded around it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = "print(6 * 7)"
# Run in a fresh interpreter with one tree's sources first: prepare once, then time each program.
_WORKER = """
import json, sys, time
from codeift.score import sandbox
started = time.perf_counter()
boundary = sandbox.prepare("jail")
prepare = time.perf_counter() - started
times = []
for _ in range(int(sys.argv[1])):
    started = time.perf_counter()
    run = sandbox.run_program(sys.argv[2], sandbox.SandboxLimits(wall_seconds=30.0), boundary)
    times.append(time.perf_counter() - started)
    assert run.status == "ok" and run.stdout == "42", run
cgroup = bool(getattr(boundary, "cgroup", None))
print(json.dumps({"prepare": prepare, "times": times, "cgroup": cgroup}))
"""


def _batch(tree: Path, count: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, str(count), PROGRAM],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _commit(tree: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return result.stdout.strip() + ("+uncommitted" if dirty else "")


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "euid": os.geteuid(),
    }


def measure(trees: dict[str, Path], programs: int, rounds: int) -> dict:
    """Per-program wall times for each tree: `programs` in all, in `rounds` alternating batches."""
    per_batch = max(1, programs // rounds)
    samples: dict[str, list[float]] = {name: [] for name in trees}
    prepares: dict[str, list[float]] = {name: [] for name in trees}
    cgroup: dict[str, bool] = {}
    uptime_before = _uptime()
    started = time.time()
    for index in range(rounds):
        order = list(trees) if index % 2 == 0 else list(reversed(trees))
        for name in order:
            batch = _batch(trees[name], per_batch)
            samples[name].extend(batch["times"])
            prepares[name].append(batch["prepare"])
            cgroup[name] = batch["cgroup"]
    summary = {
        name: {
            "commit": _commit(trees[name]),
            "tree": str(trees[name]),
            "programs": len(times),
            "median_ms": round(1000 * statistics.median(times), 1),
            "mean_ms": round(1000 * statistics.fmean(times), 1),
            "p90_ms": round(1000 * sorted(times)[int(0.9 * (len(times) - 1))], 1),
            "min_ms": round(1000 * min(times), 1),
            "prepare_median_s": round(statistics.median(prepares[name]), 2),
            "memory_cgroup": cgroup[name],
            "times_ms": [round(1000 * value, 2) for value in times],
        }
        for name, times in samples.items()
    }
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "program": PROGRAM,
        "rounds": rounds,
        "machine": _machine(),
        "uptime_before": uptime_before,
        "uptime_after": _uptime(),
        "seconds": round(time.time() - started, 1),
        "trees": summary,
    }


def markdown(result: dict) -> str:
    """A short table of the result, with the command, commits and machine load."""
    lines = [
        "# Jail cost per program",
        "",
        f"Command: `{result['command']}`  ",
        f"Program: `{result['program']}`, run one at a time, {result['rounds']} alternating "
        "batches per tree, each batch in a fresh interpreter after one `prepare`.  ",
        "Machine: {kernel}, {cpu}, {cpus} CPUs, Python {python}, euid {euid}  ".format(
            **result["machine"]
        ),
        f"Load before: `{result['uptime_before']}`  ",
        f"Load after: `{result['uptime_after']}`",
        "",
        "| tree | commit | programs | median ms | mean ms | p90 ms | min ms | prepare s "
        "| memory cgroup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, tree in result["trees"].items():
        lines.append(
            f"| {name} | `{tree['commit'][:12]}{'+' if 'uncommitted' in tree['commit'] else ''}` "
            f"| {tree['programs']} | {tree['median_ms']} | {tree['mean_ms']} | {tree['p90_ms']} "
            f"| {tree['min_ms']} | {tree['prepare_median_s']} | {tree['memory_cgroup']} |"
        )
    lines += [
        "",
        "The machine was shared with other work while this ran (see the load above); the two "
        "trees alternate so both see the same load, and the medians compare better than means.",
        "",
    ]
    return "\n".join(lines)
