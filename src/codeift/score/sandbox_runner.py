"""Child side of codeift.score.sandbox: limit the process, install a guard, then run one snippet.

This file runs as a script under `python -I -S -B`, so it may import only the standard library.
Everything it needs is bound before the snippet starts, because the snippet shares the
interpreter and could otherwise monkeypatch `os` or `posixpath` to fool the guard. The guard is a
`sys.addaudithook`; CPython documents audit hooks as observation, not isolation, so it is one layer
(with rlimits and, under root, an unprivileged user) against careless model-written code, not a
defence against code written to escape it.
"""

from __future__ import annotations

import builtins
import json
import os
import resource
import stat
import sys
from collections.abc import Callable

BLOCKED_EXIT = 86
MEMORY_EXIT = 87
# A report line is MARKER + the run's nonce + " " + kind + ": " + detail. The nonce is the first
# line of the program file, which the runner reads and removes before the program starts; the
# jail has no /proc to read it back from memory, and frames of the guard are hidden while it runs
# program code (a __fspath__, say), so a program cannot print a report the parent accepts.
MARKER = "CODEIFT-SANDBOX-"
BLOCKED = "BLOCKED"
MEMORY = "MEMORY"
# Events that hand out frames (and through them the guard's closure): refused while the guard
# itself is running program code; tracing and other threads' frames are refused always.
FRAME_EVENTS = frozenset({"sys._getframe", "sys._getframemodulename", "object.__getattr__"})
ALWAYS_REFUSED_FRAME_EVENTS = frozenset({"sys.settrace", "sys.setprofile", "sys._current_frames"})

# Events refused outright, with the reason reported as the run's detail.
REFUSED_EVENTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "os.fork",
            "os.forkpty",
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.startfile",
            "subprocess.Popen",
            "pty.spawn",
            "_posixsubprocess.fork_exec",
        ),
        "process creation is not allowed",
    ),
    **dict.fromkeys(
        ("os.kill", "os.killpg", "signal.pthread_kill"), "signalling processes is not allowed"
    ),
    **dict.fromkeys(("resource.setrlimit", "resource.prlimit"), "changing limits is not allowed"),
    **dict.fromkeys(("os.symlink", "os.link"), "creating links is not allowed"),
    **dict.fromkeys(
        ("gc.get_objects", "gc.get_referrers", "gc.get_referents"),
        "inspecting the interpreter's objects is not allowed",
    ),
    "sqlite3.enable_load_extension": "loading native code is not allowed",
    "urllib.Request": "network access is not allowed",
}
REFUSED_PREFIXES: dict[str, str] = {
    "socket.": "network access is not allowed",
    "ctypes.": "loading native code is not allowed",
}
REFUSED_IMPORTS = frozenset({"ctypes", "_ctypes", "_xxsubinterpreters"})

# Filesystem events that change things: (indices of path arguments, indices of dir_fd arguments).
PATH_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.truncate": ((0,), ()),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.utime": ((0,), (3,)),
    "os.chflags": ((0,), ()),
    "os.lchflags": ((0,), ()),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
    "shutil.move": ((0, 1), ()),
    "shutil.copyfile": ((1,), ()),
    "shutil.copymode": ((1,), ()),
    "shutil.copystat": ((1,), ()),
    "shutil.copytree": ((1,), ()),
    "shutil.chown": ((0,), ()),
    "shutil.make_archive": ((0,), ()),
    "shutil.unpack_archive": ((1,), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def set_limits(config: dict) -> None:
    """Lower this process's limits before any untrusted code runs (lowering needs no privilege)."""
    cpu = int(config["cpu_seconds"])
    # soft = hard: in the jail the runner is its PID namespace's init (bwrap --as-pid-1), which
    # ignores SIGXCPU, so the hard limit's SIGKILL is what ends a CPU-bound run
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    for limit, key in (
        (resource.RLIMIT_AS, "memory_bytes"),
        (resource.RLIMIT_FSIZE, "file_bytes"),
        (resource.RLIMIT_NOFILE, "open_files"),
        (resource.RLIMIT_NPROC, "processes"),
    ):
        resource.setrlimit(limit, (int(config[key]), int(config[key])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))  # POSIX queues hold kernel memory


def lexical_path(path: str, cwd: str) -> str:
    """Absolute, `.`/`..`-free form of `path` by string work alone, so no patched module is used.

    Without symlinks (which the guard refuses to create) this is where the path really leads.
    """
    parts: list[str] = []
    for part in (path if path.startswith("/") else cwd + "/" + path).split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


MEMORY_EVENT = "codeift.runner.memory_error"
_PROC_MEMORY = frozenset({"mem", "pagemap"})


def make_guard(root: str, nonce: str, max_files: int = 10_000) -> Callable[[str, tuple], None]:
    """The audit hook: refuse process creation, network, native code and writes outside `root`.

    It also counts the files and folders the program creates and refuses the one past
    `max_files`: each costs kernel memory that the work folder's byte cap does not see (the
    run's memory cgroup charges it where there is one; this is the layer where there is none).

    Its refusals (and the runner's MemoryError report, sent through `MEMORY_EVENT`) are written
    with `nonce`, which lives only in this closure. The hook never lets an exception out, and
    never runs program code (a path object's __fspath__) with its frames reachable.
    """
    getcwd, fspath, stat_of, write, exit_now = os.getcwd, os.fspath, os.stat, os.write, os._exit
    is_regular, is_dir, stdout = stat.S_ISREG, stat.S_ISDIR, sys.stdout
    str_copy, join_bytes = str.__str__, bytes.join
    refused, prefixes, path_events = dict(REFUSED_EVENTS), dict(REFUSED_PREFIXES), dict(PATH_EVENTS)
    refused_imports, write_flags, prefix = REFUSED_IMPORTS, _WRITE_FLAGS, root + "/"
    frame_events, always_refused = FRAME_EVENTS, ALWAYS_REFUSED_FRAME_EVENTS
    memory_event, proc_memory = MEMORY_EVENT, _PROC_MEMORY
    depth, created = [0], [0]

    def report(kind: str, detail: str, code: int) -> None:
        try:
            stdout.flush()
        except BaseException:  # noqa: B036 - a broken stdout must not stop the report
            pass
        write(2, f"\n{MARKER}{nonce} {kind}: {detail}\n".encode(errors="replace"))
        exit_now(code)

    def block(event: str, reason: str) -> None:
        report(BLOCKED, f"{event}: {reason}", BLOCKED_EXIT)

    def count_new(event: str) -> None:
        created[0] += 1
        if created[0] > max_files:
            block(event, f"creating more than {max_files} files and folders is not allowed")

    def as_text(path: object) -> str:
        """`path` as an exact str, whatever subclass or path object the program passed."""
        if not isinstance(path, (str, bytes)):
            try:
                path = fspath(path)
            except BaseException:  # noqa: B036 - program code must not unwind through the guard
                block("open", "a path object that does not convert to a path")
        if isinstance(path, bytes):
            return join_bytes(b"", (path,)).decode("utf-8", "surrogateescape")
        return str_copy(path)

    def inside(path: object) -> bool:
        resolved = lexical_path(as_text(path), getcwd())
        return resolved == root or resolved.startswith(prefix)

    def reads_process_memory(path: object) -> bool:
        parts = lexical_path(as_text(path), getcwd()).split("/")
        return len(parts) > 2 and parts[1] == "proc" and parts[-1] in proc_memory

    def check_open(args: tuple) -> None:
        path, mode, flags = (tuple(args) + (None, None, 0))[:3]
        if isinstance(path, int):
            return
        if reads_process_memory(path):
            block("open", "reading process memory is not allowed")
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            (flags or 0) & write_flags
        )
        if not writes:
            return
        if mode is None and not as_text(path).startswith("/"):
            block("open", f"os.open of relative path {path!r} for writing is not allowed")
        if not inside(path):
            block("open", f"writing {as_text(path)!r} outside the sandbox folder is not allowed")
        try:
            mode_bits = stat_of(as_text(path)).st_mode
        except OSError:
            count_new("open")
            return
        if not (is_regular(mode_bits) or is_dir(mode_bits)):
            block("open", f"writing the special file {as_text(path)!r} is not allowed")

    def check_paths(event: str, args: tuple) -> None:
        paths, dir_fds = path_events[event]
        if event == "os.mkdir":
            count_new(event)
        for index in dir_fds:
            if index < len(args) and args[index] not in (None, -1):
                block(event, "paths relative to a directory descriptor are not allowed")
        for index in paths:
            if index < len(args) and args[index] is not None:
                target = args[index]
                if isinstance(target, int) and event != "os.truncate":
                    block(event, "changing files by descriptor is not allowed")
                if not isinstance(target, int) and not inside(target):
                    block(event, f"changing {as_text(target)!r} outside the sandbox folder")

    def check_sqlite(args: tuple) -> None:
        database = args[0] if args else ":memory:"
        if isinstance(database, (str, bytes)) and database in (":memory:", "", b":memory:", b""):
            return
        if as_text(database).startswith("file:") or not inside(database):
            block("sqlite3.connect", "opening a database outside the sandbox folder")

    def dispatch(event: str, args: tuple) -> None:
        if event == "open":
            check_open(args)
        elif event in refused:
            block(event, refused[event])
        elif event in path_events:
            check_paths(event, args)
        elif event == "import" and args and args[0] in refused_imports:
            block(event, f"importing {args[0]} is not allowed")
        elif event == "sqlite3.connect":
            check_sqlite(args)
        elif event == memory_event:
            report(MEMORY, "MemoryError", MEMORY_EXIT)
        else:
            for start, reason in prefixes.items():
                if event.startswith(start):
                    block(event, reason)

    def guard(event: str, args: tuple) -> None:
        if event in always_refused or (depth[0] and event in frame_events):
            block(event, "inspecting frames or tracing is not allowed")
        depth[0] += 1
        try:
            dispatch(event, args)
        except BaseException:  # noqa: B036 - an exception would carry the guard's frames out
            block(event, "the call could not be checked")
        finally:
            depth[0] -= 1

    return guard


def disarm_fork_exec() -> None:
    """`_posixsubprocess.fork_exec` starts processes without an audit event, so replace it.

    The refusal is routed through `sys.audit` so the guard reports it like any other event.
    """
    import _posixsubprocess

    audit = sys.audit

    def fork_exec(*_args: object) -> None:
        audit("_posixsubprocess.fork_exec")
        raise PermissionError("process creation is not allowed")

    _posixsubprocess.fork_exec = fork_exec


def read_program(path: str) -> tuple[str, str]:
    """(nonce, source) from the program file, which is removed before anything runs."""
    with open(path, encoding="utf-8") as handle:
        nonce, _, source = handle.read().partition("\n")
    os.remove(path)
    return nonce, source


def main(argv: list[str]) -> None:
    """Limit, read the program, guard, run it as `__main__` in a fresh namespace.

    A MemoryError that escapes the program is reported through the guard (nonce-marked); any
    other exception prints its traceback as usual.
    """
    config = json.loads(argv[1])
    set_limits(config)
    root = os.path.realpath(config["root"])
    os.chdir(root)
    source = read_program(config["program"])
    disarm_fork_exec()
    sys.addaudithook(make_guard(root, source[0], int(config["files"])))
    source = source[1]
    audit = sys.audit
    del config
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, "<program>", "exec"), namespace)
    except MemoryError:
        audit(MEMORY_EVENT)
        raise
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
