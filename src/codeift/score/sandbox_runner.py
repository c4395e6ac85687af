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
BLOCKED_MARKER = "CODEIFT-SANDBOX-BLOCKED: "

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
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    for limit, key in (
        (resource.RLIMIT_AS, "memory_bytes"),
        (resource.RLIMIT_FSIZE, "file_bytes"),
        (resource.RLIMIT_NOFILE, "open_files"),
        (resource.RLIMIT_NPROC, "processes"),
    ):
        resource.setrlimit(limit, (int(config[key]), int(config[key])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


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


def make_guard(root: str) -> Callable[[str, tuple], None]:
    """The audit hook: refuse process creation, network, native code and writes outside `root`."""
    getcwd, fspath, stat_of, write, exit_now = os.getcwd, os.fspath, os.stat, os.write, os._exit
    is_regular, is_dir, stdout = stat.S_ISREG, stat.S_ISDIR, sys.stdout
    refused, prefixes, path_events = dict(REFUSED_EVENTS), dict(REFUSED_PREFIXES), dict(PATH_EVENTS)
    refused_imports, write_flags, prefix = REFUSED_IMPORTS, _WRITE_FLAGS, root + "/"

    def block(event: str, reason: str) -> None:
        try:
            stdout.flush()
        except BaseException:  # noqa: B036 - a broken stdout must not stop the refusal
            pass
        write(2, f"\n{BLOCKED_MARKER}{event}: {reason}\n".encode(errors="replace"))
        exit_now(BLOCKED_EXIT)

    def as_text(path: object) -> str:
        path = path if isinstance(path, (str, bytes)) else fspath(path)
        return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path

    def inside(path: object) -> bool:
        resolved = lexical_path(as_text(path), getcwd())
        return resolved == root or resolved.startswith(prefix)

    def check_open(args: tuple) -> None:
        path, mode, flags = (tuple(args) + (None, None, 0))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            (flags or 0) & write_flags
        )
        if not writes or isinstance(path, int):
            return
        if mode is None and not as_text(path).startswith("/"):
            block("open", f"os.open of relative path {path!r} for writing is not allowed")
        if not inside(path):
            block("open", f"writing {path!r} outside the sandbox folder is not allowed")
        try:
            mode_bits = stat_of(path).st_mode
        except OSError:
            return
        if not (is_regular(mode_bits) or is_dir(mode_bits)):
            block("open", f"writing the special file {path!r} is not allowed")

    def check_paths(event: str, args: tuple) -> None:
        paths, dir_fds = path_events[event]
        for index in dir_fds:
            if index < len(args) and args[index] not in (None, -1):
                block(event, "paths relative to a directory descriptor are not allowed")
        for index in paths:
            if index < len(args) and args[index] is not None:
                target = args[index]
                if isinstance(target, int) and event != "os.truncate":
                    block(event, "changing files by descriptor is not allowed")
                if not isinstance(target, int) and not inside(target):
                    block(event, f"changing {target!r} outside the sandbox folder is not allowed")

    def check_sqlite(args: tuple) -> None:
        database = args[0] if args else ":memory:"
        if isinstance(database, (str, bytes)) and database in (":memory:", "", b":memory:", b""):
            return
        if as_text(database).startswith("file:") or not inside(database):
            block("sqlite3.connect", f"opening database {database!r} outside the sandbox folder")

    def guard(event: str, args: tuple) -> None:
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
        else:
            for start, reason in prefixes.items():
                if event.startswith(start):
                    block(event, reason)

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


def main(argv: list[str]) -> None:
    """Limit, read the program, guard, run it as `__main__` in a fresh namespace."""
    config = json.loads(argv[1])
    set_limits(config)
    root = os.path.realpath(config["root"])
    os.chdir(root)
    with open(config["program"], encoding="utf-8") as handle:
        source = handle.read()
    os.remove(config["program"])
    disarm_fork_exec()
    sys.addaudithook(make_guard(root))
    del config, handle
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(source, "<program>", "exec"), namespace)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
