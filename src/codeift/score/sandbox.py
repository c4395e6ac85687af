"""Run model-written Python programs in a limited child process and capture what they print.

Code-tuned models often answer with a program rather than prose, so scoring runs that program.
The program is untrusted, so each run gets its own interpreter (`python -I -S -B`, empty
environment, stdin closed), its own temporary working folder that is deleted afterwards, rlimits
(CPU, address space, file size, open files, processes), a wall-clock timeout that kills the whole
process group, and an audit hook (see `sandbox_runner`) that ends the run as soon as the
program tries to start a process, use the network, load native code or change files outside its
folder. Under root the child also drops to the unprivileged `nobody` user, because root ignores
RLIMIT_NPROC and file permissions. This contains careless code; it is not a hardened jail.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from codeift.score.sandbox_runner import BLOCKED_EXIT, BLOCKED_MARKER

RUNNER = Path(__file__).with_name("sandbox_runner.py")
STATUSES: tuple[str, ...] = ("ok", "timeout", "crashed", "blocked", "memory", "no_output")
NOBODY = 65534
_PYTHON_FLAGS = ("-I", "-S", "-B", "-X", "utf8")
_FENCE_RE = re.compile(
    r"^[ \t]*```[ \t]*([^\n`]*)\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE
)
_PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits; the defaults let a reasoning program finish and stop a runaway one fast."""

    wall_seconds: float = 5.0
    cpu_seconds: int = 4
    memory_bytes: int = 512 * 1024**2
    file_bytes: int = 16 * 1024**2
    open_files: int = 64
    processes: int = 128
    output_chars: int = 4000


@dataclass(frozen=True)
class ProgramRun:
    """How a program ended (`status`, one of STATUSES), what it printed, and why if not ok."""

    status: str
    stdout: str
    detail: str | None


def extract_program(response: str | None) -> str | None:
    """The last non-empty fenced Python block of a response, or None.

    Blocks tagged python/py count; untagged blocks count only when they parse as Python and do
    something (a call or a statement), so a fenced "42" or "[c, b, a]" answer is not a program.
    An unclosed final fence (a generation cut off at the token limit) runs to the end of the text.
    """
    if not response:
        return None
    programs = [
        code
        for tag, code in _FENCE_RE.findall(str(response))
        if code.strip() and _is_python_block(tag, code)
    ]
    return textwrap.dedent(programs[-1]).strip("\n") if programs else None


def _is_python_block(info: str, code: str) -> bool:
    tag = info.strip().split()[0].lower() if info.strip() else ""
    if tag:
        return tag in _PYTHON_TAGS
    return _looks_like_code(code)


def _looks_like_code(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if any(not isinstance(statement, ast.Expr) for statement in tree.body):
        return True
    return any(isinstance(node, ast.Call) for node in ast.walk(tree))


def run_program(source: str, limits: SandboxLimits | None = None) -> ProgramRun:
    """Run `source` in the sandbox and classify how it ended; never raises on the program."""
    limits = limits or SandboxLimits()
    user = _sandbox_user()
    with tempfile.TemporaryDirectory(
        prefix="codeift-sandbox-", ignore_cleanup_errors=True
    ) as outer_name:
        outer = Path(outer_name)
        work = outer / "work"
        work.mkdir()
        program = work / "program.py"
        program.write_text(source, encoding="utf-8")
        if user is not None:
            os.chown(work, user, user)
            os.chown(program, user, user)
        with open(outer / "stdout", "wb") as out, open(outer / "stderr", "wb") as err:
            command = _command(work, program, limits)
            returncode, timed_out = _execute(command, work, user, limits.wall_seconds, (out, err))
        stdout = _read_capped(outer / "stdout", limits.output_chars)
        stderr = _read_capped(outer / "stderr", limits.output_chars)
    return classify(returncode, timed_out, stdout, stderr)


def run_programs(
    sources: Sequence[str | None], limits: SandboxLimits | None = None, workers: int = 2
) -> list[ProgramRun | None]:
    """Run each program (None stays None) on a small thread pool, keeping the input order."""
    todo = [(index, source) for index, source in enumerate(sources) if source is not None]
    runs: list[ProgramRun | None] = [None] * len(sources)
    if not todo:
        return runs
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        finished = pool.map(lambda item: run_program(item[1], limits), todo)
        for (index, _), run in zip(todo, finished, strict=True):
            runs[index] = run
    return runs


def _command(work: Path, program: Path, limits: SandboxLimits) -> list[str]:
    config = {
        "root": str(work),
        "program": str(program),
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_bytes,
        "file_bytes": limits.file_bytes,
        "open_files": limits.open_files,
        "processes": limits.processes,
    }
    return [sys.executable, *_PYTHON_FLAGS, str(RUNNER), json.dumps(config)]


def _environment(work: Path) -> dict[str, str]:
    """Nothing inherited (no tokens, no proxies); temp files and HOME point into the folder."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}


def _execute(
    command: list[str], work: Path, user: int | None, wall_seconds: float, streams: tuple
) -> tuple[int, bool]:
    """Start the child in its own session and kill that whole group if the wall clock runs out.

    Limits are set by the runner itself rather than in `preexec_fn`, which CPython documents as
    unsafe when the parent has threads (scoring runs programs from a thread pool).
    """
    identity = {} if user is None else {"user": user, "group": user, "extra_groups": []}
    process = subprocess.Popen(
        command,
        cwd=work,
        env=_environment(work),
        stdin=subprocess.DEVNULL,
        stdout=streams[0],
        stderr=streams[1],
        close_fds=True,
        start_new_session=True,
        **identity,
    )
    try:
        return process.wait(timeout=wall_seconds), False
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        return process.wait(), True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_capped(path: Path, limit: int) -> str:
    """At most `limit` characters of a capture, keeping head and tail: answers come last."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size <= 4 * limit:
            text = handle.read().decode("utf-8", "replace")
        else:
            head = handle.read(2 * limit).decode("utf-8", "replace")
            handle.seek(size - 2 * limit)
            text = head + "\n" + handle.read().decode("utf-8", "replace")
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... output truncated ...]\n{text[-half:]}"


def classify(returncode: int, timed_out: bool, stdout: str, stderr: str) -> ProgramRun:
    """Map how the child ended onto a status; `detail` says why for every status but ok."""
    if timed_out or returncode == -signal.SIGXCPU:
        return ProgramRun("timeout", stdout, "time limit exceeded")
    if returncode == BLOCKED_EXIT and BLOCKED_MARKER in stderr:
        reason = stderr.rsplit(BLOCKED_MARKER, 1)[1].splitlines()[0].strip()
        return ProgramRun("blocked", stdout, reason)
    if returncode == -signal.SIGKILL:
        return ProgramRun("memory", stdout, "killed by SIGKILL (out of memory)")
    if returncode < 0:
        return ProgramRun("crashed", stdout, f"killed by {signal.Signals(-returncode).name}")
    last_line = _last_line(stderr)
    if returncode != 0 and last_line.startswith("MemoryError"):
        return ProgramRun("memory", stdout, last_line)
    if returncode != 0:
        return ProgramRun("crashed", stdout, last_line or f"exit status {returncode}")
    if not stdout:
        return ProgramRun("no_output", stdout, "the program printed nothing")
    return ProgramRun("ok", stdout, None)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@functools.lru_cache(maxsize=1)
def _sandbox_user() -> int | None:
    """`nobody` when running as root and that user can start the runner, else no change.

    Root ignores RLIMIT_NPROC and file permissions, so dropping it is the kernel-enforced layer
    under the audit hook; the probe keeps machines where `nobody` cannot reach the interpreter
    working (unprivileged, as before) instead of failing every run.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    probe = f"open({str(RUNNER)!r}).close()"
    try:
        result = subprocess.run(
            [sys.executable, *_PYTHON_FLAGS, "-c", probe],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return NOBODY if result.returncode == 0 else None
