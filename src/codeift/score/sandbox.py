"""Run model-written Python programs in a limited child process and capture what they print.

Code-tuned models often answer with a program rather than prose, so scoring runs that program.
The program is untrusted input, so by default each run happens inside the operating-system jail
of `codeift.score.jail` (bubblewrap namespaces, unprivileged uid, no capabilities, seccomp, an empty
tmpfs work folder). Inside it the runner (`python -I -S -B`, empty environment, stdin closed)
sets rlimits (CPU, address space, file size, open files, processes) and installs the audit hook
of `sandbox_runner` as a second layer; a wall-clock timeout kills the whole run, and a memory
cgroup per run (where one can be had) caps what it holds in all. How a run ended is judged from
outside the program (`classify`). Where the jail cannot be set up, programs are not run
(`not_run`) unless the config opts into the Python-only guard (`scoring.sandbox: python_guard`),
the old, weaker mode.
Under the default `scoring.sandbox: jail` a jail that cannot be set up stops the score job with
the install hint (`require`); `jail_if_available` scores without running programs instead.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from codeift.score import cgroups, jail
from codeift.score.answer_text import fenced_blocks
from codeift.score.sandbox_runner import BLOCKED, BLOCKED_EXIT, MARKER, MEMORY, MEMORY_EXIT

RUNNER = Path(__file__).with_name("sandbox_runner.py")
STATUSES: tuple[str, ...] = (
    "ok",
    "timeout",
    "crashed",
    "blocked",
    "memory",
    "no_output",
    "not_run",
)
NOBODY = jail.NOBODY
LOG = logging.getLogger("codeift.score.sandbox")
LEFTOVERS: list[str] = []  # host work folders that could not be removed (python_guard only)
_LEFTOVER_LOCK = threading.Lock()
_PYTHON_FLAGS = ("-I", "-S", "-B", "-X", "utf8")
_PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})
GUARD_PREFIX = "codeift-sandbox-"  # python_guard's host work folders: GUARD_PREFIX<pid>-*
GATE_EXIT = 125  # the gate shell's exit when the run could not be put in its cgroup
# The gate holds the run until the parent has moved it into its cgroup (it reads one line from
# stdin, a pipe the parent writes to afterwards), so nothing of the program runs uncharged.
_GATE = f'read -r go || exit {GATE_EXIT}; exec "$@" </dev/null'
# A run killed at its CPU limit reports a little less CPU through wait4 than the limit (about 5%
# less on a loaded 2-core machine, kernel 6.18); a death by SIGKILL/SIGXCPU counts as the limit's
# when it used at least this share of it.
CPU_LIMIT_SHARE = 0.9


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
    disk_bytes: int = 64 * 1024**2  # the jail's tmpfs work folder
    shm_bytes: int = 4 * 1024**2  # the jail's tmpfs /dev/shm
    files: int = 10_000  # files and folders a program may create (the guard counts them)

    @property
    def held_bytes(self) -> int:
        """The run's memory cgroup limit: everything it may hold at once (process, files, shm).

        Kernel memory (inodes, dentries, pipe buffers) is charged against the same limit.
        """
        return self.memory_bytes + self.disk_bytes + self.shm_bytes


@dataclass(frozen=True)
class Ending:
    """How the child ended, as seen from outside: its wait status, whether the runner killed it
    for the wall clock, the CPU seconds it and its descendants used, and the cgroup's OOM kills."""

    returncode: int
    timed_out: bool
    cpu_seconds: float = 0.0
    oom_kills: int = 0


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
        for tag, code in fenced_blocks(str(response))
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


def run_program(
    source: str, limits: SandboxLimits | None = None, boundary: jail.Boundary | None = None
) -> ProgramRun:
    """Run `source` under `boundary` (default: this job's jail) and classify how it ended.

    Never raises on the program: a boundary that is not ready gives `not_run` with its reason.
    """
    limits = limits or SandboxLimits()
    boundary = boundary or prepare(jail.DEFAULT_MODE)
    if not boundary.ready:
        return ProgramRun("not_run", "", boundary.reason)
    if boundary.mode == "python_guard":
        return _run_guarded(source, limits)
    return _run_jailed(source, limits, boundary)


def run_programs(
    sources: Sequence[str | None],
    limits: SandboxLimits | None = None,
    workers: int = 2,
    mode: str = jail.DEFAULT_MODE,
) -> list[ProgramRun | None]:
    """Run each program (None stays None) on a small thread pool, keeping the input order.

    The boundary is prepared once for all of them; where it cannot be, no program runs and every
    one is `not_run` with the reason (the job log says so once).
    """
    todo = [(index, source) for index, source in enumerate(sources) if source is not None]
    runs: list[ProgramRun | None] = [None] * len(sources)
    if not todo:
        return runs
    boundary = require(mode)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        finished = pool.map(lambda item: run_program(item[1], limits, boundary), todo)
        for (index, _), run in zip(todo, finished, strict=True):
            runs[index] = run
    return runs


def _run_jailed(source: str, limits: SandboxLimits, boundary: jail.Boundary) -> ProgramRun:
    """One run inside bwrap: the program and runner go in as in-memory files, the work folder is
    the jail's own tmpfs, so nothing the program makes exists on the host afterwards. Where the
    boundary has a memory cgroup, the run gets its own child of it, limited to `held_bytes`.
    """
    nonce = secrets.token_hex(16)
    fds = {
        "runner": jail.memfd("runner", jail.RUNNER_SOURCE.read_bytes()),
        "program": jail.memfd("program", _program_file(nonce, source)),
        "seccomp": jail.memfd("seccomp", jail.seccomp_filter()),
    }
    config = _config(jail.BOX, f"{jail.BOX}/{jail.PROGRAM_NAME}", limits)
    command = jail.bwrap_command(boundary, fds, config, limits.disk_bytes, limits.shm_bytes)
    cgroup = None
    try:
        if boundary.cgroup is not None:
            cgroup = cgroups.RunCgroup.create(boundary.cgroup, limits.held_bytes)
        with _captures() as (out, err):
            user = boundary.bwrap_user
            identity = {} if user is None else {"user": user, "group": user, "extra_groups": []}
            ending = _execute(
                command,
                Path("/"),
                {},
                identity,
                limits.wall_seconds,
                (out, err),
                fds.values(),
                cgroup,
            )
            ending = dataclasses.replace(
                ending, returncode=_signal_of_bwrap_status(ending.returncode)
            )
            stdout = _read_capped(out, limits.output_chars)
            stderr = _read_capped(err, limits.output_chars)
    except OSError as error:
        return ProgramRun("not_run", "", f"the run's memory cgroup could not be set up: {error}")
    finally:
        for fd in fds.values():
            os.close(fd)
        if cgroup is not None:
            cgroup.kill_all()
            cgroup.remove()
    return classify(ending, stdout, stderr, limits, nonce)


def _program_file(nonce: str, source: str) -> bytes:
    """The nonce line the runner reads (and removes) before the program, then the program."""
    return f"{nonce}\n{source}".encode("utf-8", "replace")


def _signal_of_bwrap_status(returncode: int) -> int:
    """bwrap reports a child killed by signal N as exit status 128 + N; give it back as -N."""
    if 128 < returncode <= 128 + 64:
        return -(returncode - 128)
    return returncode


def _run_guarded(source: str, limits: SandboxLimits) -> ProgramRun:
    """The opt-in Python-only guard: a host temporary folder, rlimits and the audit hook."""
    user = _sandbox_user()
    nonce = secrets.token_hex(16)
    outer = Path(tempfile.mkdtemp(prefix=f"{GUARD_PREFIX}{os.getpid()}-"))
    try:
        work = outer / "work"
        work.mkdir()
        program = work / "program.py"
        program.write_bytes(_program_file(nonce, source))
        identity = {}
        if user is not None:
            os.chown(work, user, user)
            os.chown(program, user, user)
            identity = {"user": user, "group": user, "extra_groups": []}
        with _captures() as (out, err):
            config = _config(str(work), str(program), limits)
            command = [sys.executable, *_PYTHON_FLAGS, str(RUNNER), config]
            ending = _execute(
                command, work, _environment(work), identity, limits.wall_seconds, (out, err)
            )
            stdout = _read_capped(out, limits.output_chars)
            stderr = _read_capped(err, limits.output_chars)
    finally:
        remove_work_folder(outer)
    return classify(ending, stdout, stderr, limits, nonce)


@contextlib.contextmanager
def _captures() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Unnamed temporary files for the child's stdout and stderr (no path the child could name);
    RLIMIT_FSIZE in the child bounds how much it can write to them."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        yield out, err


def _config(root: str, program: str, limits: SandboxLimits) -> str:
    """The runner's argument: where its folder and program are, and the limits to set on itself."""
    return json.dumps(
        {
            "root": root,
            "program": program,
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "file_bytes": limits.file_bytes,
            "open_files": limits.open_files,
            "processes": limits.processes,
            "files": limits.files,
        }
    )


def _environment(work: Path) -> dict[str, str]:
    """Nothing inherited (no tokens, no proxies); temp files and HOME point into the folder."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}


def _execute(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    identity: dict,
    wall_seconds: float,
    streams: tuple,
    pass_fds: Iterable[int] = (),
    cgroup: cgroups.RunCgroup | None = None,
) -> Ending:
    """Start the child in its own session and kill that whole group if the wall clock runs out.

    Limits are set by the runner itself rather than in `preexec_fn`, which CPython documents as
    unsafe when the parent has threads (scoring runs programs from a thread pool). In the jail,
    killing bwrap ends its PID namespace, so every process of the run goes with it. With a
    `cgroup`, the child waits at a gate until it has been moved there.
    """
    gate = os.pipe() if cgroup is not None else None
    if gate is not None:
        command = ["/bin/sh", "-c", _GATE, "codeift-gate", *command]
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL if gate is None else gate[0],
            stdout=streams[0],
            stderr=streams[1],
            close_fds=True,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            **identity,
        )
    finally:
        if gate is not None:
            os.close(gate[0])
    if gate is not None:
        try:
            cgroup.add(process.pid)
            os.write(gate[1], b"go\n")
        except OSError as error:
            LOG.warning("could not move run %d into its cgroup: %s", process.pid, error)
            _kill_group(process.pid)
            _wait(process, 0)
            raise
        finally:
            os.close(gate[1])
    ending = _wait(process, wall_seconds)
    if cgroup is not None:
        ending = dataclasses.replace(ending, oom_kills=cgroup.oom_kills())
    return ending


def _wait(process: subprocess.Popen, wall_seconds: float) -> Ending:
    """Reap the child with its resource use (wait4: its own and its reaped descendants' CPU)."""
    timed_out = not _exits_within(process.pid, wall_seconds)
    if timed_out:
        _kill_group(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Ending(process.returncode, timed_out, usage.ru_utime + usage.ru_stime)


def _exits_within(pid: int, seconds: float) -> bool:
    """Whether `pid` ends within `seconds`, without reaping it (a pidfd, else polling waitid)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            return bool(poller.poll(max(0, int(seconds * 1000))))
        finally:
            os.close(pidfd)
    deadline = time.monotonic() + seconds
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_capped(handle: BinaryIO, limit: int) -> str:
    """At most `limit` characters of a capture, keeping head and tail: answers come last.

    Only about 4 x `limit` bytes are ever read, whatever the child wrote; odd bytes become U+FFFD
    and NUL bytes are dropped, so the text is safe to store and to parse.
    """
    size = os.fstat(handle.fileno()).st_size
    handle.seek(0)
    if size <= 4 * limit:
        text = handle.read().decode("utf-8", "replace")
    else:
        head = handle.read(2 * limit).decode("utf-8", "replace")
        handle.seek(size - 2 * limit)
        text = head + "\n" + handle.read(2 * limit).decode("utf-8", "replace")
    text = text.replace("\x00", "").strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... output truncated ...]\n{text[-half:]}"


def remove_work_folder(path: Path) -> None:
    """Remove a host work folder whatever the program did to it; never raises.

    Unreadable folders are opened up and retried; what still cannot go (an immutable file, say)
    is counted in `LEFTOVERS` and logged, not raised, so one program cannot stop a scoring job.
    """

    root = os.path.realpath(path)

    def retry(function: Callable, name: str, _error: object) -> None:
        """Open up `name` and its folder, but never a folder above the work folder."""
        try:
            for target in (os.path.dirname(name), name):
                if jail.is_under(os.path.realpath(target), root) and not os.path.islink(target):
                    os.chmod(target, 0o700)
            function(name)
        except OSError:
            pass

    try:
        shutil.rmtree(path, onerror=retry)
    except OSError:
        pass
    if os.path.lexists(path):
        with _LEFTOVER_LOCK:
            LEFTOVERS.append(str(path))
        LOG.warning("could not remove the program's work folder %s; left in place", path)


def leftover_count() -> int:
    """How many work folders this process could not remove (reported in the score job's log)."""
    with _LEFTOVER_LOCK:
        return len(LEFTOVERS)


def classify(
    ending: Ending,
    stdout: str,
    stderr: str,
    limits: SandboxLimits | None = None,
    nonce: str | None = None,
) -> ProgramRun:
    """Map how the child ended onto a status; `detail` says why for every status but ok.

    Judged from outside the program: `timeout` when the runner killed it for the wall clock or
    it died of the CPU limit's signal after using that much CPU; `memory` when the run's cgroup
    counted an OOM kill, or the runner reported (with this run's `nonce`) a MemoryError; `blocked`
    only on the guard's nonce-marked report. Any other death by a signal is `crashed`, so a
    program cannot forge its status by killing itself or printing a marker.
    """
    limits = limits or SandboxLimits()
    if ending.timed_out:
        return ProgramRun("timeout", stdout, "wall-clock limit exceeded")
    if ending.oom_kills:
        return ProgramRun("memory", stdout, "killed at the run's memory cgroup limit")
    if ending.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and (
        ending.cpu_seconds >= limits.cpu_seconds * CPU_LIMIT_SHARE
    ):
        return ProgramRun("timeout", stdout, "CPU time limit exceeded")
    if ending.returncode == BLOCKED_EXIT and (reason := _report(stderr, nonce, BLOCKED)):
        return ProgramRun("blocked", stdout, reason)
    if ending.returncode == MEMORY_EXIT and (reason := _report(stderr, nonce, MEMORY)):
        return ProgramRun("memory", stdout, reason)
    if ending.returncode < 0:
        return ProgramRun("crashed", stdout, f"killed by {_signal_name(-ending.returncode)}")
    if ending.returncode != 0:
        return ProgramRun(
            "crashed", stdout, _last_line(stderr) or f"exit status {ending.returncode}"
        )
    if not stdout:
        return ProgramRun("no_output", stdout, "the program printed nothing")
    return ProgramRun("ok", stdout, None)


def _report(stderr: str, nonce: str | None, kind: str) -> str | None:
    """The detail of the runner's last `kind` report marked with this run's nonce, if any."""
    if not nonce:
        return None
    marker = f"{MARKER}{nonce} {kind}: "
    if marker not in stderr:
        return None
    return stderr.rsplit(marker, 1)[1].splitlines()[0].strip() or kind.lower()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@functools.lru_cache(maxsize=1)
def _sandbox_user() -> int | None:
    """python_guard mode: `nobody` when running as root and that user can start the runner.

    Root ignores RLIMIT_NPROC and file permissions, so dropping it is the kernel-enforced layer
    under the audit hook. Where `nobody` cannot start the interpreter (pyenv under a 0700 /root)
    this is None under root too, and `prepare` then refuses python_guard (programs not run).
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
        failure = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        failure = None if result.returncode == 0 else (failure or [f"exit {result.returncode}"])[0]
    except (OSError, subprocess.SubprocessError) as error:
        failure = str(error)
    if failure is None:
        return NOBODY
    LOG.warning(
        "python_guard: programs run AS ROOT, because user %d cannot start %s (%s)",
        NOBODY,
        sys.executable,
        failure,
    )
    return None


@functools.cache
def prepare(mode: str = jail.DEFAULT_MODE) -> jail.Boundary:
    """The boundary for this process's scoring job, probed once and logged.

    A jail that cannot be set up gives a Boundary that is not ready (never a silent downgrade);
    `python_guard` is ready but logs that it is the weaker, Python-only layer.
    """
    jail.check_mode(mode)
    if mode == "python_guard":
        return _prepare_python_guard(mode)
    try:
        boundary = _with_cgroup(_probe())
    except jail.JailUnavailable as error:
        jail.LOG.warning("the program jail cannot be set up, programs are NOT run: %s", error)
        return jail.Boundary(mode, False, f"jail unavailable: {error}")
    jail.LOG.info(
        "program jail ready (bwrap %s, as uid %s, memory cgroup %s)",
        boundary.bwrap,
        boundary.bwrap_user,
        boundary.cgroup.path if boundary.cgroup else "none",
    )
    return boundary


def _prepare_python_guard(mode: str) -> jail.Boundary:
    """The opt-in Python-only guard; never as root (root ignores the limits the guard leans on)."""
    jail.remove_stale_temp(GUARD_PREFIX)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and _sandbox_user() is None:
        reason = (
            f"python_guard refuses to run programs as root, and user {NOBODY} cannot start "
            f"{sys.executable}; use scoring.sandbox: jail, or an interpreter {NOBODY} can run"
        )
        jail.LOG.warning("programs are NOT run: %s", reason)
        return jail.Boundary(mode, False, reason)
    jail.LOG.warning(
        "scoring.sandbox=python_guard: model-written programs run under the Python audit hook "
        "and rlimits only, NOT in the operating-system jail (opted in by config)"
    )
    return jail.Boundary(mode, True, "python_guard: Python-only guard, no OS jail")


def _with_cgroup(boundary: jail.Boundary) -> jail.Boundary:
    """The boundary with a memory cgroup per run where one can be had (logged either way).

    Runs of score jobs that were killed outright are cleaned up first. A cgroup that is found
    but refuses a probe run is not used.
    """
    parent = cgroups.find_parent()
    if isinstance(parent, str):
        jail.LOG.warning(
            "programs run without a memory cgroup (%s): read-only /dev, capped /dev/shm and "
            "seccomp cap what they hold, but not the kernel memory of the files they make",
            parent,
        )
        return boundary
    cgroups.remove_stale(parent)
    candidate = dataclasses.replace(boundary, cgroup=parent)
    run = run_program("print(6 * 7)", SandboxLimits(wall_seconds=30.0), candidate)
    if run.status != "ok" or run.stdout != "42":
        jail.LOG.warning("memory cgroup %s not used: %s (%s)", parent.path, run.status, run.detail)
        return boundary
    return candidate


def require(mode: str = jail.DEFAULT_MODE) -> jail.Boundary:
    """The boundary of `mode`, or JailUnavailable (a stage error: the score job fails) when the
    mode is `jail` and the jail cannot be set up here, naming why and how to install it.
    `jail_if_available` gives the not-ready boundary back (its programs become `not_run`)."""
    boundary = prepare(mode)
    if mode == "jail" and not boundary.ready:
        raise jail.JailUnavailable(
            f"scoring.sandbox: jail, but the program jail cannot be set up on this machine "
            f"({boundary.reason}): {jail.INSTALL_HINT}"
        )
    return boundary


def _probe() -> jail.Boundary:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise jail.JailUnavailable("bwrap (Debian package bubblewrap) is not installed")
    try:
        import pyseccomp  # noqa: F401
    except ImportError as error:
        raise jail.JailUnavailable(
            f"the seccomp bindings (pyseccomp) do not import: {error}"
        ) from error
    user = jail.NOBODY if os.geteuid() == 0 else None
    interpreter = os.path.realpath(sys.executable)
    mounts, masked = jail.python_mounts(interpreter, user)
    boundary = jail.Boundary("jail", True, None, bwrap, user, mounts, masked, interpreter)
    run = run_program("print(6 * 7)", SandboxLimits(wall_seconds=30.0), boundary)
    if run.status != "ok" or run.stdout != "42":
        raise jail.JailUnavailable(
            f"a trivial program did not run in it ({run.status}: {run.detail})"
        )
    return boundary
